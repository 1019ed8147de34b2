// Limits per API key on a real kernel and a real port, with small limits set in the config file:
// the request rate (429 with Retry-After, separate budgets per key, /health exempt, audited once),
// open WebSocket streams, tasks queued or running (a hanging model keeps them running), the body
// size (413 with a clear error) and the WebSocket frame size (1009, and the kernel carries on).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import WebSocket from 'ws';
import type { FastifyInstance } from 'fastify';
import { Kernel } from '../../kernel/kernel.js';
import { buildServer } from '../../kernel/server/index.js';
import { startScriptedServer, type ScriptedServer } from '../support/scripted-openai.js';
import { authed } from '../support/auth.js';
import { tempDir, workspace } from '../support/fixtures.js';

const RATE_MAX = 6;
const STREAMS_PER_KEY = 2;
const BODY_LIMIT = 4096;
const WS_MAX_PAYLOAD = 1024;

let model: ScriptedServer;
let kernel: Kernel;
let app: FastifyInstance;
let base: string;
const ws = workspace({ 'a.txt': 'hello\n' });

beforeAll(async () => {
  // A task whose prompt says "hang" waits on the model until the server closes; others finish at once.
  model = await startScriptedServer((_n, body) => (body.messages.some((m) => m.role === 'user' && m.content?.includes('hang')) ? { hang: true } : { content: 'done' }));
  const dataDir = tempDir('data');
  writeFileSync(
    join(dataDir, 'warden.config.json'),
    JSON.stringify({
      server: { rateLimit: { max: RATE_MAX, timeWindowMs: 60_000 }, streamsPerKey: STREAMS_PER_KEY, tasksPerKey: 1, bodyLimitBytes: BODY_LIMIT, wsMaxPayloadBytes: WS_MAX_PAYLOAD },
    }),
  );
  kernel = await Kernel.start({ dataDir, baseURL: model.baseURL, quiet: true });
  app = await buildServer(kernel);
  await app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
});

afterAll(async () => {
  await app?.close();
  await model?.close(); // fails the hanging inference requests, so their tasks end
  await kernel?.close();
});

/** Open the patch stream with `headers`: the open socket, or the HTTP status and body of a refused upgrade. */
function openStream(headers: Record<string, string>): Promise<{ socket?: WebSocket; status: number; body?: { error: string; message: string } }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${base.replace('http', 'ws')}/api/stream`, { headers });
    socket.once('message', () => resolve({ socket, status: 101 }));
    socket.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    socket.once('error', (err) => {
      if (!/Unexpected server response/.test(err.message)) reject(err);
    });
  });
}

function closeStream(socket: WebSocket): Promise<void> {
  return new Promise((resolve) => {
    socket.once('close', () => resolve());
    socket.close();
  });
}

function postTask(headers: Record<string, string>, task: string): Promise<Response> {
  return fetch(`${base}/api/tasks`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify({ task, workspace: ws, model: 'scripted' }) });
}

/** Audit entries of kind `limit` for `limit` (`rate`, `tasks`, `streams`). */
function limitAudits(limit: string): Array<Record<string, unknown>> {
  return kernel.store
    .auditEvents(1000, { kind: 'limit' })
    .map((e) => JSON.parse(e.detail) as Record<string, unknown>)
    .filter((d) => d['limit'] === limit);
}

describe('request rate per key', () => {
  it('the request past the budget is 429 with a numeric Retry-After; another key has its own budget; refusals are audited once', async () => {
    const a = authed(kernel, 'rate-a');
    const b = authed(kernel, 'rate-b');
    for (let i = 0; i < RATE_MAX; i++) expect((await fetch(`${base}/api/state`, { headers: a.headers })).status).toBe(200);
    const refused = await fetch(`${base}/api/state`, { headers: a.headers });
    expect(refused.status).toBe(429);
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60).toBe(true);
    const body = (await refused.json()) as { error: string; message: string };
    expect(body.error).toBe('E_RATE_LIMITED');
    expect(body.message).toMatch(/^rate limit reached: 6 requests per 60 s \(server\.rateLimit\); retry in (\d+) s$/);
    expect(body.message.endsWith(`retry in ${retryAfter} s`)).toBe(true);
    // Other routes share the key's budget; the other key does not.
    expect((await fetch(`${base}/api/tasks`, { headers: a.headers })).status).toBe(429);
    expect((await fetch(`${base}/api/state`, { headers: b.headers })).status).toBe(200);
    expect(limitAudits('rate').filter((d) => d['keyId'] === a.keyId)).toEqual([{ limit: 'rate', max: RATE_MAX, timeWindowMs: 60_000, keyId: a.keyId }]);
    expect(limitAudits('rate').filter((d) => d['keyId'] === b.keyId)).toEqual([]);
  });

  it('GET /health is never limited, with or without a key', async () => {
    const c = authed(kernel, 'rate-health');
    for (let i = 0; i < RATE_MAX * 3; i++) {
      expect((await fetch(`${base}/health`)).status).toBe(200);
      expect((await fetch(`${base}/health`, { headers: c.headers })).status).toBe(200);
    }
    // /health did not use up the key's budget either.
    expect((await fetch(`${base}/api/state`, { headers: c.headers })).status).toBe(200);
  });
});

describe('open streams per key', () => {
  it('the stream past the limit is refused with 429 before the upgrade; closing one frees its slot; keys are separate', async () => {
    const c = authed(kernel, 'streams-c');
    const d = authed(kernel, 'streams-d');
    const first = await openStream(c.headers);
    const second = await openStream(c.headers);
    expect([first.status, second.status]).toEqual([101, 101]);
    const third = await openStream(c.headers);
    expect(third.status).toBe(429);
    expect(third.body).toEqual({ error: 'E_LIMIT_STREAMS', message: `${STREAMS_PER_KEY} streams are open for this key, the limit (server.streamsPerKey = ${STREAMS_PER_KEY}); close one first` });
    const other = await openStream(d.headers);
    expect(other.status).toBe(101);
    await closeStream(first.socket!);
    await new Promise((r) => setTimeout(r, 100)); // the server sees the TCP close just after the client
    const again = await openStream(c.headers);
    expect(again.status).toBe(101);
    expect(limitAudits('streams').filter((e) => e['keyId'] === c.keyId)).toHaveLength(1);
    await Promise.all([second.socket!, again.socket!, other.socket!].map(closeStream));
  });
});

describe('tasks queued or running per key', () => {
  it('a second task while the first runs is 429 E_LIMIT_TASKS; another key still gets 201; a finished task frees the slot', async () => {
    const e = authed(kernel, 'tasks-e');
    const f = authed(kernel, 'tasks-f');
    // Key f: a quick task holds its one slot until it finishes (the supervisor runs one task at a time,
    // so this comes before anything hangs).
    const quick = await postTask(f.headers, 'finish at once');
    expect(quick.status).toBe(201);
    const done = await kernel.waitForTask(((await quick.json()) as { id: string }).id);
    expect(done.status).toBe('succeeded');

    const first = await postTask(e.headers, 'hang on the model');
    expect(first.status).toBe(201);
    const { id } = (await first.json()) as { id: string };
    expect(kernel.store.task(id)?.key_id).toBe(e.keyId);
    const second = await postTask(e.headers, 'hang again');
    expect(second.status).toBe(429);
    expect(await second.json()).toEqual({ error: 'E_LIMIT_TASKS', message: 'this key has 1 tasks queued or running, the limit (server.tasksPerKey = 1); wait for one to finish' });
    expect(limitAudits('tasks')).toEqual([{ limit: 'tasks', max: 1, keyId: e.keyId }]);
    // Key f's finished task no longer counts; its new one queues behind the hanging one.
    expect((await postTask(f.headers, 'queue behind it')).status).toBe(201);
    expect(kernel.store.activeTasks(e.keyId)).toBe(1);
    expect(kernel.store.activeTasks(f.keyId)).toBe(1);
    expect((await postTask(f.headers, 'one too many')).status).toBe(429);
  });
});

describe('body and frame size', () => {
  it('a body past server.bodyLimitBytes is 413 E_TOO_LARGE naming the limit, with or without a content-length', async () => {
    const g = authed(kernel, 'size-g');
    const big = JSON.stringify({ task: 'x'.repeat(BODY_LIMIT), workspace: ws });
    const res = await fetch(`${base}/api/tasks`, { method: 'POST', headers: { ...g.headers, 'content-type': 'application/json' }, body: big });
    expect(res.status).toBe(413);
    expect(await res.json()).toEqual({ error: 'E_TOO_LARGE', message: `the request body is larger than ${BODY_LIMIT} bytes (server.bodyLimitBytes)` });
    // Chunked, so the server only finds out while reading.
    const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(`${base}/api/tasks`, { method: 'POST', headers: { ...g.headers, 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (r) => {
        let body = '';
        r.on('data', (c: Buffer) => (body += c));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      for (let i = 0; i < 8; i++) req.write(big.slice(i * 1024, (i + 1) * 1024));
      req.end(big.slice(8 * 1024));
    });
    expect(chunked.status).toBe(413);
    expect(JSON.parse(chunked.body)).toMatchObject({ error: 'E_TOO_LARGE' });
    expect(kernel.store.activeTasks(g.keyId)).toBe(0);
  });

  it('a WebSocket frame past server.wsMaxPayloadBytes closes the socket with 1009; the slot is freed and the kernel answers', async () => {
    const h = authed(kernel, 'size-h');
    const opened = await openStream(h.headers);
    expect(opened.status).toBe(101);
    const closed = new Promise<number>((resolve) => opened.socket!.once('close', (code) => resolve(code)));
    opened.socket!.send('x'.repeat(WS_MAX_PAYLOAD + 1));
    expect(await closed).toBe(1009);
    expect((await fetch(`${base}/health`)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 100));
    // Both of the key's slots are free again.
    const [one, two] = await Promise.all([openStream(h.headers), openStream(h.headers)]);
    expect([one.status, two.status]).toEqual([101, 101]);
    await Promise.all([one.socket!, two.socket!].map(closeStream));
  });
});
