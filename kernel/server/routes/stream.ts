/**
 * The patch stream: `GET /api/state` → `{seq, state}`; WebSocket `/api/stream?since=N` sends
 * `{seq, ts, ops}` envelopes, preceded by `{type: "snapshot", seq, state}` when the client has
 * no `since` or `since` has left the retained log.
 */
import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.js';

/** A client whose unsent bytes exceed this is cut to a snapshot on its next message. */
const MAX_BUFFERED_BYTES = 8 * 2 ** 20;

export async function streamRoutes(app: FastifyInstance, opts: { kernel: Kernel }): Promise<void> {
  const { kernel } = opts;
  app.get('/api/state', async () => kernel.state.snapshot());
  app.get('/api/stream', { websocket: true }, (socket, req) => {
    const query = req.query as { since?: string };
    const since = query.since === undefined ? NaN : Number(query.since);
    let needSnapshot = true;
    if (Number.isInteger(since) && since >= 0) {
      const envelopes = kernel.state.since(since);
      if (envelopes) {
        needSnapshot = false;
        for (const e of envelopes) socket.send(JSON.stringify(e));
      }
    }
    if (needSnapshot) socket.send(JSON.stringify({ type: 'snapshot', ...kernel.state.snapshot() }));
    let lagging = false;
    const unsubscribe = kernel.state.subscribe((envelope) => {
      if (socket.bufferedAmount > MAX_BUFFERED_BYTES) lagging = true;
      if (lagging) {
        if (socket.bufferedAmount === 0) {
          lagging = false;
          socket.send(JSON.stringify({ type: 'snapshot', ...kernel.state.snapshot() }));
        }
        return;
      }
      socket.send(JSON.stringify(envelope));
    });
    socket.on('close', unsubscribe);
  });
}
