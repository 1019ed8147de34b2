// Outbound HTTP (wasi:http/outgoing-handler, WASI 0.2): a guest reaches only the hosts its grant
// names, checked on the resolved request; redirects come back to the guest and are checked again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { runTool } from '../../kernel/cli/tool-run.js';
import { checkOutbound, fetchGranted } from '../../kernel/http/outbound.js';
import { Fields, OutgoingRequest, httpImports, type OutboundRequest } from '../../kernel/wasi/http.js';
import { buildHttpTool } from '../support/guest.js';
import { tempDir, workspace } from '../support/fixtures.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kernel } from '../../kernel/kernel.js';
import { KERNEL_GRANTS } from '../../kernel/grants/index.js';
import { openDataDir } from '../../kernel/cli/component.js';
import { shareTranspileCache } from '../../kernel/testing.js';
import { startScriptedServer } from '../support/scripted-openai.js';
import { until } from '../support/net.js';

// A tool that GETs `url` with the raw wasi:http resources and returns status, Location and body;
// with `follow`, it follows one redirect itself (a new request the kernel checks again).
const FETCH_TOOL = `
import { handle } from 'wasi:http/outgoing-handler@0.2.12';
import { Fields, OutgoingRequest, OutgoingBody, IncomingBody } from 'wasi:http/types@0.2.12';

const encoder = new TextEncoder();
const errorOf = (e) => (e && e.payload !== undefined ? e.payload : e);
const tagOf = (e) => { const v = errorOf(e); return typeof v === 'string' ? v : v && v.tag ? v.tag : String(v); };

function get(url) {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\\/\\/([^/?#]*)([^#]*)$/.exec(url);
  if (!m) return { error: 'bad url' };
  const scheme = m[1].toLowerCase();
  const headers = Fields.fromList([['user-agent', encoder.encode('warden-test')], ['authorization', encoder.encode('Bearer s3cret')]]);
  const request = new OutgoingRequest(headers);
  request.setMethod({ tag: 'get' });
  request.setScheme(scheme === 'http' ? { tag: 'HTTP' } : scheme === 'https' ? { tag: 'HTTPS' } : { tag: 'other', val: scheme });
  request.setAuthority(m[2]);
  request.setPathWithQuery(m[3] || '/');
  OutgoingBody.finish(request.body(), undefined);
  let future;
  try {
    future = handle(request, undefined);
  } catch (e) {
    return { error: tagOf(e) };
  }
  future.subscribe().block();
  const outcome = future.get();
  if (outcome.tag !== 'ok') return { error: 'future already taken' };
  if (outcome.val.tag !== 'ok') return { error: tagOf(outcome.val.val) };
  const response = outcome.val.val;
  const location = response.headers().get('location').map((v) => new TextDecoder().decode(v))[0];
  const body = response.consume();
  const stream = body.stream();
  const chunks = [];
  for (;;) {
    try {
      chunks.push(stream.blockingRead(65536n));
    } catch (e) {
      break;
    }
  }
  stream[Symbol.dispose]?.();
  const trailers = IncomingBody.finish(body).get();
  const truncated = trailers && trailers.tag === 'ok' && trailers.val.tag === 'err' ? tagOf(trailers.val.val) : undefined;
  let text = '';
  for (const c of chunks) text += new TextDecoder().decode(c);
  return { status: response.status(), location, body: text, truncated };
}

const summary = (r) => (r.body === undefined ? r : { ...r, body: undefined, bytes: r.body.length, text: r.body.slice(0, 20) });

export const tool = {
  describe() { return { name: 'fetch', description: 'GET a URL', inputSchema: '{}' }; },
  call(input) {
    const { url, follow, brief } = JSON.parse(input);
    const first = brief ? summary(get(url)) : get(url);
    if (!follow || !first.location) return JSON.stringify(first);
    return JSON.stringify({ first, second: get(first.location) });
  },
};
`;

interface Seen {
  path: string;
  headers: IncomingHttpHeaders;
}

/** A real HTTP server on 127.0.0.1 recording every request it sees. */
async function server(handler: (path: string, res: import('node:http').ServerResponse) => void): Promise<{ server: Server; port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const srv = createServer((req, res) => {
    seen.push({ path: req.url ?? '', headers: req.headers });
    handler(req.url ?? '', res);
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return { server: srv, port: (srv.address() as AddressInfo).port, seen };
}

let wasm: string;
let granted: Awaited<ReturnType<typeof server>>;
let other: Awaited<ReturnType<typeof server>>;

beforeAll(async () => {
  other = await server((_path, res) => res.end('secret from the other server'));
  granted = await server((path, res) => {
    if (path === '/redirect') {
      res.writeHead(302, { location: `http://127.0.0.1:${other.port}/secret` });
      res.end();
    } else if (path === '/big') {
      res.end('x'.repeat(5000));
    } else if (path === '/gzip') {
      res.writeHead(200, { 'content-encoding': 'gzip' });
      res.end(gzipSync('unzipped'));
    } else if (path === '/slow') {
      setTimeout(() => res.end('late'), 2000);
    } else {
      res.end(`hello from ${path}`);
    }
  });
  wasm = await buildHttpTool('fetch', FETCH_TOOL);
}, 240_000);

afterAll(() => {
  granted?.server.close();
  other?.server.close();
});

async function fetchTool(input: { url: string; follow?: boolean; brief?: boolean }, allowHttp: string[], outputBytes?: number, onStderr?: (text: string) => void) {
  const result = await runTool({
    component: wasm, args: [JSON.stringify(input)], dirs: [], dirsRw: [], commit: false, env: [], allowHttp,
    timeoutMs: 20_000, maxMemoryMb: 256, dataDir: tempDir('data'), ...(outputBytes ? { outputBytes } : {}),
    stdin: () => new Uint8Array(), stdout: () => undefined, stderr: (b) => onStderr?.(Buffer.from(b).toString()),
  });
  return { ...result, json: result.exitCode === 0 ? JSON.parse(result.output!) : undefined };
}

describe('outbound HTTP grants', () => {
  it('a tool granted host:port gets the response, headers and all', async () => {
    const { json, exitCode } = await fetchTool({ url: `http://127.0.0.1:${granted.port}/hello?x=1` }, [`127.0.0.1:${granted.port}`]);
    expect(exitCode).toBe(0);
    expect(json).toMatchObject({ status: 200, body: 'hello from /hello?x=1' });
    const last = granted.seen.at(-1)!;
    expect(last.path).toBe('/hello?x=1');
    expect(last.headers['user-agent']).toBe('warden-test');
  });

  it('the check is made on the normalised host: 0x7f.1 is 127.0.0.1', async () => {
    const { json } = await fetchTool({ url: `http://0x7f.1:${granted.port}/alias` }, [`127.0.0.1:${granted.port}`]);
    expect(json).toMatchObject({ status: 200, body: 'hello from /alias' });
  });

  it('a port or host outside the grant is denied, and no request is sent', async () => {
    const before = { granted: granted.seen.length, other: other.seen.length };
    const port = await fetchTool({ url: `http://127.0.0.1:${other.port}/` }, [`127.0.0.1:${granted.port}`]);
    expect(port.json).toEqual({ error: 'HTTP-request-denied' });
    const host = await fetchTool({ url: `http://localhost:${granted.port}/` }, [`127.0.0.1:${granted.port}`]);
    expect(host.json).toEqual({ error: 'HTTP-request-denied' });
    const defaultPorts = await fetchTool({ url: `http://127.0.0.1:${granted.port}/` }, ['127.0.0.1']);
    expect(defaultPorts.json).toEqual({ error: 'HTTP-request-denied' });
    expect(other.seen.length).toBe(before.other);
    expect(granted.seen.length).toBe(before.granted);
  });

  it('a redirect to an ungranted server comes back to the guest; following it is denied', async () => {
    const before = other.seen.length;
    const grant = [`127.0.0.1:${granted.port}`];
    const redirect = await fetchTool({ url: `http://127.0.0.1:${granted.port}/redirect` }, grant);
    expect(redirect.json).toMatchObject({ status: 302, location: `http://127.0.0.1:${other.port}/secret`, body: '' });
    const followed = await fetchTool({ url: `http://127.0.0.1:${granted.port}/redirect`, follow: true }, grant);
    expect(followed.json.first.status).toBe(302);
    expect(followed.json.second).toEqual({ error: 'HTTP-request-denied' });
    expect(other.seen.length).toBe(before);
  });

  it.each([
    ['userinfo in the authority', (port: number) => `http://user@127.0.0.1:${port}/`],
    ['a password in the authority', (port: number) => `http://user:pw@127.0.0.1:${port}/`],
    ['the ftp scheme', (port: number) => `ftp://127.0.0.1:${port}/`],
  ])('%s is refused', async (_what, url) => {
    const before = granted.seen.length;
    const { json } = await fetchTool({ url: url(granted.port) }, [`127.0.0.1:${granted.port}`, '*']);
    expect(json).toEqual({ error: 'HTTP-request-denied' });
    expect(granted.seen.length).toBe(before);
  });

  it('a connection refused is the WASI error code connection-refused', async () => {
    const closed = await server(() => undefined);
    const port = closed.port;
    await new Promise((resolve) => closed.server.close(resolve));
    const { json } = await fetchTool({ url: `http://127.0.0.1:${port}/` }, [`127.0.0.1:${port}`]);
    expect(json).toEqual({ error: 'connection-refused' });
  });

  it('a response body past the cap ends there and the trailers say so', async () => {
    // The cap is the component's output limit (here 1000 bytes); the server sends 5000.
    const { json } = await fetchTool({ url: `http://127.0.0.1:${granted.port}/big`, brief: true }, [`127.0.0.1:${granted.port}`], 1000);
    expect(json).toMatchObject({ status: 200, bytes: 1000, text: 'x'.repeat(20), truncated: 'HTTP-response-body-size' });
    const whole = await fetchTool({ url: `http://127.0.0.1:${granted.port}/big`, brief: true }, [`127.0.0.1:${granted.port}`]);
    expect(whole.json).toMatchObject({ status: 200, bytes: 5000 });
    expect(whole.json.truncated).toBeUndefined();
  });

  it('a tool with no http grant builds its request but every send is denied, and nothing is sent', async () => {
    const before = granted.seen.length;
    const denials: string[] = [];
    const result = await fetchTool({ url: `http://127.0.0.1:${granted.port}/` }, [], undefined, (line) => denials.push(line));
    expect(result.exitCode).toBe(0);
    expect(result.json).toEqual({ error: 'HTTP-request-denied' });
    expect(granted.seen.length).toBe(before);
    expect(denials.join('')).toMatch(/warden: denied: GET http:\/\/127\.0\.0\.1:\d+\/: .* is not in the http grant \(granted: nothing\)/);
  });
});

const request = (authority: string, extra: Partial<OutboundRequest> = {}): OutboundRequest => ({
  method: 'GET', scheme: 'http', authority, pathWithQuery: '/', headers: [], body: new Uint8Array(), timeoutMs: 5000, ...extra,
});

describe('the check on the resolved request', () => {
  it.each([
    ['upper case', 'EXAMPLE.com', ['example.com'], 'example.com', 80],
    ['a trailing dot', 'example.com.', ['example.com'], 'example.com', 80],
    ['an IDN host (punycode)', 'bücher.example', ['xn--bcher-kva.example'], 'xn--bcher-kva.example', 80],
    ['a decimal IPv4 form', '2130706433:8080', ['127.0.0.1:8080'], '127.0.0.1', 8080],
    ['an explicit default port', 'example.com:80', ['example.com'], 'example.com', 80],
    ['IPv6', '[::1]:9000', ['[::1]:9000'], '[::1]', 9000],
    ['a subdomain pattern', 'api.example.com', ['*.example.com'], 'api.example.com', 80],
  ])('matches %s', (_what, authority, grants, host, port) => {
    const target = checkOutbound(request(authority), grants);
    expect(target).toMatchObject({ ok: true, host, port });
  });

  it.each([
    ['a subdomain pattern for the bare domain', 'http', 'example.com', ['*.example.com']],
    ['a look-alike suffix', 'http', 'evilexample.com', ['*.example.com']],
    ['a port outside the defaults', 'http', 'example.com:8080', ['example.com']],
    ['userinfo', 'http', 'example.com@evil.com', ['*']],
    ['a file scheme', 'file', 'example.com', ['*']],
  ])('denies %s', (_what, scheme, authority, grants) => {
    const target = checkOutbound(request(authority, { scheme }), grants);
    expect(target).toMatchObject({ ok: false, error: { tag: 'HTTP-request-denied' } });
    expect((target as { denied?: string }).denied).toBeTruthy();
  });

  it('never repeats userinfo in a denial reason', () => {
    const target = checkOutbound(request('user:pa55word@example.com', { scheme: 'ftp' }), ['*']);
    expect(target).toMatchObject({ ok: false, error: { tag: 'HTTP-request-denied' } });
    expect((target as { denied: string }).denied).not.toContain('pa55word');
    expect(checkOutbound(request('example.com', { scheme: 'constructor' }), ['*'])).toMatchObject({ ok: false, error: { tag: 'HTTP-request-denied' } });
  });

  it.each([['a backslash', 'evil.com\\example.com'], ['a path in the authority', 'evil.com/x'], ['whitespace', 'example.com evil.com']])(
    'refuses an authority with %s as an invalid URI', (_what, authority) => {
      expect(checkOutbound(request(authority), ['*'])).toMatchObject({ ok: false, error: { tag: 'HTTP-request-URI-invalid' } });
    },
  );
});

describe('fetchGranted', () => {
  const grant = () => [`127.0.0.1:${granted.port}`];
  const options = (extra: Partial<Parameters<typeof fetchGranted>[2]> = {}) => ({ maxBodyBytes: 1 << 20, deadline: Date.now() + 10_000, onDenied: () => undefined, ...extra });

  it('reports a denial without headers or the query string, and sends nothing', async () => {
    const reasons: string[] = [];
    const before = other.seen.length;
    const answer = await fetchGranted(
      request(`127.0.0.1:${other.port}`, { pathWithQuery: '/p?token=abc', headers: [['authorization', 'Bearer s3cret']] }),
      grant(), options({ onDenied: (r) => reasons.push(r) }),
    );
    expect(answer).toEqual({ error: { tag: 'HTTP-request-denied' } });
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toContain(`127.0.0.1:${other.port}`);
    expect(reasons[0]).not.toMatch(/token|abc|s3cret|authorization/);
    expect(other.seen.length).toBe(before);
  });

  it('answers a response that outlives the deadline with connection-timeout', async () => {
    const started = Date.now();
    const answer = await fetchGranted(request(`127.0.0.1:${granted.port}`, { pathWithQuery: '/slow', timeoutMs: 300 }), grant(), options());
    expect(answer).toEqual({ error: { tag: 'connection-timeout' } });
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it('hands back a body fetch decoded without the content-encoding that no longer applies', async () => {
    const answer = await fetchGranted(request(`127.0.0.1:${granted.port}`, { pathWithQuery: '/gzip', headers: [['accept-encoding', 'gzip']] }), grant(), options());
    expect('status' in answer && Buffer.from(answer.body).toString()).toBe('unzipped');
    expect('status' in answer && answer.headers.map(([n]) => n)).not.toContain('content-encoding');
  });

  it('does not pass the guest\'s host header through', async () => {
    await fetchGranted(request(`127.0.0.1:${granted.port}`, { pathWithQuery: '/h', headers: [['host', 'evil.com'], ['x-ok', new Uint8Array([0x61])]] }), grant(), options());
    const last = granted.seen.at(-1)!;
    expect(last.headers.host).toBe(`127.0.0.1:${granted.port}`);
    expect(last.headers['x-ok']).toBe('a');
  });
});

describe('wasi:http/types fields', () => {
  const bytes = (s: string) => new Uint8Array(Buffer.from(s));

  it('refuses forbidden and malformed headers with header-error', () => {
    expect(() => Fields.fromList([['host', bytes('evil.com')]])).toThrow(expect.objectContaining({ tag: 'forbidden' }));
    expect(() => Fields.fromList([['bad name', bytes('x')]])).toThrow(expect.objectContaining({ tag: 'invalid-syntax' }));
    expect(() => new Fields().append('x-a', bytes('a\r\nInjected: 1'))).toThrow(expect.objectContaining({ tag: 'invalid-syntax' }));
  });

  it('makes a request\'s headers immutable, and a clone mutable', () => {
    const fields = Fields.fromList([['X-A', bytes('1')]]);
    const req = new OutgoingRequest(fields);
    const headers = req.headers();
    expect(headers.get('x-a')).toEqual([bytes('1')]);
    expect(() => headers.set('x-a', [bytes('2')])).toThrow(expect.objectContaining({ tag: 'immutable' }));
    expect(() => headers.delete('x-a')).toThrow(expect.objectContaining({ tag: 'immutable' }));
    const copy = headers.clone();
    copy.append('x-a', bytes('2'));
    expect(copy.get('X-A')).toEqual([bytes('1'), bytes('2')]);
    expect(req.headers().entries()).toEqual([['x-a', bytes('1')]]);
  });

  it('sends a request only once its body is finished', () => {
    const sent: OutboundRequest[] = [];
    const imports = httpImports((r) => (sent.push(r), { status: 204, headers: [], body: new Uint8Array(), truncated: false }), () => 1000);
    const handle = imports['wasi:http/outgoing-handler']['handle'] as (r: OutgoingRequest, o: undefined) => { get(): unknown };
    const req = new OutgoingRequest(new Fields());
    req.setMethod({ tag: 'post' });
    req.setAuthority('example.com');
    const body = req.body();
    const future = handle(req, undefined);
    expect(future.get()).toBeUndefined();
    body.write().blockingWriteAndFlush(bytes('payload'));
    (imports['wasi:http/types']['OutgoingBody'] as { finish(b: unknown, t: undefined): void }).finish(body, undefined);
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ method: 'POST', scheme: 'https', authority: 'example.com', pathWithQuery: '/', timeoutMs: 1000 });
    expect(Buffer.from(sent[0]!.body).toString()).toBe('payload');
    expect(future.get()).toMatchObject({ tag: 'ok', val: { tag: 'ok' } });
    expect(future.get()).toEqual({ tag: 'err', val: undefined });
  });
});

describe('the policy on outbound hosts, inside a task', () => {
  it('http(HOST-GLOB) rules and the mode decide each request the grant allows; an approved one is sent, a denied one never is', async () => {
    const model = await startScriptedServer([]);
    const data = tempDir('http-policy');
    shareTranspileCache(data);
    const hosts = [`127.0.0.1:${granted.port}`, `localhost:${granted.port}`];
    writeFileSync(join(data, 'warden.config.json'), JSON.stringify({ grants: { fetch: { http: hosts } }, policy: { rules: { deny: ['http(localhost)'] } } }));
    const manifest = join(tempDir('fetch-manifest'), 'manifest.json');
    writeFileSync(manifest, JSON.stringify({ name: 'fetch', version: '1.0.0', kind: 'tool', requests: { http: hosts } }));
    const dir = openDataDir(data);
    await dir.registry.add(wasm, { name: 'fetch', manifestPath: manifest }).finally(() => dir.close());
    const kernel = await Kernel.start({ dataDir: data, baseURL: model.baseURL, quiet: true });
    try {
      // A task to act in (it ends at once: the model answers "done").
      const taskId = kernel.submitTask({ prompt: 'nothing', workspace: workspace({}), model: 'scripted' });
      await kernel.waitForTask(taskId);
      const fetchIn = async (task: string, url: string) => {
        const reply = await kernel.mesh.call('fetch', 'call', { tag: 'json', val: JSON.stringify({ url }) }, { taskId: task, sessionId: null, chain: [], deadline: Date.now() + 20_000, grants: KERNEL_GRANTS });
        return reply.ok ? JSON.parse((JSON.parse((reply.payload as { val: string }).val) as { output: string }).output) : reply.error;
      };
      const before = granted.seen.length;
      expect(await fetchIn(taskId, `http://localhost:${granted.port}/denied`)).toEqual({ error: 'HTTP-request-denied' });
      expect(granted.seen.length).toBe(before);
      expect(kernel.store.auditEvents(20, { kind: 'policy.deny' }).map((r) => JSON.parse(r.detail))).toEqual([expect.objectContaining({ subject: 'http(localhost)', kind: 'http', rule: 'deny: http(localhost)' })]);

      // Mode default: an outbound host asks; approved, the request is sent.
      const asking = fetchIn(taskId, `http://127.0.0.1:${granted.port}/asked`);
      const approval = await until(() => Object.values(kernel.state.current.approvals).find((a) => a.kind === 'http'), 20_000, 'the approval');
      expect(approval).toMatchObject({ subject: 'http(127.0.0.1)', component: 'fetch', rule: 'mode default', detail: `GET http://127.0.0.1:${granted.port}/asked` });
      kernel.approvals.decide(approval.id, 'approve', 'ui');
      expect(await asking).toMatchObject({ status: 200, body: 'hello from /asked' });

      // Outside a task the operator's own call is not asked about (the grant alone decides).
      expect(await fetchIn('', `http://localhost:${granted.port}/operator`)).toMatchObject({ status: 200 });
    } finally {
      await kernel.close();
      await model.close();
    }
  }, 120_000);
});
