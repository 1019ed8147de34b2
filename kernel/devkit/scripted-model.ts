/**
 * A scripted OpenAI-compatible model for tests: answers `POST /v1/chat/completions` with the
 * next turn of a script, over a real socket, and records every request it received. A request
 * with `stream: true` gets the turn as server-sent events (text in a few deltas, each tool call
 * in two, a usage chunk when `stream_options.include_usage` asks for it, then `[DONE]`), as the
 * OpenAI API streams. Component authors test an agent with it (`warden/testing`); the kernel's
 * own tests use it too.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * One answer of the scripted model: text, or tool calls (arguments as objects); `hang` never
 * answers (the request stays open until the server closes); `delayMs` answers after that many
 * milliseconds.
 */
export type ScriptedTurn =
  | { content: string; delayMs?: number }
  | { toolCalls: Array<{ name: string; arguments: Record<string, unknown> }>; delayMs?: number }
  | { hang: true };

/** A running scripted server. */
export interface ScriptedServer {
  /** Base URL including `/v1`. */
  baseURL: string;
  /** Bodies of the chat requests received, in order. */
  requests: Array<{
    model: string;
    messages: Array<{ role: string; content: string | null; tool_call_id?: string }>;
    tools?: unknown[];
    stream?: boolean;
    stream_options?: { include_usage?: boolean };
  }>;
  close(): Promise<void>;
}

/**
 * Start a server that plays `script` turn by turn (`script` may also be a function of the request
 * number and body). After the script ends it answers "done". Listens on 127.0.0.1, a free port.
 */
export async function startScriptedServer(
  script: ScriptedTurn[] | ((n: number, body: ScriptedServer['requests'][number]) => ScriptedTurn),
): Promise<ScriptedServer> {
  const requests: ScriptedServer['requests'] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      if (req.method === 'GET' && req.url?.endsWith('/models')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ object: 'list', data: [{ id: 'scripted', object: 'model' }] }));
        return;
      }
      if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions')) {
        res.writeHead(404).end();
        return;
      }
      const parsed = JSON.parse(body);
      requests.push(parsed);
      const n = requests.length - 1;
      const turn = typeof script === 'function' ? script(n, parsed) : script[n] ?? { content: 'done' };
      if ('hang' in turn) return;
      const message =
        'content' in turn
          ? { role: 'assistant', content: turn.content }
          : {
              role: 'assistant',
              content: null,
              tool_calls: turn.toolCalls.map((c, i) => ({
                id: `call_${n}_${i}`,
                type: 'function',
                function: { name: c.name, arguments: JSON.stringify(c.arguments) },
              })),
            };
      const usage = { prompt_tokens: 10 * (n + 1), completion_tokens: 5, total_tokens: 10 * (n + 1) + 5 };
      const finish = 'content' in turn ? 'stop' : 'tool_calls';
      const answer = () => {
        if (parsed.stream) {
          res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
          for (const chunk of streamChunks(message, finish, parsed.stream_options?.include_usage ? usage : undefined)) {
            res.write(`data: ${JSON.stringify({ id: `chatcmpl-${n}`, object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model: parsed.model, ...chunk })}\n\n`);
          }
          res.end('data: [DONE]\n\n');
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({
            id: `chatcmpl-${n}`,
            object: 'chat.completion',
            created: Math.floor(Date.now() / 1000),
            model: parsed.model,
            choices: [{ index: 0, message, finish_reason: finish }],
            usage,
          }),
        );
      };
      if (turn.delayMs) setTimeout(answer, turn.delayMs);
      else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * The chunks of a streamed answer: the role, the text in up to three deltas, each tool call as
 * two deltas (id and name, then its arguments), the finish reason, and the usage when asked.
 */
function streamChunks(
  message: { content: string | null; tool_calls?: Array<{ id: string; function: { name: string; arguments: string } }> },
  finish: string,
  usage: Record<string, number> | undefined,
): Array<Record<string, unknown>> {
  const choice = (delta: Record<string, unknown>, finishReason: string | null = null) => ({ choices: [{ index: 0, delta, finish_reason: finishReason }] });
  const chunks: Array<Record<string, unknown>> = [choice({ role: 'assistant', content: '' })];
  const text = message.content ?? '';
  const third = Math.ceil(text.length / 3);
  for (let at = 0; at < text.length; at += third) chunks.push(choice({ content: text.slice(at, at + third) }));
  (message.tool_calls ?? []).forEach((call, index) => {
    chunks.push(choice({ tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.function.name, arguments: '' } }] }));
    chunks.push(choice({ tool_calls: [{ index, function: { arguments: call.function.arguments } }] }));
  });
  chunks.push(choice({}, finish));
  if (usage) chunks.push({ choices: [], usage });
  return chunks;
}
