/**
 * The fan-out behind the patch stream (`stream.ts`): one subscription to the kernel's state
 * document per kernel, whatever the number of clients. Each envelope is serialized once and the
 * same bytes go to every whole-document client (WebSocket and SSE); narrowed clients get their
 * rebased envelope (`kernel/state/narrow.ts`).
 *
 * Per client: resume from `since` (or a snapshot when it left the log), slow-client handling
 * (past `server.streamBufferBytes` of unsent bytes on top of its last snapshot, a client stops
 * getting envelopes and gets a snapshot once its buffer has drained: memory per client stays
 * bounded), liveness (`server.pingIntervalMs`: WebSocket ping/pong, SSE comment heartbeats),
 * the shutdown message, and `client` events (+1/-1) on the runtime bus.
 */
import type { WebSocket } from 'ws';
import type { ServerResponse } from 'node:http';
import type { Kernel } from '../../kernel.js';
import type { Envelope } from '../../state/index.js';
import { existedBefore, SubtreeView } from '../../state/narrow.js';
import type { ErrorMessage, ShutdownMessage } from '../../state/protocol.js';

/** WebSocket close code "going away" (RFC 6455 §7.4.1). */
const GOING_AWAY = 1001;

/** How often a lagging client's buffer is checked for having drained, ms. */
const LAG_POLL_MS = 100;

/** How a client's bytes leave: one JSON message at a time. */
interface Sink {
  readonly kind: 'ws' | 'sse';
  /** Send one message (JSON text, or the bytes of it); `seq` is its sequence number (SSE `id:`). */
  send(message: string | Buffer, seq: number): void;
  /** Bytes queued in the process for this client and not yet handed to the OS. */
  bufferedBytes(): number;
  /** Liveness: `false` when the client is dead (and was terminated). */
  heartbeat(): boolean;
  /** End the stream (the kernel is stopping). */
  end(): void;
}

/** What tests and metrics can see of a connected client. */
export interface StreamClientInfo {
  kind: 'ws' | 'sse';
  /** The subtree it is narrowed to, or undefined for the whole document. */
  path: string | undefined;
  /** Last sequence number sent to it. */
  sent: number;
  /** Cut off for lagging: it gets a snapshot once its buffer drains. */
  lagging: boolean;
  /** Bytes queued for it in the process (not yet handed to the OS). */
  bufferedBytes: number;
  /** Snapshots sent so far (the first included). */
  snapshots: number;
}

/** One connected client of the patch stream. */
export class StreamClient {
  private sentSeq = 0;
  private lagging = false;
  private snapshots = 0;
  /** Bytes of the last snapshot sent: allowed in the buffer on top of `server.streamBufferBytes`. */
  private snapshotBytes = 0;
  /** While lagging: checks whether the buffer has drained (the transports have no portable drain event). */
  private lagTimer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly hub: StreamHub,
    readonly sink: Sink,
    private readonly view: SubtreeView | undefined,
  ) {}

  /** Public view for tests and metrics. */
  info(): StreamClientInfo {
    return { kind: this.sink.kind, path: this.view?.path, sent: this.sentSeq, lagging: this.lagging, bufferedBytes: this.sink.bufferedBytes(), snapshots: this.snapshots };
  }

  /** Last sequence number sent on this stream. */
  get sent(): number {
    return this.sentSeq;
  }

  /** Send what the client missed since `since` (a snapshot when it left the retained log, or when there is no `since`). */
  start(since: number | undefined): void {
    const state = this.hub.kernel.state;
    const envelopes = since === undefined ? null : state.since(since);
    if (since === undefined || !envelopes) return this.sendSnapshot();
    this.sentSeq = since;
    if (this.view) this.view.resume(since, existedBefore(envelopes, this.view.tokens, state.existsAt(this.view.tokens)));
    for (const envelope of envelopes) this.deliver(envelope, undefined);
  }

  /** Send the document (or the subtree) as of now, replacing whatever the client holds. */
  sendSnapshot(): void {
    const state = this.hub.kernel.state;
    let text: string;
    if (this.view) {
      const { seq, json } = state.subtreeJson(this.view.tokens);
      this.view.resume(seq, json !== undefined);
      text = `{"type":"snapshot","seq":${seq},"epoch":"${state.epoch}","path":${JSON.stringify(this.view.path)}${json === undefined ? '' : `,"state":${json}`}}`;
      this.sentSeq = seq;
    } else {
      const { seq, json } = state.snapshotJson();
      text = `{"type":"snapshot","seq":${seq},"epoch":"${state.epoch}","state":${json}}`;
      this.sentSeq = seq;
    }
    this.lagging = false;
    clearInterval(this.lagTimer);
    this.snapshots++;
    this.snapshotBytes = Buffer.byteLength(text);
    this.sink.send(text, this.sentSeq);
  }

  /**
   * Send `envelope` (`shared`: its serialized bytes, made once for every whole-document client).
   * A lagging client gets nothing until its buffer has drained, then a snapshot. `lost` (the
   * hub's test hook): everything happens as if it was sent, but it never leaves.
   */
  deliver(envelope: Envelope, shared: Buffer | undefined, lost = false): void {
    if (this.lagging) return this.recover();
    if (this.sink.bufferedBytes() > this.hub.bufferBytes + this.snapshotBytes) {
      this.lagging = true;
      this.lagTimer = setInterval(() => this.recover(), LAG_POLL_MS);
      this.lagTimer.unref();
      return;
    }
    if (!this.view) {
      if (!lost) this.sink.send(shared ?? JSON.stringify(envelope), envelope.seq);
      this.sentSeq = envelope.seq;
      return;
    }
    const narrowed = this.view.narrow(envelope);
    if (narrowed === 'snapshot') return this.sendSnapshot();
    if (narrowed === null) return;
    if (!lost) this.sink.send(JSON.stringify(narrowed), envelope.seq);
    this.sentSeq = envelope.seq;
  }

  /** A lagging client whose buffer has drained gets a snapshot (checked per envelope and every 100 ms). */
  recover(): void {
    if (this.lagging && this.sink.bufferedBytes() === 0) this.sendSnapshot();
  }

  /** The client is gone: stop its timers. */
  dispose(): void {
    clearInterval(this.lagTimer);
  }

  /** Answer a client frame: `{type:"ping"}` → pong, `{type:"resync"}` → snapshot, anything else → an error message. */
  receive(data: string | undefined): void {
    let frame: unknown;
    try {
      frame = data === undefined ? undefined : JSON.parse(data);
    } catch {
      frame = undefined;
    }
    const type = frame !== null && typeof frame === 'object' ? (frame as { type?: unknown }).type : undefined;
    if (type === 'ping') return this.sink.send(JSON.stringify({ type: 'pong', seq: this.sentSeq }), this.sentSeq);
    if (type === 'resync') return this.sendSnapshot();
    const what = data === undefined ? 'a binary frame' : frame === undefined ? 'a frame that is not JSON' : `a frame of type ${JSON.stringify(type ?? null).slice(0, 40)}`;
    const error: ErrorMessage = { type: 'error', error: 'E_BAD_INPUT', message: `${what}: send {"type":"ping"} or {"type":"resync"} (text frames, JSON); the stream goes on` };
    this.sink.send(JSON.stringify(error), this.sentSeq);
  }

  /** The kernel is stopping: say so (with the last seq sent) and end the stream. */
  shutdown(reason: string): void {
    const message: ShutdownMessage = { type: 'shutdown', seq: this.sentSeq, reason };
    this.sink.send(JSON.stringify(message), this.sentSeq);
    this.sink.end();
  }
}

/** All stream clients of one kernel. Get it with {@link streamHub}. */
export class StreamHub {
  private readonly clients = new Set<StreamClient>();
  private unsubscribe: (() => void) | undefined;
  private unsubscribeStop: (() => void) | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private drops = 0;
  /** `server.streamBufferBytes`. */
  readonly bufferBytes: number;
  /** `server.pingIntervalMs`. */
  readonly pingIntervalMs: number;

  constructor(readonly kernel: Kernel) {
    this.bufferBytes = kernel.config.server.streamBufferBytes;
    this.pingIntervalMs = kernel.config.server.pingIntervalMs;
  }

  /** Connected clients (tests, metrics). */
  list(): StreamClientInfo[] {
    return [...this.clients].map((c) => c.info());
  }

  /**
   * Test hook: the next `count` envelopes are lost on the way to every client (each client
   * counts them as sent, narrowed ones included), so clients see a gap in `seq` (or a `prev`
   * that is not their last seq) and must resync. Never used by the kernel itself.
   */
  dropNextEnvelopes(count = 1): void {
    this.drops += count;
  }

  /** Register a connected client: it is sent what it missed since `since` and then every envelope. */
  add(sink: Sink, path: string | undefined, since: number | undefined): StreamClient {
    const client = new StreamClient(this, sink, path === undefined ? undefined : new SubtreeView(path));
    if (this.clients.size === 0) this.activate();
    this.clients.add(client);
    this.kernel.events.emit(undefined, { type: 'client', kind: sink.kind, delta: 1 });
    client.start(since);
    return client;
  }

  /** The client went away. */
  remove(client: StreamClient): void {
    if (!this.clients.delete(client)) return;
    client.dispose();
    this.kernel.events.emit(undefined, { type: 'client', kind: client.sink.kind, delta: -1 });
    if (this.clients.size === 0) this.deactivate();
  }

  private activate(): void {
    this.unsubscribe = this.kernel.state.subscribe((envelope) => this.publish(envelope));
    this.unsubscribeStop = this.kernel.onStop((reason) => {
      for (const client of [...this.clients]) client.shutdown(reason);
    });
    this.timer = setInterval(() => this.heartbeat(), this.pingIntervalMs);
    this.timer.unref();
  }

  private deactivate(): void {
    this.unsubscribe?.();
    this.unsubscribeStop?.();
    clearInterval(this.timer);
  }

  private publish(envelope: Envelope): void {
    const lost = this.drops > 0;
    if (lost) this.drops--;
    // Serialized once for all whole-document clients (ws and SSE send these same bytes).
    const shared = Buffer.from(JSON.stringify(envelope));
    for (const client of this.clients) client.deliver(envelope, shared, lost);
  }

  private heartbeat(): void {
    for (const client of [...this.clients]) client.sink.heartbeat();
  }
}

const hubs = new WeakMap<Kernel, StreamHub>();

/** The stream hub of `kernel` (created on first use; shared by every server of the kernel). */
export function streamHub(kernel: Kernel): StreamHub {
  let hub = hubs.get(kernel);
  if (!hub) hubs.set(kernel, (hub = new StreamHub(kernel)));
  return hub;
}

/**
 * A WebSocket client (`ws`): text frames; ping every `pingIntervalMs`, terminated when the pong of
 * the previous ping has not come back.
 */
export function webSocketSink(socket: WebSocket): Sink {
  let alive = true;
  socket.on('pong', () => (alive = true));
  return {
    kind: 'ws',
    send: (message) => socket.send(message, { binary: false }),
    bufferedBytes: () => socket.bufferedAmount,
    heartbeat: () => {
      if (!alive) {
        socket.terminate();
        return false;
      }
      alive = false;
      socket.ping();
      return true;
    },
    end: () => socket.close(GOING_AWAY, 'kernel shutting down'),
  };
}

const NEWLINE = Buffer.from('\n\n');

/**
 * A Server-Sent Events client (WHATWG HTML §9.2): `id: <seq>` and one `data:` line per message
 * (JSON has no raw newlines), a comment line as heartbeat; a failed write ends the response.
 */
export function eventStreamSink(res: ServerResponse, kind: 'sse' = 'sse'): Sink {
  return {
    kind,
    send: (message, seq) => {
      if (res.destroyed || res.writableEnded) return;
      // One chunk on the wire, without copying the shared bytes.
      res.cork();
      res.write(`id: ${seq}\ndata: `);
      res.write(message);
      res.write(NEWLINE);
      res.uncork();
    },
    bufferedBytes: () => res.writableLength,
    heartbeat: () => {
      if (res.destroyed || res.writableEnded) return false;
      res.write(': ping\n\n');
      return true;
    },
    end: () => res.end(),
  };
}
