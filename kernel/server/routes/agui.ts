/**
 * The AG-UI view of a task: `GET /api/tasks/:id/agui` (SSE, one `data:` line per event, as the
 * AG-UI HTTP agents send them), so existing AG-UI clients can watch Warden.
 *
 * `RUN_STARTED` (threadId = runId = the task id), `STATE_SNAPSHOT` (the task), then the events
 * that replay what already happened (`kernel/state/agui.ts`), then live: per change of the task,
 * `STATE_DELTA` (RFC 6902 operations on the task) and the derived events. A task that has
 * finished replays and ends with `RUN_FINISHED` / `RUN_ERROR`; a live one ends when it does.
 *
 * A client that does not read (more than `server.streamBufferBytes` unsent) is sent nothing until
 * its buffer drains, then a `STATE_SNAPSHOT` and the events that catch it up (derived from the
 * state it was last shown, so no text or call is lost). Heartbeat comments every
 * `server.pingIntervalMs`. Counted against `server.streamsPerKey`; `client` events of kind `agui`.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { WardenError } from '../../errors.js';
import type { Kernel } from '../../kernel.js';
import { deriveEvents, FINISHED_STATUSES, type AguiEvent } from '../../state/agui.js';
import { applyOperations } from '../../state/apply.js';
import type { Envelope, TaskState } from '../../state/index.js';
import { SubtreeView } from '../../state/narrow.js';
import { formatPointer } from '../../state/pointer.js';
import { parse } from '../parse.js';

const taskId = z.object({ id: z.string().regex(/^t-[0-9a-f]{8}$/, 'not a task id') });

/**
 * Register `GET /api/tasks/:id/agui` for `opts.kernel`.
 * Answers 400 `E_BAD_INPUT` for a malformed id and 404 `E_NOT_FOUND` for an unknown task, before any stream starts.
 */
export async function aguiRoutes(app: FastifyInstance, opts: { kernel: Kernel }): Promise<void> {
  const { kernel } = opts;
  const { streamBufferBytes, pingIntervalMs } = kernel.config.server;

  app.get('/api/tasks/:id/agui', { config: { stream: true } }, async (req, reply) => {
    const { id } = parse(taskId, req.params);
    const tokens = ['tasks', id];
    const { seq, json } = kernel.state.subtreeJson(tokens);
    if (json === undefined) throw new WardenError('E_NOT_FOUND', `no task ${id}`);
    let current = JSON.parse(json) as TaskState;
    /** What the client was last shown. */
    let shown: TaskState | undefined;
    /** Changes were held back from a lagging client: it gets a STATE_SNAPSHOT when it drains. */
    let held = false;
    let ended = false;

    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    const send = (events: AguiEvent[]) => {
      if (res.destroyed || res.writableEnded) return;
      res.cork();
      for (const event of events) res.write(`data: ${JSON.stringify(event)}\n\n`);
      res.uncork();
    };
    const view = new SubtreeView(formatPointer(tokens));
    view.resume(seq, true);

    /** Show the client everything from `shown` to `current`, led by `lead` (STATE_DELTA or STATE_SNAPSHOT). */
    const catchUp = (lead: AguiEvent[]) => {
      send([...lead, ...deriveEvents(shown, current)]);
      shown = current;
      if (FINISHED_STATUSES.has(current.status)) close();
    };
    const onEnvelope = (envelope: Envelope) => {
      const narrowed = view.narrow(envelope);
      if (narrowed === null) return;
      if (narrowed === 'snapshot') {
        // An operation the view cannot rebase: read the task afresh and show it as a snapshot.
        const subtree = kernel.state.subtreeJson(tokens).json;
        if (subtree === undefined) return close();
        current = JSON.parse(subtree) as TaskState;
        view.resume(envelope.seq, true);
        held = true;
        return drain();
      }
      const next = applyOperations(current, narrowed.ops);
      if (next === undefined) return close(); // the task was removed from the document
      current = next;
      if (held || res.writableLength > streamBufferBytes) {
        held = true;
        return drain();
      }
      catchUp([{ type: 'STATE_DELTA', timestamp: envelope.ts, delta: narrowed.ops }]);
    };
    const drain = () => {
      if (!held || res.writableLength > 0) return;
      held = false;
      catchUp([{ type: 'STATE_SNAPSHOT', timestamp: Date.now(), snapshot: current }]);
    };

    const unsubscribe = kernel.state.subscribe(onEnvelope);
    const unsubscribeStop = kernel.onStop((reason) => {
      send([{ type: 'RUN_ERROR', timestamp: Date.now(), message: `the kernel is shutting down (${reason}); the task can be resumed`, code: 'shutdown' }]);
      close();
    });
    const heartbeat = setInterval(() => {
      if (res.destroyed || res.writableEnded) return close();
      res.write(': ping\n\n');
      drain();
    }, pingIntervalMs);
    heartbeat.unref();
    kernel.events.emit(undefined, { type: 'client', kind: 'agui', delta: 1 });
    function close(): void {
      if (ended) return;
      ended = true;
      unsubscribe();
      unsubscribeStop();
      clearInterval(heartbeat);
      kernel.events.emit(undefined, { type: 'client', kind: 'agui', delta: -1 });
      if (!res.writableEnded) res.end();
    }
    res.once('close', close);
    res.once('error', close);

    send([
      { type: 'RUN_STARTED', timestamp: current.createdAt, threadId: id, runId: id },
      { type: 'STATE_SNAPSHOT', timestamp: Date.now(), snapshot: current },
    ]);
    catchUp([]);
  });
}
