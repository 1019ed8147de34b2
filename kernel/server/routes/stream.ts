/**
 * The patch stream (protocol in `docs/stream.md`, messages in `kernel/state/protocol.ts`):
 * - `GET /api/state[?path=P]` → `{seq, state}` (`{seq, path, state}` narrowed);
 * - WebSocket `/api/stream[?since=N][&path=P]` and SSE `GET /api/events[?since=N][&path=P]`
 *   (`Last-Event-ID: N` wins over `since`) deliver `{seq, ts, ops}` envelopes (narrowed:
 *   `{seq, prev, ts, ops}`), preceded by `{type: "snapshot", seq, state}` when there is no `since`
 *   or it has left the retained log. When the kernel stops, each client gets
 *   `{type: "shutdown", seq, reason}` and the stream ends (WebSocket close 1001).
 *
 * Both stream routes are `config: {stream: true}`: counted against `server.streamsPerKey`. The
 * fan-out, slow clients and liveness are in `stream-hub.ts`.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { WardenError } from '../../errors.js';
import type { Kernel } from '../../kernel.js';
import { parsePointer } from '../../state/pointer.js';
import { parse } from '../parse.js';
import { eventStreamSink, streamHub, webSocketSink } from './stream-hub.js';

/** The SSE reconnection delay suggested to EventSource clients (`retry:`), ms. */
const SSE_RETRY_MS = 1000;

const streamQuery = z.object({
  // Read by sequenceNumber: anything but one non-negative integer means "no position", and the
  // client gets a snapshot, which is always safe.
  since: z.unknown().optional(),
  path: z.string().max(1024).optional(),
  // The epoch of the document the client holds (from its snapshot); another one means the kernel
  // restarted and `since` counts in a different sequence: the client gets a snapshot.
  epoch: z.unknown().optional(),
});

const stateQuery = z.object({ path: streamQuery.shape.path });

/**
 * A narrowing pointer from the query: undefined for the whole document (absent or `""`).
 * @throws WardenError `E_BAD_INPUT` (400) naming what is wrong with the pointer
 */
function narrowing(path: string | undefined): string | undefined {
  if (path === undefined || path === '') return undefined;
  try {
    parsePointer(path);
  } catch (err) {
    throw new WardenError('E_BAD_INPUT', `path: ${(err as Error).message}; e.g. ?path=/tasks/t-1a2b3c4d`);
  }
  return path;
}

/** A sequence number from a query value or header, or undefined when it is not exactly one non-negative integer. */
function sequenceNumber(value: unknown): number | undefined {
  if (typeof value !== 'string' || !/^(0|[1-9][0-9]{0,15})$/.test(value.trim())) return undefined;
  return Number(value.trim());
}

/**
 * `since` and `path` of a stream request; `Last-Event-ID` (SSE reconnection, WHATWG HTML §9.2)
 * overrides `since`. A `since` that is not a non-negative integer counts as absent (a snapshot first),
 * and so does any `since` sent with an `epoch` other than this document's (the kernel restarted).
 * @throws WardenError `E_BAD_INPUT` for a malformed `path`
 */
function streamParams(req: FastifyRequest, epoch: string): { since: number | undefined; path: string | undefined } {
  const query = parse(streamQuery, req.query);
  const lastEventId = req.headers['last-event-id'];
  const since = sequenceNumber(typeof lastEventId === 'string' && lastEventId !== '' ? lastEventId : query.since);
  const sameEpoch = query.epoch === undefined || query.epoch === epoch;
  return { since: sameEpoch ? since : undefined, path: narrowing(query.path) };
}

/** Register `GET /api/state`, WebSocket `/api/stream` and SSE `GET /api/events` for `opts.kernel`. */
export async function streamRoutes(app: FastifyInstance, opts: { kernel: Kernel }): Promise<void> {
  const { kernel } = opts;
  const hub = streamHub(kernel);

  app.get('/api/state', async (req, reply) => {
    const path = narrowing(parse(stateQuery, req.query).path);
    reply.type('application/json; charset=utf-8');
    if (path === undefined) {
      const { seq, json } = kernel.state.snapshotJson();
      return reply.send(`{"seq":${seq},"epoch":"${kernel.state.epoch}","state":${json}}`);
    }
    const { seq, json } = kernel.state.subtreeJson(parsePointer(path));
    return reply.send(`{"seq":${seq},"epoch":"${kernel.state.epoch}","path":${JSON.stringify(path)}${json === undefined ? '' : `,"state":${json}`}}`);
  });

  app.route({
    method: 'GET',
    url: '/api/stream',
    config: { stream: true },
    // Validated before the upgrade (and before a stream slot is taken): a bad query is an HTTP 400.
    preValidation: async (req) => {
      streamParams(req, kernel.state.epoch);
    },
    // A plain GET (no Upgrade) gets a clear error instead of @fastify/websocket's empty 404.
    handler: async (_req, reply) =>
      reply.code(426).header('upgrade', 'websocket').send({ error: 'E_BAD_INPUT', message: '/api/stream is a WebSocket: connect with `Upgrade: websocket` (or read GET /api/state, or SSE GET /api/events)' }),
    wsHandler: (socket, req) => {
      const { since, path } = streamParams(req, kernel.state.epoch);
      const client = hub.add(webSocketSink(socket), path, since);
      socket.on('message', (data, isBinary) => client.receive(isBinary ? undefined : String(data)));
      socket.on('close', () => hub.remove(client));
    },
  });

  app.get('/api/events', { config: { stream: true } }, async (req, reply) => {
    const { since, path } = streamParams(req, kernel.state.epoch);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      // Reverse proxies (nginx) must not buffer the stream.
      'x-accel-buffering': 'no',
    });
    res.write(`retry: ${SSE_RETRY_MS}\n\n`);
    const client = hub.add(eventStreamSink(res), path, since);
    const gone = () => hub.remove(client);
    res.once('close', gone);
    res.once('error', gone);
  });
}
