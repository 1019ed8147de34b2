// The patch stream on a real kernel and server over real sockets: resuming (from the log and from a
// position that left it), narrowed subscriptions, coalescing, slow clients cut to a snapshot,
// malformed client frames, SSE with Last-Event-ID, and the
// client library (kernel/state/client.ts) detecting gaps forced with the hub's test hook.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import type { FastifyInstance } from 'fastify';
import { Kernel } from '../../kernel/kernel.js';
import { shareTranspileCache } from '../../kernel/testing.js';
import { buildServer } from '../../kernel/server/index.js';
import { streamHub } from '../../kernel/server/routes/stream-hub.js';
import type { KernelState, TaskState } from '../../kernel/state/index.js';
import type { StreamMessage } from '../../kernel/state/protocol.js';
import { StateClient, type ConnectionStatus } from '../../kernel/state/client.js';
import type { RuntimeEvent } from '../../kernel/runtime/events.js';
import { tempDir } from '../support/fixtures.js';
import { authed } from '../support/auth.js';
import { until } from '../support/net.js';

/** Small on purpose: a slow client is cut after 64 KiB, the log keeps 20 envelopes. (Pings: agui.test.ts.) */
const BUFFER_BYTES = 64 * 1024;
const RETAINED = 20;

let kernel: Kernel;
let app: FastifyInstance;
let base: string;
let headers: { authorization: string };
const clientEvents: RuntimeEvent[] = [];

beforeAll(async () => {
  const dataDir = tempDir('data');
  shareTranspileCache(dataDir);
  writeFileSync(
    join(dataDir, 'warden.config.json'),
    JSON.stringify({ server: { streamBufferBytes: BUFFER_BYTES, retainedEnvelopes: RETAINED, streamsPerKey: 100, rateLimit: { max: 100_000 } } }),
  );
  kernel = await Kernel.start({ dataDir, quiet: true });
  kernel.events.on((e) => e.type === 'client' && clientEvents.push(e));
  app = await buildServer(kernel);
  await app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  headers = authed(kernel).headers;
});

afterAll(async () => {
  await app?.close();
  await kernel?.close();
});

function task(id: string): TaskState {
  return { id, prompt: 'p', workspace: '/w', model: 'm', status: 'running', sessionId: null, createdAt: 1, steps: {}, toolCalls: {}, usage: { promptTokens: 0, completionTokens: 0 } };
}

/** One state change, published as its own envelope; resolves with its seq. */
async function change(mutate: (d: KernelState) => void): Promise<number> {
  kernel.state.update(mutate);
  kernel.state.flush();
  return kernel.state.seq;
}

/** A server message; `seq` read as undefined on those without one (errors). */
type Message = StreamMessage extends infer M ? (M extends { seq: number } ? M : M & { seq?: undefined }) : never;

/** A raw WebSocket client that keeps every message. */
class RawClient {
  readonly messages: Message[] = [];
  readonly socket: WebSocket;
  readonly opened: Promise<void>;
  closed = false;

  constructor(query = '', options: WebSocket.ClientOptions = {}) {
    this.socket = new WebSocket(`${base.replace('http', 'ws')}/api/stream${query}`, { headers, ...options });
    this.socket.on('message', (data) => this.messages.push(JSON.parse(String(data))));
    this.socket.on('close', () => (this.closed = true));
    this.opened = new Promise((resolve, reject) => {
      this.socket.once('open', () => resolve());
      this.socket.once('error', reject);
    });
  }

  /** Wait until a message satisfies `test`. */
  async waitFor(test: (m: Message) => boolean, what: string): Promise<Message> {
    return until(() => this.messages.find(test), 5000, what, 5);
  }

  /** Envelope sequence numbers received (snapshots excluded). */
  seqs(): number[] {
    return this.messages.filter((m) => m.type === undefined).map((m) => m.seq);
  }

  close(): void {
    this.socket.close();
  }
}

describe('GET /api/state and bad queries', () => {
  it('answers {seq, state}, narrowed {seq, path, state}, and 400 naming a malformed pointer on every route', async () => {
    const seq = await change((d) => (d.tasks['t-0000000a'] = task('t-0000000a')));
    const whole = await (await fetch(`${base}/api/state`, { headers })).json();
    expect(whole).toEqual({ seq, epoch: kernel.state.epoch, state: JSON.parse(JSON.stringify(kernel.state.current)) });
    const narrowed = await (await fetch(`${base}/api/state?path=/tasks/t-0000000a`, { headers })).json();
    expect(narrowed).toEqual({ seq, epoch: kernel.state.epoch, path: '/tasks/t-0000000a', state: task('t-0000000a') });
    expect(await (await fetch(`${base}/api/state?path=/tasks/nope`, { headers })).json()).toEqual({ seq, epoch: kernel.state.epoch, path: '/tasks/nope' });

    for (const route of ['/api/state', '/api/events']) {
      const res = await fetch(`${base}${route}?path=tasks/x`, { headers });
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({ error: 'E_BAD_INPUT', message: 'path: a JSON Pointer is empty or starts with "/" (RFC 6901), got "tasks/x"; e.g. ?path=/tasks/t-1a2b3c4d' });
    }
    const refused = new RawClient('?path=/a~2');
    const status = await new Promise<number>((resolve) => refused.socket.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
    expect(status).toBe(400);
    // A `since` that is not a sequence number counts as none: a snapshot first (always safe).
    const oddSince = new RawClient('?since=-1');
    expect(await oddSince.waitFor(() => true, 'the first message')).toMatchObject({ type: 'snapshot', seq: kernel.state.seq });
    oddSince.close();
  });
});

describe('resuming', () => {
  it('from a seq still in the log: exactly the missing envelopes, no snapshot', async () => {
    const from = await change((d) => (d.kernel.version = 'resume-1'));
    await change((d) => (d.kernel.version = 'resume-2'));
    const last = await change((d) => (d.kernel.version = 'resume-3'));
    const client = new RawClient(`?since=${from}`);
    await client.waitFor((m) => m.seq === last, 'the last envelope');
    expect(client.messages.map((m) => [m.type, m.seq])).toEqual([
      [undefined, from + 1],
      [undefined, last],
    ]);
    client.close();
  });

  it('from a seq of another kernel run (another epoch): a snapshot, even when the seq is in this log', async () => {
    const from = await change((d) => (d.kernel.version = 'epoch-1'));
    const same = new RawClient(`?since=${from}&epoch=${kernel.state.epoch}`);
    const other = new RawClient(`?since=${from}&epoch=0123456789ab`);
    const last = await change((d) => (d.kernel.version = 'epoch-2'));
    await same.waitFor((m) => m.seq === last, 'the envelope');
    expect(same.messages.map((m) => [m.type, m.seq])).toEqual([[undefined, last]]);
    const snapshot = await other.waitFor((m) => m.type === 'snapshot', 'the snapshot');
    expect(snapshot).toMatchObject({ type: 'snapshot', epoch: kernel.state.epoch });
    same.close();
    other.close();
  });

  it('from a seq that left the retained log: a snapshot first, then contiguous envelopes', async () => {
    const old = kernel.state.seq;
    for (let i = 0; i < RETAINED + 5; i++) await change((d) => (d.kernel.version = `old-${i}`));
    expect(kernel.state.since(old)).toBeNull();
    const client = new RawClient(`?since=${old}`);
    const snapshot = await client.waitFor((m) => m.type === 'snapshot', 'the snapshot');
    expect(snapshot).toEqual({ type: 'snapshot', seq: kernel.state.seq, epoch: kernel.state.epoch, state: JSON.parse(JSON.stringify(kernel.state.current)) });
    const next = await change((d) => (d.kernel.version = 'after-snapshot'));
    await client.waitFor((m) => m.seq === next && m.type === undefined, 'the next envelope');
    expect(client.messages.map((m) => m.seq)).toEqual([snapshot.seq, snapshot.seq! + 1]);
    client.close();
  });
});

describe('coalescing', () => {
  it('many updates from different sources in one tick reach a client as one envelope', async () => {
    const client = new RawClient();
    await client.waitFor((m) => m.type === 'snapshot', 'the snapshot');
    kernel.state.update((d) => (d.tasks['t-0000000b'] = task('t-0000000b')));
    kernel.state.update((d) => (d.kernel.version = 'coalesced'));
    for (let i = 1; i <= 20; i++) kernel.state.update((d) => (d.tasks['t-0000000b']!.steps[String(i)] = { n: i, component: 'c', step: 's', detail: '', ts: i }));
    const seq = kernel.state.seq + 1;
    const envelope = await client.waitFor((m) => m.seq === seq, 'the envelope');
    expect(envelope.type === undefined && envelope.ops.length).toBe(22);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(client.seqs()).toEqual([seq]);
    client.close();
  });
});

describe('narrowed subscriptions', () => {
  it('a task page sees only its task, rebased, with prev chaining what it was sent', async () => {
    await change((d) => {
      d.tasks['t-00000001'] = task('t-00000001');
      d.tasks['t-00000002'] = task('t-00000002');
    });
    const client = new RawClient('?path=/tasks/t-00000001');
    const snapshot = await client.waitFor((m) => m.type === 'snapshot', 'the snapshot');
    expect(snapshot).toMatchObject({ path: '/tasks/t-00000001', state: task('t-00000001') });
    const mine = await change((d) => (d.tasks['t-00000001']!.status = 'succeeded'));
    await change((d) => (d.tasks['t-00000002']!.status = 'failed'));
    await change((d) => (d.kernel.version = 'unrelated'));
    const mineAgain = await change((d) => (d.tasks['t-00000001']!.summary = 'ok'));
    const removed = await change((d) => delete d.tasks['t-00000001']);
    await client.waitFor((m) => m.seq === removed, 'the removal');
    expect(client.messages.slice(1)).toEqual([
      { seq: mine, prev: snapshot.seq, ts: expect.any(Number), ops: [{ op: 'replace', path: '/status', value: 'succeeded' }] },
      { seq: mineAgain, prev: mine, ts: expect.any(Number), ops: [{ op: 'add', path: '/summary', value: 'ok' }] },
      { seq: removed, prev: mineAgain, ts: expect.any(Number), ops: [{ op: 'remove', path: '' }] },
    ]);
    client.close();
  });

  it('the client library follows a narrowed task and detects a gap (the hub dropping an envelope) by prev', async () => {
    await change((d) => (d.tasks['t-00000003'] = task('t-00000003')));
    const client = new StateClient<TaskState>({ url: base, path: '/tasks/t-00000003', WebSocket, headers });
    await client.start();
    expect(client.state).toEqual(task('t-00000003'));
    await change((d) => (d.tasks['t-00000004'] = task('t-00000004'))); // not its task: skipped
    streamHub(kernel).dropNextEnvelopes(1);
    await change((d) => (d.tasks['t-00000003']!.usage.promptTokens = 5)); // dropped: the client never sees it
    const after = await change((d) => (d.tasks['t-00000003']!.usage.completionTokens = 7));
    await until(() => (client.seq === after ? true : undefined), 5000, 'the client to catch up');
    expect(client.resyncs).toBe(1);
    expect(client.state).toEqual(kernel.state.current.tasks['t-00000003']);
    expect(client.state!.usage).toEqual({ promptTokens: 5, completionTokens: 7 });
    client.close();
  });
});

describe('the client library on the whole document', () => {
  for (const transport of ['ws', 'sse'] as const) {
    it(`over ${transport}: applies envelopes copy-on-write and resyncs after a forced gap`, async () => {
      const client = new StateClient({ url: base, transport, WebSocket, headers });
      const statuses: ConnectionStatus[] = [];
      client.onStatus((s) => statuses.push(s));
      await client.start();
      expect(client.state).toEqual(JSON.parse(JSON.stringify(kernel.state.current)));
      const before = client.state!;
      const id = `t-0000010${transport === 'ws' ? 1 : 2}`;
      const seq = await change((d) => (d.tasks[id] = task(id)));
      await until(() => (client.seq === seq ? true : undefined), 5000, 'the envelope');
      expect(client.state).not.toBe(before);
      expect(client.state!.components).toBe(before.components); // untouched subtrees are shared
      expect(client.resyncs).toBe(0);

      streamHub(kernel).dropNextEnvelopes(1);
      await change((d) => (d.kernel.version = `gap-${transport}`));
      const last = await change((d) => (d.kernel.version = `after-gap-${transport}`));
      await until(() => (client.seq === last && client.status === 'live' ? true : undefined), 5000, 'the resync');
      expect(client.resyncs).toBe(1);
      expect(statuses).toContain('resyncing');
      expect(client.state).toEqual(JSON.parse(JSON.stringify(kernel.state.current)));
      client.close();
      expect(client.status).toBe('offline');
    });
  }

  it('reports a refused stream (no key) through onError instead of failing', async () => {
    const client = new StateClient({ url: base, WebSocket, reconnect: { initialMs: 10_000 } });
    const error = new Promise((resolve) => client.onError(resolve));
    void client.start();
    expect(await error).toEqual({ error: 'E_UNAUTHORIZED', message: expect.stringContaining('401'), status: 401 });
    client.close();
  });
});

describe('slow clients and client frames', () => {
  it('a client that stops reading is cut to a snapshot with bounded buffering while the others get every envelope', async () => {
    const hub = streamHub(kernel);
    const others = [new RawClient(), new RawClient(), new RawClient()];
    const slow = new RawClient();
    await Promise.all([...others, slow].map((c) => c.waitFor((m) => m.type === 'snapshot', 'the snapshot')));
    const start = kernel.state.seq;
    slow.socket.pause();

    const payload = 'x'.repeat(16 * 1024);
    const slowInfo = () => hub.list().find((c) => c.lagging);
    let maxBuffered = 0;
    let produced = 0;
    // Produce until the slow client is cut off, then 4 MiB more: its buffer must not grow past the bound.
    for (let afterCut = 0; afterCut < 256; produced++) {
      await change((d) => (d.kernel.version = `${produced}-${payload}`));
      await new Promise((resolve) => setImmediate(resolve));
      const info = slowInfo();
      if (info) {
        afterCut++;
        maxBuffered = Math.max(maxBuffered, ...hub.list().map((c) => c.bufferedBytes));
      }
      if (produced > 5_000) throw new Error('the slow client was never cut off');
    }
    const envelopeBytes = payload.length + 200;
    const snapshotBytes = JSON.stringify(kernel.state.current).length;
    expect(maxBuffered).toBeLessThanOrEqual(BUFFER_BYTES + snapshotBytes + envelopeBytes);

    const end = kernel.state.seq;
    for (const c of others) {
      await c.waitFor((m) => m.seq === end, 'the last envelope');
      expect(c.seqs().filter((s) => s > start)).toEqual(Array.from({ length: end - start }, (_, i) => start + 1 + i));
    }

    slow.socket.resume();
    // Once drained, its next message is a snapshot (sent at the next envelope or heartbeat).
    const resumed = await change((d) => (d.kernel.version = 'resumed'));
    const snapshot = await slow.waitFor((m) => m.type === 'snapshot' && m.seq >= resumed, 'the catch-up snapshot');
    const afterSnapshot = await change((d) => (d.kernel.version = 'after'));
    await slow.waitFor((m) => m.seq === afterSnapshot && m.type === undefined, 'envelopes after the snapshot');
    const received = slow.messages.filter((m) => m.seq !== undefined && m.seq > start);
    // Before the cut: contiguous envelopes; then the snapshot; then contiguous again from it.
    const cut = received.findIndex((m) => m === snapshot);
    const beforeCut = received.slice(0, cut).map((m) => m.seq);
    expect(beforeCut).toEqual(Array.from({ length: beforeCut.length }, (_, i) => start + 1 + i));
    expect(beforeCut.length).toBeLessThan(end - start);
    expect(received.slice(cut + 1).map((m) => m.seq)).toEqual(Array.from({ length: received.length - cut - 1 }, (_, i) => snapshot.seq! + 1 + i));
    for (const c of [...others, slow]) c.close();
  }, 30_000);

  it('answers malformed frames with E_BAD_INPUT and goes on; ping → pong, resync → snapshot', async () => {
    const client = new RawClient();
    await client.waitFor((m) => m.type === 'snapshot', 'the snapshot');
    client.socket.send('not json');
    client.socket.send(Buffer.from([1, 2, 3]), { binary: true });
    client.socket.send('{"type":"subscribe"}');
    client.socket.send('[1]');
    await until(() => (client.messages.filter((m) => m.type === 'error').length === 4 ? true : undefined), 5000, 'four errors');
    expect(client.messages.filter((m) => m.type === 'error').map((m) => m.type === 'error' && m.message.split(':')[0])).toEqual([
      'a frame that is not JSON',
      'a binary frame',
      'a frame of type "subscribe"',
      'a frame of type null',
    ]);
    expect(client.messages.find((m) => m.type === 'error')).toMatchObject({ error: 'E_BAD_INPUT' });
    client.socket.send('{"type":"ping"}');
    await client.waitFor((m) => m.type === 'pong', 'the pong');
    client.socket.send('{"type":"resync"}');
    await until(() => (client.messages.filter((m) => m.type === 'snapshot').length === 2 ? true : undefined), 5000, 'the second snapshot');
    const seq = await change((d) => (d.kernel.version = 'after-errors'));
    await client.waitFor((m) => m.seq === seq && m.type === undefined, 'an envelope after the errors');
    client.close();
  });
});

describe('SSE', () => {
  it('resumes from Last-Event-ID with id: on every event and a retry: hint', async () => {
    const from = await change((d) => (d.kernel.version = 'sse-1'));
    const next = await change((d) => (d.kernel.version = 'sse-2'));
    const abort = new AbortController();
    const res = await fetch(`${base}/api/events?since=0`, { headers: { ...headers, 'last-event-id': String(from) }, signal: abort.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const reader = res.body!.getReader();
    let text = '';
    const later = await change((d) => (d.kernel.version = 'sse-3'));
    while (!text.includes(`id: ${later}\n`)) text += new TextDecoder().decode((await reader.read()).value);
    const events = text.split('\n\n').filter(Boolean);
    expect(events[0]).toBe('retry: 1000');
    expect(events.slice(1, 3).map((e) => e.split('\n')[0])).toEqual([`id: ${next}`, `id: ${later}`]);
    expect(JSON.parse(events[1]!.split('\n')[1]!.slice('data: '.length))).toEqual({ seq: next, ts: expect.any(Number), ops: [{ op: 'replace', path: '/kernel/version', value: 'sse-2' }] });
    abort.abort();
  });

  it('emits client events (+1/-1) by kind on the runtime bus', async () => {
    await until(() => (hub().list().length === 0 ? true : undefined), 5000, 'every client to be gone');
    const sum = (kind: string) => clientEvents.filter((e) => e.type === 'client' && e.kind === kind).reduce((n, e) => n + (e.type === 'client' ? e.delta : 0), 0);
    expect(clientEvents.some((e) => e.type === 'client' && e.kind === 'sse' && e.delta === 1)).toBe(true);
    expect(clientEvents.some((e) => e.type === 'client' && e.kind === 'ws' && e.delta === -1)).toBe(true);
    expect(sum('ws')).toBe(0);
    expect(sum('sse')).toBe(0);
  });
});

function hub() {
  return streamHub(kernel);
}
