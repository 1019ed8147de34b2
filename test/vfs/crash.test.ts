// Crash safety of the session commit: a child process commits a session and is killed with
// SIGKILL before each of the commit's steps in turn (every point, not a sample), and at random
// moments; after recovery the workspace must be wholly the old tree or wholly the new one, and
// the session must be open (old) or closed (new) accordingly.
import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { SessionFs, type Overlay } from '../../kernel/vfs/index.js';
import { isWardenError } from '../../kernel/errors.js';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import { tempDir } from '../support/fixtures.js';

const CHILD = join(PACKAGE_ROOT, 'test/vfs/commit-child.mjs');

/** Deterministic bytes (xorshift32) so every run builds the same trees. */
function bytes(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  let x = seed || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 255;
  }
  return out;
}

function put(root: string, rel: string, content: string | Buffer, mode?: number): void {
  mkdirSync(dirname(join(root, rel)), { recursive: true });
  writeFileSync(join(root, rel), content);
  if (mode !== undefined) chmodSync(join(root, rel), mode);
}

/** The base tree: text and binary files, an executable, a symlink, an empty directory. */
function baseTree(): string {
  const ws = tempDir('crash-ws');
  for (let i = 0; i < 20; i++) put(ws, `src/f${i}.txt`, `file ${i}\n`.repeat(i + 1));
  for (let i = 0; i < 6; i++) put(ws, `lib/x/m${i}.js`, `export const m${i} = ${i};\n`);
  for (let i = 0; i < 3; i++) put(ws, `gone/g${i}.txt`, `doomed ${i}\n`);
  put(ws, 'bin/run.sh', '#!/bin/sh\necho run\n', 0o755);
  put(ws, 'data.bin', bytes(64 * 1024, 7));
  put(ws, 'replace-me', 'a file that becomes a directory\n');
  put(ws, 'docs/readme.md', '# readme\n');
  symlinkSync('docs/readme.md', join(ws, 'latest'));
  mkdirSync(join(ws, 'empty'));
  return ws;
}

/** The session's work: every kind of change the overlay supports. */
function work(o: Overlay, extraFiles = 0): void {
  for (let i = 0; i < 10; i++) o.write(`src/f${i}.txt`, 0, Buffer.from(`changed ${i}\n`));
  o.mkdir('new');
  o.mkdir('new/deep');
  for (let i = 0; i < 10 + extraFiles; i++) {
    o.create(`new/deep/n${i}.txt`, true);
    o.write(`new/deep/n${i}.txt`, 0, Buffer.from(`new ${i}\n`));
  }
  for (let i = 10; i < 15; i++) o.unlink(`src/f${i}.txt`);
  for (let i = 0; i < 3; i++) o.unlink(`gone/g${i}.txt`);
  o.rmdir('gone');
  o.mkdir('moved');
  o.rename('src/f15.txt', 'moved/f15.txt');
  o.rename('lib/x', 'lib/y');
  o.mkdir('new-empty');
  o.unlink('replace-me');
  o.mkdir('replace-me');
  o.create('replace-me/inside.txt', true);
  o.write('replace-me/inside.txt', 0, Buffer.from('inside\n'));
  o.symlink('src/f2.txt', 'link2');
  o.write('bin/run.sh', 0, Buffer.from('#!/bin/sh\necho ran\n'));
  o.truncate('data.bin', 1000);
  o.write('data.bin', 500, bytes(300, 9));
}

/** Everything in a tree: type, permission bits, content hash or link target. */
function snapshot(root: string, rel = '', out: Record<string, string> = {}): Record<string, string> {
  for (const name of readdirSync(join(root, rel)).sort()) {
    const child = rel === '' ? name : `${rel}/${name}`;
    const st = lstatSync(join(root, child));
    const mode = (st.mode & 0o777).toString(8);
    if (st.isDirectory()) {
      out[child] = `dir ${mode}`;
      snapshot(root, child, out);
    } else if (st.isSymbolicLink()) {
      out[child] = `link ${readlinkSync(join(root, child))}`;
    } else {
      out[child] = `file ${mode} ${createHash('sha256').update(readFileSync(join(root, child))).digest('hex').slice(0, 16)}`;
    }
  }
  return out;
}

interface Prepared {
  ws: string;
  sessionsDir: string;
  id: string;
}

/** A fresh workspace with an open session that did {@link work}. */
function prepare(extraFiles = 0): Prepared {
  const ws = baseTree();
  const sessionsDir = tempDir('crash-sessions');
  const fs = new SessionFs(sessionsDir);
  const { id } = fs.begin(ws);
  work(fs.overlay(id), extraFiles);
  return { ws, sessionsDir, id };
}

/** The old and new trees, by committing a prepared session without a crash. */
function expectedTrees(extraFiles = 0): { before: Record<string, string>; after: Record<string, string> } {
  const p = prepare(extraFiles);
  const before = snapshot(p.ws);
  new SessionFs(p.sessionsDir).commit(p.id);
  return { before, after: snapshot(p.ws) };
}

function runChild(p: Prepared, crashAt: number): { signal: NodeJS.Signals | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CHILD, p.sessionsDir, p.id, String(crashAt)], { encoding: 'utf8', timeout: 30_000 });
  return { signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

type Outcome = 'old' | 'new';

/** Recover as the kernel does at start and say which tree the workspace holds. */
function recoverAndJudge(label: string, p: Prepared, before: Record<string, string>, after: Record<string, string>, diffBefore: string): Outcome {
  const fs = new SessionFs(p.sessionsDir);
  fs.recover();
  const now = snapshot(p.ws);
  if (JSON.stringify(now) === JSON.stringify(after)) {
    // Wholly new: and the session is closed, its area gone.
    expect(() => fs.meta(p.id)).toThrowError(/no open session/);
    expect(readdirSync(p.sessionsDir)).toEqual([]);
    return 'new';
  }
  const extra = Object.keys(now).filter((k) => now[k] !== before[k]);
  const missing = Object.keys(before).filter((k) => !(k in now));
  expect({ label, extra, missing }).toEqual({ label, extra: [], missing: [] });
  // Wholly old: the session is still open with the same changes, and committing it now works.
  expect(JSON.stringify(fs.diff(p.id))).toBe(diffBefore);
  fs.commit(p.id);
  expect(snapshot(p.ws)).toEqual(after);
  return 'old';
}

describe('crash-safe commit', () => {
  it('killed before every step of a commit, the recovered workspace is wholly old or wholly new', () => {
    const { before, after } = expectedTrees();
    expect(Object.keys(after).length).toBeGreaterThan(30);
    // How many steps a full commit takes.
    const probe = prepare();
    const full = runChild(probe, 0);
    expect(full.signal, full.stderr).toBeNull();
    const steps = (JSON.parse(full.stdout) as { steps: number }).steps;
    expect(snapshot(probe.ws)).toEqual(after);
    expect(steps).toBeGreaterThanOrEqual(50);

    const outcomes: Outcome[] = [];
    for (let k = 1; k <= steps; k++) {
      const p = prepare();
      const diffBefore = JSON.stringify(new SessionFs(p.sessionsDir).diff(p.id));
      const r = runChild(p, k);
      expect(r.signal, `crash point ${k}: ${r.stderr}`).toBe('SIGKILL');
      outcomes.push(recoverAndJudge(`crash point ${k}`, p, before, after, diffBefore));
    }
    // Old up to the journal's commit point, new from there on: one switch, never back.
    const firstNew = outcomes.indexOf('new');
    expect(firstNew).toBeGreaterThan(0);
    expect(outcomes.slice(firstNew).every((o) => o === 'new')).toBe(true);
    expect(outcomes.slice(0, firstNew).every((o) => o === 'old')).toBe(true);
    console.log(`crash points: ${steps} (${firstNew} rolled back, ${steps - firstNew} rolled forward)`);
  }, 180_000);

  it('killed at random moments during a 300-file commit, the recovered workspace is wholly old or wholly new', async () => {
    const { before, after } = expectedTrees(290);
    const seen: Outcome[] = [];
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    // How long a full commit takes from the child's `ready`, to spread the kills over it.
    const timing = prepare(290);
    const t0 = Date.now();
    expect(runChild(timing, 0).signal).toBeNull();
    const window = Math.max(20, Date.now() - t0);
    for (let run = 0; run < 12; run++) {
      const p = prepare(290);
      const diffBefore = JSON.stringify(new SessionFs(p.sessionsDir).diff(p.id));
      const delay = Math.floor(random() * window);
      const signal = await new Promise<NodeJS.Signals | null>((resolve) => {
        const child = spawn(process.execPath, [CHILD, p.sessionsDir, p.id, '-1'], { stdio: ['ignore', 'pipe', 'inherit'] });
        child.stdout.once('data', () => setTimeout(() => child.kill('SIGKILL'), delay));
        child.on('exit', (_code, sig) => resolve(sig));
      });
      expect([null, 'SIGKILL']).toContain(signal);
      seen.push(recoverAndJudge(`kill after ${delay} ms`, p, before, after, diffBefore));
    }
    expect(seen.length).toBe(12);
    console.log(`random kills: ${seen.filter((o) => o === 'old').length} rolled back, ${seen.filter((o) => o === 'new').length} rolled forward (commit window ${window} ms)`);
  }, 180_000);

  it('a commit that fails before its journal leaves the workspace and the session as they were; one that fails after is completed by recovery', () => {
    const { before, after } = expectedTrees();
    const early = prepare();
    const fs = new SessionFs(early.sessionsDir);
    const fail = (at: string) => ({ step: (label: string) => {
      if (label.startsWith(at)) throw new Error(`disk full at ${label}`);
    } });
    expect(() => fs.commit(early.id, fail('stage new/deep/n3.txt'))).toThrowError(/failed before anything was applied \(disk full at stage new\/deep\/n3\.txt\); the session is still open/);
    expect(snapshot(early.ws)).toEqual(before);
    fs.commit(early.id);
    expect(snapshot(early.ws)).toEqual(after);

    const late = prepare();
    const fs2 = new SessionFs(late.sessionsDir);
    expect(() => fs2.commit(late.id, fail('put src/f3.txt'))).toThrowError(/interrupted after its journal was written .* completes it/);
    expect(fs2.recover().map((a) => a.action)).toEqual(['completed']);
    expect(snapshot(late.ws)).toEqual(after);
  });

  it('two sessions on one workspace: the second commit of overlapping sessions conflicts, disjoint ones both land', () => {
    const ws = baseTree();
    const fs = new SessionFs(tempDir('crash-sessions'));
    const a = fs.begin(ws).id;
    const b = fs.begin(ws).id;
    const c = fs.begin(ws).id;
    fs.overlay(a).write('src/f1.txt', 0, Buffer.from('from a\n'));
    fs.overlay(b).write('src/f1.txt', 0, Buffer.from('from b\n'));
    fs.overlay(c).write('src/f2.txt', 0, Buffer.from('from c\n'));
    fs.commit(a);
    let error: unknown;
    try {
      fs.commit(b);
    } catch (err) {
      error = err;
    }
    expect(isWardenError(error, 'E_SESSION_CONFLICT')).toBe(true);
    expect((error as { detail: { paths: string[] } }).detail.paths).toEqual(['src/f1.txt']);
    expect(fs.meta(b).id).toBe(b); // still open, for review
    fs.commit(c);
    expect(readFileSync(join(ws, 'src/f1.txt'), 'utf8')).toMatch(/^from a\n/);
    expect(readFileSync(join(ws, 'src/f2.txt'), 'utf8')).toMatch(/^from c\n/);
  });

  it('a workspace whose commit lock is held by a live process refuses the commit with E_SESSION_BUSY; a dead owner\'s lock is taken over', () => {
    const ws = baseTree();
    const fs = new SessionFs(tempDir('crash-sessions'));
    const { id } = fs.begin(ws);
    fs.overlay(id).write('src/f1.txt', 0, Buffer.from('x'));
    const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    try {
      writeFileSync(join(ws, '.warden-commit-lock'), String(sleeper.pid));
      expect(() => fs.commit(id)).toThrowError(/another commit to .* is running \(pid \d+\)/);
    } finally {
      sleeper.kill('SIGKILL');
    }
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    writeFileSync(join(ws, '.warden-commit-lock'), dead.stdout);
    fs.commit(id);
    expect(readdirSync(ws).filter((n) => n.startsWith('.warden-commit'))).toEqual([]);
  });
});
