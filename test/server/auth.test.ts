// Authentication against a real kernel on a real port: every protected route (enumerated from the
// server's own route table, plus the WebSocket and /metrics) refuses a missing, wrong or revoked
// key and accepts a good Bearer key, WARDEN_API_KEY and the web login cookie; keys are stored as
// hashes only and never reach the log or the audit table; `warden key …` and `warden serve` as
// child processes (a key revoked by the CLI fails on the running kernel at once; the first start
// prints a key exactly once; a non-loopback host without auth is refused).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import pino from 'pino';
import WebSocket from 'ws';
import type { FastifyInstance } from 'fastify';
import { Kernel } from '../../kernel/kernel.js';
import { ApiKeys } from '../../kernel/auth/index.js';
import { buildServer } from '../../kernel/server/index.js';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import { authed, envKey } from '../support/auth.js';
import { tempDir } from '../support/fixtures.js';
import { freePort } from '../support/net.js';

const run = promisify(execFile);
const warden = join(PACKAGE_ROOT, 'bin/warden.js');
const KEY_PATTERN = /wdn_[A-Za-z0-9_-]{43}/g;

let kernel: Kernel;
let app: FastifyInstance;
let base: string;
let data: string;
const logged: string[] = [];
/** Every credential this file sees; none may reach the store in clear, the log or the audit table. */
const secrets: string[] = [];
const env = envKey();
let good: ReturnType<typeof authed>;

function cli(args: string[]) {
  return run(process.execPath, [warden, ...args], { timeout: 60_000 }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

/** Every route of `app` as `{method, path}` (HEAD and static wildcards left out), from its printed route tree. */
function routesOf(server: FastifyInstance): Array<{ method: string; path: string }> {
  const routes: Array<{ method: string; path: string }> = [];
  const stack: string[] = [];
  for (const line of server.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^([│ ]*)[├└]── (\S+)(?: \(([^)]*)\))?/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length / 4;
    const path = (depth > 0 ? stack[depth - 1]! : '') + m[2]!;
    stack[depth] = path;
    stack.length = depth + 1;
    for (const method of (m[3] ?? '').split(', ').filter(Boolean)) {
      if (method !== 'HEAD' && !path.includes('*')) routes.push({ method, path });
    }
  }
  return routes;
}

const PUBLIC = ['GET /health', 'GET /login', 'POST /api/login', 'POST /api/logout'];

/** One request to a route with `headers`; path parameters get well-formed ids of things that do not exist. */
async function call(route: { method: string; path: string }, headers: Record<string, string>): Promise<Response> {
  const path = route.path.replace(/:(\w+)/g, (_m, name: string) => (route.path.includes('/sessions/') ? 's-00000000' : route.path.includes('/tasks/') ? 't-00000000' : `no-${name}`));
  const body = route.method === 'GET' ? undefined : '{}';
  return fetch(`${base}${path}`, { method: route.method, headers: { ...headers, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body } : {}), redirect: 'manual' });
}

/** Open the patch stream with `headers`: the HTTP status of a refused upgrade, or 101 and the first message. */
function openStream(headers: Record<string, string>): Promise<{ status: number; first?: { type?: string } }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base.replace('http', 'ws')}/api/stream`, { headers });
    ws.once('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode ?? 0 });
      res.resume();
      ws.terminate();
    });
    ws.once('message', (msg) => {
      // Still open a moment later: nothing meant for refused upgrades touched an accepted one.
      setTimeout(() => {
        resolve({ status: ws.readyState === WebSocket.OPEN ? 101 : -1, first: JSON.parse(String(msg)) as { type?: string } });
        ws.close();
      }, 200);
    });
    ws.once('error', (err) => {
      if (!err.message.startsWith('Unexpected server response')) reject(err);
    });
  });
}

/** Log in through the one-time URL; the cookie's token. */
async function loginWithUrl(token: string): Promise<{ res: Response; cookie: string | undefined }> {
  const res = await fetch(`${base}/login?token=${token}`, { redirect: 'manual' });
  const setCookie = res.headers.getSetCookie().find((c) => c.startsWith('warden_login='));
  return { res, cookie: setCookie?.split(';')[0]!.slice('warden_login='.length) };
}

const withCookie = (token: string) => ({ cookie: `warden_login=${token}` });

beforeAll(async () => {
  data = tempDir('data');
  // This file sends hundreds of bad credentials from one address; the limit on that has its own test.
  writeFileSync(join(data, 'warden.config.json'), JSON.stringify({ server: { authFailuresPerMinute: 100_000 } }));
  const sink = new Writable({ write: (chunk, _enc, done) => (logged.push(String(chunk)), done()) });
  kernel = await Kernel.start({ dataDir: data, logger: pino({ level: 'debug' }, sink), env: { ...process.env, ...env.env } });
  app = await buildServer(kernel);
  await app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  good = authed(kernel, 'main');
  secrets.push(env.key, good.key);
});

afterAll(async () => {
  await app?.close();
  await kernel?.close();
});

describe('every protected route', () => {
  it('the route table holds the REST routes, the WebSocket and /metrics, and only the login routes and /health are public', () => {
    const names = routesOf(app).map((r) => `${r.method} ${r.path}`);
    expect(names).toEqual(expect.arrayContaining(['GET /metrics', 'GET /api/state', 'GET /api/stream', 'POST /api/tasks', 'GET /api/tasks/:id', 'POST /api/sessions/:id/commit', ...PUBLIC]));
    expect(names.filter((n) => !n.startsWith('GET /api/') && !n.startsWith('POST /api/') && !n.startsWith('PUT /api/') && !n.startsWith('DELETE /api/') && !n.startsWith('PATCH /api/')).sort())
      .toEqual(['GET /health', 'GET /login', 'GET /metrics']);
  });

  it('answers 401 with WWW-Authenticate and a way to get a key without a key, with a wrong key or a malformed header', async () => {
    const protectedRoutes = [...routesOf(app).filter((r) => !PUBLIC.includes(`${r.method} ${r.path}`)), { method: 'GET', path: '/api/no-such-route' }];
    expect(protectedRoutes.length).toBeGreaterThanOrEqual(10);
    const wrong = `wdn_${'A'.repeat(43)}`;
    for (const route of protectedRoutes) {
      for (const headers of [{}, bearer(wrong), bearer(good.key.slice(0, -1)), { authorization: `Basic ${good.key}` }, withCookie('not-a-login')]) {
        const res = await call(route, headers);
        expect(res.status, `${route.method} ${route.path} ${JSON.stringify(Object.keys(headers))}`).toBe(401);
        expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
        const body = (await res.json()) as { error: string; message: string };
        expect(body.error).toBe('E_UNAUTHORIZED');
        expect(body.message).toContain('warden key create NAME');
      }
    }
  });

  it('accepts a good Bearer key, WARDEN_API_KEY and the login cookie on every one of them', async () => {
    const { cookie } = await loginWithUrl(kernel.keys.createLoginToken(good.keyId));
    secrets.push(cookie!);
    for (const route of routesOf(app).filter((r) => !PUBLIC.includes(`${r.method} ${r.path}`))) {
      for (const headers of [good.headers, env.headers, withCookie(cookie!)]) {
        const res = await call(route, headers);
        expect([401, 403], `${route.method} ${route.path}`).not.toContain(res.status);
        expect(res.status).toBeLessThan(500);
      }
    }
    const metrics = await fetch(`${base}/metrics`, { headers: good.headers });
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('# TYPE');
  });

  it('GET /health and the web UI files stay open; paths that only look public do not', async () => {
    expect((await fetch(`${base}/health`)).status).toBe(200);
    const index = await fetch(`${base}/`);
    expect(index.status).toBe(200);
    const html = await index.text();
    expect(html).toContain('id="app"');
    const script = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    expect((await fetch(`${base}${script}`)).status).toBe(200);
    // A client-side route of the UI is a page load too (index.html), without a login.
    expect(await (await fetch(`${base}/tasks/t-12345678`, { headers: { accept: 'text/html' } })).text()).toContain('id="app"');
    for (const path of ['/%61pi/state', '/api/../api/state', '/metrics?x=1', '/API/state', '/api/', '/api']) {
      expect((await fetch(`${base}${path}`)).status, path).toBe(401);
    }
  });

  it('the WebSocket: refused without a key or with a wrong one, open with a Bearer key, WARDEN_API_KEY or the cookie; the cookie from another origin is refused', async () => {
    expect((await openStream({})).status).toBe(401);
    expect((await openStream(bearer(`wdn_${'B'.repeat(43)}`))).status).toBe(401);
    expect(await openStream(good.headers)).toMatchObject({ status: 101, first: { type: 'snapshot' } });
    expect(await openStream(env.headers)).toMatchObject({ status: 101, first: { type: 'snapshot' } });
    const { cookie } = await loginWithUrl(kernel.keys.createLoginToken(good.keyId));
    secrets.push(cookie!);
    const host = base.slice('http://'.length);
    expect(await openStream({ ...withCookie(cookie!), origin: base })).toMatchObject({ status: 101, first: { type: 'snapshot' } });
    expect((await openStream({ ...withCookie(cookie!), origin: 'https://evil.example' })).status).toBe(403);
    expect((await openStream({ ...withCookie(cookie!), origin: 'null' })).status).toBe(403);
    // The same check on plain requests with the cookie.
    expect((await fetch(`${base}/api/state`, { headers: { ...withCookie(cookie!), origin: 'https://evil.example' } })).status).toBe(403);
    expect((await fetch(`${base}/api/state`, { headers: { ...withCookie(cookie!), origin: `http://${host}` } })).status).toBe(200);
  });

  it('a refused upgrade gets its 401 and its socket closed by the server, even when the client keeps it open', async () => {
    const socket = connect(Number(new URL(base).port), '127.0.0.1');
    let answer = '';
    socket.on('data', (b) => (answer += String(b)));
    const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now())));
    socket.write('GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    const sent = Date.now();
    expect((await closed) - sent).toBeLessThan(2000);
    expect(answer).toMatch(/^HTTP\/1\.1 401 /);
    expect(answer).toContain('E_UNAUTHORIZED');
  });
});

describe('web login', () => {
  it('the one-time URL sets an HttpOnly, SameSite=Strict cookie and redirects to /; a second use is refused', async () => {
    const token = kernel.keys.createLoginToken(good.keyId);
    secrets.push(token);
    const { res, cookie } = await loginWithUrl(token);
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/');
    const attributes = res.headers.getSetCookie()[0]!.split(/; */).slice(1).map((a) => a.toLowerCase());
    expect(attributes).toEqual(expect.arrayContaining(['httponly', 'samesite=strict', 'path=/', `max-age=${7 * 86_400}`]));
    expect(attributes).not.toContain('secure'); // plain http: a Secure cookie would never come back
    expect(cookie).toMatch(/^[A-Za-z0-9_-]{43}$/);
    secrets.push(cookie!);
    expect((await fetch(`${base}/api/state`, { headers: withCookie(cookie!) })).status).toBe(200);

    const again = await loginWithUrl(token);
    expect(again.res.status).toBe(401);
    expect(again.cookie).toBeUndefined();
    const page = await again.res.text();
    expect(page).toContain('warden key create');
    expect(page).not.toContain(token);
    expect((await loginWithUrl('made-up-token')).res.status).toBe(401);
    expect((await fetch(`${base}/login`, { redirect: 'manual' })).status).toBe(401);
    // A HEAD (a link checker, a preview) does not spend a token.
    const unspent = kernel.keys.createLoginToken(good.keyId);
    secrets.push(unspent);
    expect((await fetch(`${base}/login?token=${unspent}`, { method: 'HEAD', redirect: 'manual' })).status).not.toBe(303);
    expect((await loginWithUrl(unspent)).res.status).toBe(303);
  });

  it('POST /api/login takes a key and sets the cookie; a wrong key is 401, a bad body 400 naming the field; logout ends the login', async () => {
    const res = await fetch(`${base}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: good.key }) });
    expect(res.status).toBe(204);
    const setCookie = res.headers.getSetCookie()[0]!;
    expect(setCookie).toMatch(/HttpOnly/);
    expect(setCookie).toMatch(/SameSite=Strict/);
    const cookie = setCookie.split(';')[0]!.slice('warden_login='.length);
    secrets.push(cookie);
    expect((await fetch(`${base}/api/tasks`, { headers: withCookie(cookie) })).status).toBe(200);

    const post = (body: unknown) => fetch(`${base}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const wrong = await post({ key: `wdn_${'C'.repeat(43)}` });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.getSetCookie()).toEqual([]);
    const missing = await post({});
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as { message: string }).message).toMatch(/^key:/);
    expect((await post({ key: good.key, extra: 1 })).status).toBe(400);
    expect((await post({ key: 42 })).status).toBe(400);

    const out = await fetch(`${base}/api/logout`, { method: 'POST', headers: withCookie(cookie) });
    expect(out.status).toBe(204);
    expect(out.headers.getSetCookie()[0]).toMatch(/^warden_login=;.*(Max-Age=0|Expires=Thu, 01 Jan 1970)/);
    expect((await fetch(`${base}/api/tasks`, { headers: withCookie(cookie) })).status).toBe(401);
  });

  it('a login survives a restart (stored as a hash with its expiry) and ends when it expires or its key is revoked', async () => {
    const k = authed(kernel, 'short-lived');
    secrets.push(k.key);
    const { cookie } = await loginWithUrl(kernel.keys.createLoginToken(k.keyId));
    secrets.push(cookie!);
    // What a restarted kernel constructs over the same store.
    expect(new ApiKeys(kernel.store).verifyLogin(cookie!)).toBe(k.keyId);
    const row = kernel.store.db.prepare('SELECT * FROM web_logins WHERE hash = ?').get(sha256(cookie!)) as { key_id: string; expires_at: string };
    expect(row.key_id).toBe(k.keyId);
    expect(Date.parse(row.expires_at) - Date.now()).toBeGreaterThan(7 * 86_400_000 - 60_000);

    kernel.store.db.prepare('UPDATE web_logins SET expires_at = ? WHERE hash = ?').run(new Date(Date.now() - 1000).toISOString(), sha256(cookie!));
    expect((await fetch(`${base}/api/state`, { headers: withCookie(cookie!) })).status).toBe(401);

    const { cookie: second } = await loginWithUrl(kernel.keys.createLoginToken(k.keyId));
    secrets.push(second!);
    expect((await fetch(`${base}/api/state`, { headers: withCookie(second!) })).status).toBe(200);
    kernel.keys.revoke(k.keyId);
    expect((await fetch(`${base}/api/state`, { headers: withCookie(second!) })).status).toBe(401);
    // A URL token made before the revocation cannot log in after it.
    const token = kernel.keys.createLoginToken(good.keyId);
    const revokedToken = kernel.keys.createLoginToken(k.keyId);
    secrets.push(token, revokedToken);
    expect((await loginWithUrl(revokedToken)).res.status).toBe(401);
    expect((await loginWithUrl(token)).res.status).toBe(303);
  });
});

describe('keys', () => {
  it('warden key create|list|revoke as child processes on the running kernel: rotation, revocation at once', async () => {
    const made = await cli(['key', 'create', 'ci', '--json', '--data-dir', data]);
    expect(made.stderr).toBe('');
    expect(made.code).toBe(0);
    const ci = JSON.parse(made.stdout) as { id: string; name: string; key: string; prefix: string };
    secrets.push(ci.key);
    expect(ci).toMatchObject({ id: expect.stringMatching(/^k-[0-9a-f]{8}$/) as string, name: 'ci', key: expect.stringMatching(/^wdn_[A-Za-z0-9_-]{43}$/) as string });
    expect(ci.prefix).toBe(ci.key.slice(4, 12));
    expect((await fetch(`${base}/api/state`, { headers: bearer(ci.key) })).status).toBe(200);

    // Rotation: the new key works beside the old, then the old is revoked and only the new works.
    const next = JSON.parse((await cli(['key', 'create', 'ci-2', '--json', '--data-dir', data])).stdout) as { id: string; key: string };
    secrets.push(next.key);
    expect((await fetch(`${base}/api/state`, { headers: bearer(next.key) })).status).toBe(200);
    expect((await fetch(`${base}/api/state`, { headers: bearer(ci.key) })).status).toBe(200);
    const revoked = await cli(['key', 'revoke', 'ci', '--json', '--data-dir', data]);
    expect(revoked.code).toBe(0);
    expect(JSON.parse(revoked.stdout)).toMatchObject({ id: ci.id, name: 'ci', revokedAt: expect.any(String) as string });
    expect((await fetch(`${base}/api/state`, { headers: bearer(ci.key) })).status).toBe(401);
    expect((await openStream(bearer(ci.key))).status).toBe(401);
    expect((await fetch(`${base}/metrics`, { headers: bearer(ci.key) })).status).toBe(401);
    expect((await fetch(`${base}/api/state`, { headers: bearer(next.key) })).status).toBe(200);

    const listed = await cli(['key', 'list', '--json', '--data-dir', data]);
    expect(listed.code).toBe(0);
    const rows = JSON.parse(listed.stdout) as Array<{ id: string; name: string; prefix: string; lastUsedAt: string | null; revokedAt: string | null }>;
    expect(rows.map((r) => [r.name, r.revokedAt === null])).toEqual(expect.arrayContaining([['main', true], ['ci', false], ['ci-2', true]]));
    expect(rows.find((r) => r.name === 'main')!.lastUsedAt).not.toBeNull();
    for (const s of secrets) expect(listed.stdout).not.toContain(s);
    expect(Object.keys(rows[0]!).sort()).toEqual(['createdAt', 'id', 'lastUsedAt', 'name', 'prefix', 'revokedAt']);

    const unknown = await cli(['key', 'revoke', 'nobody', '--data-dir', data]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^warden: no key with id or active name "nobody"/);
    const badName = await cli(['key', 'create', 'two words', '--data-dir', data]);
    expect(badName.code).toBe(1);
    expect(badName.stderr).toMatch(/key name/);
    const duplicate = await cli(['key', 'create', 'ci-2', '--data-dir', data]);
    expect(duplicate.code).toBe(1);
    expect(duplicate.stderr).toMatch(/already named "ci-2"/);
  });

  it('keys and logins are stored as sha256 only, and no credential reaches the log or the audit table', () => {
    const db = new Database(join(data, 'warden.db'), { readonly: true });
    try {
      const keys = db.prepare('SELECT * FROM api_keys').all() as Array<{ hash: string }>;
      const logins = db.prepare('SELECT * FROM web_logins').all();
      const audit = db.prepare('SELECT * FROM audit').all() as Array<{ kind: string; detail: string }>;
      expect(keys.length).toBeGreaterThanOrEqual(4);
      expect(keys.map((k) => k.hash)).toEqual(expect.arrayContaining([sha256(good.key)]));
      const stored = JSON.stringify({ keys, logins, audit });
      const log = logged.join('');
      expect(secrets.length).toBeGreaterThan(10);
      for (const s of secrets) {
        expect(stored).not.toContain(s);
        expect(log).not.toContain(s);
      }
      expect(audit.map((a) => a.kind)).toEqual(expect.arrayContaining(['key.create', 'key.revoke', 'auth.login', 'auth.failed']));
      expect(JSON.parse(audit.find((a) => a.kind === 'auth.failed')!.detail)).toMatchObject({ source: '127.0.0.1' });
    } finally {
      db.close();
    }
  });
});

/** `warden serve` as a child, with its output collected. */
function serve(dataDir: string, args: string[], extraEnv: Record<string, string> = {}) {
  const out = { stdout: '', stderr: '' };
  const childEnv = { ...process.env, ...extraEnv };
  delete childEnv['WARDEN_API_KEY'];
  const child: ChildProcess = spawn(process.execPath, [warden, 'serve', '--data-dir', dataDir, ...args], { env: { ...childEnv, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (b) => (out.stdout += String(b)));
  child.stderr!.on('data', (b) => (out.stderr += String(b)));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const until = async (pattern: RegExp, ms = 90_000) => {
    const end = Date.now() + ms;
    while (!pattern.test(out.stdout)) {
      if (child.exitCode !== null || Date.now() > end) throw new Error(`serve did not print ${pattern}; stdout:\n${out.stdout}\nstderr:\n${out.stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const stop = async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(timer);
  };
  return { child, out, exited, until, stop };
}

/** A fresh data directory (its kernel uses the suite's shared transpile cache, `WARDEN_TRANSPILE_CACHE`). */
function warmDataDir(config?: unknown): string {
  const dir = tempDir('serve');
  if (config) writeFileSync(join(dir, 'warden.config.json'), JSON.stringify(config));
  return dir;
}

describe('guessing keys', () => {
  it('an address that failed authFailuresPerMinute times gets 429 with Retry-After, even with a good key; another address does not', async () => {
    const dir = warmDataDir({ server: { authFailuresPerMinute: 3 } });
    const limited = await Kernel.start({ dataDir: dir, quiet: true });
    const server = await buildServer(limited);
    await server.listen({ host: '127.0.0.1', port: 0 });
    const port = (server.server.address() as { port: number }).port;
    try {
      const { headers } = authed(limited);
      const from = (localAddress: string, auth: Record<string, string>, path = '/api/state', method = 'GET', body?: string) =>
        new Promise<{ status: number; retryAfter?: string; body: string }>((resolve, reject) => {
          const req = request({ host: '127.0.0.1', port, path, method, localAddress, headers: { ...auth, ...(body ? { 'content-type': 'application/json' } : {}) } }, (res) => {
            let text = '';
            res.on('data', (c) => (text += c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] as string | undefined, body: text }));
          });
          req.on('error', reject);
          req.end(body);
        });
      expect((await from('127.0.0.1', bearer('wdn_wrong'))).status).toBe(401);
      expect((await from('127.0.0.1', {}, '/api/login', 'POST', JSON.stringify({ key: 'wdn_wrong' }))).status).toBe(401);
      expect((await from('127.0.0.1', {}, '/login?token=nope')).status).toBe(401);
      const blocked = await from('127.0.0.1', headers);
      expect(blocked.status).toBe(429);
      expect(Number(blocked.retryAfter)).toBeGreaterThan(0);
      expect(Number(blocked.retryAfter)).toBeLessThanOrEqual(60);
      expect(JSON.parse(blocked.body)).toMatchObject({ error: 'E_RATE_LIMITED' });
      expect((await from('127.0.0.1', {}, '/api/login', 'POST', JSON.stringify({ key: 'wdn_wrong' }))).status).toBe(429);
      // Open routes stay open; another client address is not affected.
      expect((await from('127.0.0.1', {}, '/health')).status).toBe(200);
      expect((await from('127.0.0.2', headers)).status).toBe(200);
    } finally {
      await server.close();
      await limited.close();
    }
  }, 120_000);
});

describe('warden serve', () => {
  it('the first start prints a key exactly once, and it works; the second prints none; both print a one-time login URL; nothing reaches the log', async () => {
    const dir = warmDataDir();
    const port = await freePort();
    const first = serve(dir, ['--port', String(port)]);
    let printed: string;
    let firstUrl: string;
    try {
      await first.until(/login\?token=/);
      const keys = first.out.stdout.match(KEY_PATTERN) ?? [];
      expect(keys).toHaveLength(1);
      printed = keys[0]!;
      expect(first.out.stdout).toContain(`API key "default" (shown once, store it now): ${printed}`);
      expect((await fetch(`http://127.0.0.1:${port}/api/state`, { headers: bearer(printed) })).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${port}/api/state`)).status).toBe(401);
      firstUrl = /http:\/\/127\.0\.0\.1:\d+\/login\?token=\S+/.exec(first.out.stdout)![0];
      const login = await fetch(firstUrl, { redirect: 'manual' });
      expect(login.status).toBe(303);
      const cookie = login.headers.getSetCookie()[0]!.split(';')[0]!;
      expect((await fetch(`http://127.0.0.1:${port}/api/tasks`, { headers: { cookie } })).status).toBe(200);
    } finally {
      await first.stop();
    }
    const second = serve(dir, ['--port', String(port)]);
    try {
      await second.until(/login\?token=/);
      expect(second.out.stdout.match(KEY_PATTERN)).toBeNull();
      const url = /http:\/\/127\.0\.0\.1:\d+\/login\?token=\S+/.exec(second.out.stdout)![0];
      expect(url).not.toBe(firstUrl);
      // The first run's link died with it; the key lives on.
      expect((await fetch(firstUrl, { redirect: 'manual' })).status).toBe(401);
      expect((await fetch(url, { redirect: 'manual' })).status).toBe(303);
      expect((await fetch(`http://127.0.0.1:${port}/api/state`, { headers: bearer(printed) })).status).toBe(200);
    } finally {
      await second.stop();
    }
    const tokens = [printed, firstUrl.split('token=')[1]!, ...(second.out.stdout.match(/token=(\S+)/) ?? []).slice(1)];
    for (const s of tokens) {
      expect(first.out.stderr).not.toContain(s);
      expect(second.out.stderr).not.toContain(s);
    }
    const db = new Database(join(dir, 'warden.db'), { readonly: true });
    try {
      const stored = JSON.stringify([db.prepare('SELECT * FROM audit').all(), db.prepare('SELECT * FROM api_keys').all(), db.prepare('SELECT * FROM web_logins').all()]);
      for (const s of tokens) expect(stored).not.toContain(s);
      expect(stored).toContain(sha256(printed));
    } finally {
      db.close();
    }
  }, 240_000);

  it('WARDEN_API_KEY is accepted by a child serve; too short a one is refused at start', async () => {
    const dir = warmDataDir();
    const port = await freePort();
    const key = envKey();
    const child = serve(dir, ['--port', String(port)], key.env);
    try {
      await child.until(/login\?token=/);
      expect((await fetch(`http://127.0.0.1:${port}/api/state`, { headers: key.headers })).status).toBe(200);
    } finally {
      await child.stop();
    }
    expect(child.out.stdout + child.out.stderr).not.toContain(key.key);
    const short = serve(dir, ['--port', String(port)], { WARDEN_API_KEY: 'Zq9-x7' });
    expect(await short.exited).not.toBe(0);
    expect(short.out.stderr).toMatch(/WARDEN_API_KEY is too short/);
    expect(short.out.stderr).not.toContain('Zq9-x7');
  }, 240_000);

  it('server.auth false: a non-loopback host is refused at start naming server.auth; on loopback no key is asked, and a foreign Host is refused', async () => {
    const dir = warmDataDir({ server: { auth: false } });
    const refused = serve(dir, ['--host', '0.0.0.0', '--port', String(await freePort())]);
    expect(await refused.exited).not.toBe(0);
    expect(refused.out.stderr).toMatch(/^warden: refusing to listen on 0\.0\.0\.0 with server\.auth false/m);
    expect(refused.out.stdout).not.toMatch(/ready on/);

    const port = await freePort();
    const open = serve(dir, ['--port', String(port)]);
    try {
      await open.until(/ready on/);
      expect((await fetch(`http://127.0.0.1:${port}/api/state`)).status).toBe(200);
      expect(open.out.stdout).not.toMatch(KEY_PATTERN);
      expect(open.out.stdout).not.toMatch(/login\?token=/);
      // DNS rebinding: a page elsewhere that resolves its own name to 127.0.0.1.
      const status = await new Promise<number>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path: '/api/state', headers: { host: `evil.example:${port}` } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
      expect(status).toBe(403);
    } finally {
      await open.stop();
    }
  }, 240_000);
});
