// JSONL transcripts of real tasks: the coder agent driven by a scripted model through real tool
// components; what the file holds, that secrets never reach it, its mode, a torn last line,
// `GET /api/tasks/:id/transcript` over a real socket and `warden transcript`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { Kernel } from '../../kernel/kernel.js';
import { buildServer } from '../../kernel/server/index.js';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import { Transcripts, readTranscript, transcriptPath, parseTranscript, type TranscriptEvent } from '../../kernel/transcript/index.js';
import { startScriptedServer, type ScriptedServer } from '../support/scripted-openai.js';
import { tempDir, workspace, kernelDataDir } from '../support/fixtures.js';
import { authed } from '../support/auth.js';

const run = promisify(execFile);

/** A credential of a well-known format, in a workspace file the agent reads. */
const TOKEN = 'sk-proj-TRANSCRIPTtestTOKEN0123456789abcdef';
/** A password in the prompt. */
const PASSWORD = 'hunter2-correct-horse';

let server: ScriptedServer;
let kernel: Kernel;
let app: FastifyInstance;
let base: string;
let headers: { authorization: string };
let dataDir: string;
let taskId: string;
const repo = workspace({ 'config.env': `OPENAI_API_KEY=${TOKEN}\nMODE=dev\n`, 'src/app.js': 'export const mode = "dev";\n' });

beforeAll(async () => {
  server = await startScriptedServer([
    { toolCalls: [{ name: 'read-file', arguments: { path: 'config.env' } }] },
    {
      toolCalls: [
        { name: 'read-file', arguments: { path: 'missing.txt' } },
        { name: 'list-files', arguments: { path: 'src' } },
        { name: 'no-such-tool', arguments: {} },
      ],
    },
    { toolCalls: [{ name: 'edit-file', arguments: { path: 'src/app.js', old_string: '"dev"', new_string: '"prod"' } }] },
    { content: 'Switched the mode to prod.' },
  ]);
  dataDir = kernelDataDir('transcript');
  // Secrets in a request escalate it to privacy level strict, which only a zero-data-retention backend may serve.
  // Edits are allowed without asking (policy mode acceptEdits).
  writeFileSync(join(dataDir, 'warden.config.json'), JSON.stringify({
    backends: [{ name: 'default', baseURL: server.baseURL, apiKeyEnv: 'OPENAI_API_KEY', zdr: true }],
    policy: { mode: 'acceptEdits' },
  }));
  kernel = await Kernel.start({ dataDir, quiet: true });
  app = await buildServer(kernel);
  await app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  headers = authed(kernel).headers;
  taskId = kernel.submitTask({ prompt: `Switch the app to prod mode. The admin password: ${PASSWORD}`, workspace: repo, model: 'scripted' });
  const task = await kernel.waitForTask(taskId);
  expect(task.error).toBeUndefined();
  expect(task.status).toBe('succeeded');
});

afterAll(async () => {
  await app?.close();
  await kernel?.close();
  await server?.close();
});

describe('the transcript of a task', () => {
  it('holds a header, then every event the task emitted, in order, as emitted on the bus', () => {
    const file = transcriptPath(dataDir, taskId);
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toEqual({ type: 'transcript', version: 1, taskId, ts: expect.any(Number) });
    const { events, torn } = readTranscript(file);
    expect(torn).toBe(false);
    expect(events.every((e) => e.taskId === taskId && typeof e.ts === 'number')).toBe(true);
    expect(events[0]!.type).toBe('task.start');
    expect(events.at(-1)).toMatchObject({ type: 'task.end', status: 'succeeded', summary: 'Switched the mode to prod.' });
    const kinds = new Set(events.map((e) => e.type));
    const expected = ['task.start', 'session', 'step', 'privacy', 'inference.request', 'inference.response', 'usage', 'policy', 'tool.call', 'tool.result', 'denied', 'task.end'];
    for (const kind of expected) {
      expect(kinds, kind).toContain(kind);
    }
    // Times never go backwards: lines are appended as events are emitted.
    expect(events.map((e) => e.ts)).toEqual([...events.map((e) => e.ts)].sort((a, b) => a - b));

    // Four model turns, each asked then answered, with the model's tool calls and the usage the server reported.
    const requests = events.filter((e) => e.type === 'inference.request');
    const responses = events.filter((e): e is Extract<TranscriptEvent, { type: 'inference.response' }> => e.type === 'inference.response');
    expect(requests.map((e) => (e as { turn: number }).turn)).toEqual([1, 2, 3, 4]);
    expect(responses.map((e) => e.response.toolCalls.map((c) => c.name))).toEqual([['read-file'], ['read-file', 'list-files', 'no-such-tool'], ['edit-file'], []]);
    const usage = events.filter((e) => e.type === 'usage') as Array<Extract<TranscriptEvent, { type: 'usage' }>>;
    expect(usage.map((u) => [u.promptTokens, u.completionTokens])).toEqual([[10, 5], [20, 5], [30, 5], [40, 5]]);

    // Every tool call of the coder and its result, with outcomes: the missing file failed.
    const calls = events.filter((e) => e.type === 'tool.call' && e.caller === 'coder') as Array<Extract<TranscriptEvent, { type: 'tool.call' }>>;
    expect(calls.map((c) => [c.target, JSON.parse(c.input)])).toEqual([
      ['read-file', { path: 'config.env' }],
      ['read-file', { path: 'missing.txt' }],
      ['list-files', { path: 'src' }],
      ['edit-file', { path: 'src/app.js', old_string: '"dev"', new_string: '"prod"' }],
    ]);
    const results = new Map(events.filter((e) => e.type === 'tool.result').map((e) => [(e as { id: string }).id, e as Extract<TranscriptEvent, { type: 'tool.result' }>]));
    expect(calls.map((c) => results.get(c.id)?.outcome)).toEqual(['ok', 'failed', 'ok', 'ok']);
    expect(results.get(calls[3]!.id)!.output).toContain('replaced 1');
    // The call of a tool that does not exist was refused before it started: a denial and its result, no call.
    expect(events.find((e) => e.type === 'denied')).toMatchObject({ component: 'coder', capability: 'mesh' });
    expect([...results.values()].find((r) => r.target === 'no-such-tool')).toMatchObject({ caller: 'coder', outcome: 'denied' });
    // The privacy level the requests ran under: the password in the prompt made it strict.
    expect(events.find((e) => e.type === 'privacy')).toMatchObject({ turn: 1, level: 'strict', reason: expect.stringContaining('password assignment') });
    // The session the task began is in it too.
    expect(events.find((e) => e.type === 'session')).toMatchObject({ action: 'begin', session: kernel.state.current.tasks[taskId]!.sessionId });
  });

  it('redacts a secret from a tool result and from the prompt, and holds neither in clear', () => {
    const text = readFileSync(transcriptPath(dataDir, taskId), 'utf8');
    expect(text).not.toContain(TOKEN);
    expect(text).not.toContain(PASSWORD);
    const { events } = readTranscript(transcriptPath(dataDir, taskId));
    const start = events[0] as Extract<TranscriptEvent, { type: 'task.start' }>;
    expect(start.prompt).toBe('Switch the app to prod mode. The admin password: [REDACTED:assignment]');
    const firstRead = events.find((e) => e.type === 'tool.result' && e.target === 'read-file') as Extract<TranscriptEvent, { type: 'tool.result' }>;
    expect(firstRead.output).toContain('OPENAI_API_KEY=[REDACTED:');
    // The tool result went back to the model in the next request: redacted there too.
    const second = events.find((e) => e.type === 'inference.request' && e.turn === 2) as Extract<TranscriptEvent, { type: 'inference.request' }>;
    expect(second.messages.find((m) => m.role === 'tool')!.content).toBe('1\tOPENAI_API_KEY=[REDACTED:credential]\n2\tMODE=dev');
    // Each request line holds only the messages the file did not have yet: linear, not quadratic, growth.
    const first = events.find((e) => e.type === 'inference.request' && e.turn === 1) as Extract<TranscriptEvent, { type: 'inference.request' }> & { messagesFrom: number; messageCount: number };
    const counts = second as typeof first;
    expect(first).toMatchObject({ messagesFrom: 0, messageCount: first.messages.length });
    expect(counts.messagesFrom).toBe(first.messageCount);
    expect(counts.messages).toHaveLength(counts.messageCount - counts.messagesFrom);
    expect(counts.messages[0]!.role).toBe('assistant');
    // The model really did receive it (the transcript is redacted, not the conversation).
    expect(server.requests[1]!.messages.find((m) => m.role === 'tool')!.content).toContain(TOKEN);
  });

  it('is readable by its owner only (0600 in a 0700 directory)', () => {
    expect(statSync(transcriptPath(dataDir, taskId)).mode & 0o777).toBe(0o600);
    expect(statSync(join(dataDir, 'transcripts')).mode & 0o777).toBe(0o700);
  });

  it('is served as NDJSON by GET /api/tasks/:id/transcript, behind authentication', async () => {
    const res = await fetch(`${base}/api/tasks/${taskId}/transcript`, { headers });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/x-ndjson/);
    const body = await res.text();
    expect(body).toBe(readFileSync(transcriptPath(dataDir, taskId), 'utf8'));
    expect(body.trimEnd().split('\n').map((l) => JSON.parse(l).type)).toContain('tool.result');
    expect((await fetch(`${base}/api/tasks/${taskId}/transcript`)).status).toBe(401);
    const missing = await fetch(`${base}/api/tasks/t-00000000/transcript`, { headers });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { message: string }).message).toBe('no task t-00000000');
    expect((await fetch(`${base}/api/tasks/..%2Fwarden.db/transcript`, { headers })).status).toBe(400);
  });

  it('is printed by `warden transcript ID`: turns, tool calls and usage; --json gives the events', async () => {
    const cli = join(PACKAGE_ROOT, 'bin/warden.js');
    const text = (await run(process.execPath, [cli, 'transcript', taskId, '--data-dir', dataDir])).stdout;
    expect(text).toContain(`transcript of ${taskId}`);
    expect(text).toMatch(/turn 1 → scripted: 2 message\(s\), 6 tool\(s\)/);
    expect(text).toMatch(/turn 2 ← scripted@default in \d+ ms \(tool_calls\) calls: read-file \{"path":"missing.txt"\}; list-files \{"path":"src"\}; no-such-tool \{\}/);
    expect(text).toMatch(/✗ read-file\.call failed in \d+ ms/);
    expect(text).toContain('usage scripted@default: 40 in, 5 out');
    expect(text).toMatch(/ended succeeded: Switched the mode to prod\./);
    expect(text).toMatch(/totals: 4 inference request\(s\), \d+ call\(s\), \d+ policy decision\(s\), 100 tokens in, 20 out/);
    expect(text).not.toContain(PASSWORD);
    const json = JSON.parse((await run(process.execPath, [cli, 'transcript', transcriptPath(dataDir, taskId), '--json'])).stdout) as { events: unknown[]; totals: { turns: number } };
    expect(json.events).toEqual(readTranscript(transcriptPath(dataDir, taskId)).events);
    expect(json.totals.turns).toBe(4);
    expect(() => readTranscript(transcriptPath(dataDir, 't-00000000'))).toThrow(`no transcript ${join(dataDir, 'transcripts/t-00000000.jsonl')}`);
  });
});

describe('a transcript torn by a crash', () => {
  it('is read without its torn last line, and the next append cuts the fragment off first', () => {
    const dir = tempDir('torn');
    const writer = new Transcripts(dir);
    const id = 't-0123abcd';
    const event = (type: string, extra: Record<string, unknown> = {}) => ({ type, taskId: id, ts: Date.now(), ...extra }) as never;
    writer.record(event('task.start', { prompt: 'p', workspace: '/w', model: 'm', resumed: false }));
    writer.record(event('step', { component: 'coder', step: 'inference', detail: 'turn 1' }));
    writer.close();
    const file = join(dir, `${id}.jsonl`);
    // A crash in the middle of a write: half a line, no newline.
    appendFileSync(file, '{"type":"step","taskId":"t-0123abcd","ts":1,"compo');
    const read = readTranscript(file);
    expect(read.torn).toBe(true);
    expect(read.events.map((e) => e.type)).toEqual(['task.start', 'step']);

    // The resumed task appends to the same file; the fragment is gone, every line parses.
    writer.record(event('task.start', { prompt: 'p', workspace: '/w', model: 'm', resumed: true }));
    writer.record(event('task.end', { status: 'succeeded', summary: 'ok' }));
    const after = readTranscript(file);
    expect(after.torn).toBe(false);
    expect(after.events.map((e) => e.type)).toEqual(['task.start', 'step', 'task.start', 'task.end']);
    expect((after.events[2] as { resumed: boolean }).resumed).toBe(true);
    expect(readFileSync(file, 'utf8').split('\n').filter(Boolean).every((l) => JSON.parse(l))).toBe(true);
  });

  it('a damaged line in the middle is an error naming the file and line', () => {
    const file = join(tempDir('damaged'), 't-00000001.jsonl');
    writeFileSync(file, '{"type":"transcript","version":1,"taskId":"t-00000001","ts":1}\nnot json\n{"type":"task.end","taskId":"t-00000001","ts":2}\n');
    expect(() => readTranscript(file)).toThrow(`${file}:2: not a JSON line`);
    expect(() => parseTranscript('{"type":"transcript","version":9,"taskId":"t-1","ts":1}\n', 'x.jsonl')).toThrow('x.jsonl:1: version 9, this kernel reads version 1');
  });
});
