/**
 * A fault-injecting OpenAI-compatible server (node:http, a real port on 127.0.0.1): each
 * `POST …/chat/completions` gets the next fault of its script — an answer (whole, or streamed as
 * server-sent events when the request asks for `stream: true`), an error status with or without
 * `Retry-After`, a request that never gets an answer, a connection reset, malformed JSON, a
 * stream cut midway, a slow answer. Every request is recorded with its headers and body.
 */
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** One scripted behaviour. */
export type Fault =
  /** An answer: text and/or tool calls (arguments as objects), after `delayMs`; streamed chunks `chunkDelayMs` apart. */
  | {
      kind: 'answer';
      content?: string;
      toolCalls?: Array<{ name: string; arguments: Record<string, unknown> }>;
      usage?: { prompt: number; completion: number };
      delayMs?: number;
      chunkDelayMs?: number;
    }
  /** An error status; `retryAfter` is sent as the `Retry-After` header as given (seconds or an HTTP-date). */
  | { kind: 'status'; status: number; retryAfter?: string; message?: string }
  /** Never answers (until the server closes). */
  | { kind: 'hang' }
  /** Destroys the connection without answering. */
  | { kind: 'reset' }
  /** 200 with a body that is not JSON (whole), or an event whose data is not JSON (streamed). */
  | { kind: 'malformed' }
  /** Streams: the first chunks of an answer, then the socket destroyed. Whole: half a body, then destroyed. */
  | { kind: 'cut'; content?: string };

/** A request as received. */
export interface RecordedRequest {
  url: string;
  headers: IncomingHttpHeaders;
  body: { model: string; stream?: boolean; stream_options?: { include_usage?: boolean }; messages: Array<{ role: string; content: string | null }>; [key: string]: unknown };
}

/** A running server. */
export interface FaultyServer {
  /** Base URL including `/v1`. */
  baseURL: string;
  /** Chat requests in the order received. */
  requests: RecordedRequest[];
  close(): Promise<void>;
}

/**
 * Start a server playing `script` (an array, one fault per request, then `after`; or a function
 * of the request number from 0 and the request).
 * @param after what requests past the end of an array script get (default: an answer `done`)
 */
export async function startFaultyServer(
  script: Fault[] | ((n: number, request: RecordedRequest) => Fault),
  after: Fault = { kind: 'answer', content: 'done' },
): Promise<FaultyServer> {
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    let text = '';
    req.on('data', (chunk) => (text += chunk));
    req.on('end', () => {
      if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions')) {
        res.writeHead(404).end();
        return;
      }
      const request: RecordedRequest = { url: req.url, headers: req.headers, body: JSON.parse(text) as RecordedRequest['body'] };
      requests.push(request);
      const n = requests.length - 1;
      const fault = typeof script === 'function' ? script(n, request) : (script[n] ?? after);
      play(fault, n, request, res);
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

function play(fault: Fault, n: number, request: RecordedRequest, res: ServerResponse): void {
  const stream = request.body.stream === true;
  switch (fault.kind) {
    case 'hang':
      return;
    case 'reset':
      res.socket?.destroy();
      return;
    case 'status': {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (fault.retryAfter !== undefined) headers['retry-after'] = fault.retryAfter;
      res.writeHead(fault.status, headers).end(JSON.stringify({ error: { message: fault.message ?? `scripted ${fault.status}`, type: 'scripted' } }));
      return;
    }
    case 'malformed':
      if (stream) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end('data: {"id": "chatcmpl-x", "choices": [{"delta": {"content": "par\n\ndata: [DONE]\n\n');
      } else {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"id": "chatcmpl-x", "choices": [');
      }
      return;
    case 'cut':
      if (stream) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        for (const chunk of chunksOf(n, request, { kind: 'answer', content: fault.content ?? 'partial answer that never ends' }).slice(0, 2)) res.write(chunk);
        setTimeout(() => res.socket?.destroy(), 20);
      } else {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '400' });
        res.write('{"id": "chatcmpl-x", "object": "chat.completion", "choices": [');
        setTimeout(() => res.socket?.destroy(), 20);
      }
      return;
    case 'answer':
      setTimeout(() => answer(fault, n, request, res, stream), fault.delayMs ?? 0);
      return;
  }
}

type Answer = Extract<Fault, { kind: 'answer' }>;

function messageOf(n: number, fault: Answer) {
  const toolCalls = (fault.toolCalls ?? []).map((c, i) => ({ id: `call_${n}_${i}`, type: 'function', function: { name: c.name, arguments: JSON.stringify(c.arguments) } }));
  return { role: 'assistant', content: fault.content ?? (toolCalls.length ? null : ''), ...(toolCalls.length ? { tool_calls: toolCalls } : {}) };
}

function usageOf(fault: Answer) {
  const prompt = fault.usage?.prompt ?? 100;
  const completion = fault.usage?.completion ?? 20;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** The SSE frames of a streamed answer: role, text in words, each tool call in two deltas, finish, usage (when asked), `[DONE]`. */
function chunksOf(n: number, request: RecordedRequest, fault: Answer): string[] {
  const message = messageOf(n, fault);
  const frame = (body: Record<string, unknown>) => `data: ${JSON.stringify({ id: `chatcmpl-${n}`, object: 'chat.completion.chunk', created: 0, model: request.body.model, ...body })}\n\n`;
  const delta = (d: Record<string, unknown>, finish: string | null = null) => frame({ choices: [{ index: 0, delta: d, finish_reason: finish }] });
  const frames = [delta({ role: 'assistant', content: '' })];
  for (const word of (message.content ?? '').match(/\S+\s*/g) ?? []) frames.push(delta({ content: word }));
  (message.tool_calls ?? []).forEach((call, index) => {
    frames.push(delta({ tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.function.name, arguments: '' } }] }));
    frames.push(delta({ tool_calls: [{ index, function: { arguments: call.function.arguments } }] }));
  });
  frames.push(delta({}, message.tool_calls ? 'tool_calls' : 'stop'));
  if (request.body.stream_options?.include_usage) frames.push(frame({ choices: [], usage: usageOf(fault) }));
  frames.push('data: [DONE]\n\n');
  return frames;
}

function answer(fault: Answer, n: number, request: RecordedRequest, res: ServerResponse, stream: boolean): void {
  if (!stream) {
    const message = messageOf(n, fault);
    res.writeHead(200, { 'content-type': 'application/json' }).end(
      JSON.stringify({
        id: `chatcmpl-${n}`, object: 'chat.completion', created: 0, model: request.body.model,
        choices: [{ index: 0, message, finish_reason: message.tool_calls ? 'tool_calls' : 'stop' }],
        usage: usageOf(fault),
      }),
    );
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const frames = chunksOf(n, request, fault);
  const next = () => {
    const f = frames.shift();
    if (f === undefined) return void res.end();
    res.write(f);
    if (fault.chunkDelayMs) setTimeout(next, fault.chunkDelayMs);
    else next();
  };
  next();
}

/** Fake time for inference: `now()` moves only when something sleeps or the test advances it; every sleep is recorded (ms). */
export function fakeClock(start = Date.UTC(2030, 0, 1)) {
  let t = start;
  const sleeps: number[] = [];
  return {
    sleeps,
    advance(ms: number): void {
      t += ms;
    },
    clock: {
      now: () => t,
      sleep: async (ms: number, signal?: AbortSignal): Promise<void> => {
        if (signal?.aborted) throw signal.reason;
        sleeps.push(ms);
        t += ms;
      },
    },
  };
}
