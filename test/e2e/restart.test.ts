// A kernel killed with SIGKILL mid-task restarts with every task and session it had: the finished
// task intact, the running one interrupted with its steps, tool calls, usage and session kept, and
// `warden task resume` finishing it from its recorded conversation. Also the store's CLI:
// `warden migrate`, `warden backup`, `warden restore`.
import { afterAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { Kernel } from '../../kernel/kernel.js';
import { SCHEMA_VERSION, Store } from '../../kernel/store/index.js';
import type { TaskState } from '../../kernel/state/index.js';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import { startScriptedServer, type ScriptedServer, type ScriptedTurn } from '../support/scripted-openai.js';
import { tempDir, workspace } from '../support/fixtures.js';
import { envKey } from '../support/auth.js';
import { freePort, until } from '../support/net.js';

const run = promisify(execFile);
const warden = join(PACKAGE_ROOT, 'bin/warden.js');
const servers: ScriptedServer[] = [];
afterAll(async () => Promise.all(servers.map((s) => s.close())));

function cli(args: string[], env: Record<string, string> = {}) {
  return run(process.execPath, [warden, ...args], { env: { ...process.env, ...env }, timeout: 120_000 }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

/** The model: the task whose prompt says "interrupt" writes a file, then hangs until the restart. */
function script(killed: { value: boolean }) {
  return (_n: number, body: ScriptedServer['requests'][number]): ScriptedTurn => {
    const prompt = body.messages.find((m) => m.role === 'user')?.content ?? '';
    const toolResults = body.messages.filter((m) => m.role === 'tool').length;
    if (!prompt.includes('interrupt')) return { content: 'finished the quick task' };
    if (toolResults === 0) return { toolCalls: [{ name: 'write-file', arguments: { path: 'notes.txt', content: 'written before the kill\n' } }] };
    return killed.value ? { content: 'resumed and finished' } : { hang: true };
  };
}

describe('restart without loss', () => {
  it('a kernel killed with SIGKILL mid-task: the finished task intact, the running one interrupted with its history and session, then resumed', async () => {
    const killed = { value: false };
    const model = await startScriptedServer(script(killed));
    servers.push(model);
    const data = tempDir('data');
    // Writes go on without asking, in both kernels (mode default would wait for an approval).
    writeFileSync(join(data, 'warden.config.json'), JSON.stringify({ policy: { mode: 'acceptEdits' } }));
    const ws = workspace({ 'README.md': '# project\n' });
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const { env: keyEnv, headers } = envKey();
    const child: ChildProcess = spawn(process.execPath, [warden, 'serve', '--port', String(port), '--data-dir', data], {
      env: { ...process.env, OPENAI_BASE_URL: model.baseURL, ...keyEnv }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    try {
      await until(async () => (await fetch(`${base}/health`).then((r) => r.ok, () => false)) || undefined, 60_000, 'the kernel to listen');
      const submit = async (task: string) => {
        const res = await fetch(`${base}/api/tasks`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify({ task, workspace: ws, model: 'scripted' }) });
        expect(res.status).toBe(201);
        return ((await res.json()) as { id: string }).id;
      };
      const getTask = async (id: string) => (await (await fetch(`${base}/api/tasks/${id}`, { headers })).json()) as TaskState;

      const quick = await submit('a quick task');
      const quickDone = await until(async () => ((await getTask(quick)).status === 'succeeded' ? getTask(quick) : undefined), 60_000, 'the quick task');
      const slow = await submit('please interrupt me');
      // The write-file call is done and the second inference request is hanging.
      const before = await until(async () => {
        const t = await getTask(slow);
        const hanging = model.requests.filter((r) => r.messages.some((m) => m.role === 'tool')).length > 0;
        return hanging && Object.values(t.toolCalls).some((c) => c.target === 'write-file' && c.status === 'ok') ? t : undefined;
      }, 60_000, 'the slow task to reach its second turn');
      child.kill('SIGKILL');
      expect(await exited).toBe('SIGKILL');
      killed.value = true;

      const kernel = await Kernel.start({ dataDir: data, quiet: true, env: { ...process.env, OPENAI_BASE_URL: model.baseURL } });
      let sessionId: string | null;
      try {
        const after = kernel.state.current.tasks;
        // The finished task, exactly as it was.
        expect(after[quick]).toMatchObject({ status: 'succeeded', summary: 'finished the quick task', sessionId: quickDone.sessionId, usage: quickDone.usage });
        expect(Object.keys(after[quick]!.steps)).toEqual(Object.keys(quickDone.steps));
        expect(after[quick]!.diff).toEqual(quickDone.diff);
        // The running one: interrupted, with the steps, tool calls and usage it had, and its session open.
        const slowAfter = after[slow]!;
        expect(slowAfter.status).toBe('interrupted');
        expect(slowAfter.error).toMatch(/kernel stopped/);
        for (const [n, step] of Object.entries(before.steps)) expect(slowAfter.steps[n]).toEqual(step);
        const writeCall = Object.values(slowAfter.toolCalls).find((c) => c.target === 'write-file')!;
        expect(writeCall).toMatchObject({ status: 'ok', outcome: 'ok', input: expect.stringContaining('notes.txt') as string });
        expect(slowAfter.usage.promptTokens).toBeGreaterThan(0);
        sessionId = slowAfter.sessionId;
        expect(sessionId).toMatch(/^s-/);
        expect(slowAfter.sessionStatus).toBe('open');
        expect(kernel.sessions.diff(sessionId!).map((c) => `${c.kind} ${c.path}`)).toEqual(['added notes.txt']);
        expect(existsSync(join(ws, 'notes.txt'))).toBe(false);
        expect(() => kernel.resumeTask(quick)).toThrowError(/only an interrupted task can be resumed/);
        // Components are recorded with the grants and limits they were loaded with.
        const supervisor = kernel.store.components().find((c) => c.name === 'supervisor')!;
        expect(JSON.parse(supervisor.grants!)).toMatchObject({ session: true, mesh: expect.arrayContaining(['coder']) as string[] });
        expect(JSON.parse(supervisor.limits!)).toMatchObject({ timeoutMs: expect.any(Number) as number });
      } finally {
        await kernel.close();
      }

      // Resume from the command line: the model is asked again from the recorded conversation.
      const asked = model.requests.length;
      const resumed = await cli(['task', 'resume', slow, '--data-dir', data, '--json', '--commit'], { OPENAI_BASE_URL: model.baseURL });
      expect(resumed.stderr).toBe('');
      expect(resumed.code).toBe(0);
      const final = JSON.parse(resumed.stdout) as TaskState & { committed: boolean };
      expect(final).toMatchObject({ status: 'succeeded', summary: 'resumed and finished', sessionId, committed: true });
      expect(Object.values(final.steps).filter((s) => s.step === 'resume').map((s) => s.detail)).toEqual(['resumed from turn 2 of its recorded conversation']);
      const again = model.requests.slice(asked);
      expect(again).toHaveLength(1);
      expect(again[0]!.messages.map((m) => m.role)).toEqual(['system', 'user', 'assistant', 'tool']);
      expect(readFileSync(join(ws, 'notes.txt'), 'utf8')).toBe('written before the kill\n');
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  }, 240_000);
});

describe('store commands', () => {
  it('`warden migrate` reports the schema version; `backup` copies a live store; `restore` checks the file before replacing the store', async () => {
    const data = tempDir('data');
    const store = new Store(join(data, 'warden.db'));
    // Granted environment values may be secrets: the store keeps their names only.
    store.upsertComponent('probe', 'tool', '1.0.0', 'ab'.repeat(32), {
      filesystem: 'none', sql: null, mesh: [], inference: [], session: false, env: { API_TOKEN: 'tok-s3cr3t-value' }, http: [], sockets: [],
    }, { timeoutMs: 1000, memoryMb: 64, outputBytes: 1024 });
    const probe = store.components().find((c) => c.name === 'probe')!;
    expect(JSON.parse(probe.grants!).env).toEqual(['API_TOKEN']);
    expect(JSON.stringify(probe)).not.toContain('s3cr3t');
    store.insertTask({ id: 't-0000abcd', prompt: 'p', workspace: '/w', model: 'm', status: 'succeeded', session_id: null, summary: 's', error: null, created_at: new Date().toISOString(), finished_at: null });
    // Backup while the store is open (as a running kernel holds it).
    const backupFile = join(tempDir('backup'), 'warden-backup.db');
    const backedUp = await cli(['backup', backupFile, '--data-dir', data, '--json']);
    expect(backedUp.code).toBe(0);
    expect(JSON.parse(backedUp.stdout)).toMatchObject({ file: backupFile, schemaVersion: SCHEMA_VERSION });
    store.insertTask({ id: 't-0000ffff', prompt: 'after the backup', workspace: '/w', model: 'm', status: 'queued', session_id: null, summary: null, error: null, created_at: new Date().toISOString(), finished_at: null });
    store.close();

    const migrated = await cli(['migrate', '--data-dir', data, '--json']);
    expect(JSON.parse(migrated.stdout)).toEqual({ file: join(data, 'warden.db'), from: SCHEMA_VERSION, schemaVersion: SCHEMA_VERSION, latest: SCHEMA_VERSION });
    // An old store (schema version 1) is migrated by `warden migrate`.
    const oldData = tempDir('data');
    const old = new Database(join(oldData, 'warden.db'));
    old.exec('CREATE TABLE tasks (id TEXT PRIMARY KEY, prompt TEXT NOT NULL, workspace TEXT NOT NULL, model TEXT NOT NULL, status TEXT NOT NULL, session_id TEXT, summary TEXT, error TEXT, created_at TEXT NOT NULL, finished_at TEXT); CREATE TABLE sessions (id TEXT PRIMARY KEY, workspace TEXT NOT NULL, task_id TEXT, status TEXT NOT NULL, created_at TEXT NOT NULL, finished_at TEXT); CREATE TABLE components (name TEXT PRIMARY KEY, kind TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT NULL, loaded_at TEXT NOT NULL); CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, kind TEXT NOT NULL, component TEXT, task_id TEXT, detail TEXT NOT NULL);');
    old.pragma('user_version = 1');
    old.close();
    const up = await cli(['migrate', '--data-dir', oldData]);
    expect(up.stdout).toContain(`schema version ${SCHEMA_VERSION} (migrated from 1)`);

    // A file that is not a database is refused, and the store is untouched.
    const junk = join(tempDir('junk'), 'junk.db');
    writeFileSync(junk, 'not a database at all'.repeat(100));
    const refused = await cli(['restore', junk, '--data-dir', data]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/is not a usable kernel store/);
    expect(new Store(join(data, 'warden.db')).tasks().map((t) => t.id).sort()).toEqual(['t-0000abcd', 't-0000ffff']);

    // A kernel using the data directory blocks the restore.
    const pidFile = join(data, 'kernel.pid');
    const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    writeFileSync(pidFile, String(sleeper.pid));
    const blocked = await cli(['restore', backupFile, '--data-dir', data]);
    sleeper.kill('SIGKILL');
    expect(blocked.stderr).toMatch(/a kernel \(pid \d+\) is using/);

    // The backup restores: the task added after it is gone, the old store is kept beside.
    writeFileSync(pidFile, '999999999');
    const restored = await cli(['restore', backupFile, '--data-dir', data, '--json']);
    expect(restored.code).toBe(0);
    const report = JSON.parse(restored.stdout) as { tasks: number; previous: string; schemaVersion: number };
    expect(report).toMatchObject({ tasks: 1, schemaVersion: SCHEMA_VERSION });
    expect(new Store(join(data, 'warden.db')).tasks().map((t) => t.id)).toEqual(['t-0000abcd']);
    const previous = new Store(report.previous);
    expect(previous.tasks().map((t) => t.id).sort()).toEqual(['t-0000abcd', 't-0000ffff']);
    previous.close();
  }, 120_000);
});
