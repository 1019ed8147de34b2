/**
 * The state client: holds a copy of the kernel's state document (or one subtree of it), kept
 * current by the patch stream (`docs/stream.md`). Isomorphic: runs in browsers and in Node 20
 * (pass `ws`'s WebSocket there); no Node imports.
 *
 * Envelopes are applied copy-on-write (every container on a changed path is new, the rest is
 * shared), so a UI framework sees a new top-level object per change. Sequence numbers are checked:
 * a gap or an operation that does not apply moves the client to `resyncing` and it reconnects
 * from its last good `seq` (the server answers with the missing envelopes or a snapshot).
 */
import type { Operation } from 'fast-json-patch';
import type { KernelState } from './index.js';
import { applyOperations, PatchFailure } from './apply.js';
import { parsePointer } from './pointer.js';
import type { StreamMessage } from './protocol.js';

export type { Operation } from 'fast-json-patch';

/** `connecting` (no document yet), `live`, `resyncing` (gap or failed patch, reconnecting), `offline` (lost or closed). */
export type ConnectionStatus = 'connecting' | 'live' | 'resyncing' | 'offline';

/** How to reach the kernel. */
export interface StateClientOptions {
  /** Base URL of the kernel, e.g. `http://127.0.0.1:8787` or `location.origin`. */
  url: string;
  /** Narrow to a subtree, a JSON Pointer (RFC 6901) such as `/tasks/t-1a2b3c4d` (default: the whole document). */
  path?: string;
  /** `ws` (default) or `sse`. */
  transport?: 'ws' | 'sse';
  /** WebSocket constructor (Node 20 has none built in: pass `ws`'s). Default: globalThis.WebSocket. */
  WebSocket?: unknown;
  /** fetch (default globalThis.fetch); used for SSE and to find out why a WebSocket was refused. */
  fetch?: typeof fetch;
  /** Extra headers (Node: `Authorization: Bearer wdn_…`); browsers use the login cookie. */
  headers?: Record<string, string>;
  /** Reconnect backoff, ms: first delay and cap (defaults 250 / 5000). */
  reconnect?: { initialMs?: number; maxMs?: number };
}

/** What a listener learns about a change. */
export interface ChangeInfo {
  seq: number;
  /** The ops just applied (absent for a snapshot). Paths are relative to `path` on a narrowed client. */
  ops?: Operation[];
  /** True when the document was replaced by a snapshot (first load or resync). */
  snapshot: boolean;
}

/**
 * A problem the server reported: an `{type: "error"}` frame, or a refused connection
 * (`status` is then the HTTP status, e.g. 401 `E_UNAUTHORIZED` when the key or login is missing).
 */
export interface StreamError {
  error: string;
  message: string;
  status?: number;
}

/** The slice of the WebSocket interface used here (browser WebSocket and `ws` both have it). */
interface SocketLike {
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: unknown) => void) | null;
  onerror: ((event: unknown) => void) | null;
  close(code?: number, reason?: string): void;
}
type SocketConstructor = new (url: string, options?: unknown) => SocketLike;

/** One connection attempt; messages of a superseded attempt are ignored. */
interface Connection {
  close(): void;
}

/**
 * Keeps a live copy of the state document. See the module comment and `docs/stream.md`.
 * @typeParam T the document's type (`KernelState`, or the subtree's type when `path` is set)
 */
export class StateClient<T = KernelState> {
  private current: T | undefined;
  private lastSeq = 0;
  private loaded = false;
  /** Epoch of the snapshot held (the kernel run it came from); sent back on reconnect. */
  private epoch: string | undefined;
  private currentStatus: ConnectionStatus = 'offline';
  private resyncCount = 0;
  /** A resync is under way (counted once, even when it ends with a snapshot). */
  private resyncing = false;
  private started = false;
  private closed = false;
  private connection: Connection | undefined;
  private attempt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly listeners = new Set<(state: T, info: ChangeInfo) => void>();
  private readonly statusListeners = new Set<(status: ConnectionStatus) => void>();
  private readonly errorListeners = new Set<(error: StreamError) => void>();
  private firstLoad: { resolve: () => void; reject: (err: Error) => void } | undefined;
  private readonly firstLoadPromise: Promise<void>;
  private readonly narrowed: boolean;
  private readonly initialMs: number;
  private readonly maxMs: number;

  /** @throws SyntaxError when `options.path` is not a JSON Pointer */
  constructor(private readonly options: StateClientOptions) {
    if (options.path !== undefined) parsePointer(options.path);
    this.narrowed = Boolean(options.path);
    this.initialMs = options.reconnect?.initialMs ?? 250;
    this.maxMs = options.reconnect?.maxMs ?? 5000;
    this.firstLoadPromise = new Promise((resolve, reject) => (this.firstLoad = { resolve, reject }));
    // start() may never be awaited when the client is closed first: do not report that as unhandled.
    this.firstLoadPromise.catch(() => {});
  }

  /** The document (or the subtree at `path`; `undefined` when nothing is there); `undefined` until the first snapshot. Do not mutate. */
  get state(): T | undefined {
    return this.current;
  }

  /** Last applied sequence number (0 before the first snapshot). */
  get seq(): number {
    return this.lastSeq;
  }

  get status(): ConnectionStatus {
    return this.currentStatus;
  }

  /** Number of resyncs so far (gap detected, snapshot after a reconnect, server cut to snapshot). */
  get resyncs(): number {
    return this.resyncCount;
  }

  /**
   * Connect (idempotent). Resolves when the first snapshot is applied, or when {@link close} is
   * called first.
   * @throws (rejects) Error when the server refuses the stream for a reason retrying cannot fix (400: a malformed `path`)
   */
  start(): Promise<void> {
    if (!this.started && !this.closed) {
      this.started = true;
      this.setStatus('connecting');
      this.connect();
    }
    return this.firstLoadPromise;
  }

  /** Called after every applied envelope or snapshot. @returns unsubscribe */
  subscribe(listener: (state: T, info: ChangeInfo) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Called on every status change. @returns unsubscribe */
  onStatus(listener: (status: ConnectionStatus) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  /** Called on every error the server reports (also logged with `console.warn` when nobody listens). @returns unsubscribe */
  onError(listener: (error: StreamError) => void): () => void {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }

  /** Close for good (no reconnect). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.connection?.close();
    this.connection = undefined;
    this.setStatus('offline');
    this.firstLoad?.resolve();
  }

  private connect(): void {
    if (this.closed) return;
    this.connection?.close();
    this.connection = this.options.transport === 'sse' ? this.connectSse() : this.connectWs();
  }

  /** The stream URL with `since` (when a document is held) and `path`. */
  private streamUrl(route: string, websocket: boolean): string {
    const url = new URL(route, this.options.url);
    if (websocket) url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    if (this.loaded && websocket) url.searchParams.set('since', String(this.lastSeq));
    // A restarted kernel counts from 0 again: the epoch tells it our `since` is from another run.
    if (this.loaded && this.epoch) url.searchParams.set('epoch', this.epoch);
    if (this.options.path) url.searchParams.set('path', this.options.path);
    return url.toString();
  }

  private connectWs(): Connection {
    const Socket = (this.options.WebSocket ?? (globalThis as { WebSocket?: unknown }).WebSocket) as SocketConstructor | undefined;
    if (!Socket) throw new Error('no WebSocket constructor: pass `WebSocket` (in Node 20, the `ws` package\'s) or use transport "sse"');
    const url = this.streamUrl('/api/stream', true);
    // Browsers cannot set headers on a WebSocket (they send the login cookie); `ws` takes them as options.
    const socket = this.options.headers ? new Socket(url, { headers: this.options.headers }) : new Socket(url);
    let live = true;
    let opened = false;
    const connection: Connection = {
      close: () => {
        live = false;
        socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
        try {
          socket.close(1000);
        } catch {
          // already closed
        }
      },
    };
    socket.onopen = () => {
      if (!live) return;
      opened = true;
      this.opened();
    };
    socket.onmessage = (event) => {
      if (live) this.receive(String(event.data), connection);
    };
    socket.onerror = () => {};
    socket.onclose = () => {
      if (!live) return;
      live = false;
      // A refused upgrade is only a close to a WebSocket: ask the REST side why.
      if (!opened) void this.probe();
      this.lost(connection);
    };
    return connection;
  }

  private connectSse(): Connection {
    const fetchFn = this.options.fetch ?? globalThis.fetch;
    const abort = new AbortController();
    let live = true;
    const connection: Connection = {
      close: () => {
        live = false;
        abort.abort();
      },
    };
    const headers: Record<string, string> = { accept: 'text/event-stream', ...this.options.headers };
    if (this.loaded) headers['last-event-id'] = String(this.lastSeq);
    void (async () => {
      try {
        const response = await fetchFn(this.streamUrl('/api/events', false), { headers, signal: abort.signal, credentials: 'same-origin' });
        if (!live) return;
        if (!response.ok || !response.body) {
          const body = (await response.json().catch(() => ({}))) as Partial<StreamError>;
          this.refused({ error: body.error ?? 'E_HTTP', message: body.message ?? `the stream was refused with HTTP ${response.status}`, status: response.status });
          if (live) this.lost(connection, response.status === 400);
          return;
        }
        this.opened();
        await readEvents(response.body, (data) => {
          if (live) this.receive(data, connection);
        });
      } catch {
        // aborted by close(), or the connection broke: handled below
      }
      if (live) {
        live = false;
        this.lost(connection);
      }
    })();
    return connection;
  }

  /** The connection is up: resuming a held document means we are live (missing envelopes follow). */
  private opened(): void {
    if (this.loaded) this.setStatus('live');
  }

  private receive(text: string, connection: Connection): void {
    let message: StreamMessage;
    try {
      message = JSON.parse(text) as StreamMessage;
    } catch {
      return this.resync(connection);
    }
    if (message.type === 'snapshot') {
      if (this.loaded && !this.resyncing) this.resyncCount++;
      this.resyncing = false;
      this.current = message.state as T | undefined;
      this.lastSeq = message.seq;
      this.epoch = message.epoch;
      this.loaded = true;
      this.attempt = 0;
      this.setStatus('live');
      this.emit({ seq: message.seq, snapshot: true });
      this.firstLoad?.resolve();
      this.firstLoad = undefined;
      return;
    }
    if (message.type === 'shutdown') {
      // The kernel is going away; it will come back: reconnect with backoff from `seq`.
      connection.close();
      this.lost(connection);
      return;
    }
    if (message.type === 'error') {
      this.refused({ error: message.error, message: message.message });
      return;
    }
    if (message.type === 'pong' || typeof message.seq !== 'number' || !Array.isArray(message.ops)) return;
    if (!this.loaded) return this.resync(connection);
    if (message.seq <= this.lastSeq) return; // already applied (a resumed stream overlapping)
    const expected = this.narrowed && typeof message.prev === 'number' ? message.prev === this.lastSeq : message.seq === this.lastSeq + 1;
    if (!expected) return this.resync(connection);
    let next: T | undefined;
    try {
      next = applyOperations(this.current, message.ops);
    } catch (err) {
      if (err instanceof PatchFailure) return this.resync(connection);
      throw err;
    }
    this.current = next;
    this.lastSeq = message.seq;
    this.resyncing = false;
    this.attempt = 0;
    this.emit({ seq: message.seq, ops: message.ops, snapshot: false });
  }

  /** A gap or a failed patch: drop the connection and resume from the last good `seq`. */
  private resync(connection: Connection): void {
    if (connection !== this.connection) return;
    if (!this.resyncing) this.resyncCount++;
    this.resyncing = true;
    this.setStatus('resyncing');
    connection.close();
    this.connection = undefined;
    // The first resync is immediate; repeated ones back off so a misbehaving server is not hammered.
    this.schedule(this.attempt++ === 0 ? 0 : this.backoff());
  }

  /** The connection ended (closed, broke, refused, shutdown): go offline and come back with backoff. */
  private lost(connection: Connection, fatal = false): void {
    if (connection !== this.connection || this.closed) return;
    this.connection = undefined;
    this.setStatus('offline');
    if (fatal) {
      this.firstLoad?.reject(new Error('the kernel refused the stream (HTTP 400): check `path`'));
      this.firstLoad = undefined;
      return;
    }
    this.schedule(this.backoff());
    this.attempt++;
  }

  private backoff(): number {
    const base = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt, 16));
    // Jitter so that many clients of a restarting kernel do not reconnect in lockstep.
    return Math.round(base * (0.75 + Math.random() * 0.25));
  }

  private schedule(delayMs: number): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delayMs);
  }

  /** Find out why a WebSocket closed before it opened (401 without a login, 429 past the stream limit…). */
  private async probe(): Promise<void> {
    const fetchFn = this.options.fetch ?? globalThis.fetch;
    if (!fetchFn) return;
    try {
      const response = await fetchFn(new URL('/api/state', this.options.url).toString(), { headers: this.options.headers, credentials: 'same-origin', method: 'HEAD' });
      if (response.status === 401) this.refused({ error: 'E_UNAUTHORIZED', message: 'the kernel wants an API key or a login (HTTP 401)', status: 401 });
    } catch {
      // the kernel is down: the reconnect loop covers it
    }
  }

  private refused(error: StreamError): void {
    if (this.errorListeners.size === 0) console.warn(`warden state stream: ${error.error}: ${error.message}`);
    for (const listener of this.errorListeners) listener(error);
  }

  private setStatus(status: ConnectionStatus): void {
    if (status === this.currentStatus) return;
    this.currentStatus = status;
    for (const listener of this.statusListeners) listener(status);
  }

  private emit(info: ChangeInfo): void {
    for (const listener of this.listeners) listener(this.current as T, info);
  }
}

/**
 * Read a `text/event-stream` body (WHATWG HTML §9.2), calling `onData` with each event's data.
 * Comments (heartbeats) and `id:`/`retry:`/`event:` fields are skipped: the data carries `seq`.
 */
async function readEvents(body: ReadableStream<Uint8Array>, onData: (data: string) => void): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let data: string[] = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let newline: number;
    while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
      if (newline === buffer.length - 1 && buffer.endsWith('\r')) break; // maybe the first half of CRLF
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + (buffer.startsWith('\r\n', newline) ? 2 : 1));
      if (line === '') {
        if (data.length > 0) onData(data.join('\n'));
        data = [];
      } else if (line.startsWith('data:')) data.push(line.slice(line[5] === ' ' ? 6 : 5));
    }
  }
}
