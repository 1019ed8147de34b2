/** `GET /api/tasks/:id/transcript`: a task's JSONL transcript as NDJSON. */
import { createReadStream } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { WardenError } from '../../errors.js';
import type { Kernel } from '../../kernel.js';
import { completeSize, transcriptPath } from '../../transcript/index.js';
import { parse } from '../parse.js';

const taskId = z.object({ id: z.string().regex(/^t-[0-9a-f]{8}$/, 'not a task id') });

/**
 * The transcript of a task as `application/x-ndjson`: the header line, then one event per line
 * (secrets already redacted when written). Only complete lines are sent, so a task still running
 * or a file torn by a crash yields valid NDJSON; a running task's later events are not included.
 * 404 `E_NOT_FOUND` for a task without a transcript.
 */
export async function transcriptRoutes(app: FastifyInstance, opts: { kernel: Kernel }): Promise<void> {
  const { kernel } = opts;
  app.get('/api/tasks/:id/transcript', async (req, reply) => {
    const { id } = parse(taskId, req.params);
    const file = transcriptPath(kernel.dataDir, id);
    let size: number;
    try {
      size = completeSize(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      const known = Boolean(kernel.state.current.tasks[id]);
      throw new WardenError('E_NOT_FOUND', known ? `task ${id} has no transcript (it ran before transcripts were recorded)` : `no task ${id}`);
    }
    reply.type('application/x-ndjson; charset=utf-8');
    if (size === 0) return reply.send('');
    return reply.send(createReadStream(file, { start: 0, end: size - 1 }));
  });
}
