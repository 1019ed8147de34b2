// Graceful shutdown of a real `warden serve` child: SIGTERM stops accepting work at once, lets
// running tasks reach their end within `server.shutdownGraceMs` or interrupts them cleanly
// (resumable, session kept), closes WebSockets with a final message and code 1001, flushes the
// store and the audit log, and exits 0. A second signal cuts the grace short.
import { afterAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import WebSocket from 'ws';
import fastJsonPatch, { type Operation } from 'fast-json-patch';
import { Store } from '../../kernel/store/index.js';
import { Kernel } from '../../kernel/kernel.js';
import { buildServer } from '../../kernel/server/index.js';
import type { Envelope, KernelState } from '../../kernel/state/index.js';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import { startScriptedServer, type ScriptedServer, type ScriptedTurn } from '../support/scripted-openai.js';
import { tempDir, workspace } from '../support/fixtures.js';
import { freePort, until } from '../support/net.js';

const run = promisify(execFile);
const warden = join(PACKAGE_ROOT, 'bin/warden.js');
/** Accepted as an API key by the kernel (`WARDEN_API_KEY`); sent on every request. */
const KEY = `wk-test-${randomBytes(24).toString('hex')}`;
const AUTH = { authorization: `Bearer ${KEY}` };

const children: ChildProcess[] = [];
const servers: ScriptedServer[] = [];
afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await Promise.all(servers.map((s) => s.close()));
});

/** The model: prompts with "hang" never get an answer; prompts with "slow" get one after 2.5 s. */
function script(_n: number, body: ScriptedServer['requests'][number]): ScriptedTurn {
  const prompt = body.messages.find((m) => m.role === 'user')?.content ?? '';
  if (prompt.includes('hang')) return { hang: true };
  if (prompt.includes('slow')) return { content: 'finished slowly', delayMs: 2500 };
  return { content: 'done' };
}

interface Served {
  child: ChildProcess;
  base: string;
  port: number;
  data: string;
  ws: string;
  model: ScriptedServer;
  /** Everything the child wrote to stderr so far. */
  stderr: () => string;
  /** Resolves with the exit code and the time of exit (ms since the epoch). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  submit: (task: string) => Promise<string>;
}

/** `warden serve` as a child on a free port, with `server.shutdownGraceMs: graceMs`, listening. */
async function serve(graceMs: number): Promise<Served> {
  const model = await startScriptedServer(script);
  servers.push(model);
  const data = tempDir('data');
  writeFileSync(join(data, 'warden.config.json'), JSON.stringify({ server: { shutdownGraceMs: graceMs } }));
  const ws = workspace({ 'README.md': '# project\n' });
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, [warden, 'serve', '--port', String(port), '--data-dir', data], {
    env: { ...process.env, OPENAI_BASE_URL: model.baseURL, WARDEN_API_KEY: KEY }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  child.stdout!.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  await until(async () => (await fetch(`${base}/health`).then((r) => r.ok, () => false)) || undefined, 60_000, 'the kernel to listen');
  const submit = async (task: string) => {
    const res = await fetch(`${base}/api/tasks`, {
      method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body: JSON.stringify({ task, workspace: ws, model: 'scripted' }),
    });
    expect(res.status).toBe(201);
    return ((await res.json()) as { id: string }).id;
  };
  return { child, base, port, data, ws, model, stderr: () => stderr, exited, submit };
}

/** The store of a stopped kernel, opened read-write as the next start would. */
function openStore(data: string): Store {
  expect(existsSync(join(data, 'kernel.pid'))).toBe(false);
  return new Store(join(data, 'warden.db'));
}

function kernelStops(store: Store): Array<{ reason: string; interrupted: string[]; graceMs: number }> {
  return store.auditEvents(1000).filter((e) => e.kind === 'kernel.stop').map((e) => JSON.parse(e.detail));
}

describe('graceful shutdown of `warden serve`', () => {
  it('SIGTERM with a task whose inference hangs: the task is interrupted after the grace, clients get its last patches, a final message and 1001, exit 0', async () => {
    const s = await serve(1000);
    const socket = new WebSocket(`${s.base.replace('http', 'ws')}/api/stream`, { headers: AUTH });
    const messages: Array<Envelope | { type: 'snapshot'; seq: number; state: KernelState } | { type: 'shutdown'; seq: number; reason: string }> = [];
    socket.on('message', (data) => messages.push(JSON.parse(String(data))));
    const closed = new Promise<number>((resolve) => socket.on('close', (code) => resolve(code)));
    await once(socket, 'open');

    const id = await s.submit('please hang forever');
    await until(() => (s.model.requests.length > 0 ? true : undefined), 30_000, 'the inference request');
    const signalled = Date.now();
    s.child.kill('SIGTERM');
    const exit = await s.exited;
    expect(exit).toMatchObject({ code: 0, signal: null });
    // The grace period was waited out, and not much more.
    expect(exit.at - signalled).toBeGreaterThanOrEqual(1000);
    expect(exit.at - signalled).toBeLessThan(1000 + 5000);
    expect(await closed).toBe(1001);

    // The stream: a snapshot, contiguous envelopes ending with the interruption, then the final message.
    const [first, ...rest] = messages;
    expect(first).toMatchObject({ type: 'snapshot' });
    const last = rest.at(-1)!;
    expect(last).toEqual({ type: 'shutdown', seq: expect.any(Number) as number, reason: 'SIGTERM' });
    const envelopes = rest.slice(0, -1) as Envelope[];
    expect(envelopes.length).toBeGreaterThan(0);
    envelopes.forEach((e, i) => expect(e.seq).toBe(first!.seq + i + 1));
    expect(last.seq).toBe(envelopes.at(-1)!.seq);
    expect(envelopes.at(-1)!.ops).toContainEqual({ op: 'replace', path: `/tasks/${id}/status`, value: 'interrupted' });
    const doc = (first as { state: KernelState }).state;
    for (const e of envelopes) fastJsonPatch.applyPatch(doc, e.ops as Operation[]);
    const seen = doc.tasks[id]!;
    expect(seen.status).toBe('interrupted');
    expect(seen.sessionStatus).toBe('open');
    expect(Object.values(seen.steps).map((st) => st.detail)).toContain('interrupted by shutdown (grace of 1000 ms over)');
    expect(Object.values(seen.toolCalls).length).toBeGreaterThan(0);
    expect(Object.values(seen.toolCalls).filter((c) => c.status === 'running')).toEqual([]);

    // One line per phase on stderr, and no secret.
    const stderr = s.stderr();
    expect(stderr).toContain('warden: shutting down: 1 task running, waiting up to 1 s');
    expect(stderr).toContain(`warden: interrupted ${id} (grace of 1000 ms over)`);
    expect(stderr).toMatch(/warden: stopped in \d+ ms/);
    expect(stderr).not.toContain(KEY);

    // The store after exit: interrupted as a crash-restart would mark it, session open, the stop audited.
    const store = openStore(s.data);
    try {
      const row = store.task(id)!;
      expect(row.status).toBe('interrupted');
      expect(row.error).toContain(`warden task resume ${id}`);
      expect(store.session(row.session_id!)?.status).toBe('open');
      expect(store.toolCalls(id).map((c) => c.status)).not.toContain('running');
      expect(store.steps(id).map((st) => st.step)).toContain('interrupted');
      expect(kernelStops(store)).toEqual([{ reason: 'SIGTERM', interrupted: [id], graceMs: 1000 }]);
    } finally {
      store.close();
    }
    // The WAL was folded into the database file at close.
    const wal = join(s.data, 'warden.db-wal');
    expect(!existsSync(wal) || statSync(wal).size === 0).toBe(true);
    const listed = await run(process.execPath, [warden, 'task', 'list', '--json', '--data-dir', s.data]);
    expect((JSON.parse(listed.stdout) as Array<{ id: string; status: string }>).find((t) => t.id === id)?.status).toBe('interrupted');

    // The next kernel finds it interrupted; once that kernel stops accepting work, resume, commit
    // and new tasks are refused with 503 E_SHUTTING_DOWN and nothing changes.
    const kernel = await Kernel.start({ dataDir: s.data, quiet: true, env: { ...process.env, OPENAI_BASE_URL: s.model.baseURL, WARDEN_API_KEY: KEY } });
    const app = await buildServer(kernel);
    try {
      const task = kernel.state.current.tasks[id]!;
      expect(task).toMatchObject({ status: 'interrupted', sessionStatus: 'open' });
      kernel.stopAccepting();
      const refused = [
        await app.inject({ method: 'POST', url: `/api/tasks/${id}/resume`, headers: AUTH }),
        await app.inject({ method: 'POST', url: `/api/sessions/${task.sessionId!}/commit`, headers: AUTH }),
        await app.inject({ method: 'POST', url: '/api/tasks', headers: AUTH, payload: { task: 'more work', workspace: s.ws } }),
      ];
      for (const res of refused) {
        expect(res.statusCode).toBe(503);
        expect(res.json()).toMatchObject({ error: 'E_SHUTTING_DOWN' });
      }
      expect(() => kernel.submitTask({ prompt: 'more work', workspace: s.ws })).toThrow(expect.objectContaining({ code: 'E_SHUTTING_DOWN' }));
      expect(kernel.state.current.tasks[id]).toMatchObject({ status: 'interrupted', sessionStatus: 'open' });
      expect(Object.keys(kernel.state.current.tasks)).toEqual([id]);
    } finally {
      await app.close();
      await kernel.close();
    }
  }, 120_000);

  it('SIGTERM during a task that ends within the grace: it succeeds, the process exits right after it, and work sent after the signal is refused, never queued', async () => {
    const s = await serve(10_000);
    const id = await s.submit('a slow task');
    await until(() => (s.model.requests.length > 0 ? true : undefined), 30_000, 'the inference request');
    // A request already on an open connection when the signal comes: headers begun, not finished.
    const late = connect(s.port, '127.0.0.1');
    await once(late, 'connect');
    late.write(`POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1:${s.port}\r\nAuthorization: Bearer ${KEY}\r\ncontent-type: application/json\r\n`);
    let answer = '';
    late.on('data', (chunk: Buffer) => (answer += chunk.toString('utf8')));
    const lateEnded = new Promise<void>((resolve) => {
      late.on('close', () => resolve());
      late.on('error', () => resolve());
    });

    const signalled = Date.now();
    s.child.kill('SIGTERM');
    await until(() => (s.stderr().includes('shutting down') ? true : undefined), 10_000, 'the shutdown to begin');
    const body = JSON.stringify({ task: 'sent after the signal', workspace: s.ws, model: 'scripted' });
    late.end(`content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    await lateEnded;
    expect(answer).toMatch(/^HTTP\/1\.1 503 /);
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: 'E_SHUTTING_DOWN', message: expect.stringMatching(/shutting down/) as string });
    // A new connection is not accepted at all (or, if it were, refused the same way).
    const fresh = await fetch(`${s.base}/api/tasks`, { method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body }).then(
      (r) => r.status,
      () => 'refused' as const,
    );
    expect([503, 'refused']).toContain(fresh);

    const exit = await s.exited;
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(exit.at - signalled).toBeLessThan(8000);
    const stderr = s.stderr();
    expect(stderr).toContain('warden: shutting down: 1 task running, waiting up to 10 s');
    expect(stderr).not.toContain('warden: interrupted');

    const store = openStore(s.data);
    try {
      const row = store.task(id)!;
      expect(row).toMatchObject({ status: 'succeeded', summary: 'finished slowly' });
      // The process waited for the task, and left soon after it, not at the grace deadline.
      const finished = Date.parse(row.finished_at!);
      expect(finished).toBeGreaterThan(signalled);
      expect(exit.at - finished).toBeLessThan(3000);
      // Nothing sent after the signal was queued and then dropped.
      expect(store.tasks().map((t) => t.id)).toEqual([id]);
      expect(s.model.requests).toHaveLength(1);
      expect(kernelStops(store)).toEqual([{ reason: 'SIGTERM', interrupted: [], graceMs: 10_000 }]);
    } finally {
      store.close();
    }
  }, 120_000);

  it('a second SIGTERM during the grace period interrupts running tasks at once, still flushing the store', async () => {
    const s = await serve(60_000);
    const id = await s.submit('please hang until the second signal');
    await until(() => (s.model.requests.length > 0 ? true : undefined), 30_000, 'the inference request');
    s.child.kill('SIGTERM');
    await until(() => (s.stderr().includes('waiting up to 60 s') ? true : undefined), 10_000, 'the grace period to begin');
    const second = Date.now();
    s.child.kill('SIGTERM');
    const exit = await s.exited;
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(exit.at - second).toBeLessThan(5000);
    expect(s.stderr()).toContain('warden: SIGTERM again: interrupting running tasks now');
    expect(s.stderr()).toContain(`warden: interrupted ${id} (grace cut short by a second signal)`);

    const store = openStore(s.data);
    try {
      expect(store.task(id)?.status).toBe('interrupted');
      expect(store.steps(id).map((st) => st.detail)).toContain('interrupted by shutdown (grace cut short by a second signal)');
      expect(kernelStops(store)).toEqual([{ reason: 'SIGTERM', interrupted: [id], graceMs: 60_000 }]);
    } finally {
      store.close();
    }
  }, 120_000);
});
