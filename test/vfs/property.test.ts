// Property-style tests of the session overlay. Random operation sequences run on an overlay and on
// a reference copy of its base (plain node:fs, so POSIX semantics): every operation must give the
// same result or the same errno on both, the merged view must stay equal to the reference tree,
// the base must stay untouched, commit must turn the workspace into the reference tree (types,
// contents, modes, symlink targets, empty directories) and rollback must leave it byte-identical.
// Then: read-only sessions, path escapes, reserved names, and conflict detection.
//
// A failure prints its seed and run; replay it with WARDEN_PROPERTY_SEED=<seed>, add
// WARDEN_PROPERTY_RUN=<run> to replay that run alone with its whole log (WARDEN_PROPERTY_RUNS sets
// the number of runs).
import { describe, expect, it } from 'vitest';
import {
  chmodSync, closeSync, existsSync, lstatSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, readlinkSync,
  renameSync, rmSync, rmdirSync, statSync, symlinkSync, truncateSync, unlinkSync, writeFileSync, writeSync, constants,
  type Stats,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { SessionFs, type EntryType, type FileChange, type Overlay } from '../../kernel/vfs/index.js';
import { WardenError, isWardenError } from '../../kernel/errors.js';
import { tempDir } from '../support/fixtures.js';

const SEED = Number(process.env['WARDEN_PROPERTY_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
const RUNS = Number(process.env['WARDEN_PROPERTY_RUNS'] ?? 200);
/** Replays one run only, and prints its whole operation log on failure. */
const ONLY_RUN = process.env['WARDEN_PROPERTY_RUN'] === undefined ? undefined : Number(process.env['WARDEN_PROPERTY_RUN']);
const OPS_PER_RUN = 40;
const MAX_HOPS = 40;
/** Files at least this large are compared by size only between operations (in full at the end). */
const LARGE = 64 * 1024;

// ---- seeded randomness ---------------------------------------------------------------------------

/** mulberry32: small, fast, and good enough to pick test cases. */
class Rng {
  private state: number;
  constructor(seed: number, stream: number) {
    this.state = (seed ^ Math.imul(stream + 1, 0x9e3779b1)) >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

const NAMES = ['a', 'b', 'c', 'd', 'e', 'f g', 'ü', '.hidden'];

function data(rng: Rng, max = 300): Buffer {
  const n = rng.chance(0.1) ? 0 : rng.int(max);
  if (rng.chance(0.4)) return rng.bytes(n);
  return Buffer.from(Array.from({ length: n }, () => rng.pick(['x', 'y', ' ', '\n', 'é'])).join('').slice(0, n));
}

// ---- paths -------------------------------------------------------------------------------------

const childOf = (dir: string, name: string) => (dir === '' ? name : `${dir}/${name}`);
const parentOf = (rel: string) => (rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '');
const depthOf = (rel: string) => (rel === '' ? 0 : rel.split('/').length);
const segments = (path: string) => path.split('/').filter((s) => s !== '' && s !== '.');

/** True when `path`, read lexically from the directory `from`, stays inside the root. */
function lexicallyInside(from: string, path: string): boolean {
  let depth = depthOf(from);
  for (const segment of segments(path)) {
    depth += segment === '..' ? -1 : 1;
    if (depth < 0) return false;
  }
  return true;
}

/** A symlink target the kernel refuses when the link sits in `dir`. */
const targetEscapes = (dir: string, target: string) =>
  target.includes('\0') || target.startsWith('/') || !lexicallyInside(dir, target);

/** `to` written relative to the directory `from`. */
function relativePath(from: string, to: string): string {
  const a = from === '' ? [] : from.split('/');
  const b = to === '' ? [] : to.split('/');
  let common = 0;
  while (common < a.length && common < b.length && a[common] === b[common]) common++;
  const out = [...a.slice(common).map(() => '..'), ...b.slice(common)].join('/');
  return out === '' ? '.' : out;
}

type Resolution = { rel: string } | { fail: string };

/**
 * The kernel's path rule, on the reference tree: `..` may not leave the root as written, symlinks
 * are followed physically and may not lead out (absolute targets, targets whose `..` leave the
 * root), at most 40 hops; the rest is POSIX (a missing or non-directory intermediate fails).
 */
function referenceResolve(root: string, path: string, follow: boolean): Resolution {
  if (path.includes('\0') || path.startsWith('/') || !lexicallyInside('', path)) return { fail: 'escape' };
  const pending = segments(path);
  const done: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const segment = pending.shift()!;
    if (segment === '..') {
      if (done.length === 0) return { fail: 'escape' };
      done.pop();
      continue;
    }
    const rel = [...done, segment].join('/');
    const st = lstatSync(`${root}/${rel}`, { throwIfNoEntry: false });
    const last = pending.length === 0;
    if (st?.isSymbolicLink() && (!last || follow)) {
      if (++hops > MAX_HOPS) return { fail: 'ELOOP(escape)' };
      const target = readlinkSync(`${root}/${rel}`);
      if (targetEscapes(done.join('/'), target)) return { fail: 'escape' };
      pending.unshift(...segments(target));
      continue;
    }
    if (!last && !st) return { fail: 'ENOENT' };
    if (!last && !st!.isDirectory()) return { fail: 'ENOTDIR' };
    done.push(segment);
  }
  return { rel: done.join('/') };
}

// ---- trees ---------------------------------------------------------------------------------------

const sha = (b: Uint8Array) => createHash('sha1').update(b).digest('hex').slice(0, 12);
const perm = (mode: number) => (mode & 0o7777).toString(8);

function describeEntry(type: EntryType, mode: number, content: () => Uint8Array | string, size: number, full: boolean): string {
  if (type === 'directory') return `dir ${perm(mode)}`;
  if (type === 'symlink') return `link -> ${JSON.stringify(content())}`;
  if (!full && size >= LARGE) return `file ${perm(mode)} ${size}B`;
  return `file ${perm(mode)} ${size}B ${sha(content() as Uint8Array)}`;
}

const typeOfStats = (st: Stats): EntryType => (st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : 'file');

/** Every entry under `root` (not following symlinks): path → description. */
function hostTree(root: string, opts: { full?: boolean; mtimes?: boolean } = {}): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    for (const name of readdirSync(rel === '' ? root : `${root}/${rel}`)) {
      const child = childOf(rel, name);
      const host = `${root}/${child}`;
      const st = lstatSync(host);
      const type = typeOfStats(st);
      let text = describeEntry(type, st.mode, () => (type === 'symlink' ? readlinkSync(host) : readFileSync(host)), st.size, opts.full ?? true);
      if (opts.mtimes && type !== 'symlink') text += ` @${st.mtimeMs}`;
      out.set(child, text);
      if (type === 'directory') walk(child);
    }
  };
  walk('');
  return out;
}

/** The overlay's merged view, walked through its own API: path → description. */
function overlayTree(o: Overlay, full = true): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    for (const entry of o.readdir(rel)) {
      const child = childOf(rel, entry.name);
      const st = o.stat(child);
      if (!st) throw new Error(`readdir lists ${child} but stat finds nothing`);
      if (st.type !== entry.type) throw new Error(`readdir says ${child} is a ${entry.type}, stat says ${st.type}`);
      out.set(child, describeEntry(st.type, st.mode, () => (st.type === 'symlink' ? o.readlink(child) : o.read(child, 0, st.size)), st.size, full));
      if (st.type === 'directory') walk(child);
    }
  };
  walk('');
  return out;
}

/** Differences between two trees, at most `max` lines. */
function treeDiff(expected: Map<string, string>, actual: Map<string, string>, max = 8): string[] {
  const lines: string[] = [];
  for (const key of [...new Set([...expected.keys(), ...actual.keys()])].sort()) {
    const e = expected.get(key);
    const a = actual.get(key);
    if (e !== a) lines.push(`  ${JSON.stringify(key)}: expected ${e ?? 'nothing'}, got ${a ?? 'nothing'}`.slice(0, 200));
  }
  return lines.length > max ? [...lines.slice(0, max), `  … ${lines.length - max} more`] : lines;
}

// ---- random bases --------------------------------------------------------------------------------

type Spec = { rel: string; kind: 'dir'; mode: number } | { rel: string; kind: 'file'; mode: number; data: Buffer } | { rel: string; kind: 'link'; target: string };

/**
 * A random workspace: nested and empty directories (some 0700/0750, the root too), text, binary and empty files
 * (some 0755/0600), relative symlinks inside (to files, directories, nothing, each other), now and
 * then a symlink loop or a symlink leading out, and with `large` a file of a few MiB.
 */
function randomBase(rng: Rng, large: boolean): Spec[] {
  const out: Spec[] = [{ rel: '', kind: 'dir', mode: rng.pick([0o755, 0o700, 0o750]) }];
  const dirs = [''];
  const used = new Set<string>();
  const n = 4 + rng.int(10);
  for (let i = 0; i < n; i++) {
    const rel = childOf(rng.pick(dirs), rng.pick(NAMES));
    if (used.has(rel)) continue;
    used.add(rel);
    if (depthOf(rel) < 3 && rng.chance(0.35)) {
      dirs.push(rel);
      out.push({ rel, kind: 'dir', mode: rng.pick([0o755, 0o755, 0o700, 0o750]) });
    } else {
      out.push({ rel, kind: 'file', mode: rng.pick([0o644, 0o644, 0o755, 0o600]), data: data(rng) });
    }
  }
  if (large) {
    out.push({ rel: 'big.bin', kind: 'file', mode: 0o644, data: rng.bytes((3 << 19) + rng.int(1 << 20)) });
    used.add('big.bin');
  }
  const existing = [...used];
  for (let i = rng.int(5); i > 0; i--) {
    const dir = rng.pick(dirs);
    const rel = childOf(dir, rng.pick(NAMES));
    if (used.has(rel)) continue;
    used.add(rel);
    const roll = rng.next();
    const target =
      roll < 0.6 ? relativePath(dir, rng.pick(existing))
        : roll < 0.75 ? rng.pick(['nothing', 'nowhere/x'])
          : roll < 0.85 ? relativePath(dir, rel) // a loop onto itself
            : rng.pick(['/etc', `${'../'.repeat(depthOf(dir) + 1)}outside`]);
    out.push({ rel, kind: 'link', target });
  }
  return out;
}

function materialize(spec: Spec[], root: string): void {
  mkdirSync(root, { recursive: true });
  for (const entry of spec) {
    const host = `${root}/${entry.rel}`;
    if (entry.kind === 'dir') {
      if (entry.rel !== '') mkdirSync(host);
    } else if (entry.kind === 'file') {
      writeFileSync(host, entry.data);
      chmodSync(host, entry.mode);
    } else symlinkSync(entry.target, host);
  }
  for (const entry of spec) if (entry.kind === 'dir') chmodSync(`${root}/${entry.rel}`, entry.mode);
}

// ---- operations ----------------------------------------------------------------------------------

type Op =
  | { kind: 'create'; path: string; exclusive: boolean }
  | { kind: 'write'; path: string; offset: number; data: Buffer }
  | { kind: 'truncate'; path: string; size: number }
  | { kind: 'mkdir' | 'rmdir' | 'unlink' | 'readlink' | 'readdir'; path: string }
  | { kind: 'stat'; path: string; follow: boolean }
  | { kind: 'read'; path: string; offset: number; length: number }
  | { kind: 'rename'; from: string; to: string }
  | { kind: 'symlink'; target: string; path: string };

const MUTATING = new Set<Op['kind']>(['create', 'write', 'truncate', 'mkdir', 'rmdir', 'unlink', 'rename', 'symlink']);

function describeOp(op: Op): string {
  const q = (s: string) => JSON.stringify(s);
  switch (op.kind) {
    case 'create': return `create(${q(op.path)}${op.exclusive ? ', exclusive' : ''})`;
    case 'write': return `write(${q(op.path)}, @${op.offset}, ${op.data.length}B)`;
    case 'truncate': return `truncate(${q(op.path)}, ${op.size})`;
    case 'stat': return `stat(${q(op.path)}${op.follow ? ', follow' : ''})`;
    case 'read': return `read(${q(op.path)}, @${op.offset}, ${op.length})`;
    case 'rename': return `rename(${q(op.from)}, ${q(op.to)})`;
    case 'symlink': return `symlink(${q(op.target)} <- ${q(op.path)})`;
    default: return `${op.kind}(${q(op.path)})`;
  }
}

/** Whether the op follows a final symlink (open(2) does, except with O_CREAT|O_EXCL). */
function follows(op: Op): boolean {
  switch (op.kind) {
    case 'create': return !op.exclusive;
    case 'write': case 'truncate': case 'read': case 'readdir': return true;
    case 'stat': return op.follow;
    default: return false;
  }
}

interface Listing {
  all: string[];
  dirs: string[];
  files: Array<{ rel: string; size: number }>;
  links: string[];
}

function listing(root: string): Listing {
  const out: Listing = { all: [], dirs: [''], files: [], links: [] };
  const walk = (rel: string) => {
    for (const name of readdirSync(rel === '' ? root : `${root}/${rel}`)) {
      const child = childOf(rel, name);
      const st = lstatSync(`${root}/${child}`);
      out.all.push(child);
      if (st.isDirectory()) {
        out.dirs.push(child);
        walk(child);
      } else if (st.isSymbolicLink()) out.links.push(child);
      else out.files.push({ rel: child, size: st.size });
    }
  };
  walk('');
  return out;
}

/** A random path: mostly existing or fresh names, sometimes odd (through links, files, `.`, `..`), rarely an escape. */
function randomPath(rng: Rng, l: Listing): string {
  const roll = rng.next();
  if (roll < 0.45 && l.all.length > 0) return rng.pick(l.all);
  if (roll < 0.75) return childOf(rng.pick(l.dirs), rng.pick(NAMES));
  if (roll < 0.83 && l.links.length > 0) return `${rng.pick(l.links)}/${rng.pick(NAMES)}`;
  if (roll < 0.87 && l.files.length > 0) return `${rng.pick(l.files).rel}/${rng.pick(NAMES)}`;
  if (roll < 0.9) return `nope/${rng.pick(NAMES)}`;
  if (roll < 0.96) {
    const inner = childOf(rng.pick(l.dirs), rng.pick(NAMES));
    return rng.chance(0.5) ? `./${inner}` : `${rng.pick([...NAMES, ...l.all])}/../${inner}`;
  }
  const dir = rng.pick(l.dirs);
  return rng.pick(['../x', '/etc/passwd', `${dir}/${'../'.repeat(depthOf(dir) + 1)}x`, 'a\0b', '..']);
}

function randomTarget(rng: Rng, l: Listing, linkPath: string): string {
  const dir = parentOf(linkPath);
  const roll = rng.next();
  if (roll < 0.5 && l.all.length > 0) return relativePath(dir, rng.pick(l.all));
  if (roll < 0.7) return rng.pick([...NAMES, 'nothing', 'nowhere/x']);
  if (roll < 0.8) return rng.pick(['.', '..', `./${rng.pick(NAMES)}`]);
  if (roll < 0.85) return '';
  return rng.pick(['/etc', `${'../'.repeat(depthOf(dir) + 1)}x`, `a/../${'../'.repeat(depthOf(dir) + 1)}x`, 'x\0y']);
}

function randomOp(rng: Rng, l: Listing): Op {
  const path = randomPath(rng, l);
  const sizeOf = (p: string) => l.files.find((f) => f.rel === p)?.size ?? 0;
  const roll = rng.int(100);
  if (roll < 10) return { kind: 'create', path, exclusive: rng.chance(0.5) };
  if (roll < 24) {
    const existing = rng.chance(0.7) && l.files.length > 0 ? rng.pick(l.files).rel : path;
    const offset = rng.chance(0.01) ? (1 << 20) + rng.int(1 << 20) : rng.int(sizeOf(existing) + 64); // now and then a large hole
    return { kind: 'write', path: existing, offset, data: data(rng) };
  }
  if (roll < 29) {
    const existing = rng.chance(0.7) && l.files.length > 0 ? rng.pick(l.files).rel : path;
    return { kind: 'truncate', path: existing, size: rng.int(sizeOf(existing) + 40) };
  }
  if (roll < 36) return { kind: 'mkdir', path };
  if (roll < 41) return { kind: 'rmdir', path: rng.chance(0.6) ? rng.pick(l.dirs.slice(1).concat(path)) : path };
  if (roll < 48) return { kind: 'unlink', path };
  if (roll < 61) {
    const from = rng.chance(0.7) && l.all.length > 0 ? rng.pick(l.all) : path;
    return { kind: 'rename', from, to: randomPath(rng, l) };
  }
  if (roll < 68) return { kind: 'symlink', path, target: randomTarget(rng, l, path) };
  if (roll < 73) return { kind: 'readdir', path: rng.chance(0.3) ? rng.pick(['', '.', ...l.dirs]) : path };
  if (roll < 82) return { kind: 'stat', path: rng.chance(0.05) ? rng.pick(['', '.']) : path, follow: rng.chance(0.3) };
  if (roll < 92) {
    const existing = rng.chance(0.7) && l.files.length > 0 ? rng.pick(l.files).rel : path;
    return { kind: 'read', path: existing, offset: rng.int(sizeOf(existing) + 16), length: rng.int(400) };
  }
  return { kind: 'readlink', path: rng.chance(0.6) && l.links.length > 0 ? rng.pick(l.links) : path };
}

// ---- running one op on each side -----------------------------------------------------------------

const statText = (type: EntryType, size: number, mode: number) =>
  type === 'directory' ? `dir ${perm(mode)}` : type === 'symlink' ? `link ${size}B` : `file ${perm(mode)} ${size}B`;
const bytesText = (b: Uint8Array) => `${b.length}B ${sha(b)}`;

/** Runs `fn` and says what happened: `ok …`, `error <errno>`, `error escape` (E_PATH_ESCAPE). */
function outcome(fn: () => string): string {
  try {
    return `ok ${fn()}`;
  } catch (err) {
    if (err instanceof WardenError) {
      const errno = err.detail?.['errno'];
      if (err.code === 'E_PATH_ESCAPE') return errno === 'ELOOP' ? 'error ELOOP(escape)' : 'error escape';
      return `error ${typeof errno === 'string' ? errno : err.code}`;
    }
    const code = (err as NodeJS.ErrnoException).code;
    return `error ${code ?? String(err)}`;
  }
}

/** An error the overlay raised that is not a WardenError (a leak of Node's own). */
function rawOutcome(fn: () => string): string {
  try {
    return fn();
  } catch (err) {
    throw err instanceof WardenError ? err : new Error(`raw ${(err as Error).message}`);
  }
}

function onOverlay(o: Overlay, op: Op): string {
  return outcome(() =>
    rawOutcome(() => {
      const at = (path: string) => o.resolve('', path, follows(op));
      switch (op.kind) {
        case 'create': return `created=${o.create(at(op.path), op.exclusive)}`;
        case 'write': return `wrote=${o.write(at(op.path), op.offset, op.data)}`;
        case 'truncate': o.truncate(at(op.path), op.size); return '';
        case 'mkdir': o.mkdir(at(op.path)); return '';
        case 'rmdir': o.rmdir(at(op.path)); return '';
        case 'unlink': o.unlink(at(op.path)); return '';
        case 'readlink': return `-> ${o.readlink(at(op.path))}`;
        case 'readdir': return o.readdir(at(op.path)).map((e) => `${e.name}:${e.type}`).join(',');
        case 'stat': {
          const st = o.stat(at(op.path));
          if (!st) throw new WardenError('E_NOT_FOUND', 'stat: nothing there', { detail: { errno: 'ENOENT' } });
          return statText(st.type, st.size, st.mode);
        }
        case 'read': return bytesText(o.read(at(op.path), op.offset, op.length));
        case 'rename': {
          const from = at(op.from);
          o.rename(from, at(op.to));
          return '';
        }
        case 'symlink': o.symlink(op.target, at(op.path)); return '';
      }
    }),
  );
}

/** True when moving the entry at `from` to `to` would leave a symlink below it leading out. */
function moveEscapes(root: string, from: string, to: string): boolean {
  const host = `${root}/${from}`;
  const st = lstatSync(host);
  if (st.isSymbolicLink()) return targetEscapes(parentOf(to), readlinkSync(host));
  if (!st.isDirectory()) return false;
  return readdirSync(host).some((name) => moveEscapes(root, childOf(from, name), childOf(to, name)));
}

/** The same op on the reference tree: the kernel's path rule, then plain node:fs. */
function onReference(root: string, op: Op): string {
  const paths = op.kind === 'rename' ? [op.from, op.to] : [op.path];
  const resolved: string[] = [];
  for (const path of paths) {
    const r = referenceResolve(root, path, follows(op));
    if ('fail' in r) return `error ${r.fail}`; // as lookup(2) of the first path fails: ENOENT, ENOTDIR, or an escape
    resolved.push(r.rel);
  }
  if (op.kind === 'symlink' && targetEscapes(parentOf(resolved[0]!), op.target)) return 'error escape';
  if (op.kind === 'rename' && existsOrLink(`${root}/${resolved[0]}`) && moveEscapes(root, resolved[0]!, resolved[1]!)) return 'error escape';
  const p = (path: string) => `${root}/${path}`;
  return outcome(() => {
    switch (op.kind) {
      case 'create': {
        const existed = existsSync(p(op.path));
        closeSync(openSync(p(op.path), constants.O_CREAT | constants.O_WRONLY | (op.exclusive ? constants.O_EXCL : 0)));
        return `created=${!existed}`;
      }
      case 'write': {
        const fd = openSync(p(op.path), 'r+');
        try {
          return `wrote=${writeSync(fd, op.data, 0, op.data.length, op.offset)}`;
        } finally {
          closeSync(fd);
        }
      }
      case 'truncate': truncateSync(p(op.path), op.size); return '';
      case 'mkdir': mkdirSync(p(op.path)); return '';
      case 'rmdir': rmdirSync(p(op.path)); return '';
      case 'unlink': unlinkSync(p(op.path)); return '';
      case 'readlink': return `-> ${readlinkSync(p(op.path))}`;
      case 'readdir':
        return readdirSync(p(op.path), { withFileTypes: true })
          .map((e) => ({ name: e.name, type: e.isDirectory() ? 'directory' : e.isSymbolicLink() ? 'symlink' : 'file' }))
          .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
          .map((e) => `${e.name}:${e.type}`)
          .join(',');
      case 'stat': {
        const st = (op.follow ? statSync : lstatSync)(p(op.path));
        return statText(typeOfStats(st), st.size, st.mode);
      }
      case 'read': {
        const fd = openSync(p(op.path), 'r');
        try {
          // At least one byte: Node answers a read of 0 bytes without asking the kernel (no EISDIR).
          const buf = Buffer.alloc(Math.max(op.length, 1));
          return bytesText(buf.subarray(0, Math.min(op.length, readSync(fd, buf, 0, buf.length, op.offset))));
        } finally {
          closeSync(fd);
        }
      }
      case 'rename': renameSync(p(op.from), p(op.to)); return '';
      case 'symlink': symlinkSync(op.target, p(op.path)); return '';
    }
  });
}

function existsOrLink(path: string): boolean {
  return lstatSync(path, { throwIfNoEntry: false }) !== undefined;
}

// ---- diff expectations ---------------------------------------------------------------------------

/** Paths whose non-directory entry differs between two trees (what a diff must mention). */
function changedFiles(before: Map<string, string>, after: Map<string, string>): string[] {
  const fileOf = (tree: Map<string, string>, key: string) => {
    const v = tree.get(key);
    return v === undefined || v.startsWith('dir ') ? undefined : v;
  };
  return [...new Set([...before.keys(), ...after.keys()])].filter((k) => fileOf(before, k) !== fileOf(after, k)).sort();
}

/** Paths a diff mentions, after checking each change's kind against the two trees. */
function diffPaths(changes: FileChange[], before: Map<string, string>, after: Map<string, string>): string[] {
  const isFile = (tree: Map<string, string>, key: string) => tree.has(key) && !tree.get(key)!.startsWith('dir ');
  const out: string[] = [];
  for (const c of changes) {
    const ok =
      c.kind === 'added' ? !isFile(before, c.path) && isFile(after, c.path)
        : c.kind === 'deleted' ? isFile(before, c.path) && !isFile(after, c.path)
          : c.kind === 'modified' ? isFile(before, c.path) && isFile(after, c.path)
            : c.from !== undefined && isFile(before, c.from) && !isFile(after, c.from) && isFile(after, c.path);
    if (!ok) out.push(`!${c.kind}:${c.path}`);
    out.push(c.path);
    if (c.from !== undefined) out.push(c.from);
  }
  return [...new Set(out)].sort();
}

// ---- the random runs -----------------------------------------------------------------------------

class RunFailure extends Error {}

function fail(run: number, log: string[], message: string): never {
  throw new RunFailure(
    `${message}\n  replay: WARDEN_PROPERTY_SEED=${SEED} WARDEN_PROPERTY_RUN=${run}\n  operations:\n` +
      `${log.slice(ONLY_RUN === undefined ? -12 : 0).map((l) => `    ${l}`).join('\n')}`,
  );
}

function randomRun(run: number): void {
  const rng = new Rng(SEED, run);
  const dir = tempDir('property');
  const base = join(dir, 'base');
  const ref = join(dir, 'ref');
  try {
    const spec = randomBase(rng, run % 20 === 7);
    materialize(spec, base);
    materialize(spec, ref);
    const pristine = hostTree(base, { mtimes: true });
    const sessions = new SessionFs(join(dir, 'sessions'));
    const { id } = sessions.begin(base);
    let o = sessions.overlay(id);
    const log: string[] = [];
    for (let i = 0; i < OPS_PER_RUN; i++) {
      // Each call of a tool opens the session afresh (in its worker): all state must be on disk.
      if (rng.chance(0.1)) o = sessions.overlay(id);
      const op = randomOp(rng, listing(ref));
      const expected = onReference(ref, op);
      const actual = onOverlay(o, op);
      log.push(`${describeOp(op)} → ${expected}`);
      if (expected !== actual) fail(run, log, `op ${i} ${describeOp(op)}: POSIX says "${expected}", the overlay says "${actual}"`);
      const last = i === OPS_PER_RUN - 1;
      // Walking the merged view costs more than the op: after each change, and now and then after the rest.
      if (!last && !(MUTATING.has(op.kind) && actual.startsWith('ok')) && i % 4 !== 3) continue;
      let merged: Map<string, string>;
      try {
        merged = overlayTree(o, last);
      } catch (err) {
        fail(run, log, `after op ${i} the merged view cannot be walked: ${(err as Error).message}`);
      }
      const lines = treeDiff(hostTree(ref, { full: last }), merged);
      if (lines.length > 0) fail(run, log, `after op ${i} the merged view differs from the reference:\n${lines.join('\n')}`);
    }
    const baseLines = treeDiff(pristine, hostTree(base, { mtimes: true }));
    if (baseLines.length > 0) fail(run, log, `the session changed its base:\n${baseLines.join('\n')}`);
    if (run % 4 === 3) {
      sessions.rollback(id);
      const lines = treeDiff(pristine, hostTree(base, { mtimes: true }));
      if (lines.length > 0) fail(run, log, `rollback left the base changed:\n${lines.join('\n')}`);
      if (existsSync(sessions.dirOf(id))) fail(run, log, 'rollback left the session area');
      return;
    }
    const expectedTree = hostTree(ref);
    const before = hostTree(base);
    const mentioned = diffPaths(sessions.diff(id), before, expectedTree);
    const changed = changedFiles(before, expectedTree);
    if (mentioned.join('\n') !== changed.join('\n')) {
      fail(run, log, `diff mentions ${JSON.stringify(mentioned).slice(0, 300)}, expected ${JSON.stringify(changed).slice(0, 300)}`);
    }
    try {
      sessions.commit(id);
    } catch (err) {
      fail(run, log, `commit failed: ${(err as Error).message.slice(0, 300)}`);
    }
    const lines = treeDiff(expectedTree, hostTree(base));
    if (lines.length > 0) fail(run, log, `after commit the workspace differs from the reference:\n${lines.join('\n')}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A random base materialised at `<dir>/base` and the same at `<dir>/ref`, with an open session on the base. */
function fixture(rng: Rng, dir: string) {
  const base = join(dir, 'base');
  const ref = join(dir, 'ref');
  const spec = randomBase(rng, false);
  materialize(spec, base);
  materialize(spec, ref);
  const sessions = new SessionFs(join(dir, 'sessions'));
  const { id } = sessions.begin(base);
  return { base, ref, sessions, id, o: sessions.overlay(id) };
}

/** Apply `op` to both sides; they must agree. */
function applyBoth(o: Overlay, ref: string, op: Op): string {
  const expected = onReference(ref, op);
  const actual = onOverlay(o, op);
  if (expected !== actual) throw new Error(`${describeOp(op)}: POSIX says "${expected}", the overlay says "${actual}" (seed ${SEED})`);
  return actual;
}

/** A test body whose failure says how to replay it. */
function replayable(fn: () => void): () => void {
  return () => {
    try {
      fn();
    } catch (err) {
      if (err instanceof Error && !err.message.includes('WARDEN_PROPERTY_SEED')) err.message += `\n  replay: WARDEN_PROPERTY_SEED=${SEED}`;
      throw err;
    }
  };
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}

describe('session overlay properties', () => {
  it(`${RUNS} random runs of ${OPS_PER_RUN} operations agree with POSIX op by op; commit reproduces the reference tree, rollback leaves the base byte-identical`, replayable(() => {
    if (ONLY_RUN !== undefined) randomRun(ONLY_RUN);
    else for (let run = 0; run < RUNS; run++) randomRun(run);
  }), 180_000);

  it('a read-only overlay refuses every change with EROFS and nothing changes', replayable(() => {
    for (let run = 0; run < 20; run++) {
      const rng = new Rng(SEED, 10_000 + run);
      const dir = tempDir('property-ro');
      try {
        const { base, ref, sessions, id, o } = fixture(rng, dir);
        for (let i = 0; i < 10; i++) applyBoth(o, ref, randomOp(rng, listing(ref)));
        const area = () => hostTree(sessions.dirOf(id), { mtimes: true });
        const before = { base: hostTree(base, { mtimes: true }), merged: overlayTree(o), area: area() };
        const ro = sessions.overlay(id, 'ro');
        let refused = 0;
        for (let i = 0; i < 60; i++) {
          const op = randomOp(rng, listing(ref));
          if (!MUTATING.has(op.kind)) continue;
          const paths = op.kind === 'rename' ? [op.from, op.to] : [op.path];
          // A path that cannot be resolved fails before the overlay is asked to change anything.
          const resolves = paths.every((path) => outcome(() => ro.resolve('', path, follows(op))).startsWith('ok'));
          const result = onOverlay(ro, op);
          expect(result, `${describeOp(op)} (seed ${SEED})`).toMatch(resolves ? /^error EROFS$/ : /^error (ENOENT|ENOTDIR|escape|ELOOP\(escape\))$/);
          if (resolves) refused++;
        }
        expect(refused).toBeGreaterThan(10);
        expect(treeDiff(before.base, hostTree(base, { mtimes: true }))).toEqual([]);
        expect(treeDiff(before.merged, overlayTree(ro))).toEqual([]);
        const after = area();
        after.delete('touched.jsonl'); // reads record what they depended on
        before.area.delete('touched.jsonl');
        expect(treeDiff(before.area, after)).toEqual([]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }));
});

describe('path escapes', () => {
  const setup = () => {
    const dir = tempDir('property-escape');
    const outside = join(dir, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'secret.txt'), 'TOP SECRET');
    const ws = join(dir, 'ws');
    materialize(
      [
        { rel: 'a', kind: 'dir', mode: 0o755 },
        { rel: 'a/b', kind: 'dir', mode: 0o755 },
        { rel: 'a/b/c.txt', kind: 'file', mode: 0o644, data: Buffer.from('c') },
        { rel: 'd', kind: 'dir', mode: 0o755 },
        { rel: 'abs', kind: 'link', target: outside },
        { rel: 'rel-out', kind: 'link', target: '../outside/secret.txt' },
        { rel: 'a/up', kind: 'link', target: '../..' },
        { rel: 'a/in', kind: 'link', target: '../d' },
        { rel: 'a/b/deep', kind: 'link', target: '../../d' },
        { rel: 'chain', kind: 'link', target: 'a/up' },
        { rel: 'loop1', kind: 'link', target: 'loop2' },
        { rel: 'loop2', kind: 'link', target: 'loop1' },
        { rel: 'a/back', kind: 'link', target: '../d/../..' },
      ],
      ws,
    );
    const sessions = new SessionFs(join(dir, 'sessions'));
    const { id } = sessions.begin(ws);
    return { dir, ws, sessions, id, o: sessions.overlay(id) };
  };

  it('`..` above the root, absolute paths, NUL bytes, symlinks out and loops fail with E_PATH_ESCAPE', () => {
    const { dir, o } = setup();
    try {
      const escapes = [
        '..', '../x', 'a/../../x', 'a/b/../../../x', '/etc/passwd', `${dir}/outside/secret.txt`, 'C:\\x', 'a\0b',
        'abs', 'abs/secret.txt', 'rel-out', 'a/up', 'a/up/x', 'chain', 'chain/a', 'a/in/../..', 'a/back', 'a/back/x',
      ];
      for (const path of escapes) {
        const err = thrown(() => o.resolve('', path));
        expect(isWardenError(err, 'E_PATH_ESCAPE'), `${JSON.stringify(path)}: ${String(err)}`).toBe(true);
      }
      expect((thrown(() => o.resolve('', 'loop1')) as WardenError).detail).toEqual({ errno: 'ELOOP' });
      expect(isWardenError(thrown(() => o.resolve('a', '../..')), 'E_PATH_ESCAPE')).toBe(true);
      expect(isWardenError(thrown(() => o.resolve('a/b', 'deep/../../..')), 'E_PATH_ESCAPE')).toBe(true);
      // Inside: the same links not followed, and links that stay in.
      expect(o.resolve('', 'abs', false)).toBe('abs');
      expect(o.readlink(o.resolve('', 'a/up', false))).toBe('../..');
      expect(o.resolve('', 'a/in/x')).toBe('d/x');
      expect(o.resolve('a/b', 'deep')).toBe('d');
      expect(o.resolve('', 'a/in/../a/b')).toBe('a/b'); // `..` after a symlink goes to the parent of its target
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a symlink leading out cannot be created, nor made by moving a symlink or a directory holding one', () => {
    const { dir, ws, sessions, id, o } = setup();
    try {
      const before = overlayTree(o);
      for (const [target, at] of [['/etc', 'x'], ['../x', 'y'], ['../../x', 'a/y'], ['a/../../x', 'z'], ['x\0y', 'w']] as const) {
        expect(isWardenError(thrown(() => o.symlink(target, at)), 'E_PATH_ESCAPE'), `${target} <- ${at}`).toBe(true);
      }
      for (const [from, to] of [['a/in', 'in'], ['a/b', 'bb'], ['a/b/deep', 'deep']] as const) {
        expect((thrown(() => o.rename(from, to)) as WardenError).detail, `${from} -> ${to}`).toEqual({ errno: 'EXDEV' });
      }
      expect(treeDiff(before, overlayTree(o))).toEqual([]);
      o.symlink('../d', 'a/ok');
      o.mkdir('d/e');
      o.rename('a/b', 'd/e/b'); // deeper: `../../d` from d/e/b is d/d, still inside
      expect(o.resolve('', 'd/e/b/deep', false)).toBe('d/e/b/deep');
      sessions.commit(id);
      expect(readlinkSync(join(ws, 'a/ok'))).toBe('../d');
      expect(readlinkSync(join(ws, 'abs'))).toBe(join(dir, 'outside')); // planted in the base: kept, never followed
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the base is never read through a symlink of the workspace, even where the session made a real directory', () => {
    const { dir, ws, sessions, id, o } = setup();
    try {
      o.unlink('abs');
      o.mkdir('abs');
      o.create('abs/secret.txt', true); // first touch of a path that, in the base, leads outside
      writeFileSync(join(dir, 'outside/secret.txt'), 'changed outside');
      sessions.commit(id);
      expect(readFileSync(join(ws, 'abs/secret.txt'), 'utf8')).toBe('');
      expect(readFileSync(join(dir, 'outside/secret.txt'), 'utf8')).toBe('changed outside');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('reserved names', () => {
  it(`names starting with .warden-commit- at the root cannot be made (EACCES) and base entries so named are invisible`, () => {
    const dir = tempDir('property-reserved');
    try {
      const ws = join(dir, 'ws');
      materialize([{ rel: 'a.txt', kind: 'file', mode: 0o644, data: Buffer.from('A') }, { rel: '.warden-commit-old', kind: 'dir', mode: 0o755 }], ws);
      const sessions = new SessionFs(join(dir, 'sessions'));
      const { id } = sessions.begin(ws);
      const o = sessions.overlay(id);
      const errno = (fn: () => unknown) => (thrown(fn) as WardenError).detail?.['errno'];
      expect(errno(() => o.create('.warden-commit-x', true))).toBe('EACCES');
      expect(errno(() => o.mkdir('.warden-commit-x'))).toBe('EACCES');
      expect(errno(() => o.symlink('a.txt', '.warden-commit-x'))).toBe('EACCES');
      expect(errno(() => o.rename('a.txt', '.warden-commit-x'))).toBe('EACCES');
      expect(o.readdir('').map((e) => e.name)).toEqual(['a.txt']);
      expect(o.stat('.warden-commit-old')).toBeNull();
      o.mkdir('sub');
      o.create('sub/.warden-commit-x', true); // only the root is reserved
      expect(o.readdir('').map((e) => e.name)).toEqual(['a.txt', 'sub']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('conflicts', () => {
  it('unrelated base changes never block a commit; base changes at paths the session touched always do, named exactly', replayable(() => {
    for (let run = 0; run < 30; run++) {
      const rng = new Rng(SEED, 20_000 + run);
      const dir = tempDir('property-conflict');
      try {
        const spec: Spec[] = ['p', 'q', 'q/r'].map((rel) => ({ rel, kind: 'dir', mode: 0o755 }));
        const files: string[] = [];
        for (const parent of ['', 'p', 'q', 'q/r']) {
          for (let i = 1 + rng.int(4); i > 0; i--) {
            const rel = childOf(parent, `f${files.length}`);
            files.push(rel);
            spec.push({ rel, kind: 'file', mode: 0o644, data: data(rng) });
          }
        }
        const base = join(dir, 'base');
        const ref = join(dir, 'ref');
        materialize(spec, base);
        materialize(spec, ref);
        const sessions = new SessionFs(join(dir, 'sessions'));
        const { id } = sessions.begin(base);
        const o = sessions.overlay(id);
        // The session depends on some files (and on the directories it writes in, which stay).
        const touched: string[] = [];
        for (const file of files) {
          if (!rng.chance(0.35)) continue;
          touched.push(file);
          const fresh = childOf(parentOf(file), `n${touched.length}`);
          const op = rng.pick<Op>([
            { kind: 'read', path: file, offset: 0, length: 100 },
            { kind: 'stat', path: file, follow: false },
            { kind: 'write', path: file, offset: rng.int(20), data: data(rng) },
            { kind: 'truncate', path: file, size: rng.int(10) },
            { kind: 'unlink', path: file },
            { kind: 'rename', from: file, to: fresh },
            { kind: 'create', path: fresh, exclusive: true },
          ]);
          if (op.kind === 'create') touched.pop();
          if (op.kind === 'rename' || op.kind === 'create') touched.push(fresh);
          applyBoth(o, ref, op);
        }
        // Base changes elsewhere: files the session never touched change, go, or appear beside them.
        const elsewhere = (root: string) => {
          const rngCopy = new Rng(SEED, 30_000 + run);
          for (const file of files.filter((f) => !touched.includes(f))) {
            const roll = rngCopy.next();
            if (roll < 0.3) writeFileSync(join(root, file), `changed elsewhere ${file}`);
            else if (roll < 0.45) rmSync(join(root, file));
          }
          writeFileSync(join(root, 'q/r/u-new'), 'new elsewhere');
          mkdirSync(join(root, 'u-dir'));
          writeFileSync(join(root, 'u-dir/x'), 'x');
        };
        elsewhere(base);
        const conflicting = run % 2 === 1 && touched.length > 0 ? touched.filter(() => rng.chance(0.5)) : [];
        if (run % 2 === 1 && conflicting.length === 0 && touched.length > 0) conflicting.push(touched[0]!);
        for (const path of conflicting) {
          const host = join(base, path);
          const roll = rng.next();
          if (!existsOrLink(host)) writeFileSync(host, 'appeared in the base');
          else if (roll < 0.5) writeFileSync(host, Buffer.concat([readFileSync(host), Buffer.from('+')]));
          else if (roll < 0.75) rmSync(host);
          else {
            symlinkSync('elsewhere', `${host}.tmp`);
            renameSync(`${host}.tmp`, host);
          }
        }
        const context = `(seed ${SEED}, run ${run}, touched ${JSON.stringify(touched)})`;
        if (conflicting.length === 0) {
          sessions.commit(id);
          elsewhere(ref);
          expect(treeDiff(hostTree(ref), hostTree(base)), context).toEqual([]);
        } else {
          const before = hostTree(base, { mtimes: true });
          const err = thrown(() => sessions.commit(id));
          expect(isWardenError(err, 'E_SESSION_CONFLICT'), `${String(err)} ${context}`).toBe(true);
          expect((err as WardenError).detail?.['paths'], context).toEqual([...conflicting].sort());
          expect(treeDiff(before, hostTree(base, { mtimes: true })), context).toEqual([]);
          sessions.rollback(id);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }));

  it('a session that wrote in a directory conflicts when the base replaces that directory', () => {
    const dir = tempDir('property-conflict');
    try {
      const ws = join(dir, 'ws');
      materialize([{ rel: 'p', kind: 'dir', mode: 0o755 }, { rel: 'p/a', kind: 'file', mode: 0o644, data: Buffer.from('A') }], ws);
      const sessions = new SessionFs(join(dir, 'sessions'));
      const { id } = sessions.begin(ws);
      sessions.overlay(id).create('p/new', true);
      rmSync(join(ws, 'p'), { recursive: true });
      writeFileSync(join(ws, 'p'), 'a file made elsewhere');
      const err = thrown(() => sessions.commit(id));
      expect((err as WardenError).detail?.['paths']).toEqual(['p']);
      expect(readFileSync(join(ws, 'p'), 'utf8')).toBe('a file made elsewhere');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
