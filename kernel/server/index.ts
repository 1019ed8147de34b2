/**
 * The HTTP server: REST, the WebSocket patch stream and the web UI, as fastify plugins
 * registered by {@link buildServer}. Tests call it with `inject()` or a real port.
 */
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import websocket from '@fastify/websocket';
import fastifyStatic from '@fastify/static';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { isWardenError } from '../errors.js';
import type { Kernel } from '../kernel.js';
import { PACKAGE_ROOT } from '../paths.js';
import { statusFor } from './errors.js';
import { taskRoutes } from './routes/tasks.js';
import { streamRoutes } from './routes/stream.js';
import { configRoutes } from './routes/config.js';
import { componentRoutes } from './routes/components.js';
import { approvalRoutes } from './routes/approvals.js';
import { aguiRoutes } from './routes/agui.js';
import { transcriptRoutes } from './routes/transcripts.js';
import { registerAuth } from './auth.js';
import { registerLimits } from './limits.js';

/**
 * Answer bytes Node's HTTP parser rejects (a bad request line or header, bytes after a body
 * whose length was not declared, headers over 16 KiB) in the same `{error, message}` shape as
 * every other 4xx, then close the connection.
 */
function answerMalformedHttp(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const [status, reason] =
    err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'Request Header Fields Too Large'] : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'Request Timeout'] : [400, 'Bad Request'];
  const body = JSON.stringify({ error: 'E_BAD_INPUT', message: `malformed HTTP request (${err.code ?? 'parse error'}); the connection is closed` });
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

/** The built web UI (`npm run build`). */
const WEB_ROOT = join(PACKAGE_ROOT, 'dist/web');

/**
 * True for a browser's page load of a client-side route: a GET or HEAD that accepts HTML, outside
 * `/api` and `/metrics`, whose last segment has no file extension (a missing `.js` stays a 404).
 */
export function isPageRequest(method: string, url: string, accept: string | undefined): boolean {
  if ((method !== 'GET' && method !== 'HEAD') || !accept?.includes('text/html')) return false;
  const path = url.split('?')[0]!;
  return !/^\/+(api|metrics)(\/|$)/i.test(path) && !/\.[a-z0-9]+$/i.test(path);
}

/** Build (not start) the server for `kernel`. */
export async function buildServer(kernel: Kernel, options: { logger?: boolean } = {}): Promise<FastifyInstance> {
  const server = kernel.config.server;
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: server.bodyLimitBytes,
    // Errors the router raises before any route runs (a malformed percent-encoding, an
    // unsupported content type): the same `{error, message}` shape as every other 4xx.
    clientErrorHandler: answerMalformedHttp,
    frameworkErrors: (err, _req, reply) => {
      const status = err.statusCode && err.statusCode < 500 ? err.statusCode : 400;
      void (reply as FastifyReply).code(status).send({ error: 'E_BAD_INPUT', message: err.message });
    },
  });
  app.setErrorHandler((err: Error & { statusCode?: number }, _req, reply) => {
    if (isWardenError(err)) return reply.code(statusFor(err.code)).send({ error: err.code, message: err.message });
    if ((err as { code?: string }).code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return reply.code(statusFor('E_TOO_LARGE')).send({ error: 'E_TOO_LARGE', message: `the request body is larger than ${server.bodyLimitBytes} bytes (server.bodyLimitBytes)` });
    }
    const status = (err as { statusCode?: number }).statusCode;
    if (status && status >= 400 && status < 500) return reply.code(status).send({ error: 'E_BAD_INPUT', message: err.message });
    kernel.log.error({ err: err.message }, 'request failed');
    return reply.code(500).send({ error: 'E_INTERNAL', message: 'internal error; see the kernel log' });
  });
  app.setNotFoundHandler((req, reply) => {
    // The web UI's client-side routes (`/tasks/t-…`, `/components`): a page load gets index.html.
    if (isPageRequest(req.method, req.url, req.headers.accept) && existsSync(join(WEB_ROOT, 'index.html'))) {
      return reply.sendFile('index.html', WEB_ROOT);
    }
    return reply.code(404).send({ error: 'E_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]!.slice(0, 200)}` });
  });
  await registerAuth(app, kernel);
  await registerLimits(app, kernel);
  await app.register(websocket, {
    options: { maxPayload: server.wsMaxPayloadBytes },
    // A socket error (an oversized or malformed frame, a reset): ws has already begun the closing
    // handshake with the right code (1009 message too big, 1002/1007 protocol errors), which the
    // plugin's default handler would cut off by terminating at once. Terminate only a socket that
    // has not closed within 2 s.
    errorHandler: (error, socket) => {
      kernel.log.debug({ err: error.message }, 'WebSocket client error');
      setTimeout(() => socket.terminate(), 2000).unref();
    },
  });
  app.get('/metrics', async (_req, reply) => reply.type('text/plain; version=0.0.4').send(await kernel.metrics.text()));
  app.get('/health', async () => ({ status: 'ok', seq: kernel.state.seq, components: Object.keys(kernel.state.current.components).length }));
  await app.register(streamRoutes, { kernel });
  await app.register(taskRoutes, { kernel });
  await app.register(configRoutes, { kernel });
  await app.register(componentRoutes, { kernel });
  await app.register(approvalRoutes, { kernel });
  await app.register(aguiRoutes, { kernel });
  await app.register(transcriptRoutes, { kernel });
  // The web UI as Vite built it (`scripts/build.mjs` → dist/web/): hashed assets are immutable.
  await app.register(fastifyStatic, {
    root: WEB_ROOT,
    prefix: '/',
    setHeaders: (reply, path) => reply.header('cache-control', path.includes('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache'),
  });
  return app;
}
