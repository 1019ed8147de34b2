/**
 * `wasi:http/types` and `wasi:http/outgoing-handler` (WASI 0.2, `wasi:http@0.2.12`) as the
 * kernel implements them for guests, in the guest's worker. Only the client side: a guest builds
 * an `outgoing-request`, `handle` hands it to a synchronous transport (the worker asks the main
 * thread, which checks the grant and fetches), and the guest reads the `incoming-response`.
 * The server side (`incoming-request`, `response-outparam`, `outgoing-response`) traps.
 *
 * Bodies are whole byte arrays on both sides: a request is sent once its body is finished, and a
 * response arrives with its body already read (capped by the host: past the cap the body stream
 * ends and `future-trailers.get` reports `HTTP-response-body-size`).
 */
import { InputStream, IoError, OutputStream, Pollable } from './io.js';

/**
 * The WASI `wasi:http/types.error-code` values the kernel produces (a subset of the variant;
 * jco's shape: `{ tag }` or `{ tag, val }`, tags spelled exactly as in the WIT).
 */
export type HttpErrorCode =
  | { tag: 'DNS-timeout' }
  | { tag: 'DNS-error'; val: { rcode?: string; infoCode?: number } }
  | { tag: 'destination-not-found' }
  | { tag: 'destination-unavailable' }
  | { tag: 'destination-IP-unroutable' }
  | { tag: 'connection-refused' }
  | { tag: 'connection-terminated' }
  | { tag: 'connection-timeout' }
  | { tag: 'TLS-protocol-error' }
  | { tag: 'TLS-certificate-error' }
  | { tag: 'HTTP-request-denied' }
  | { tag: 'HTTP-request-body-size'; val?: bigint }
  | { tag: 'HTTP-request-method-invalid' }
  | { tag: 'HTTP-request-URI-invalid' }
  | { tag: 'HTTP-response-incomplete' }
  | { tag: 'HTTP-response-body-size'; val?: bigint }
  | { tag: 'HTTP-response-timeout' }
  | { tag: 'HTTP-protocol-error' }
  | { tag: 'internal-error'; val?: string };

/** A header as it crosses threads: lower-case name, value as bytes or as a Latin-1 string. */
export type HeaderEntry = [string, Uint8Array | string];

/**
 * One outbound request, as the worker hands it to the host (structured-clone data).
 * Built from a guest's `wasi:http/types.outgoing-request` by `outgoing-handler.handle`.
 */
export interface OutboundRequest {
  /** Method token, upper case for the standard methods (`GET`, `POST`, …). */
  method: string;
  /** Lower-case scheme as the guest set it: `http`, `https`, or anything else (refused by the host). */
  scheme: string;
  /** `host[:port]` exactly as the guest set it; parsed and checked against the grant by the host. */
  authority: string;
  /** Path and query, starting with `/`. */
  pathWithQuery: string;
  /** Request headers in the guest's order, names lower case. */
  headers: HeaderEntry[];
  /** The whole request body (empty when the guest wrote none). */
  body: Uint8Array;
  /** Time the host may spend on the request, ms: the call's remaining deadline, or less when the guest set request-options. */
  timeoutMs: number;
}

/**
 * The host's answer to an {@link OutboundRequest}: a response with its body already read, or the
 * WASI `error-code` the guest receives from `future-incoming-response.get`.
 */
export type OutboundResponse =
  | {
      /** HTTP status code (1xx–5xx; 3xx redirects are returned, never followed). */
      status: number;
      /** Response headers, names lower case. */
      headers: HeaderEntry[];
      /** The body, at most the host's `maxBodyBytes`. */
      body: Uint8Array;
      /** True when the body was cut at `maxBodyBytes`. */
      truncated: boolean;
    }
  | { error: HttpErrorCode };

/** The synchronous transport behind `handle`: blocks the guest until the host answers. */
export type HttpTransport = (request: OutboundRequest) => OutboundResponse;

/** WIT `method` variant. */
type Method = { tag: 'get' | 'head' | 'post' | 'put' | 'delete' | 'connect' | 'options' | 'trace' | 'patch' } | { tag: 'other'; val: string };
/** WIT `scheme` variant. */
type Scheme = { tag: 'HTTP' | 'HTTPS' } | { tag: 'other'; val: string };
/** WIT `header-error` variant. */
type HeaderError = { tag: 'invalid-syntax' | 'forbidden' | 'immutable' };

/** Largest request body a guest may write, bytes (`HTTP-request-body-size` past it). */
const MAX_REQUEST_BODY_BYTES = 16 * 2 ** 20;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*$/;
// No whitespace, controls, or delimiters that would let an authority spill into the path.
const AUTHORITY = /^[^\s\x00-\x1f\x7f/?#\\]*$/;
const PATH = /^(\/[^\s\x00-\x1f\x7f#]*)?$|^\?[^\s\x00-\x1f\x7f#]*$/;

/** Headers a guest may not set (hop-by-hop or connection-level; the host owns them), as Wasmtime's wasi-http. */
const FORBIDDEN = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'http2-settings']);

/** The "result with no error type" failure: the glue ignores the value. */
function fail(why: string): never {
  throw why;
}

function validValue(value: Uint8Array): boolean {
  // field-content: HTAB, SP, VCHAR, obs-text; never NUL, CR, LF or other controls.
  return value.every((b) => b === 0x09 || (b >= 0x20 && b !== 0x7f));
}

function checkName(name: string): string {
  if (!TOKEN.test(name)) throw { tag: 'invalid-syntax' } satisfies HeaderError;
  const lower = name.toLowerCase();
  if (FORBIDDEN.has(lower)) throw { tag: 'forbidden' } satisfies HeaderError;
  return lower;
}

function checkValue(value: Uint8Array): Uint8Array {
  if (!validValue(value)) throw { tag: 'invalid-syntax' } satisfies HeaderError;
  return value.slice();
}

/** Fields that refuse `set`, `append` and `delete` with `header-error.immutable`. */
const immutable = new WeakSet<Fields>();

/**
 * `wasi:http/types.fields` (also `headers` and `trailers`): an ordered multimap, names
 * case-insensitive (stored lower case), values bytes. Fields a guest builds are mutable; the
 * headers of a request or response, read back through `headers()`, are immutable.
 */
export class Fields {
  #entries: Array<[string, Uint8Array]> = [];

  /** A view of `entries` (shared, not copied); `frozen` makes it immutable. */
  static of(entries: Array<[string, Uint8Array]>, frozen: boolean): Fields {
    const fields = new Fields();
    fields.#entries = entries;
    if (frozen) immutable.add(fields);
    return fields;
  }

  /** @throws `header-error.invalid-syntax` or `.forbidden` for any bad entry */
  static fromList(entries: Array<[string, Uint8Array]>): Fields {
    return Fields.of(entries.map(([name, value]) => [checkName(name), checkValue(value)]), false);
  }

  get(name: string): Uint8Array[] {
    const lower = name.toLowerCase();
    return this.#entries.filter(([n]) => n === lower).map(([, v]) => v.slice());
  }
  has(name: string): boolean {
    const lower = name.toLowerCase();
    return this.#entries.some(([n]) => n === lower);
  }
  set(name: string, values: Uint8Array[]): void {
    this.#mutable();
    const lower = checkName(name);
    const checked = values.map(checkValue);
    this.#entries = [...this.#entries.filter(([n]) => n !== lower), ...checked.map((v): [string, Uint8Array] => [lower, v])];
  }
  delete(name: string): void {
    this.#mutable();
    const lower = checkName(name);
    this.#entries = this.#entries.filter(([n]) => n !== lower);
  }
  append(name: string, value: Uint8Array): void {
    this.#mutable();
    this.#entries.push([checkName(name), checkValue(value)]);
  }
  entries(): Array<[string, Uint8Array]> {
    return this.#entries.map(([n, v]) => [n, v.slice()]);
  }
  /** A mutable deep copy, even of immutable fields. */
  clone(): Fields {
    return Fields.of(this.entries(), false);
  }

  /** The entries, for the kernel only (not a WIT method). */
  list(): ReadonlyArray<[string, Uint8Array]> {
    return this.#entries;
  }

  #mutable(): void {
    if (immutable.has(this)) throw { tag: 'immutable' } satisfies HeaderError;
  }
}

/**
 * `wasi:http/types.outgoing-body`: collects what the guest writes. The request is sent once the
 * body is finished (`finish`), or at `handle` when the body is never requested.
 */
export class OutgoingBody {
  #chunks: Uint8Array[] = [];
  #size = 0;
  #stream: OutputStream | null = null;
  #finished = false;
  /** Called once, when the guest finishes the body. */
  onFinish: (() => void) | null = null;

  write(): OutputStream {
    if (this.#stream || this.#finished) fail('the body stream was already taken');
    this.#stream = new OutputStream((bytes) => {
      if (this.#finished) throw new Error('the body was already finished');
      this.#size += bytes.length;
      if (this.#size > MAX_REQUEST_BODY_BYTES) throw new Error(`request body exceeds ${MAX_REQUEST_BODY_BYTES} bytes`);
      this.#chunks.push(bytes.slice());
    });
    return this.#stream;
  }

  /** @throws `error-code.internal-error` when trailers are given (the kernel cannot send them) */
  static finish(body: OutgoingBody, trailers: Fields | undefined): void {
    if (trailers && trailers.list().length > 0) throw { tag: 'internal-error', val: 'request trailers are not supported' } satisfies HttpErrorCode;
    if (body.#size > MAX_REQUEST_BODY_BYTES) throw { tag: 'HTTP-request-body-size', val: BigInt(body.#size) } satisfies HttpErrorCode;
    body.#finished = true;
    body.onFinish?.();
  }

  /** True once `finish` was called. */
  get finished(): boolean {
    return this.#finished;
  }

  /** Everything written, as one array. */
  bytes(): Uint8Array {
    return new Uint8Array(Buffer.concat(this.#chunks));
  }
}

/**
 * `wasi:http/types.outgoing-request`. Defaults: method GET, no scheme (https is used), no
 * authority (refused by `handle`), no path (`/`). Setters refuse malformed values.
 */
export class OutgoingRequest {
  #method: Method = { tag: 'get' };
  #scheme: Scheme | undefined;
  #authority: string | undefined;
  #path: string | undefined;
  #headers: Array<[string, Uint8Array]>;
  #body: OutgoingBody | null = null;

  /** Takes ownership of `headers`; `headers()` returns them immutable. */
  constructor(headers: Fields) {
    this.#headers = headers.entries();
  }

  body(): OutgoingBody {
    if (this.#body) fail('the body was already taken');
    this.#body = new OutgoingBody();
    return this.#body;
  }
  method(): Method {
    return this.#method;
  }
  setMethod(method: Method): void {
    if (method.tag === 'other' && !TOKEN.test(method.val)) fail('invalid method');
    this.#method = method;
  }
  pathWithQuery(): string | undefined {
    return this.#path;
  }
  setPathWithQuery(path: string | undefined): void {
    if (path !== undefined && !PATH.test(path)) fail('invalid path-with-query');
    this.#path = path;
  }
  scheme(): Scheme | undefined {
    return this.#scheme;
  }
  setScheme(scheme: Scheme | undefined): void {
    if (scheme?.tag === 'other' && !SCHEME.test(scheme.val)) fail('invalid scheme');
    this.#scheme = scheme;
  }
  authority(): string | undefined {
    return this.#authority;
  }
  setAuthority(authority: string | undefined): void {
    if (authority !== undefined && !AUTHORITY.test(authority)) fail('invalid authority');
    this.#authority = authority;
  }
  headers(): Fields {
    return Fields.of(this.#headers, true);
  }

  /** The request as the transport takes it, or the error-code `handle` must fail with. */
  toOutbound(timeoutMs: number): OutboundRequest | HttpErrorCode {
    if (!this.#authority) return { tag: 'HTTP-request-URI-invalid' };
    const m = this.#method;
    const scheme = this.#scheme === undefined ? 'https' : this.#scheme.tag === 'other' ? this.#scheme.val.toLowerCase() : this.#scheme.tag.toLowerCase();
    return {
      method: m.tag === 'other' ? m.val : m.tag.toUpperCase(),
      scheme,
      authority: this.#authority,
      pathWithQuery: this.#path === undefined || this.#path === '' ? '/' : this.#path.startsWith('?') ? `/${this.#path}` : this.#path,
      headers: this.#headers.map(([n, v]) => [n, v]),
      body: this.#body?.bytes() ?? new Uint8Array(),
      timeoutMs,
    };
  }

  /** The body the guest took and has not finished yet, if any. */
  get pendingBody(): OutgoingBody | null {
    return this.#body && !this.#body.finished ? this.#body : null;
  }
}

/** Nanoseconds (WIT `duration`) → ms. */
const ms = (ns: bigint | undefined): number => (ns === undefined ? Infinity : Number(ns / 1_000_000n));

/**
 * `wasi:http/types.request-options`. The kernel applies one timeout per request: the call's
 * remaining deadline, shortened to `connect-timeout + first-byte-timeout` when the guest set both.
 * `between-bytes-timeout` is kept but not enforced separately (the host reads the body whole,
 * within the same timeout).
 */
export class RequestOptions {
  #connect: bigint | undefined;
  #firstByte: bigint | undefined;
  #betweenBytes: bigint | undefined;

  connectTimeout(): bigint | undefined {
    return this.#connect;
  }
  setConnectTimeout(ns: bigint | undefined): void {
    this.#connect = ns;
  }
  firstByteTimeout(): bigint | undefined {
    return this.#firstByte;
  }
  setFirstByteTimeout(ns: bigint | undefined): void {
    this.#firstByte = ns;
  }
  betweenBytesTimeout(): bigint | undefined {
    return this.#betweenBytes;
  }
  setBetweenBytesTimeout(ns: bigint | undefined): void {
    this.#betweenBytes = ns;
  }

  /** The guest's bound on one request, ms (Infinity when it set none). */
  limitMs(): number {
    return ms(this.#connect) + ms(this.#firstByte);
  }
}

/** `wasi:http/types.incoming-body`: the response body, read whole by the host. */
export class IncomingBody {
  #stream: InputStream | null = null;

  constructor(
    private readonly data: Uint8Array,
    private readonly truncatedAt: number | null,
  ) {}

  stream(): InputStream {
    if (this.#stream) fail('the body stream was already taken');
    let pos = 0;
    this.#stream = new InputStream((max) => {
      if (pos >= this.data.length) return null;
      const chunk = this.data.subarray(pos, pos + max);
      pos += chunk.length;
      return chunk;
    });
    return this.#stream;
  }

  static finish(body: IncomingBody): FutureTrailers {
    return new FutureTrailers(
      body.truncatedAt === null
        ? { tag: 'ok', val: undefined }
        : { tag: 'err', val: { tag: 'HTTP-response-body-size', val: BigInt(body.truncatedAt) } },
    );
  }
}

/**
 * `wasi:http/types.future-trailers`: always ready. No trailers (fetch does not expose them), or
 * `HTTP-response-body-size(cap)` when the host cut the body.
 */
export class FutureTrailers {
  #taken = false;
  constructor(private readonly value: { tag: 'ok'; val: undefined } | { tag: 'err'; val: HttpErrorCode }) {}

  subscribe(): Pollable {
    return new Pollable();
  }
  get(): { tag: 'ok'; val: { tag: 'ok'; val: undefined } | { tag: 'err'; val: HttpErrorCode } } | { tag: 'err'; val: undefined } {
    if (this.#taken) return { tag: 'err', val: undefined };
    this.#taken = true;
    return { tag: 'ok', val: this.value };
  }
}

/** `wasi:http/types.incoming-response`: status, immutable headers, the body once. */
export class IncomingResponse {
  #consumed = false;
  constructor(
    private readonly code: number,
    private readonly fields: Array<[string, Uint8Array]>,
    private readonly data: Uint8Array,
    private readonly truncatedAt: number | null,
  ) {}

  status(): number {
    return this.code;
  }
  headers(): Fields {
    return Fields.of(this.fields, true);
  }
  consume(): IncomingBody {
    if (this.#consumed) fail('the body was already consumed');
    this.#consumed = true;
    return new IncomingBody(this.data, this.truncatedAt);
  }
}

type ResponseResult = { tag: 'ok'; val: IncomingResponse } | { tag: 'err'; val: HttpErrorCode };

/**
 * `wasi:http/types.future-incoming-response`. Resolved when the request is sent: at `handle`, or
 * when the guest finishes a body it took before calling `handle`. Waiting on a request whose body
 * is still open cannot succeed (the guest is blocked and cannot finish it), so it resolves to
 * `internal-error`.
 */
export class FutureIncomingResponse {
  #value: ResponseResult | null = null;
  #taken = false;

  /** Settle the future (first call wins). */
  resolve(value: ResponseResult): void {
    this.#value ??= value;
  }
  get ready(): boolean {
    return this.#value !== null;
  }

  subscribe(): Pollable {
    return new ResponsePollable(this);
  }
  get(): { tag: 'ok'; val: ResponseResult } | { tag: 'err'; val: undefined } | undefined {
    if (this.#taken) return { tag: 'err', val: undefined };
    if (!this.#value) return undefined;
    this.#taken = true;
    return { tag: 'ok', val: this.#value };
  }
}

/** The pollable of a {@link FutureIncomingResponse}. */
class ResponsePollable extends Pollable {
  constructor(private readonly future: FutureIncomingResponse) {
    super();
  }
  override ready(): boolean {
    return this.future.ready;
  }
  override block(): void {
    if (!this.future.ready) this.future.resolve({ tag: 'err', val: { tag: 'internal-error', val: 'waited for a response before finishing the request body' } });
  }
}

function serverSide(): never {
  throw new Error('wasi:http server side (incoming-handler) is not available to Warden guests');
}

/** Server-side resources: never handed out; any use traps with a clear message. */
class IncomingRequest {
  constructor() {
    serverSide();
  }
}
class OutgoingResponse {
  constructor() {
    serverSide();
  }
}
class ResponseOutparam {
  static set(): never {
    return serverSide();
  }
}

function toBytes(value: Uint8Array | string): Uint8Array {
  return typeof value === 'string' ? new Uint8Array(Buffer.from(value, 'latin1')) : value;
}

/**
 * The import objects of `wasi:http/types` and `wasi:http/outgoing-handler` (WASI 0.2.12).
 *
 * @param transport sends one request and blocks until the answer (in the worker: a host request
 *   `http.fetch`, after checking the call's grant). Its errors are `error-code` values.
 * @param remainingMs the current call's remaining time, ms: the most a request may take.
 * @returns `{ 'wasi:http/types': {...}, 'wasi:http/outgoing-handler': { handle } }`. `handle`
 *   throws an `error-code` (jco: the plain variant value) for a request it cannot build
 *   (`HTTP-request-URI-invalid` without an authority); network failures and denials arrive
 *   through `future-incoming-response.get`.
 */
export function httpImports(transport: HttpTransport, remainingMs: () => number): { 'wasi:http/types': Record<string, unknown>; 'wasi:http/outgoing-handler': Record<string, unknown> } {
  const send = (request: OutgoingRequest, options: RequestOptions | undefined, future: FutureIncomingResponse): void => {
    const outbound = request.toOutbound(Math.max(0, Math.min(remainingMs(), options?.limitMs() ?? Infinity)));
    if ('tag' in outbound) return future.resolve({ tag: 'err', val: outbound });
    const answer = transport(outbound);
    if ('error' in answer) return future.resolve({ tag: 'err', val: answer.error });
    const headers = answer.headers.map(([n, v]): [string, Uint8Array] => [n.toLowerCase(), toBytes(v)]);
    future.resolve({ tag: 'ok', val: new IncomingResponse(answer.status, headers, answer.body, answer.truncated ? answer.body.length : null) });
  };

  return {
    'wasi:http/types': {
      Fields, OutgoingRequest, RequestOptions, OutgoingBody, FutureIncomingResponse, IncomingResponse, IncomingBody, FutureTrailers,
      IncomingRequest, OutgoingResponse, ResponseOutparam,
      // Stream errors of the kernel's bodies are never HTTP failures.
      httpErrorCode: (_err: IoError) => undefined,
    },
    'wasi:http/outgoing-handler': {
      handle: (request: OutgoingRequest, options: RequestOptions | undefined): FutureIncomingResponse => {
        if (!request.authority()) throw { tag: 'HTTP-request-URI-invalid' } satisfies HttpErrorCode;
        const future = new FutureIncomingResponse();
        const pending = request.pendingBody;
        if (pending) pending.onFinish = () => send(request, options, future);
        else send(request, options, future);
        return future;
      },
    },
  };
}
