// The operator calls a loaded tool through the running kernel (POST /api/components/:name/call):
// real kernel, real port, real tool workers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Kernel } from '../../kernel/kernel.js';
import { buildServer } from '../../kernel/server/index.js';
import { authed } from '../support/auth.js';
import { tempDir, workspace } from '../support/fixtures.js';

let kernel: Kernel;
let app: FastifyInstance;
let base: string;
let headers: Record<string, string>;

beforeAll(async () => {
  kernel = await Kernel.start({ dataDir: tempDir('components'), quiet: true });
  app = await buildServer(kernel);
  await app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  headers = { ...authed(kernel).headers, 'content-type': 'application/json' };
});

afterAll(async () => {
  await app?.close();
  await kernel?.close();
});

async function call(name: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${base}/api/components/${name}/call`, { method: 'POST', headers, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('POST /api/components/:name/call', () => {
  it('calls a loaded tool with its input on a workspace and answers its output, version and generation', async () => {
    const ws = workspace({ 'notes.txt': 'first\nsecond\n' });
    const answer = await call('read-file', { input: { path: 'notes.txt' }, workspace: ws });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ ok: true, output: '1\tfirst\n2\tsecond', version: '0.1.0', generation: 1 });
    expect(answer.body['ms']).toEqual(expect.any(Number));
    const described = await call('read-file', { method: 'describe' });
    expect(described.body).toMatchObject({ ok: true, output: { name: 'read-file' } });
  }, 60_000);

  it("answers the tool's error case with ok false, and without a workspace the tool has no filesystem", async () => {
    const ws = workspace({ 'notes.txt': 'x\n' });
    const missing = await call('read-file', { input: { path: 'nope.txt' }, workspace: ws });
    expect(missing.status).toBe(200);
    expect(missing.body).toMatchObject({ ok: false, error: { tag: 'failed' } });
    const noFs = await call('read-file', { input: { path: 'notes.txt' } });
    expect(noFs.body['ok']).toBe(false);
  }, 60_000);

  it('rolls back what the tool wrote: the workspace is unchanged', async () => {
    const ws = workspace({ 'a.txt': 'a\n' });
    const wrote = await call('write-file', { input: { path: 'b.txt', content: 'b\n' }, workspace: ws });
    expect(wrote.body).toMatchObject({ ok: true });
    expect(existsSync(join(ws, 'b.txt'))).toBe(false);
    expect(readFileSync(join(ws, 'a.txt'), 'utf8')).toBe('a\n');
    expect(kernel.sessions.list().filter((s) => s.workspace === ws)).toEqual([]);
  }, 60_000);

  it('refuses an unknown component, an agent, a missing workspace and a bad body with a clear 4xx', async () => {
    expect(await call('no-such-tool', { input: {} })).toMatchObject({ status: 404, body: { error: 'E_NOT_FOUND' } });
    const agent = await call('coder', { input: {} });
    expect(agent).toMatchObject({ status: 400, body: { error: 'E_BAD_INPUT' } });
    expect(String(agent.body['message'])).toContain('submit a task');
    expect(await call('read-file', { input: {}, workspace: '/no/such/dir' })).toMatchObject({ status: 404, body: { error: 'E_NOT_FOUND' } });
    expect(await call('read-file', { input: {}, extra: 1 })).toMatchObject({ status: 400, body: { error: 'E_BAD_INPUT' } });
    expect(await call('Bad_Name', {})).toMatchObject({ status: 400, body: { error: 'E_BAD_INPUT' } });
    const list = await fetch(`${base}/api/components`, { headers });
    expect(((await list.json()) as Array<{ name: string }>).map((c) => c.name)).toContain('read-file');
    expect((await fetch(`${base}/api/components/read-file/call`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })).status).toBe(401);
  }, 60_000);
});
