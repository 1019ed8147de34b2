/**
 * A scripted OpenAI-compatible model for tests: answers `POST /v1/chat/completions` with the
 * next turn of a script, over a real socket, and records every request it received. Component
 * authors test an agent with it (`warden/testing`); the kernel's own tests use it too.
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
  requests: Array<{ model: string; messages: Array<{ role: string; content: string | null; tool_call_id?: string }>; tools?: unknown[] }>;
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
      const answer = () => res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          id: `chatcmpl-${n}`,
          object: 'chat.completion',
          created: Math.floor(Date.now() / 1000),
          model: parsed.model,
          choices: [{ index: 0, message, finish_reason: 'content' in turn ? 'stop' : 'tool_calls' }],
          usage: { prompt_tokens: 10 * (n + 1), completion_tokens: 5, total_tokens: 10 * (n + 1) + 5 },
        }),
      );
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
