// The whole kernel end to end: a scripted OpenAI-compatible server drives the real coder agent
// through a multi-step edit; a WebSocket client watches the patch stream.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import fastJsonPatch from 'fast-json-patch';
import type { FastifyInstance } from 'fastify';
import { Kernel } from '../../kernel/kernel.js';
import { buildServer } from '../../kernel/server/index.js';
import type { Envelope } from '../../kernel/state/index.js';
import { startScriptedServer, type ScriptedServer } from '../support/scripted-openai.js';
import { realRepository, tempDir } from '../support/fixtures.js';
import { authed } from '../support/auth.js';

let server: ScriptedServer;
let kernel: Kernel;
let app: FastifyInstance;
let base: string;
let headers: { authorization: string };
const repo = realRepository();
const original = readFileSync(join(repo, 'lib/command.js'), 'utf8');

beforeAll(async () => {
  server = await startScriptedServer([
    { toolCalls: [{ name: 'list-files', arguments: { path: 'lib' } }] },
    { toolCalls: [{ name: 'grep', arguments: { pattern: '\\b_parseOptionsEnv\\b', glob: '**/*.js' } }] },
    { toolCalls: [{ name: 'read-file', arguments: { path: 'lib/command.js', offset: 1, limit: 5 } }] },
    {
      toolCalls: [
        { name: 'edit-file', arguments: { path: 'lib/command.js', old_string: '_parseOptionsEnv', new_string: '_parseOptionsFromEnv', replace_all: true } },
        { name: 'edit-file', arguments: { path: 'lib/command.js', old_string: 'no such text', new_string: 'x' } },
        { name: 'no-such-tool', arguments: {} },
      ],
    },
    { toolCalls: [{ name: 'write-file', arguments: { path: 'NOTES.md', content: 'renamed _parseOptionsEnv\n' } }] },
    { content: 'Renamed _parseOptionsEnv to _parseOptionsFromEnv.' },
  ]);
  // Edits go on without asking (the default mode would make each write wait for an approval).
  kernel = await Kernel.start({ dataDir: tempDir('data'), baseURL: server.baseURL, quiet: true, policyMode: 'acceptEdits' });
  app = await buildServer(kernel);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address() as { port: number };
  base = `http://127.0.0.1:${address.port}`;
  headers = authed(kernel).headers;
});

afterAll(async () => {
  await app?.close();
  await kernel?.close();
  await server?.close();
});

describe('a task from POST /api/tasks to a committed session', () => {
  it('edits a real repository through the coder agent, streams contiguous patches, and commits', async () => {
    const ws = new WebSocket(`${base.replace('http', 'ws')}/api/stream`, { headers });
    const messages: Array<Envelope | { type: 'snapshot'; seq: number; state: unknown }> = [];
    ws.on('message', (data) => messages.push(JSON.parse(String(data))));
    await new Promise((resolve) => ws.once('open', resolve));

    const res = await fetch(`${base}/api/tasks`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json' },
      body: JSON.stringify({ task: 'Rename _parseOptionsEnv to _parseOptionsFromEnv everywhere', workspace: repo, model: 'scripted' }),
    });
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as { id: string };
    const task = await kernel.waitForTask(id);
    expect(task.error).toBeUndefined();
    expect(task.status).toBe('succeeded');

    // The model saw the tool schemas and every tool result, including the clear failures.
    expect(server.requests[0]!.tools!.map((t: any) => t.function.name).sort()).toEqual(['edit-file', 'grep', 'line-count', 'list-files', 'read-file', 'write-file']);
    const toolResults = server.requests[4]!.messages.filter((m) => m.role === 'tool').map((m) => m.content);
    expect(toolResults.find((r) => r?.startsWith("replaced"))).toMatch(/^replaced \d+ occurrence\(s\) in lib\/command.js$/);
    expect(toolResults.some((r) => r?.includes('old_string not found'))).toBe(true);
    expect(toolResults.some((r) => r?.includes('no-such-tool'))).toBe(true);

    // Tool calls crossed workers: spans from the coder to each tool.
    const calls = Object.values(task.toolCalls);
    expect(calls.filter((c) => c.caller === 'coder').map((c) => c.target)).toEqual(
      expect.arrayContaining(['list-files', 'grep', 'read-file', 'edit-file', 'write-file']),
    );

    // The workspace is untouched until commit; the diff names both changes.
    expect(readFileSync(join(repo, 'lib/command.js'), 'utf8')).toBe(original);
    expect(task.diff!.map((c) => `${c.kind} ${c.path}`)).toEqual(['added NOTES.md', 'modified lib/command.js']);
    expect(task.diff!.find((c) => c.path === 'lib/command.js')!.unified).toContain('+    this._parseOptionsFromEnv');

    const commit = await fetch(`${base}/api/sessions/${task.sessionId}/commit`, { method: 'POST', headers });
    expect(commit.status).toBe(200);
    const after = readFileSync(join(repo, 'lib/command.js'), 'utf8');
    expect(after).toContain('_parseOptionsFromEnv');
    expect(after).not.toContain('_parseOptionsEnv(');
    expect(readFileSync(join(repo, 'NOTES.md'), 'utf8')).toBe('renamed _parseOptionsEnv\n');

    // The stream: a snapshot, then contiguous envelopes whose application equals GET /api/state.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const state = (await (await fetch(`${base}/api/state`, { headers })).json()) as { seq: number; state: unknown };
    ws.close();
    const [first, ...rest] = messages;
    expect(first).toMatchObject({ type: 'snapshot' });
    let doc = (first as { state: unknown }).state;
    let seq = (first as { seq: number }).seq;
    for (const envelope of rest as Envelope[]) {
      expect(envelope.seq).toBe(seq + 1);
      doc = fastJsonPatch.applyPatch(doc, envelope.ops, true, false).newDocument;
      seq = envelope.seq;
    }
    expect(seq).toBe(state.seq);
    expect(doc).toEqual(state.state);
    expect((doc as any).tasks[id].sessionStatus).toBe('committed');
  });

  it('answers bad input with a 4xx naming the field', async () => {
    const res = await fetch(`${base}/api/tasks`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify({ workspace: repo }) });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { message: string }).message).toMatch(/^task:/);
    const missing = await fetch(`${base}/api/tasks`, {
      method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify({ task: 'x', workspace: join(repo, 'nope') }),
    });
    expect(missing.status).toBe(404);
    expect((await fetch(`${base}/health`)).status).toBe(200);
  });

  it('fails a task with one clear line when the model endpoint is unreachable', async () => {
    const id = kernel.submitTask({ prompt: 'anything', workspace: repo, model: 'm@nowhere' });
    const task = await kernel.waitForTask(id);
    expect(task.status).toBe('failed');
    expect(task.error).toMatch(/unknown backend "nowhere"/);
  });
});
