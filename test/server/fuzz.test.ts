// Hostile input at every route of a real kernel on a real port: thousands of malformed or
// oversized bodies, paths, query strings, headers, raw HTTP and WebSocket frames, with and
// without a key. Every answer must be a 4xx with a clear `{error, message}` (never a 5xx, never
// a crash), and afterwards the kernel's state document, store and audit chain must be intact.
// Replay one run with WARDEN_FUZZ_SEED=N.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'node:http';
import { connect } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import Database from 'better-sqlite3';
import type { FastifyInstance } from 'fastify';
import { Kernel } from '../../kernel/kernel.js';
import { buildServer } from '../../kernel/server/index.js';
import { verifyAudit } from '../../kernel/audit/index.js';
import { startScriptedServer, type ScriptedServer } from '../support/scripted-openai.js';
import { tempDir } from '../support/fixtures.js';
import { mulberry32 } from '../../bench/lib/random.js';

const SEED = Number(process.env['WARDEN_FUZZ_SEED'] ?? Date.now() % 2 ** 31);

const random = mulberry32(SEED);
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
const int = (n: number) => Math.floor(random() * n);

const KEY = `wdn_${randomBytes(32).toString('base64url')}`;
const BODY_LIMIT = 64 * 1024;

let backend: ScriptedServer;
let kernel: Kernel;
let app: FastifyInstance;
let port: number;
let dataDir: string;

beforeAll(async () => {
  backend = await startScriptedServer([{ content: 'done' }]);
  dataDir = tempDir('fuzz');
  writeFileSync(
    join(dataDir, 'warden.config.json'),
    JSON.stringify({ server: { rateLimit: { max: 1_000_000, timeWindowMs: 60_000 }, authFailuresPerMinute: 1_000_000, bodyLimitBytes: BODY_LIMIT, tasksPerKey: 100, streamsPerKey: 100 } }),
  );
  kernel = await Kernel.start({ dataDir, baseURL: backend.baseURL, quiet: true, env: { ...process.env, WARDEN_API_KEY: KEY } });
  app = await buildServer(kernel);
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as { port: number }).port;
});

afterAll(async () => {
  await app?.close();
  await kernel?.close();
  await backend?.close();
});

interface Answer {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

/** One HTTP request with exactly these bytes of path, headers and body (no normalisation). */
function send(method: string, path: string, headers: Record<string, string>, body?: string | Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers, insecureHTTPParser: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

/** Raw bytes on a fresh connection; resolves with the status line's code (0 when the server just closed). */
function sendRaw(bytes: string): Promise<number> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    socket.setTimeout(5000, () => socket.destroy());
    socket.on('data', (d) => {
      data += d.toString('latin1');
    });
    socket.on('close', () => resolve(Number(/^HTTP\/1\.[01] (\d{3})/.exec(data)?.[1] ?? 0)));
    socket.on('error', () => undefined);
    socket.end(bytes);
  });
}

const TASK_ID = 't-0badc0de';
const SESSION_ID = 's-0badc0de';
const ROUTES: Array<{ method: string; path: string; json?: boolean }> = [
  { method: 'GET', path: '/api/state' },
  { method: 'GET', path: '/api/tasks' },
  { method: 'POST', path: '/api/tasks', json: true },
  { method: 'GET', path: `/api/tasks/${TASK_ID}` },
  { method: 'POST', path: `/api/tasks/${TASK_ID}/resume`, json: true },
  { method: 'GET', path: '/api/sessions' },
  { method: 'GET', path: `/api/sessions/${SESSION_ID}/diff` },
  { method: 'POST', path: `/api/sessions/${SESSION_ID}/commit`, json: true },
  { method: 'POST', path: `/api/sessions/${SESSION_ID}/discard`, json: true },
  { method: 'GET', path: '/api/config' },
  { method: 'POST', path: '/api/login', json: true },
  { method: 'POST', path: '/api/logout', json: true },
  { method: 'GET', path: '/login' },
  { method: 'GET', path: '/metrics' },
  { method: 'GET', path: '/api/stream' },
  { method: 'GET', path: '/api/components' },
  { method: 'POST', path: '/api/components/read-file/call', json: true },
  { method: 'POST', path: '/api/components/no-such-tool/call', json: true },
];

const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);
/** Bodies that are not valid input for any route: malformed JSON, wrong shapes, patch-looking payloads, pollution attempts. */
function hostileBody(): string | Buffer {
  const choices: Array<() => string | Buffer> = [
    () => '{"task": "x", "workspace": ',
    () => '{',
    () => '',
    () => 'null',
    () => '[]',
    () => '"a string"',
    () => '12e999999',
    () => 'NaN',
    () => '\ufeff{"task": 1}',
    () => randomBytes(int(2048)),
    () => deep(30_000),
    () => JSON.stringify({ task: 1, workspace: true }),
    () => JSON.stringify({ task: '', workspace: '' }),
    () => JSON.stringify({ task: 'x', workspace: `/nonexistent/${randomBytes(6).toString('hex')}` }),
    () => JSON.stringify({ task: 'x', workspace: '/tmp', maxTurns: -1 }),
    () => JSON.stringify({ task: 'x', workspace: '/tmp', model: 'x'.repeat(10_000) }),
    () => JSON.stringify({ task: 'x'.repeat(200_000), workspace: '/tmp' }),
    () => JSON.stringify({ task: 'x', workspace: '/tmp', extra: 1 }),
    () => JSON.stringify([{ op: 'replace', path: '/tasks', value: {} }]),
    () => JSON.stringify([{ op: 'remove', path: '/kernel' }, { op: 'add', path: '/components/evil', value: { grants: '*' } }]),
    () => JSON.stringify({ op: 'add', path: '/tasks/-', value: 1 }),
    () => '{"__proto__": {"polluted": true}, "task": 1}',
    () => '{"constructor": {"prototype": {"polluted": true}}}',
    () => JSON.stringify({ key: 'wdn_not-a-key' }),
    () => JSON.stringify({ key: 'x'.repeat(100_000) }),
    () => JSON.stringify({ key: { $ne: null } }),
    () => 'x'.repeat(BODY_LIMIT + 1 + int(BODY_LIMIT)),
    () => `{"task": "${'\u0000\ud800'.repeat(100)}", "workspace": 7}`,
  ];
  return pick(choices)();
}

function hostilePath(base: string): string {
  const choices: Array<() => string> = [
    () => base,
    () => `${base}/../../../../etc/passwd`,
    () => `${base}%00`,
    () => `${base}/%zz`,
    () => `${base}?since=${pick(['-1', 'abc', '1e309', '', '99999999999999999999', '0x10', '%00'])}`,
    () => `${base}?path=${pick(['/tasks/../..', '%2e%2e', '/'.repeat(1000), 'x'])}&since=1&since=2`,
    () => `${base}?${'a=1&'.repeat(2000)}`,
    () => `${base}/${'a'.repeat(int(8000))}`,
    () => base.replace(/t-0badc0de|s-0badc0de/, pick(['t-', 'x', '..%2f..', 't-ZZZZZZZZ', '%E2%82%AC', 't-0badc0de0', 's-../../x'])),
    () => base.replace('/api/', '//api//'),
    () => `${base}#fragment`,
    () => base.toUpperCase(),
  ];
  return pick(choices)();
}

function hostileHeaders(withKey: boolean, json: boolean): Record<string, string> {
  const headers: Record<string, string> = {};
  const auth = pick([
    withKey ? `Bearer ${KEY}` : undefined,
    withKey ? `Bearer ${KEY}` : undefined,
    'Bearer ',
    'Bearer wdn_' + 'A'.repeat(43),
    `Basic ${Buffer.from('a:b').toString('base64')}`,
    `Bearer ${'x'.repeat(4000)}`,
    `bearer ${KEY.slice(0, -1)}`,
    undefined,
  ]);
  if (auth !== undefined) headers['authorization'] = auth;
  const type = json
    ? pick(['application/json', 'application/json', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json; charset=utf-16', undefined])
    : pick([undefined, 'application/json']);
  if (type !== undefined) headers['content-type'] = type;
  if (random() < 0.1) headers['cookie'] = pick(['warden_login=' + 'x'.repeat(300), 'warden_login=; warden_login=a', '=;;;', 'warden_login=%zz']);
  if (random() < 0.05) headers['origin'] = 'https://evil.example';
  return headers;
}

/** A 4xx must say what was wrong: `{error: E_..., message}` (the browser login page may answer in HTML). */
function expectClearError(answer: Answer, what: string): void {
  expect(answer.status, `${what} → ${answer.status} ${answer.body.slice(0, 200)}`).toBeLessThan(500);
  expect(answer.body, `${what}: the key is echoed`).not.toContain(KEY);
  if (answer.status >= 400 && String(answer.headers['content-type']).startsWith('text/html')) {
    expect(answer.body.length, what).toBeGreaterThan(20);
    return;
  }
  if (answer.status >= 400) {
    let body: { error?: unknown; message?: unknown };
    try {
      body = JSON.parse(answer.body);
    } catch {
      throw new Error(`${what} → ${answer.status} with a body that is not JSON: ${answer.body.slice(0, 200)}`);
    }
    expect(String(body.error), what).toMatch(/^E_[A-Z_]+$/);
    expect(typeof body.message === 'string' && body.message.length > 0, `${what}: message`).toBe(true);
  }
}

describe(`hostile input (seed ${SEED})`, () => {
  /** Worker counts of components change as pools shrink; tasks and the component set must not. */
  type Document = { tasks: unknown; components: Record<string, unknown> };
  let before: { tasks: unknown; components: string[]; rows: number };

  it('answers thousands of malformed requests at every route with a clear 4xx, never a 5xx', async () => {
    const fetched = (await (await fetch(`http://127.0.0.1:${port}/api/state`, { headers: { authorization: `Bearer ${KEY}` } })).json()) as { state: Document };
    before = { tasks: fetched.state.tasks, components: Object.keys(fetched.state.components).sort(), rows: kernel.store.tasks().length };
    const statuses = new Map<number, number>();
    const N = 4000;
    let done = 0;
    const one = async (): Promise<void> => {
      const route = pick(ROUTES);
      const method = random() < 0.85 ? route.method : pick(['PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'TRACE', 'PROPFIND']);
      const path = hostilePath(route.path);
      const withBody = method !== 'GET' && method !== 'HEAD' && (route.json || random() < 0.3);
      const body = withBody ? hostileBody() : undefined;
      const headers = hostileHeaders(random() < 0.8, Boolean(route.json));
      const what = `${method} ${path.slice(0, 120)} headers=${JSON.stringify(headers).replaceAll(KEY, 'KEY').slice(0, 300)} body=${body === undefined ? '-' : String(body).slice(0, 80)}`;
      const answer = await send(method, path, headers, body).catch((err: Error) => ({ status: -1, body: err.message, headers: {} }));
      // The server may answer 413 and close while an oversized body is still being written.
      if (answer.status === -1 && body !== undefined && body.length > BODY_LIMIT) {
        statuses.set(413, (statuses.get(413) ?? 0) + 1);
        return;
      }
      expect(answer.status, `${what}: ${answer.body}`).toBeGreaterThan(0);
      if (method !== 'HEAD') expectClearError(answer, what);
      else expect(answer.status, what).toBeLessThan(500);
      statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
    };
    const workers = Array.from({ length: 16 }, async () => {
      while (done < N) {
        done++;
        await one();
      }
    });
    await Promise.all(workers);
    // The mix really reached the kernel's handlers: validation errors, not only auth refusals.
    expect(statuses.get(400) ?? 0).toBeGreaterThan(100);
    expect(statuses.get(401) ?? 0).toBeGreaterThan(100);
    expect(statuses.get(404) ?? 0).toBeGreaterThan(50);
    expect(statuses.get(413) ?? 0).toBeGreaterThan(5);
    expect([...statuses.keys()].every((s) => s < 500)).toBe(true);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  }, 240_000);

  it('survives malformed HTTP on the wire: bad request lines, smuggling, oversized headers', async () => {
    const raw = [
      'GARBAGE\r\n\r\n',
      'GET /api/state HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      'POST /api/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n',
      `GET /api/state HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
      'GET /api/state HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\u0000x\r\n\r\n',
      'GET /api/state HTTP/9.9\r\nHost: x\r\n\r\n',
      `POST /api/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"task":`,
      'GET /../../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET http://evil.example/api/state HTTP/1.1\r\nHost: x\r\n\r\n',
    ];
    for (const bytes of raw) {
      const status = await sendRaw(bytes);
      // 0: the server closed the connection (a truncated body); anything else must be a 4xx.
      if (status !== 0) expect(status, JSON.stringify(bytes.slice(0, 80))).toBeGreaterThanOrEqual(400);
      expect(status, JSON.stringify(bytes.slice(0, 80))).toBeLessThan(500);
    }
  }, 60_000);

  it('keeps the patch stream up through malformed handshakes and frames', async () => {
    const url = (q = '') => `ws://127.0.0.1:${port}/api/stream${q}`;
    const auth = { headers: { authorization: `Bearer ${KEY}` } };
    // Handshakes: no key, odd `since` values. Each must either be refused with a 4xx or open with a snapshot.
    for (const q of ['', '?since=-1', '?since=abc', '?since=1e309', '?since=999999999999', '?since=0&since=1']) {
      const unauthorised = await new Promise<number>((resolve) => {
        const ws = new WebSocket(url(q));
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('open', () => resolve(101));
        ws.on('error', () => resolve(-1));
      });
      expect(unauthorised, `no key ${q}`).toBe(401);
      const first = await new Promise<{ type?: string; seq?: number }>((resolve, reject) => {
        const ws = new WebSocket(url(q), auth);
        ws.once('message', (data) => {
          resolve(JSON.parse(String(data)));
          ws.close();
        });
        ws.on('error', reject);
      });
      expect(first.type, q).toBe('snapshot');
    }
    // Frames: garbage, binary, patch-looking, oversized, many. The kernel may close the socket, but must not fall over.
    const ws = new WebSocket(url(), auth);
    await new Promise((resolve) => ws.once('open', resolve));
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    for (let i = 0; i < 500; i++) {
      ws.send(pick([
        () => 'not json',
        () => randomBytes(int(512)),
        () => JSON.stringify([{ op: 'remove', path: '/tasks' }]),
        () => JSON.stringify({ type: 'subscribe', path: '/'.repeat(5000) }),
        () => '{'.repeat(10_000),
      ])());
    }
    ws.send(Buffer.alloc(kernel.config.server.wsMaxPayloadBytes + 1, 1));
    expect(await closed).toBe(1009);
    const again = new WebSocket(url(), auth);
    const snapshot = await new Promise<{ type?: string }>((resolve) => again.once('message', (d) => resolve(JSON.parse(String(d)))));
    expect(snapshot.type).toBe('snapshot');
    again.close();
  }, 60_000);

  it('leaves the state document, the store and the audit chain intact', async () => {
    const health = await fetch(`http://127.0.0.1:${port}/health`);
    expect(health.status).toBe(200);
    const after = (await (await fetch(`http://127.0.0.1:${port}/api/state`, { headers: { authorization: `Bearer ${KEY}` } })).json()) as { state: Document };
    expect(after.state.tasks).toEqual(before.tasks);
    expect(Object.keys(after.state.components).sort()).toEqual(before.components);
    expect(kernel.store.tasks().length).toBe(before.rows);
    const db = new Database(join(dataDir, 'warden.db'), { readonly: true });
    try {
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    } finally {
      db.close();
    }
    const audit = verifyAudit(kernel.store);
    expect(audit.ok, JSON.stringify(audit.firstBad)).toBe(true);
  }, 30_000);
});
