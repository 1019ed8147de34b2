// The AG-UI view of a real task (the coder agent driven by the scripted model), checked against
// @ag-ui/core's schemas and AG-UI's event-order rules; and stream liveness with a short ping
// interval (a WebSocket that does not answer pings is terminated, SSE gets heartbeat comments).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import fastJsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import type { FastifyInstance } from 'fastify';
import { EventSchemas } from '@ag-ui/core/schemas';
import { Kernel } from '../../kernel/kernel.js';
import { shareTranspileCache } from '../../kernel/testing.js';
import { buildServer } from '../../kernel/server/index.js';
import { deriveEvents, type AguiEvent } from '../../kernel/state/agui.js';
import type { TaskState } from '../../kernel/state/index.js';
import type { RuntimeEvent } from '../../kernel/runtime/events.js';
import { startScriptedServer, type ScriptedServer } from '../support/scripted-openai.js';
import { tempDir, workspace } from '../support/fixtures.js';
import { authed } from '../support/auth.js';
import { until } from '../support/net.js';

const PING_MS = 100;

let model: ScriptedServer;
let kernel: Kernel;
let app: FastifyInstance;
let base: string;
let headers: { authorization: string };
const clientEvents: RuntimeEvent[] = [];

beforeAll(async () => {
  model = await startScriptedServer([
    { toolCalls: [{ name: 'list-files', arguments: { path: '.' } }], delayMs: 50 },
    { toolCalls: [{ name: 'read-file', arguments: { path: 'a.txt' } }] },
    { content: 'a.txt says hello.' },
  ]);
  const dataDir = tempDir('data');
  shareTranspileCache(dataDir);
  writeFileSync(join(dataDir, 'warden.config.json'), JSON.stringify({ server: { pingIntervalMs: PING_MS } }));
  kernel = await Kernel.start({ dataDir, baseURL: model.baseURL, quiet: true });
  kernel.events.on((e) => e.type === 'client' && clientEvents.push(e));
  app = await buildServer(kernel);
  await app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  headers = authed(kernel).headers;
});

afterAll(async () => {
  await app?.close();
  await kernel?.close();
  await model?.close();
});

/** Read an SSE response to its end: the events' data (JSON) and how many comment lines came. */
async function readAll(res: Response): Promise<{ events: AguiEvent[]; comments: number }> {
  const text = await res.text();
  const blocks = text.split('\n\n').filter(Boolean);
  return {
    events: blocks.filter((b) => b.startsWith('data: ')).map((b) => JSON.parse(b.slice('data: '.length))),
    comments: blocks.filter((b) => b.startsWith(':')).length,
  };
}

/** AG-UI's ordering rules (as @ag-ui/client's verifyEvents enforces them); returns the first violation. */
function orderViolation(events: AguiEvent[]): string | undefined {
  const messages = new Set<unknown>();
  const calls = new Set<unknown>();
  const steps = new Set<unknown>();
  for (const [i, e] of events.entries()) {
    const where = `event ${i} (${e.type})`;
    if (i === 0 && e.type !== 'RUN_STARTED') return `${where}: the first event must be RUN_STARTED`;
    if (i > 0 && ['RUN_FINISHED', 'RUN_ERROR'].includes(events[i - 1]!.type)) return `${where}: after the run ended`;
    switch (e.type) {
      case 'TEXT_MESSAGE_START':
        if (messages.has(e['messageId'])) return `${where}: message already open`;
        messages.add(e['messageId']);
        break;
      case 'TEXT_MESSAGE_CONTENT':
        if (!messages.has(e['messageId'])) return `${where}: no open message`;
        break;
      case 'TEXT_MESSAGE_END':
        if (!messages.delete(e['messageId'])) return `${where}: no open message`;
        break;
      case 'TOOL_CALL_START':
        if (calls.has(e['toolCallId'])) return `${where}: call already open`;
        calls.add(e['toolCallId']);
        break;
      case 'TOOL_CALL_ARGS':
        if (!calls.has(e['toolCallId'])) return `${where}: no open call`;
        break;
      case 'TOOL_CALL_END':
        if (!calls.delete(e['toolCallId'])) return `${where}: no open call`;
        break;
      case 'STEP_STARTED':
        if (steps.has(e['stepName'])) return `${where}: step already active`;
        steps.add(e['stepName']);
        break;
      case 'STEP_FINISHED':
        if (!steps.delete(e['stepName'])) return `${where}: step not started`;
        break;
      case 'RUN_FINISHED':
        if (messages.size + calls.size + steps.size > 0) return `${where}: messages, calls or steps still open`;
        break;
    }
  }
  return undefined;
}

describe('GET /api/tasks/:id/agui', () => {
  it('streams a live task as valid AG-UI events whose state events rebuild the task, and ends with RUN_FINISHED', async () => {
    const submitted = await fetch(`${base}/api/tasks`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json' },
      body: JSON.stringify({ task: 'What does a.txt say?', workspace: workspace({ 'a.txt': 'hello\n' }), model: 'scripted' }),
    });
    const { id } = (await submitted.json()) as { id: string };
    const res = await fetch(`${base}/api/tasks/${id}/agui`, { headers });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const { events } = await readAll(res); // the server ends the stream when the run ends
    const task = await kernel.waitForTask(id);
    expect(task.status).toBe('succeeded');

    for (const event of events) expect(EventSchemas.safeParse(event).error).toBeUndefined();
    expect(orderViolation(events)).toBeUndefined();
    expect(events[0]).toMatchObject({ type: 'RUN_STARTED', threadId: id, runId: id });
    expect(events.at(-1)).toMatchObject({ type: 'RUN_FINISHED', threadId: id, runId: id, result: task.summary });

    // STATE_SNAPSHOT + STATE_DELTAs (RFC 6902 on the task) give the task as the kernel has it.
    let state: unknown;
    for (const e of events) {
      if (e.type === 'STATE_SNAPSHOT') state = e['snapshot'];
      if (e.type === 'STATE_DELTA') state = fastJsonPatch.applyPatch(state, e['delta'] as Operation[], true, false).newDocument;
    }
    expect(state).toEqual(JSON.parse(JSON.stringify(kernel.state.current.tasks[id])));

    // Every tool call and step of the task appears; the text messages carry the turns' chunks.
    const of = (type: string) => events.filter((e) => e.type === type);
    expect(of('TOOL_CALL_START').map((e) => e['toolCallId']).sort()).toEqual(Object.keys(task.toolCalls).sort());
    expect(of('TOOL_CALL_START').map((e) => e['toolCallName'])).toEqual(expect.arrayContaining(['coder', 'list-files', 'read-file']));
    expect(of('TOOL_CALL_RESULT')).toHaveLength(Object.keys(task.toolCalls).length);
    expect(of('STEP_STARTED')).toHaveLength(Object.keys(task.steps).length);
    expect(of('TEXT_MESSAGE_START')).toHaveLength(Object.keys(task.turns ?? {}).length);
    const text = (messageId: unknown) => of('TEXT_MESSAGE_CONTENT').filter((e) => e['messageId'] === messageId).map((e) => e['delta']).join('');
    for (const [n, turn] of Object.entries(task.turns ?? {})) expect(text(`${id}-turn-${n}`)).toBe(turn.chunks.join(''));
  });

  it('replays a finished task (the same events as derived from its state) and ends', async () => {
    const id = Object.keys(kernel.state.current.tasks)[0]!;
    const task = kernel.state.current.tasks[id] as TaskState;
    const { events } = await readAll(await fetch(`${base}/api/tasks/${id}/agui`, { headers }));
    const strip = (e: AguiEvent) => JSON.parse(JSON.stringify({ ...e, timestamp: undefined }));
    expect(events.map(strip)).toEqual(
      [{ type: 'RUN_STARTED', threadId: id, runId: id }, { type: 'STATE_SNAPSHOT', snapshot: task }, ...deriveEvents(undefined, task)].map(strip),
    );
    expect(orderViolation(events)).toBeUndefined();
  });

  it('answers 404 for an unknown task and 400 for a malformed id', async () => {
    const missing = await fetch(`${base}/api/tasks/t-00000000/agui`, { headers });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: 'E_NOT_FOUND', message: 'no task t-00000000' });
    expect((await fetch(`${base}/api/tasks/nope/agui`, { headers })).status).toBe(400);
  });

  it('counts AG-UI clients on the runtime bus (+1 then -1)', async () => {
    await until(() => (clientEvents.filter((e) => e.type === 'client' && e.kind === 'agui').length >= 4 ? true : undefined), 5000, 'the agui client events');
    const deltas = clientEvents.filter((e) => e.type === 'client' && e.kind === 'agui').map((e) => (e.type === 'client' ? e.delta : 0));
    expect(deltas.slice(0, 4)).toEqual([1, -1, 1, -1]);
  });
});

describe('liveness (pingIntervalMs = 100)', () => {
  it('a WebSocket that does not answer pings is terminated; one that answers stays', async () => {
    const url = `${base.replace('http', 'ws')}/api/stream`;
    const dead = new WebSocket(url, { headers, autoPong: false });
    const alive = new WebSocket(url, { headers });
    let deadClosed = false;
    let aliveClosed = false;
    dead.on('close', () => (deadClosed = true));
    alive.on('close', () => (aliveClosed = true));
    let pings = 0;
    alive.on('ping', () => pings++);
    await until(() => (deadClosed ? true : undefined), 5000, 'the dead client to be terminated');
    // The live one answered the same pings and is still there after more of them.
    const seen = pings;
    await until(() => (pings >= seen + 2 ? true : undefined), 5000, 'two more pings');
    expect(aliveClosed).toBe(false);
    alive.close();
  });

  it('an SSE stream gets heartbeat comments', async () => {
    const abort = new AbortController();
    const res = await fetch(`${base}/api/events`, { headers, signal: abort.signal });
    const reader = res.body!.getReader();
    let text = '';
    while (!text.includes(': ping\n\n')) text += new TextDecoder().decode((await reader.read()).value);
    expect(text.startsWith('retry: 1000\n\nid: ')).toBe(true);
    abort.abort();
  });
});
