/** Tasks and sessions over REST. */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { WardenError } from '../../errors.js';
import type { Kernel } from '../../kernel.js';
import { parse } from '../parse.js';
import { admitTask } from '../limits.js';
import { modeSchema } from '../../policy/index.js';

const taskBody = z
  .object({
    task: z.string().min(1, 'say what the agent should do').max(100_000),
    workspace: z.string().min(1),
    model: z.string().min(1).max(200).optional(),
    maxTurns: z.number().int().min(1).max(200).optional(),
    /** Budgets of this task (see the config's `budgets`). */
    maxTokens: z.number().int().min(1).optional(),
    maxCostUsd: z.number().positive().optional(),
    maxWallMs: z.number().int().min(1).max(7 * 86_400_000).optional(),
    /** The privacy level the task starts at; it can raise the configured `inference.privacy`, never lower it. */
    privacy: z.enum(['standard', 'sensitive', 'strict']).optional(),
    /** The task's permission mode: may lower the configured `policy.mode`, never raise it (403 `E_POLICY_DENIED`). */
    mode: modeSchema.optional(),
  })
  .strict();


const sessionId = z.object({ id: z.string().regex(/^s-[0-9a-f]{8}$/, 'not a session id') });
const taskId = z.object({ id: z.string().regex(/^t-[0-9a-f]{8}$/, 'not a task id') });

/** `POST /api/tasks`, `GET /api/tasks[/:id]`, `POST /api/tasks/:id/resume`, `GET|POST /api/sessions/...`. */
export async function taskRoutes(app: FastifyInstance, opts: { kernel: Kernel }): Promise<void> {
  const { kernel } = opts;
  app.post('/api/tasks', async (req, reply) => {
    const body = parse(taskBody, req.body);
    admitTask(kernel, req);
    const id = kernel.submitTask({
      prompt: body.task, workspace: body.workspace, keyId: req.keyId,
      ...(body.model ? { model: body.model } : {}), ...(body.maxTurns ? { maxTurns: body.maxTurns } : {}),
      ...(body.maxTokens ? { maxTokens: body.maxTokens } : {}), ...(body.maxCostUsd ? { maxCostUsd: body.maxCostUsd } : {}),
      ...(body.maxWallMs ? { maxWallMs: body.maxWallMs } : {}), ...(body.privacy ? { privacy: body.privacy } : {}),
      ...(body.mode ? { mode: body.mode } : {}),
    });
    return reply.code(201).send({ id });
  });
  app.get('/api/tasks', async () => Object.values(kernel.state.current.tasks));
  app.get('/api/tasks/:id', async (req) => {
    const { id } = parse(taskId, req.params);
    const task = kernel.state.current.tasks[id];
    if (!task) throw new WardenError('E_NOT_FOUND', `no task ${id}`);
    return task;
  });
  app.post('/api/tasks/:id/resume', async (req, reply) => {
    const { id } = parse(taskId, req.params);
    kernel.resumeTask(id);
    return reply.code(202).send({ id, status: 'queued' });
  });
  app.get('/api/sessions', async () => kernel.store.sessions());
  app.get('/api/sessions/:id/diff', async (req) => kernel.sessions.diff(parse(sessionId, req.params).id));
  app.post('/api/sessions/:id/commit', async (req) => ({ committed: kernel.commitSession(parse(sessionId, req.params).id).length }));
  app.post('/api/sessions/:id/discard', async (req) => {
    kernel.discardSession(parse(sessionId, req.params).id);
    return { discarded: true };
  });
}
