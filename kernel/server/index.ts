/**
 * The HTTP server: REST, the WebSocket patch stream and the web UI, as fastify plugins
 * registered by {@link buildServer}. Tests call it with `inject()` or a real port.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import websocket from '@fastify/websocket';
import fastifyStatic from '@fastify/static';
import { join } from 'node:path';
import { isWardenError } from '../errors.js';
import type { Kernel } from '../kernel.js';
import { PACKAGE_ROOT } from '../paths.js';
import { statusFor } from './errors.js';
import { taskRoutes } from './routes/tasks.js';
import { streamRoutes } from './routes/stream.js';
import { configRoutes } from './routes/config.js';
import { registerAuth } from './auth.js';
import { registerLimits } from './limits.js';

/** Build (not start) the server for `kernel`. */
export async function buildServer(kernel: Kernel, options: { logger?: boolean } = {}): Promise<FastifyInstance> {
  const server = kernel.config.server;
  const app = Fastify({ logger: options.logger ?? false, bodyLimit: server.bodyLimitBytes });
  app.setErrorHandler((err: Error & { statusCode?: number }, _req, reply) => {
    if (isWardenError(err)) return reply.code(statusFor(err.code)).send({ error: err.code, message: err.message });
    const status = (err as { statusCode?: number }).statusCode;
    if (status && status >= 400 && status < 500) return reply.code(status).send({ error: 'E_BAD_INPUT', message: err.message });
    kernel.log.error({ err: err.message }, 'request failed');
    return reply.code(500).send({ error: 'E_INTERNAL', message: 'internal error; see the kernel log' });
  });
  await registerAuth(app, kernel);
  await registerLimits(app, kernel);
  await app.register(websocket, { options: { maxPayload: server.wsMaxPayloadBytes } });
  app.get('/metrics', async (_req, reply) => reply.type('text/plain; version=0.0.4').send(await kernel.metrics.text()));
  app.get('/health', async () => ({ status: 'ok', seq: kernel.state.seq, components: Object.keys(kernel.state.current.components).length }));
  await app.register(streamRoutes, { kernel });
  await app.register(taskRoutes, { kernel });
  await app.register(configRoutes, { kernel });
  await app.register(fastifyStatic, { root: join(PACKAGE_ROOT, 'web'), prefix: '/' });
  await app.register(fastifyStatic, {
    root: join(PACKAGE_ROOT, 'node_modules/fast-json-patch'),
    prefix: '/vendor/fast-json-patch/',
    decorateReply: false,
  });
  return app;
}
