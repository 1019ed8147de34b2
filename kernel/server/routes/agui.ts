/**
 * The AG-UI view of a task: `GET /api/tasks/:id/agui` (SSE) (to be written: issue 7).
 */
import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.js';

export async function aguiRoutes(_app: FastifyInstance, _opts: { kernel: Kernel }): Promise<void> {}
