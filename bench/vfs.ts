/**
 * Benchmark `vfs`: what the session filesystem costs on a large workspace.
 *
 *   npm run bench -- vfs [--files N] [--begins N] [--reads N] [--first-reads N] [--commits N] [--copies N] [--seed N]
 *
 * Two workspaces are generated in one temp directory (`$TMPDIR/warden-bench-vfs-*`, which also
 * holds the sessions directory and the copies, so everything is on one filesystem): a small tree
 * of 10 files and a large tree of `--files` files (default 50,000), both from the same seeded
 * generator (`--seed`, default 1). Files are spread over nested directories (large tree: about
 * 20 files per directory at random, up to 7 levels deep; small tree: one directory per file, so
 * its 10 files sit in 10 directories, as 10 files spread over the large tree do) and their sizes
 * follow a log-normal law (median 2 KiB,
 * σ = 1.1, clamped to 64 B .. 256 KiB: most files small, a few large, ~170 MB for 50,000
 * files); contents are generated text lines. Everything is measured in this process on the
 * kernel's real `SessionFs` (kernel/vfs) with `performance.now()`. The page cache holds both
 * trees (they were just written), so reads are CPU and syscall cost, not disk reads. After the
 * generation (and after removing each copy of phase 4) the filesystem's dirty pages are written
 * back with `sync -f` (syncfs(2), not timed): the commit fsyncs, and on ext4 an fsync can wait
 * for the writeback of everything written before it, so without this the first commits would
 * pay for the generation of 170 MB. A workspace is normally on disk long before a session.
 *
 * 1. Begin (`--begins`, default 2000 per tree, after 200 unrecorded ones per tree). `begin` on
 *    each tree in alternating blocks of 50, so load from other processes falls on both; each
 *    block's sessions are rolled back after the block (not timed), so the sessions directory
 *    stays small. A begin checks the workspace (`stat`, `realpath`) and creates the session's
 *    area: `<id>/upper/`, `<id>/whiteouts/`, an empty `touched.jsonl` and `meta.json`. That
 *    work does not depend on the tree: `begin_ratio` (median 50k / median 10) should be ~1.
 *    Goal: ≤ 1.1.
 *
 * 2. Read of an untouched file (a file of 2–8 KiB, 3+ levels deep in the large tree), whole,
 *    through the overlay (`Overlay.read(rel, 0, 1 MiB)`) against `fs.readFileSync` of the same
 *    host file. First read: in each of `--first-reads` fresh sessions (default 200), the first
 *    `read` of the file, which also records the path's base state for conflict detection (a
 *    sha256 of the file, appended to `touched.jsonl`); a `readFileSync` is timed next to it.
 *    Warm: in one session, `--reads` reads (default 5000) of each kind after 500 unrecorded
 *    ones, in alternating blocks of 250; also `resolve` + `read` (what the kernel's
 *    `wasi:filesystem` does for an open-at by path: a lookup in both layers per path prefix,
 *    then the read).
 *
 * 3. Commit (`--commits` recorded runs per series, default 9, after one unrecorded run each;
 *    runs of the three series alternate). The commit is crash-safe (kernel/vfs/journal.ts): it
 *    fsyncs every staged file and every directory it changed, so its floor is the disk's. That
 *    floor is measured in the same rotation, 10 samples before every commit run
 *    (`fsync_floor_ms`: write 4 KiB to a new file, fsync it, fsync its directory, in a new
 *    directory); `commit_100_in_50k_per_file_vs_fsync` = commit / 100 / floor.
 *    Each run begins a fresh session, opens its overlay and
 *    overwrites the first bytes of each chosen file (`Overlay.write(rel, 0, …)`: a copy-up; not
 *    part of the commit figure, reported as `write_100_ms`), times `SessionFs.diff` (unified
 *    diffs, reported, not part of the goal) and then `SessionFs.commit` (conflict check, apply,
 *    removal of the session's area). Files are chosen by a stride over the sorted paths, with a
 *    different offset per run, so they spread across the tree and no run reuses another's.
 *    Series: 100 files of the 50k tree (`commit_100_in_50k_ms`, goal ≤ 500 ms); all 10 files
 *    of the 10-file tree (`commit_10_in_10_ms`); 10 files of the 50k tree
 *    (`commit_10_in_50k_ms`). `commit_ratio` = 100-in-50k / 10-in-10 (10× the files, 5,000×
 *    the tree: ~10 if commit is linear in the changed files); `commit_tree_ratio` =
 *    10-in-50k / 10-in-10 (same work, tree 5,000× larger: ~1 when commit does no O(tree) work).
 *
 * 4. Copy-and-hash begin, what Brio does: copy the whole tree to a new directory on the same
 *    filesystem (`readdirSync` walk, `mkdirSync`, `copyFileSync` per file) and sha256 every
 *    file (`readFileSync` of the source), without fsync. 20 runs on the 10-file tree, `--copies`
 *    runs (default 2, min 2) on the large tree; each copy is removed after its run (not timed).
 *    The median is the nearest-rank one: of 2 runs, the faster (so the speedup errs low).
 *    `copy_speedup` = median copy begin / median overlay begin on the 50k tree. Goal: ≥ 100.
 *
 * Durations in ms (`_ms`) or µs (`_us`); medians unless named p90/p99. Temp dirs are removed at
 * the end (also on Ctrl-C). Profile with `node --cpu-prof --import tsx bench/vfs.ts`.
 * The LAST line of output is one JSON object with every figure.
 */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { SessionFs, type Overlay } from '../kernel/vfs/index.js';
import { option, quantile } from './lib/stats.js';
import { mulberry32 } from './lib/random.js';

const GOAL_BEGIN_RATIO = 1.1;
const GOAL_COMMIT_MS = 500;
const GOAL_COPY_SPEEDUP = 100;

const FILES = option('files', 50_000);
const SMALL_FILES = 10;
const BEGINS = option('begins', 2000);
const BEGIN_BLOCK = 50;
const BEGIN_WARMUP = 200;
const READS = option('reads', 5000);
const READ_BLOCK = 250;
const READ_WARMUP = 500;
const FIRST_READS = option('first-reads', 200);
const COMMITS = option('commits', 9);
const COPIES = Math.max(2, option('copies', 2));
const SMALL_COPIES = 20;
const SEED = option('seed', 1);
const CHANGED = 100;
/** fsync floor samples taken before each commit run (after 2 unrecorded). */
const FSYNC_SAMPLES = 10;

const round = (x: number, digits = 1): number => Number(x.toFixed(digits));
const say = (line: string) => console.log(line);

/** Median, p90, p99 and minimum of a series, in the samples' unit. */
interface Stats {
  median: number;
  p90: number;
  p99: number;
  min: number;
  n: number;
}

function stats(samples: number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b);
  return { median: quantile(sorted, 0.5), p90: quantile(sorted, 0.9), p99: quantile(sorted, 0.99), min: sorted[0]!, n: sorted.length };
}

// ---- tree generation --------------------------------------------------------------------------


const WORDS = ['src', 'lib', 'core', 'util', 'api', 'server', 'client', 'model', 'view', 'store', 'test', 'fixtures', 'config',
  'parser', 'render', 'widgets', 'auth', 'db', 'cache', 'jobs', 'hooks', 'types', 'docs', 'assets', 'i18n', 'net', 'cli'];
const EXTENSIONS = ['ts', 'ts', 'ts', 'js', 'tsx', 'json', 'md', 'css', 'py', 'go', 'rs', 'txt'];
const MAX_DEPTH = 7;
const MIN_SIZE = 64;
const MAX_SIZE = 256 * 1024;
const MEDIAN_SIZE = 2048;
const SIGMA = 1.1;

/** A generated workspace: its root and its files' paths relative to it, sorted. */
interface Tree {
  root: string;
  files: string[];
  bytes: number;
  dirs: number;
}

/** Text to cut file contents from: lines that look like code, generated once per seed. */
function textPool(random: () => number, bytes: number): Buffer {
  const lines: string[] = [];
  let size = 0;
  while (size < bytes) {
    const indent = '  '.repeat(Math.floor(random() * 4));
    const words = Array.from({ length: 2 + Math.floor(random() * 8) }, () => WORDS[Math.floor(random() * WORDS.length)]);
    const line = `${indent}${random() < 0.3 ? 'const ' : ''}${words.join(random() < 0.5 ? '.' : ' ')}${random() < 0.5 ? ';' : ''}\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join(''));
}

/**
 * Write a tree of `files` files under `root` (created), deterministic for `seed`: about
 * `filesPerDir` files per directory, placed at random; with 1, each file in a directory of its own.
 */
function generateTree(root: string, files: number, seed: number, filesPerDir: number): Tree {
  const random = mulberry32(seed);
  const pool = textPool(random, MAX_SIZE * 4);
  const dirs: Array<{ rel: string; depth: number }> = [{ rel: '', depth: 0 }];
  const dirCount = filesPerDir === 1 ? files + 1 : Math.max(2, Math.round(files / filesPerDir));
  mkdirSync(root, { recursive: true });
  for (let i = 1; i < dirCount; i++) {
    // Earlier directories are likelier parents: a few wide top-level directories, deeper thin ones.
    let parent = dirs[Math.floor(random() ** 1.5 * dirs.length)]!;
    if (parent.depth >= MAX_DEPTH) parent = dirs[0]!;
    const name = `${WORDS[Math.floor(random() * WORDS.length)]}-${i.toString(36)}`;
    const rel = parent.rel === '' ? name : `${parent.rel}/${name}`;
    mkdirSync(join(root, rel));
    dirs.push({ rel, depth: parent.depth + 1 });
  }
  const paths: string[] = [];
  let bytes = 0;
  const t0 = performance.now();
  for (let i = 0; i < files; i++) {
    const dir = filesPerDir === 1 ? dirs[i + 1]! : dirs[Math.floor(random() * dirs.length)]!;
    const name = `${WORDS[Math.floor(random() * WORDS.length)]}-${i.toString(36)}.${EXTENSIONS[Math.floor(random() * EXTENSIONS.length)]}`;
    const rel = dir.rel === '' ? name : `${dir.rel}/${name}`;
    // Log-normal size by Box–Muller.
    const z = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
    const size = Math.round(Math.min(MAX_SIZE, Math.max(MIN_SIZE, MEDIAN_SIZE * Math.exp(SIGMA * z))));
    const start = Math.floor(random() * (pool.length - size));
    writeFileSync(join(root, rel), pool.subarray(start, start + size));
    paths.push(rel);
    bytes += size;
    if (files >= 10_000 && (i + 1) % 10_000 === 0) {
      say(`  generated ${(i + 1).toLocaleString('en')} / ${files.toLocaleString('en')} files (${(bytes / 2 ** 20).toFixed(0)} MB) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
  }
  return { root, files: paths.sort(), bytes, dirs: dirs.length };
}

// ---- 1. begin ---------------------------------------------------------------------------------

/** Per-begin ms on each tree, in alternating blocks; each block's sessions rolled back untimed. */
function measureBegin(sfs: SessionFs, small: Tree, big: Tree): { small: number[]; big: number[] } {
  const out = { small: [] as number[], big: [] as number[] };
  const block = (tree: Tree, n: number, into: number[] | null) => {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const { id } = sfs.begin(tree.root);
      const ms = performance.now() - t0;
      into?.push(ms);
      ids.push(id);
    }
    for (const id of ids) sfs.rollback(id);
  };
  for (let done = 0; done < BEGIN_WARMUP; done += BEGIN_BLOCK) {
    block(small, BEGIN_BLOCK, null);
    block(big, BEGIN_BLOCK, null);
  }
  for (let round = 0; out.big.length < BEGINS; round++) {
    const order = round % 2 === 0 ? (['small', 'big'] as const) : (['big', 'small'] as const);
    for (const which of order) block(which === 'small' ? small : big, BEGIN_BLOCK, out[which]);
  }
  return out;
}

// ---- 2. reads ---------------------------------------------------------------------------------

/** An untouched file for the read test: 2–8 KiB, at least 3 levels deep, the first such in path order. */
function pickReadFile(tree: Tree): { rel: string; size: number } {
  for (const rel of tree.files) {
    if (rel.split('/').length < 4) continue;
    const size = readFileSync(join(tree.root, rel)).length;
    if (size >= 2048 && size <= 8192) return { rel, size };
  }
  const rel = tree.files[0]!;
  return { rel, size: readFileSync(join(tree.root, rel)).length };
}

const WHOLE = 1 << 20;

function measureReads(sfs: SessionFs, tree: Tree, rel: string) {
  const host = join(tree.root, rel);
  let sink = 0;
  // First read per session: includes recording the base state (sha256 of the file) for conflicts.
  const first = { overlay: [] as number[], fs: [] as number[], open: [] as number[] };
  for (let i = 0; i < FIRST_READS + 20; i++) {
    const { id } = sfs.begin(tree.root);
    let t0 = performance.now();
    const ov = sfs.overlay(id, 'ro');
    const open = performance.now() - t0;
    const overlayFirst = i % 2 === 0;
    let fsMs = 0;
    if (!overlayFirst) {
      t0 = performance.now();
      sink += readFileSync(host).length;
      fsMs = performance.now() - t0;
    }
    t0 = performance.now();
    sink += ov.read(rel, 0, WHOLE).length;
    const overlayMs = performance.now() - t0;
    if (overlayFirst) {
      t0 = performance.now();
      sink += readFileSync(host).length;
      fsMs = performance.now() - t0;
    }
    sfs.rollback(id);
    if (i < 20) continue;
    first.overlay.push(overlayMs * 1000);
    first.fs.push(fsMs * 1000);
    first.open.push(open * 1000);
  }
  // Warm: one session, the file already touched.
  const warm = { overlay: [] as number[], fs: [] as number[], resolved: [] as number[] };
  const { id } = sfs.begin(tree.root);
  const ov = sfs.overlay(id, 'ro');
  const series: Array<[number[] | null, () => number]> = [
    [warm.overlay, () => ov.read(rel, 0, WHOLE).length],
    [warm.fs, () => readFileSync(host).length],
    [warm.resolved, () => ov.read(ov.resolve('', rel), 0, WHOLE).length],
  ];
  for (const [, run] of series) for (let i = 0; i < READ_WARMUP; i++) sink += run();
  for (let round = 0; warm.fs.length < READS; round++) {
    for (let k = 0; k < series.length; k++) {
      const [into, run] = series[(k + round) % series.length]!;
      for (let i = 0; i < READ_BLOCK; i++) {
        const t0 = performance.now();
        sink += run();
        into!.push((performance.now() - t0) * 1000);
      }
    }
  }
  sfs.rollback(id);
  if (sink === 0) throw new Error('read nothing');
  return { first, warm };
}

// ---- 3. commit --------------------------------------------------------------------------------

interface CommitRun {
  writeMs: number;
  diffMs: number;
  commitMs: number;
  changed: number;
}

/** `count` files of `tree` spread over its sorted paths, shifted by `run`. */
function spread(tree: Tree, count: number, run: number): string[] {
  if (count >= tree.files.length) return [...tree.files];
  const stride = Math.floor(tree.files.length / count);
  const offset = (run * 7919 + 13) % stride;
  return Array.from({ length: count }, (_, i) => tree.files[i * stride + offset]!);
}

function commitRun(sfs: SessionFs, tree: Tree, files: string[], tag: string): CommitRun {
  const { id } = sfs.begin(tree.root);
  const ov: Overlay = sfs.overlay(id);
  const marker = Buffer.from(`/* changed by ${tag} in session ${id} */\n`);
  let t0 = performance.now();
  for (const rel of files) ov.write(rel, 0, marker);
  const writeMs = performance.now() - t0;
  t0 = performance.now();
  const diff = sfs.diff(id);
  const diffMs = performance.now() - t0;
  t0 = performance.now();
  const changes = sfs.commit(id);
  const commitMs = performance.now() - t0;
  if (diff.length !== files.length || changes.length !== files.length) {
    throw new Error(`commit of ${files.length} files in ${tree.files.length}: diff has ${diff.length}, commit applied ${changes.length}`);
  }
  return { writeMs, diffMs, commitMs, changed: files.length };
}

function measureCommits(sfs: SessionFs, small: Tree, big: Tree, scratch: string) {
  const plan = [
    { name: 'c100_50k', tree: big, count: CHANGED },
    { name: 'c10_10', tree: small, count: SMALL_FILES },
    { name: 'c10_50k', tree: big, count: SMALL_FILES },
  ] as const;
  const runs: Record<(typeof plan)[number]['name'], CommitRun[]> = { c100_50k: [], c10_10: [], c10_50k: [] };
  const floor: number[] = [];
  for (let run = 0; run <= COMMITS; run++) {
    for (const { name, tree, count } of plan) {
      floor.push(...measureFsync(join(scratch, 'fsync-floor')));
      // c10_50k takes other files than c100_50k's of the same run: a different shift.
      const r = commitRun(sfs, tree, spread(tree, count, run * 2 + (name === 'c10_50k' ? 1 : 0)), `${name}#${run}`);
      if (run > 0) runs[name].push(r);
    }
  }
  return { runs, floor };
}

// ---- 4. copy-and-hash begin (Brio) ------------------------------------------------------------

/** Copy `src` to `dst` (created) and sha256 every file; returns the manifest's size. */
function copyAndHash(src: string, dst: string, rel = '', manifest = new Map<string, string>()): Map<string, string> {
  mkdirSync(join(dst, rel));
  for (const entry of readdirSync(join(src, rel), { withFileTypes: true })) {
    const child = rel === '' ? entry.name : `${rel}/${entry.name}`;
    if (entry.isDirectory()) {
      copyAndHash(src, dst, child, manifest);
    } else {
      copyFileSync(join(src, child), join(dst, child));
      manifest.set(child, createHash('sha256').update(readFileSync(join(src, child))).digest('hex'));
    }
  }
  return manifest;
}

function measureCopy(scratch: string, tree: Tree, runs: number, label: string): number[] {
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const dst = join(scratch, `copy-${label}-${i}`);
    const t0 = performance.now();
    const manifest = copyAndHash(tree.root, dst);
    ms.push(performance.now() - t0);
    if (manifest.size !== tree.files.length) throw new Error(`copy of ${label}: ${manifest.size} files, expected ${tree.files.length}`);
    const r0 = performance.now();
    rmSync(dst, { recursive: true, force: true });
    if (tree.files.length >= 10_000) {
      say(`  copy-and-hash ${label} run ${i + 1}/${runs}: ${(ms[i]! / 1000).toFixed(2)} s (removing the copy: ${((performance.now() - r0) / 1000).toFixed(1)} s, not timed)`);
      flush(scratch, 'removing the copy');
    }
  }
  return ms;
}

// ---- the disk ---------------------------------------------------------------------------------

/**
 * Write back the page cache of the filesystem holding `path` (`sync -f`, i.e. syncfs(2)), so that
 * the next phase does not pay for an earlier phase's dirty pages: a commit fsyncs, and on ext4 an
 * fsync can wait for the writeback of everything written before it.
 */
function flush(path: string, why: string): void {
  const t0 = performance.now();
  const run = spawnSync('sync', ['-f', path], { stdio: 'ignore' });
  const s = ((performance.now() - t0) / 1000).toFixed(1);
  if (run.status === 0) say(`  sync -f after ${why}: ${s} s (not timed)`);
  else say(`  sync -f after ${why} failed (${run.error?.message ?? `status ${run.status}`}); dirty pages may slow the next phase`);
}

/**
 * The floor of a durable write on this filesystem: write 4 KiB to a new file, fsync it, fsync its
 * directory (what a crash-safe commit pays at least per file it puts). ms per file.
 */
function measureFsync(dir: string): number[] {
  mkdirSync(dir);
  const data = Buffer.alloc(4096, 'x');
  const ms: number[] = [];
  for (let i = 0; i < FSYNC_SAMPLES + 2; i++) {
    const t0 = performance.now();
    const fd = openSync(join(dir, `f${i}`), 'w');
    try {
      writeSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
    if (i >= 2) ms.push(performance.now() - t0);
  }
  rmSync(dir, { recursive: true, force: true });
  return ms;
}

// ---- main -------------------------------------------------------------------------------------

const fmtMs = (ms: number) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : ms >= 10 ? `${ms.toFixed(1)} ms` : `${ms.toFixed(3)} ms`);
const med = (xs: number[]) => quantile([...xs].sort((a, b) => a - b), 0.5);

function main(): void {
  const scratch = mkdtempSync(join(tmpdir(), 'warden-bench-vfs-'));
  const cleanup = () => rmSync(scratch, { recursive: true, force: true });
  const onSignal = (signal: NodeJS.Signals) => {
    console.error(`\n${signal}: removing ${scratch}`);
    cleanup();
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const load0 = loadavg();
  const started = performance.now();
  try {
    say(`vfs benchmark — node ${process.version}, ${cpus().length} CPUs, load ${load0.map((l) => l.toFixed(2)).join(' ')}; trees of ${SMALL_FILES} and ${FILES.toLocaleString('en')} files (seed ${SEED}) in ${scratch}`);
    // One directory per file in the small tree: its 10 changed files are in 10 directories, as
    // the 10 spread over the large tree are, so a commit fsyncs as many directories in both.
    const small = generateTree(join(scratch, 'ws-small'), SMALL_FILES, SEED, 1);
    const t0 = performance.now();
    const big = generateTree(join(scratch, 'ws-big'), FILES, SEED, 20);
    say(`  ${FILES.toLocaleString('en')} files in ${big.dirs.toLocaleString('en')} directories, ${(big.bytes / 2 ** 20).toFixed(0)} MB, generated in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    flush(scratch, 'generating the trees');
    const sfs = new SessionFs(join(scratch, 'sessions'));

    say(`\nbegin: ${BEGINS} per tree in alternating blocks of ${BEGIN_BLOCK} (after ${BEGIN_WARMUP} unrecorded per tree)`);
    const begins = measureBegin(sfs, small, big);
    const b10 = stats(begins.small);
    const b50 = stats(begins.big);
    const beginRatio = b50.median / b10.median;
    say(`  10 files: median ${fmtMs(b10.median)}, p90 ${fmtMs(b10.p90)};  ${FILES.toLocaleString('en')} files: median ${fmtMs(b50.median)}, p90 ${fmtMs(b50.p90)};  ratio ${beginRatio.toFixed(3)}`);

    const readFile = pickReadFile(big);
    say(`\nread of an untouched file (${readFile.rel}, ${readFile.size} B): overlay vs readFileSync`);
    const reads = measureReads(sfs, big, readFile.rel);
    const rf = { overlay: stats(reads.first.overlay), fs: stats(reads.first.fs), open: stats(reads.first.open) };
    const rw = { overlay: stats(reads.warm.overlay), fs: stats(reads.warm.fs), resolved: stats(reads.warm.resolved) };
    say(`  first in a session (${FIRST_READS} sessions): overlay ${rf.overlay.median.toFixed(1)} µs vs readFileSync ${rf.fs.median.toFixed(1)} µs (${(rf.overlay.median / rf.fs.median).toFixed(2)}×); opening the overlay ${rf.open.median.toFixed(1)} µs`);
    say(`  warm (${READS} each): overlay ${rw.overlay.median.toFixed(1)} µs (p99 ${rw.overlay.p99.toFixed(1)}) vs readFileSync ${rw.fs.median.toFixed(1)} µs (p99 ${rw.fs.p99.toFixed(1)}) (${(rw.overlay.median / rw.fs.median).toFixed(2)}×); resolve + read ${rw.resolved.median.toFixed(1)} µs`);

    say(`\ncommit: ${COMMITS} runs per series (after 1 unrecorded), fresh session each, files spread across the tree`);
    const { runs: commits, floor } = measureCommits(sfs, small, big, scratch);
    const fsyncMs = stats(floor);
    say(`  floor (${FSYNC_SAMPLES} files before each run): write 4 KiB + fsync file + fsync directory: median ${fmtMs(fsyncMs.median)}, p90 ${fmtMs(fsyncMs.p90)} per file`);
    const cm = (runs: CommitRun[], k: keyof CommitRun) => med(runs.map((r) => r[k]));
    const c100 = cm(commits.c100_50k, 'commitMs');
    const c10 = cm(commits.c10_10, 'commitMs');
    const c10big = cm(commits.c10_50k, 'commitMs');
    for (const [label, runs] of [[`100 in ${FILES.toLocaleString('en')}`, commits.c100_50k], ['10 in 10', commits.c10_10], [`10 in ${FILES.toLocaleString('en')}`, commits.c10_50k]] as const) {
      say(`  ${label.padEnd(12)} commit ${runs.map((r) => fmtMs(r.commitMs)).join(', ')};  diff ${fmtMs(cm(runs, 'diffMs'))}, writes ${fmtMs(cm(runs, 'writeMs'))} (medians)`);
    }

    say(`\ncopy-and-hash begin (Brio): copy the tree on the same filesystem + sha256 every file`);
    const copy10 = measureCopy(scratch, small, SMALL_COPIES, '10');
    const copy50 = measureCopy(scratch, big, COPIES, `${FILES}`);
    const copyBegin10 = med(copy10);
    const copyBegin50 = med(copy50);
    const copySpeedup = copyBegin50 / b50.median;

    const result = {
      bench: 'vfs',
      node: process.version,
      cpus: cpus().length,
      loadavg_start: load0.map((l) => round(l, 2)),
      loadavg_end: loadavg().map((l) => round(l, 2)),
      files_small: SMALL_FILES, files_big: FILES, dirs_big: big.dirs, mb_big: round(big.bytes / 2 ** 20),
      begin_10_ms: round(b10.median, 4), begin_10_p90_ms: round(b10.p90, 4),
      begin_50k_ms: round(b50.median, 4), begin_50k_p90_ms: round(b50.p90, 4),
      begin_50k_p99_ms: round(b50.p99, 4), begin_10_p99_ms: round(b10.p99, 4),
      begin_ratio: round(beginRatio, 3), begin_ratio_p90: round(b50.p90 / b10.p90, 3),
      read_file_bytes: readFile.size,
      read_first_overlay_us: round(rf.overlay.median), read_first_fs_us: round(rf.fs.median), read_first_ratio: round(rf.overlay.median / rf.fs.median, 2),
      overlay_open_us: round(rf.open.median),
      read_warm_overlay_us: round(rw.overlay.median), read_warm_fs_us: round(rw.fs.median), read_warm_ratio: round(rw.overlay.median / rw.fs.median, 2),
      read_warm_overlay_p99_us: round(rw.overlay.p99), read_warm_fs_p99_us: round(rw.fs.p99),
      read_warm_resolve_us: round(rw.resolved.median), read_warm_resolve_ratio: round(rw.resolved.median / rw.fs.median, 2),
      commit_100_in_50k_ms: round(c100, 2), commit_10_in_10_ms: round(c10, 2), commit_10_in_50k_ms: round(c10big, 2),
      commit_ratio: round(c100 / c10, 2), commit_tree_ratio: round(c10big / c10, 2),
      commit_100_in_50k_runs_ms: commits.c100_50k.map((r) => round(r.commitMs, 2)),
      commit_10_in_10_runs_ms: commits.c10_10.map((r) => round(r.commitMs, 2)),
      commit_10_in_50k_runs_ms: commits.c10_50k.map((r) => round(r.commitMs, 2)),
      fsync_floor_ms: round(fsyncMs.median, 3), fsync_floor_p90_ms: round(fsyncMs.p90, 3),
      commit_100_in_50k_per_file_vs_fsync: round(c100 / CHANGED / fsyncMs.median, 2),
      diff_100_in_50k_ms: round(cm(commits.c100_50k, 'diffMs'), 2), write_100_ms: round(cm(commits.c100_50k, 'writeMs'), 2),
      copy_begin_10_ms: round(copyBegin10, 3), copy_begin_50k_ms: round(copyBegin50), copy_begin_50k_runs_ms: copy50.map((ms) => round(ms)),
      copy_speedup: Math.round(copySpeedup), copy_speedup_10: round(copyBegin10 / b10.median, 2),
      iterations: { begins: BEGINS, begin_block: BEGIN_BLOCK, first_reads: FIRST_READS, reads: READS, commits: COMMITS, copies_50k: COPIES, copies_10: SMALL_COPIES, seed: SEED },
      goals: {
        begin_ratio_ok: beginRatio <= GOAL_BEGIN_RATIO,
        commit_ok: c100 <= GOAL_COMMIT_MS,
        copy_speedup_ok: copySpeedup >= GOAL_COPY_SPEEDUP,
        begin_ratio: { goal: GOAL_BEGIN_RATIO, value: round(beginRatio, 3), met: beginRatio <= GOAL_BEGIN_RATIO },
        commit_100_in_50k_ms: { goal: GOAL_COMMIT_MS, value: round(c100, 2), met: c100 <= GOAL_COMMIT_MS },
        copy_speedup: { goal: GOAL_COPY_SPEEDUP, value: Math.round(copySpeedup), met: copySpeedup >= GOAL_COPY_SPEEDUP },
      },
      wall_s: 0,
    };

    const k = FILES.toLocaleString('en');
    const rows: Array<[string, string, string, string]> = [
      ['begin (median / p90)', `${fmtMs(b10.median)} / ${fmtMs(b10.p90)}`, `${fmtMs(b50.median)} / ${fmtMs(b50.p90)}`, `${beginRatio.toFixed(3)} (goal ≤ ${GOAL_BEGIN_RATIO})`],
      ['copy-and-hash begin (median)', fmtMs(copyBegin10), `${fmtMs(copyBegin50)} (${copy50.length} runs)`, `${Math.round(copyBegin50 / copyBegin10).toLocaleString('en')}`],
      ['copy begin / overlay begin', `${(copyBegin10 / b10.median).toFixed(1)}×`, `${Math.round(copySpeedup).toLocaleString('en')}× (goal ≥ ${GOAL_COPY_SPEEDUP})`, ''],
      ['commit, 10 changed files', `${fmtMs(c10)} (all 10)`, fmtMs(c10big), `${(c10big / c10).toFixed(2)}`],
      ['commit, 100 changed files', '', `${fmtMs(c100)} (goal ≤ ${GOAL_COMMIT_MS} ms)`, `${(c100 / c10).toFixed(2)} vs all 10 in 10`],
      ['commit per file / fsync floor', `${(c10 / SMALL_FILES / fsyncMs.median).toFixed(2)} (floor ${fmtMs(fsyncMs.median)})`, `${(c100 / CHANGED / fsyncMs.median).toFixed(2)} (100 files)`, ''],
      ['diff before commit (100 / 10)', fmtMs(cm(commits.c10_10, 'diffMs')), fmtMs(cm(commits.c100_50k, 'diffMs')), ''],
      ['first read: overlay / readFileSync', '', `${rf.overlay.median.toFixed(1)} / ${rf.fs.median.toFixed(1)} µs`, `${(rf.overlay.median / rf.fs.median).toFixed(2)}`],
      ['warm read: overlay / readFileSync', '', `${rw.overlay.median.toFixed(1)} / ${rw.fs.median.toFixed(1)} µs`, `${(rw.overlay.median / rw.fs.median).toFixed(2)}`],
      ['warm resolve+read / readFileSync', '', `${rw.resolved.median.toFixed(1)} / ${rw.fs.median.toFixed(1)} µs`, `${(rw.resolved.median / rw.fs.median).toFixed(2)}`],
    ];
    const widths = [0, 1, 2, 3].map((c) => Math.max(...[['', '10 files', `${k} files`, `ratio (${k} / 10)`], ...rows].map((r) => r[c]!.length)));
    const line = (r: readonly string[]) => `  ${r.map((cell, c) => cell.padEnd(widths[c]!)).join('  │ ').trimEnd()}`;
    say('');
    say(line(['', '10 files', `${k} files`, `ratio (${k} / 10)`]));
    say(`  ${widths.map((w) => '─'.repeat(w)).join('──┼─')}`);
    for (const r of rows) say(line(r));
    const met = (ok: boolean) => (ok ? 'met' : 'NOT met');
    say(`\ngoals: begin_ratio ${beginRatio.toFixed(3)} ≤ ${GOAL_BEGIN_RATIO}: ${met(result.goals.begin_ratio_ok)};  commit_100_in_50k ${fmtMs(c100)} ≤ ${GOAL_COMMIT_MS} ms: ${met(result.goals.commit_ok)};  copy_speedup ${Math.round(copySpeedup)}× ≥ ${GOAL_COPY_SPEEDUP}: ${met(result.goals.copy_speedup_ok)}`);
    say(`load average now ${result.loadavg_end.join(' ')} (at start ${result.loadavg_start.join(' ')}) on ${cpus().length} CPUs`);
    result.wall_s = round((performance.now() - started) / 1000);
    console.log(JSON.stringify(result));
  } finally {
    cleanup();
  }
}

main();
