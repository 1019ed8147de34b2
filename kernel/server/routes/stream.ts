/**
 * The patch stream: `GET /api/state` → `{seq, state}`; WebSocket `/api/stream?since=N` sends
 * `{seq, ts, ops}` envelopes, preceded by `{type: "snapshot", seq, state}` when the client has
 * no `since` or `since` has left the retained log. When the kernel stops, each client gets a final
 * `{type: "shutdown", seq, reason}` (`seq`: the last sequence number sent to it, so it knows whether
 * it missed anything) and a close with code 1001 (going away).
 */
import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.js';

/** WebSocket close code "going away" (RFC 6455 §7.4.1). */
const GOING_AWAY = 1001;

/** A client whose unsent bytes exceed this is cut to a snapshot on its next message. */
const MAX_BUFFERED_BYTES = 8 * 2 ** 20;

export async function streamRoutes(app: FastifyInstance, opts: { kernel: Kernel }): Promise<void> {
  const { kernel } = opts;
  app.get('/api/state', async () => kernel.state.snapshot());
  // `stream: true`: counted against `server.streamsPerKey` (server/limits.ts); past it the upgrade is answered 429.
  app.route({
    method: 'GET',
    url: '/api/stream',
    config: { stream: true },
    // A plain GET (no Upgrade) gets a clear error instead of @fastify/websocket's empty 404.
    handler: async (_req, reply) =>
      reply.code(426).header('upgrade', 'websocket').send({ error: 'E_BAD_INPUT', message: '/api/stream is a WebSocket: connect with `Upgrade: websocket` (or read GET /api/state)' }),
    wsHandler: (socket, req) => {
      const query = req.query as { since?: string };
      const since = query.since === undefined ? NaN : Number(query.since);
      let needSnapshot = true;
      /** The last sequence number this client was sent. */
      let sent = 0;
      if (Number.isInteger(since) && since >= 0) {
        const envelopes = kernel.state.since(since);
        if (envelopes) {
          needSnapshot = false;
          sent = since;
          for (const e of envelopes) {
            socket.send(JSON.stringify(e));
            sent = e.seq;
          }
        }
      }
      if (needSnapshot) {
        const snapshot = kernel.state.snapshot();
        socket.send(JSON.stringify({ type: 'snapshot', ...snapshot }));
        sent = snapshot.seq;
      }
      let lagging = false;
      const unsubscribe = kernel.state.subscribe((envelope) => {
        if (socket.bufferedAmount > MAX_BUFFERED_BYTES) lagging = true;
        if (lagging) {
          if (socket.bufferedAmount === 0) {
            lagging = false;
            const snapshot = kernel.state.snapshot();
            socket.send(JSON.stringify({ type: 'snapshot', ...snapshot }));
            sent = snapshot.seq;
          }
          return;
        }
        socket.send(JSON.stringify(envelope));
        sent = envelope.seq;
      });
      const unsubscribeStop = kernel.onStop((reason) => {
        socket.send(JSON.stringify({ type: 'shutdown', seq: sent, reason }));
        socket.close(GOING_AWAY, 'kernel shutting down');
      });
      socket.on('close', () => {
        unsubscribe();
        unsubscribeStop();
      });
    },
  });
}
