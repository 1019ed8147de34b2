/**
 * Limits per API key: request rate (@fastify/rate-limit), open streams, tasks queued or running.
 */
import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../kernel.js';

/** Register the limits on `app`, after {@link registerAuth} so they can key on `req.keyId`. */
export async function registerLimits(_app: FastifyInstance, _kernel: Kernel): Promise<void> {}
