/**
 * Limits per API key (per client address when auth is off), from `server` in the config:
 * request rate (@fastify/rate-limit; 429 `E_RATE_LIMITED` with `Retry-After` in seconds,
 * `GET /health` exempt), open streams (a route with `config: {stream: true}`; past the limit
 * the WebSocket upgrade or SSE request is answered 429 `E_LIMIT_STREAMS` before any upgrade),
 * and tasks queued or running (429 `E_LIMIT_TASKS`, counted in the store so a restart counts
 * right). Request bodies past `bodyLimitBytes` are 413 `E_TOO_LARGE` (see `index.ts`); WebSocket
 * frames past `wsMaxPayloadBytes` close the socket with 1009 (ws).
 * Each refusal is audited (`limit`); a rate-limit hit once per key and window.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import rateLimit from '@fastify/rate-limit';
import { WardenError } from '../errors.js';
import type { Kernel } from '../kernel.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route holds a long-lived stream (WebSocket or SSE): counted against `server.streamsPerKey`. */
    stream?: boolean;
  }
}

/** The bucket a request counts in: its API key, or its client address when none was needed. */
export function limitKey(req: FastifyRequest): string {
  return req.keyId !== null ? `key:${req.keyId}` : `ip:${req.ip}`;
}

/** The key id or address for audit entries (never a key itself). */
function who(req: FastifyRequest): Record<string, string> {
  return req.keyId !== null ? { keyId: req.keyId } : { ip: req.ip };
}

/**
 * Refuse a new task when the request's key already has `server.tasksPerKey` tasks queued or
 * running. Call it right before `submitTask`, with no `await` between, so two requests cannot
 * both pass with one slot left.
 * @throws WardenError `E_LIMIT_TASKS`
 */
export function admitTask(kernel: Kernel, req: FastifyRequest): void {
  const max = kernel.config.server.tasksPerKey;
  const active = kernel.store.activeTasks(req.keyId);
  if (active < max) return;
  kernel.store.audit('limit', { limit: 'tasks', max, ...who(req) });
  throw new WardenError('E_LIMIT_TASKS', `this key has ${active} tasks queued or running, the limit (server.tasksPerKey = ${max}); wait for one to finish`, { detail: { max } });
}

/** Open streams per bucket. */
class StreamSlots {
  private readonly open = new Map<string, number>();

  constructor(private readonly max: number) {}

  /** Take a slot for `key`; the returned function gives it back (once, however often called). @throws WardenError `E_LIMIT_STREAMS` */
  acquire(key: string): () => void {
    const n = this.open.get(key) ?? 0;
    if (n >= this.max) {
      throw new WardenError('E_LIMIT_STREAMS', `${n} streams are open for this key, the limit (server.streamsPerKey = ${this.max}); close one first`, { detail: { max: this.max } });
    }
    this.open.set(key, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(key) ?? 1) - 1;
      if (left > 0) this.open.set(key, left);
      else this.open.delete(key);
    };
  }
}

/** Register the limits on `app`, after {@link registerAuth} so they can key on `req.keyId`. */
export async function registerLimits(app: FastifyInstance, kernel: Kernel): Promise<void> {
  const { rateLimit: rate, streamsPerKey } = kernel.config.server;
  // A client past its budget may keep knocking: audit the first refusal of each window only.
  const audited = new Map<string, number>();
  await app.register(rateLimit, {
    global: true,
    max: rate.max,
    timeWindow: rate.timeWindowMs,
    keyGenerator: limitKey,
    allowList: (req) => req.routeOptions.url === '/health',
    onExceeded: (req, key) => {
      const now = Date.now();
      if (now - (audited.get(key) ?? 0) < rate.timeWindowMs) return;
      if (audited.size > 10_000) for (const [k, at] of audited) if (now - at >= rate.timeWindowMs) audited.delete(k);
      audited.set(key, now);
      kernel.store.audit('limit', { limit: 'rate', max: rate.max, timeWindowMs: rate.timeWindowMs, ...who(req) });
    },
    errorResponseBuilder: (_req, ctx) => {
      const seconds = Math.ceil(ctx.ttl / 1000); // as in Retry-After
      return new WardenError('E_RATE_LIMITED', `rate limit reached: ${ctx.max} requests per ${rate.timeWindowMs / 1000} s (server.rateLimit); retry in ${seconds} s`, {
        detail: { retryAfterSeconds: seconds },
      });
    },
  });

  const slots = new StreamSlots(streamsPerKey);
  app.addHook('onRoute', (route) => {
    if (!route.config?.stream) return;
    const websocketRoute = Boolean((route as { websocket?: boolean }).websocket || (route as { wsHandler?: unknown }).wsHandler);
    const hook = async (req: FastifyRequest, reply: { raw: NodeJS.EventEmitter }) => {
      // A plain GET of a WebSocket route is answered without a stream.
      if (websocketRoute && !req.ws) return;
      let release: () => void;
      try {
        release = slots.acquire(limitKey(req));
      } catch (err) {
        kernel.store.audit('limit', { limit: 'streams', max: streamsPerKey, ...who(req) });
        throw err;
      }
      // The connection's end frees the slot whatever happens to the upgrade or the handler.
      (websocketRoute ? req.raw.socket : reply.raw).once('close', release);
    };
    route.preHandler = [...(Array.isArray(route.preHandler) ? route.preHandler : route.preHandler ? [route.preHandler] : []), hook];
  });
}
