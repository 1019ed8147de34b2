/**
 * Authentication of every route but `GET /health`, the web UI's static files and the login
 * routes: an API key as `Authorization: Bearer <key>`, or the web UI's login cookie
 * (`warden_login`, HttpOnly, SameSite=Strict). Keys and logins live in kernel/auth.
 *
 * Routes: `GET /login?token=T` (the one-time URL `warden serve` prints: sets the cookie, 303 to
 * `/`), `POST /api/login {key}` (sets the cookie, 204), `POST /api/logout` (clears it, 204).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import cookie from '@fastify/cookie';
import { z } from 'zod';
import { WardenError } from '../errors.js';
import type { Kernel } from '../kernel.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Id of the API key this request authenticated with (`env` for `WARDEN_API_KEY`); null when none was needed. */
    keyId: string | null;
  }
}

/** Name of the web login cookie. */
export const LOGIN_COOKIE = 'warden_login';

/** Routes anyone may call (`METHOD pattern`). `POST /api/logout` only ends the login its own cookie names. */
const PUBLIC_ROUTES = new Set(['GET /health', 'HEAD /health', 'GET /login', 'POST /api/login', 'POST /api/logout']);

const UNAUTHORIZED_MESSAGE =
  'an API key is required: send `Authorization: Bearer <key>` (create one with `warden key create NAME`), or log in to the web UI';

const loginBody = z.object({ key: z.string().min(1, 'paste an API key').max(512) }).strict();
const loginQuery = z.object({ token: z.string().min(1).max(512) });

/**
 * True when a request may go without a key: a public route, or a static file of the web UI (a
 * GET of a wildcard route outside `/api` and `/metrics`). Anything else — every `/api` route,
 * `/metrics`, a path no route matches — needs one. The path is checked as the router decodes it.
 */
function isPublic(req: FastifyRequest): boolean {
  const route = req.routeOptions.url;
  if (route === undefined) return false;
  if (PUBLIC_ROUTES.has(`${req.method} ${route}`)) return true;
  if ((req.method !== 'GET' && req.method !== 'HEAD') || !route.endsWith('*') || route.startsWith('/api')) return false;
  let path: string;
  try {
    path = decodeURIComponent(req.url.split('?')[0]!).toLowerCase();
  } catch {
    return false;
  }
  return !/^\/+(api|metrics)(\/|$)/.test(path);
}

/** True when `host` (a Host header) names the loopback interface. */
function isLoopbackHost(host: string | undefined): boolean {
  if (!host) return false;
  const name = host.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1').toLowerCase();
  return name === 'localhost' || name === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}

/** True when an `Origin` header is absent or names the server the request was sent to (its Host). */
function sameOrigin(req: FastifyRequest): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

function unauthorized(reply: FastifyReply): FastifyReply {
  return reply.code(401).header('www-authenticate', 'Bearer realm="warden"').send({ error: 'E_UNAUTHORIZED', message: UNAUTHORIZED_MESSAGE });
}

const BAD_LINK_PAGE = `<!doctype html><meta charset="utf-8"><title>Warden: login link not valid</title>
<p>This login link is not valid: it was used already, is older than 10 minutes, or comes from an earlier run of the kernel.</p>
<p>Restart <code>warden serve</code> for a new link, or create a key with <code>warden key create NAME</code> and paste it at <a href="/">the web UI</a>.</p>\n`;

/** Register authentication on `app` (its hook runs before every other plugin's) and the login routes. */
export async function registerAuth(app: FastifyInstance, kernel: Kernel): Promise<void> {
  app.decorateRequest('keyId', null);
  await app.register(cookie);
  const enabled = kernel.config.server.auth;

  app.addHook('onRequest', async (req, reply) => {
    if (!enabled) {
      // Without keys only the loopback interface is served (start refuses anything else); a
      // foreign Host means a page elsewhere rebound its name to this address.
      if (!isLoopbackHost(req.headers.host)) throw new WardenError('E_CROSS_ORIGIN', 'with server.auth false only requests to localhost are served (Host header)');
      return;
    }
    if (isPublic(req) && req.url !== '/api/login' && !req.url.startsWith('/login')) return;
    const wait = kernel.keys.retryAfterMs(req.ip);
    if (wait > 0) {
      const seconds = Math.ceil(wait / 1000);
      return reply.code(429).header('retry-after', String(seconds)).send({ error: 'E_RATE_LIMITED', message: `too many failed authentications from this address; retry in ${seconds} s` });
    }
    if (isPublic(req)) return;
    const header = req.headers.authorization;
    if (header !== undefined) {
      const match = /^Bearer +(\S+) *$/i.exec(header);
      const keyId = match ? kernel.keys.verify(match[1]!) : null;
      if (!keyId) {
        kernel.keys.recordFailure(req.ip);
        return unauthorized(reply);
      }
      req.keyId = keyId;
      return;
    }
    const token = req.cookies[LOGIN_COOKIE];
    const keyId = token ? kernel.keys.verifyLogin(token) : null;
    if (!keyId) {
      if (token) kernel.keys.recordFailure(req.ip);
      return unauthorized(reply);
    }
    // A browser sends the cookie wherever the request came from; SameSite keeps it off
    // cross-site requests, and this check keeps it off cross-site WebSockets (hijacking) too.
    if (!sameOrigin(req)) throw new WardenError('E_CROSS_ORIGIN', `a request with the login cookie must come from this server's own pages (Origin does not match Host)`);
    req.keyId = keyId;
  });

  // A WebSocket upgrade answered with a plain HTTP response (401, 403, 429, 404) holds a socket
  // that Node's HTTP server no longer tracks: nothing would ever close it, and `close()` would
  // wait for it forever. An accepted upgrade is hijacked and never reaches this hook.
  app.addHook('onResponse', async (req) => {
    if (req.headers.upgrade !== undefined) req.raw.socket.destroySoon();
  });

  const setLogin = (req: FastifyRequest, reply: FastifyReply, token: string) =>
    reply
      .header('cache-control', 'no-store')
      .setCookie(LOGIN_COOKIE, token, {
        httpOnly: true, sameSite: 'strict', path: '/', secure: req.protocol === 'https', maxAge: Math.floor(kernel.config.server.loginTtlMs / 1000),
      });

  // No HEAD twin: a HEAD must not spend the one-time token.
  app.get('/login', { exposeHeadRoute: false }, async (req, reply) => {
    const query = loginQuery.safeParse(req.query);
    const cookieToken = query.success ? kernel.keys.exchangeLoginToken(query.data.token) : null;
    // The token is in the URL: keep it out of any Referer and any cache.
    reply.header('referrer-policy', 'no-referrer').header('cache-control', 'no-store');
    if (!cookieToken) {
      kernel.keys.recordFailure(req.ip);
      return reply.code(401).type('text/html; charset=utf-8').send(BAD_LINK_PAGE);
    }
    return setLogin(req, reply, cookieToken).redirect('/', 303);
  });

  app.post('/api/login', async (req, reply) => {
    const body = loginBody.safeParse(req.body);
    if (!body.success) {
      const issue = body.error.issues[0]!;
      throw new WardenError('E_BAD_INPUT', `${issue.path.join('.') || 'body'}: ${issue.message}`);
    }
    const keyId = kernel.keys.verify(body.data.key);
    if (!keyId) {
      kernel.keys.recordFailure(req.ip);
      return unauthorized(reply);
    }
    return setLogin(req, reply, kernel.keys.login(keyId, 'key')).code(204).send();
  });

  app.post('/api/logout', async (req, reply) => {
    const token = req.cookies[LOGIN_COOKIE];
    if (token) kernel.keys.logout(token);
    return reply.clearCookie(LOGIN_COOKIE, { path: '/' }).code(204).send();
  });
}
