/** `GET /api/config`: the effective configuration, secrets masked. */
import type { FastifyInstance } from 'fastify';
import { maskConfig } from '../../config/index.js';
import type { Kernel } from '../../kernel.js';

/**
 * `GET /api/config` → the configuration the kernel runs with (defaults applied), as
 * {@link maskConfig} shows it: env values as `"$NAME"` references, never their values.
 * Authenticated like every route but `/health`.
 */
export async function configRoutes(app: FastifyInstance, opts: { kernel: Kernel }): Promise<void> {
  const { kernel } = opts;
  app.get('/api/config', async () => maskConfig(kernel.config));
}
