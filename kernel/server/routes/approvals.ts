/**
 * Approvals over REST: `GET /api/approvals`, `POST /api/approvals/:id` (to be written: issue 8).
 */
import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.js';

export async function approvalRoutes(_app: FastifyInstance, _opts: { kernel: Kernel }): Promise<void> {}
