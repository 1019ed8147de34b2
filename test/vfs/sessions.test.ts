// Sessions around the overlay: renamed files in the diff, recovery of interrupted commits at
// kernel start (store and audit), the orphaned-session policy, and the `warden session` commands.
import { describe, expect, it } from 'vitest';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { SessionFs } from '../../kernel/vfs/index.js';
import { Store, type TaskRow } from '../../kernel/store/index.js';
import { Kernel } from '../../kernel/kernel.js';
import { discardOrphans, findOrphans } from '../../kernel/session-policy.js';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import { tempDir, workspace } from '../support/fixtures.js';

const run = promisify(execFile);
const warden = join(PACKAGE_ROOT, 'bin/warden.js');
const CHILD = join(PACKAGE_ROOT, 'test/vfs/commit-child.mjs');

function cli(args: string[]) {
  return run(process.execPath, [warden, ...args], { timeout: 60_000 }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

function task(id: string, status: TaskRow['status'], sessionId: string | null): TaskRow {
  return { id, prompt: 'p', workspace: '/w', model: 'm', status, session_id: sessionId, summary: null, error: null, created_at: new Date().toISOString(), finished_at: null };
}

/** Begin a session recorded in the store for `taskId`, and pretend it began `daysAgo` days ago. */
function openSession(sessions: SessionFs, store: Store | null, ws: string, taskId: string | null, daysAgo = 0): string {
  const meta = sessions.begin(ws);
  const createdAt = new Date(Date.now() - daysAgo * 86_400_000).toISOString();
  writeFileSync(join(sessions.dirOf(meta.id), 'meta.json'), JSON.stringify({ ...meta, createdAt }));
  if (store) store.insertSession({ id: meta.id, workspace: meta.workspace, task_id: taskId, status: 'open', created_at: createdAt, finished_at: null });
  return meta.id;
}

describe('session diff', () => {
  it('reports renames: moved unchanged, moved and edited, a directory moved, and delete + identical re-create', () => {
    const ws = workspace({ 'a.txt': 'alpha\n', 'b.txt': 'one\ntwo\nthree\n', 'dir/x.txt': 'x\n', 'dir/y.txt': 'y\n', 'c.bin': 'same bytes', 'keep.txt': 'k' });
    const fs = new SessionFs(tempDir('sessions'));
    const { id } = fs.begin(ws);
    const o = fs.overlay(id);
    o.mkdir('moved');
    o.rename('a.txt', 'moved/a.txt');
    o.rename('b.txt', 'b2.txt');
    o.write('b2.txt', 0, Buffer.from('ONE\n'));
    o.rename('dir', 'dir2');
    o.create('c-copy.bin', true);
    o.write('c-copy.bin', 0, Buffer.from('same bytes'));
    o.unlink('c.bin');
    const diff = fs.diff(id);
    expect(diff.map((c) => [c.kind, c.from ?? null, c.path])).toEqual([
      ['renamed', 'b.txt', 'b2.txt'],
      ['renamed', 'c.bin', 'c-copy.bin'],
      ['renamed', 'dir/x.txt', 'dir2/x.txt'],
      ['renamed', 'dir/y.txt', 'dir2/y.txt'],
      ['renamed', 'a.txt', 'moved/a.txt'],
    ]);
    const edited = diff.find((c) => c.path === 'b2.txt')!;
    expect(edited.unified).toContain('--- a/b.txt');
    expect(edited.unified).toContain('+++ b/b2.txt');
    expect(edited.unified).toContain('-one');
    expect(edited.unified).toContain('+ONE');
    expect(diff.find((c) => c.path === 'moved/a.txt')!.unified).toBeUndefined();
    fs.commit(id);
    expect(readFileSync(join(ws, 'moved/a.txt'), 'utf8')).toBe('alpha\n');
    expect(existsSync(join(ws, 'a.txt'))).toBe(false);
    expect(readdirSync(join(ws, 'dir2')).sort()).toEqual(['x.txt', 'y.txt']);
  });
});

describe('diff and conflicts around symlinks and deleted directories', () => {
  it('a file created where the base has a symlink to outside is `added`: the diff never reads through the link', () => {
    const outside = workspace({ 'secret.txt': 'TOP SECRET\n' });
    const ws = workspace({ 'a.txt': 'a' });
    symlinkSync(outside, join(ws, 'out'));
    const fs = new SessionFs(tempDir('sessions'));
    const { id } = fs.begin(ws);
    const o = fs.overlay(id);
    o.unlink('out');
    o.mkdir('out');
    o.create('out/secret.txt', true);
    o.write('out/secret.txt', 0, Buffer.from('mine\n'));
    const diff = fs.diff(id);
    expect(diff.map((c) => `${c.kind} ${c.path}`)).toEqual(['deleted out', 'added out/secret.txt']);
    expect(JSON.stringify(diff)).not.toContain('TOP SECRET');
    fs.commit(id);
    expect(readFileSync(join(outside, 'secret.txt'), 'utf8')).toBe('TOP SECRET\n');
    expect(readFileSync(join(ws, 'out/secret.txt'), 'utf8')).toBe('mine\n');
  });

  it('a directory the session removed or moved conflicts when the workspace added a file to it meanwhile (nothing is lost)', () => {
    for (const how of ['remove', 'move'] as const) {
      const ws = workspace({ 'd/x.txt': 'x' });
      const fs = new SessionFs(tempDir('sessions'));
      const { id } = fs.begin(ws);
      const o = fs.overlay(id);
      if (how === 'remove') {
        o.unlink('d/x.txt');
        o.rmdir('d');
      } else {
        o.rename('d', 'e');
      }
      writeFileSync(join(ws, 'd/new.txt'), 'written elsewhere');
      expect(() => fs.commit(id)).toThrowError(/changed under 1 path\(s\) this session depends on: d\/new\.txt/);
      expect(readFileSync(join(ws, 'd/new.txt'), 'utf8')).toBe('written elsewhere');
    }
  });
});

describe('recovery at kernel start', () => {
  it('finishes a commit killed after its journal, rolls back one killed before, and records both in the store and the audit log', async () => {
    const data = tempDir('data');
    mkdirSync(data, { recursive: true });
    const sessions = new SessionFs(join(data, 'sessions'));
    const store = new Store(join(data, 'warden.db'));
    const wsA = workspace({ 'a.txt': 'old a\n' });
    const wsB = workspace({ 'b.txt': 'old b\n' });
    const a = openSession(sessions, store, wsA, null);
    const b = openSession(sessions, store, wsB, null);
    sessions.overlay(a).write('a.txt', 0, Buffer.from('NEW A\n'));
    sessions.overlay(b).write('b.txt', 0, Buffer.from('NEW B\n'));
    store.close();
    // Steps of a one-file commit: stage begin, stage a.txt, journal write, journal commit, put, ...
    const killedAfterJournal = spawnSync(process.execPath, [CHILD, sessions.sessionsDir, a, '5'], { encoding: 'utf8' });
    const killedBeforeJournal = spawnSync(process.execPath, [CHILD, sessions.sessionsDir, b, '3'], { encoding: 'utf8' });
    expect([killedAfterJournal.signal, killedBeforeJournal.signal]).toEqual(['SIGKILL', 'SIGKILL']);
    expect(readFileSync(join(wsA, 'a.txt'), 'utf8')).toBe('old a\n'); // not yet applied
    expect(readdirSync(wsA).some((n) => n.startsWith('.warden-commit-'))).toBe(true);

    const kernel = await Kernel.start({ dataDir: data, quiet: true });
    try {
      expect(readFileSync(join(wsA, 'a.txt'), 'utf8')).toBe('NEW A\n');
      expect(readFileSync(join(wsB, 'b.txt'), 'utf8')).toBe('old b\n');
      expect(readdirSync(wsA).concat(readdirSync(wsB)).filter((n) => n.startsWith('.warden-commit'))).toEqual([]);
      expect(kernel.store.session(a)?.status).toBe('committed');
      expect(kernel.store.session(b)?.status).toBe('open');
      expect(kernel.sessions.diff(b).map((c) => `${c.kind} ${c.path}`)).toEqual(['modified b.txt']);
      const recovered = kernel.store.auditEvents(100).filter((e) => e.kind === 'session.recover').map((e) => JSON.parse(e.detail) as { session: string; action: string });
      expect(recovered.map((r) => [r.session, r.action]).sort()).toEqual([[a, 'completed'], [b, 'rolled-back']].sort());
    } finally {
      await kernel.close();
    }
  }, 60_000);
});

describe('orphaned sessions', () => {
  it('lists sessions no queued or running task uses, and the policy discards only those older than its age', () => {
    const data = tempDir('data');
    const sessions = new SessionFs(join(data, 'sessions'));
    const store = new Store(join(data, 'warden.db'));
    const ws = workspace({ 'f.txt': 'f' });
    store.insertTask(task('t-running', 'running', null));
    store.insertTask(task('t-done', 'succeeded', null));
    store.insertTask(task('t-cut', 'interrupted', null));
    const live = openSession(sessions, store, ws, 't-running', 90);
    const done = openSession(sessions, store, ws, 't-done', 40);
    const cut = openSession(sessions, store, ws, 't-cut', 2);
    const bare = openSession(sessions, store, ws, null, 10);
    const stray = openSession(sessions, null, ws, null, 50); // never recorded in the store
    sessions.overlay(done).write('f.txt', 0, Buffer.from('12345'));

    const orphans = findOrphans(sessions, store);
    expect(orphans.map((o) => [o.id, o.reason]).sort()).toEqual(
      [[done, 'task succeeded'], [cut, 'task interrupted'], [bare, 'no task'], [stray, 'unknown to the store']].sort(),
    );
    expect(orphans.find((o) => o.id === done)!.upperBytes).toBe(5);
    expect(orphans.some((o) => o.id === live)).toBe(false);

    expect(discardOrphans(sessions, store, 30, true).map((o) => o.id).sort()).toEqual([done, stray].sort());
    expect(sessions.list()).toHaveLength(5); // dry run
    const gone = discardOrphans(sessions, store, 30);
    expect(gone.map((o) => o.id).sort()).toEqual([done, stray].sort());
    expect(sessions.list().map((s) => s.id).sort()).toEqual([live, cut, bare].sort());
    expect(store.session(done)?.status).toBe('discarded');
    const audited = store.auditEvents(100).filter((e) => e.kind === 'session.discard').map((e) => JSON.parse(e.detail) as { session: string; reason: string });
    expect(audited.map((e) => [e.session, e.reason]).sort()).toEqual([[done, 'orphan policy'], [stray, 'orphan policy']].sort());
    expect(readFileSync(join(ws, 'f.txt'), 'utf8')).toBe('f');
    store.close();
  });

  it('`warden session list --orphaned`, `session gc` and `session diff` from the command line', async () => {
    const data = tempDir('data');
    const sessions = new SessionFs(join(data, 'sessions'));
    const store = new Store(join(data, 'warden.db'));
    const ws = workspace({ 'old.txt': 'text\n' });
    const old = openSession(sessions, store, ws, null, 12);
    const fresh = openSession(sessions, store, ws, null, 1);
    sessions.overlay(fresh).rename('old.txt', 'new.txt');
    store.close();

    const diff = await cli(['session', 'diff', fresh, '--data-dir', data]);
    expect(diff.stdout).toContain('R old.txt → new.txt');
    const listed = await cli(['session', 'list', '--orphaned', '--json', '--data-dir', data]);
    expect(listed.code).toBe(0);
    expect((JSON.parse(listed.stdout) as Array<{ id: string; reason: string }>).map((o) => [o.id, o.reason]).sort()).toEqual([[old, 'no task'], [fresh, 'no task']].sort());
    const dry = await cli(['session', 'gc', '--older-than', '7', '--dry-run', '--data-dir', data]);
    expect(dry.stdout).toMatch(new RegExp(`^would discard ${old}  12\\.0 days`));
    const gc = await cli(['session', 'gc', '--older-than', '7', '--json', '--data-dir', data]);
    expect((JSON.parse(gc.stdout) as { sessions: Array<{ id: string }> }).sessions.map((s) => s.id)).toEqual([old]);
    expect(new SessionFs(join(data, 'sessions')).list().map((s) => s.id)).toEqual([fresh]);
    const bad = await cli(['session', 'gc', '--older-than', 'soon', '--data-dir', data]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('--older-than must be a number of days');
  }, 60_000);
});
