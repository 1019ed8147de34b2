/**
 * Outbound HTTP for guests, on the main thread: the grant check on the resolved request and the
 * fetch behind `wasi:http/outgoing-handler` (WASI 0.2, `wasi:http@0.2.12`). The worker checks the
 * same grant before asking ({@link checkOutbound}); this side checks again, because it is the one
 * that opens the connection.
 *
 * What is checked is what is fetched: the guest's scheme, authority and path are parsed once with
 * WHATWG `URL` (lower case, punycode, IPv4 forms such as `0x7f.1` normalised, default ports
 * dropped), the host and port of that parsed URL are matched with {@link hostAllowed}, and that
 * same URL is fetched. Redirects are never followed: a 3xx goes back to the guest, and if it
 * follows the `Location`, that is a new request, checked again.
 *
 * Nothing here logs headers or bodies: denial reasons name the method, origin and path only
 * (no query string, no userinfo), so secrets in headers or query parameters never reach the log.
 */
import { hostAllowed } from '../grants/index.js';
import type { HttpErrorCode, OutboundRequest, OutboundResponse } from '../wasi/http.js';

/** Options of {@link fetchGranted}. */
export interface FetchOptions {
  /** Cap on the response body, bytes. Past it the body ends and the response says `truncated`. */
  maxBodyBytes: number;
  /** Absolute deadline of the guest's call, ms since the epoch; the request's timeout is the smaller of this and `req.timeoutMs`. */
  deadline: number;
  /** Called with a one-line reason (no headers, no query) when the request is refused by policy. */
  onDenied(reason: string): void;
}

/** A request target that passed every check. */
export interface GrantedTarget {
  ok: true;
  /** The parsed URL, fetched as is. */
  url: URL;
  /** Normalised host (lower case, no trailing dot, IPv6 in brackets) and port used for the check. */
  host: string;
  port: number;
}

/** A refused request: the WASI error-code for the guest and, for policy refusals, the reason to audit. */
export interface RefusedTarget {
  ok: false;
  error: HttpErrorCode;
  /** Set when the refusal is a denial (scheme, userinfo, host or port not granted). */
  denied?: string;
}

const DEFAULT_PORTS = new Map([['http', 80], ['https', 443]]);

/** `METHOD scheme://host:port/path` without query or userinfo, for reasons and audit. */
function describe(method: string, url: URL): string {
  return `${method} ${url.protocol}//${url.host}${url.pathname}`;
}

/**
 * Parse and check a guest's request against `grants` (see `Grants.http`).
 *
 * Refuses with `HTTP-request-denied` (and a reason): a scheme other than http/https, userinfo in
 * the authority (`user@host`), a host or port no pattern grants. Refuses with
 * `HTTP-request-URI-invalid` (no reason: not a policy matter): an authority or path that does not
 * parse, or an authority that would spill into the path.
 */
export function checkOutbound(req: OutboundRequest, grants: string[]): GrantedTarget | RefusedTarget {
  const scheme = req.scheme.toLowerCase();
  // Never echo userinfo: it may hold a password.
  const shown = req.authority.includes('@') ? `…@${req.authority.slice(req.authority.lastIndexOf('@') + 1)}` : req.authority;
  const defaultPort = DEFAULT_PORTS.get(scheme);
  if (defaultPort === undefined) {
    return { ok: false, error: { tag: 'HTTP-request-denied' }, denied: `${req.method} ${scheme}://${shown}: scheme ${scheme} is not allowed (http and https only)` };
  }
  if (req.authority.includes('@')) {
    return { ok: false, error: { tag: 'HTTP-request-denied' }, denied: `${req.method} ${scheme}://${shown}: credentials in the authority are refused` };
  }
  if (req.authority === '' || /[\s\x00-\x1f\x7f/?#\\]/.test(req.authority) || !req.pathWithQuery.startsWith('/')) {
    return { ok: false, error: { tag: 'HTTP-request-URI-invalid' } };
  }
  let url: URL;
  try {
    url = new URL(`${scheme}://${req.authority}${req.pathWithQuery}`);
  } catch {
    return { ok: false, error: { tag: 'HTTP-request-URI-invalid' } };
  }
  // WHATWG URL may still find userinfo after normalisation; and the scheme must not have changed.
  if (url.username || url.password || url.protocol !== `${scheme}:`) {
    return { ok: false, error: { tag: 'HTTP-request-denied' }, denied: `${req.method} ${scheme}://${url.host}: credentials in the authority are refused` };
  }
  const host = url.hostname.replace(/\.$/, '');
  const port = url.port ? Number(url.port) : defaultPort;
  if (!hostAllowed(grants, host, port)) {
    const granted = grants.length ? grants.join(', ') : 'nothing';
    return { ok: false, error: { tag: 'HTTP-request-denied' }, denied: `${describe(req.method, url)}: ${host}:${port} is not in the http grant (granted: ${granted})` };
  }
  return { ok: true, url, host, port };
}

/** Node's network error codes → WASI error-code. */
function networkError(code: string | undefined, message: string): HttpErrorCode {
  switch (code) {
    case 'ECONNREFUSED':
      return { tag: 'connection-refused' };
    case 'ENOTFOUND':
    case 'EAI_NONAME':
    case 'EAI_NODATA':
      return { tag: 'DNS-error', val: { rcode: code } };
    case 'EAI_AGAIN':
      return { tag: 'DNS-timeout' };
    case 'ETIMEDOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
      return { tag: 'connection-timeout' };
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_SOCKET':
    case 'UND_ERR_CLOSED':
      return { tag: 'connection-terminated' };
    case 'EHOSTUNREACH':
    case 'EHOSTDOWN':
      return { tag: 'destination-unavailable' };
    case 'ENETUNREACH':
      return { tag: 'destination-IP-unroutable' };
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return { tag: 'HTTP-response-timeout' };
    case 'EPROTO':
      return { tag: 'TLS-protocol-error' };
    default:
      if (code && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS_CERT/.test(code)) return { tag: 'TLS-certificate-error' };
      if (code && /^ERR_SSL|^ERR_TLS/.test(code)) return { tag: 'TLS-protocol-error' };
      if (code?.startsWith('UND_ERR_') || code === 'HPE_INVALID') return { tag: 'HTTP-protocol-error' };
      return { tag: 'internal-error', val: message };
  }
}

/** The WASI error-code of a rejected fetch (or a failed body read, `inBody`). */
function failureOf(err: unknown, inBody: boolean): HttpErrorCode {
  type Failure = { name?: string; message?: string; code?: string; cause?: Failure; errors?: Failure[] };
  const e = (err ?? {}) as Failure;
  if (e.name === 'TimeoutError' || e.cause?.name === 'TimeoutError') return inBody ? { tag: 'HTTP-response-timeout' } : { tag: 'connection-timeout' };
  // fetch wraps the network error in `cause`; a dual-stack connect attempt wraps several in `errors`.
  const cause = e.cause?.errors?.[0] ?? e.cause ?? e;
  if (inBody && !cause.code) return { tag: 'HTTP-response-incomplete' };
  return networkError(cause.code, cause.message ?? String(err));
}

/** Hop-by-hop and connection-level headers the host sets itself. */
const HOST_OWNED = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'http2-settings', 'content-length']);

/** Codings fetch (undici) decodes by itself. */
const DECODED_CODINGS = new Set(['gzip', 'x-gzip', 'deflate', 'br']);

/** True when fetch has decoded the body, so `content-encoding` and `content-length` no longer describe it. */
function decodedByFetch(method: string, response: Response): boolean {
  const codings = response.headers.get('content-encoding');
  if (!codings || method === 'HEAD' || method === 'CONNECT' || [101, 204, 205, 304].includes(response.status)) return false;
  return codings.split(',').every((c) => DECODED_CODINGS.has(c.trim().toLowerCase()) || c.trim().toLowerCase() === 'identity');
}

/** Read at most `max` bytes of `body`; cancels the rest. */
async function readCapped(body: ReadableStream<Uint8Array> | null, max: number): Promise<{ bytes: Uint8Array; truncated: boolean }> {
  if (!body) return { bytes: new Uint8Array(), truncated: false };
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { bytes: new Uint8Array(Buffer.concat(chunks)), truncated: false };
    if (size + value.length > max) {
      chunks.push(value.subarray(0, max - size));
      await reader.cancel().catch(() => undefined);
      return { bytes: new Uint8Array(Buffer.concat(chunks)), truncated: true };
    }
    chunks.push(value);
    size += value.length;
  }
}

/**
 * Perform a guest's outbound request if `grants` allow it (`wasi:http/outgoing-handler.handle`,
 * WASI 0.2).
 *
 * - The check: {@link checkOutbound}; a denial calls `options.onDenied(reason)` and answers
 *   `{ error: { tag: 'HTTP-request-denied' } }` without any network traffic.
 * - The fetch: global `fetch` with `redirect: 'manual'` (a 3xx comes back as is) and
 *   `AbortSignal.timeout(min(req.timeoutMs, deadline − now))`. Hop-by-hop headers, `host` and
 *   `content-length` from the guest are dropped (fetch sets them). Unless the guest asked for an
 *   encoding, `accept-encoding: identity` is sent; if the response is encoded anyway, fetch decodes
 *   it and its `content-encoding` / `content-length` headers are dropped so they match the body.
 * - The body: read whole, at most `maxBodyBytes` bytes; past that the rest is discarded and
 *   `truncated` is true.
 * - Failures map to WASI error codes: refused connection `connection-refused`, unknown host
 *   `DNS-error`, timeout before the response head `connection-timeout` (during the body
 *   `HTTP-response-timeout`), TLS failures `TLS-certificate-error` / `TLS-protocol-error`,
 *   anything else `internal-error(message)`.
 *
 * Never throws.
 */
export async function fetchGranted(req: OutboundRequest, grants: string[], options: FetchOptions): Promise<OutboundResponse> {
  const target = checkOutbound(req, grants);
  if (!target.ok) {
    if (target.denied) options.onDenied(target.denied);
    return { error: target.error };
  }
  const timeoutMs = Math.min(req.timeoutMs, options.deadline - Date.now());
  if (!(timeoutMs > 0)) return { error: { tag: 'connection-timeout' } };
  if ((req.method === 'GET' || req.method === 'HEAD') && req.body.length > 0) {
    return { error: { tag: 'internal-error', val: `a ${req.method} request cannot carry a body` } };
  }
  const headers = new Headers();
  try {
    for (const [name, value] of req.headers) {
      if (!HOST_OWNED.has(name.toLowerCase())) headers.append(name, typeof value === 'string' ? value : Buffer.from(value).toString('latin1'));
    }
  } catch (err) {
    return { error: { tag: 'internal-error', val: `invalid request header: ${(err as Error).message}` } };
  }
  if (!headers.has('accept-encoding')) headers.set('accept-encoding', 'identity');

  const signal = AbortSignal.timeout(timeoutMs);
  let response: Response;
  try {
    response = await fetch(target.url, {
      method: req.method,
      headers,
      body: req.body.length > 0 ? new Uint8Array(req.body) : null,
      redirect: 'manual',
      signal,
    });
  } catch (err) {
    if (err instanceof TypeError && /method/i.test(err.message) && !(err as { cause?: unknown }).cause) return { error: { tag: 'HTTP-request-method-invalid' } };
    return { error: failureOf(err, false) };
  }
  let body: { bytes: Uint8Array; truncated: boolean };
  try {
    body = await readCapped(response.body, options.maxBodyBytes);
  } catch (err) {
    return { error: failureOf(err, true) };
  }
  const decoded = decodedByFetch(req.method, response);
  const out: Array<[string, string]> = [];
  for (const [name, value] of response.headers) {
    if (decoded && (name === 'content-encoding' || name === 'content-length')) continue;
    out.push([name, value]);
  }
  return { status: response.status, headers: out, body: body.bytes, truncated: body.truncated };
}
