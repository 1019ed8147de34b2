/**
 * Authentication of every route but `GET /health` (API key as `Authorization: Bearer`, or the
 * web UI's HttpOnly login cookie). Owned by the auth work; see kernel/auth.
 */
import type { FastifyInstance } from 'fastify';
import type { Kernel } from '../kernel.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Id of the API key this request authenticated with (`env` for `WARDEN_API_KEY`); null when none was needed. */
    keyId: string | null;
  }
}

/** Register authentication on `app` (hooks run before every other plugin's). */
export async function registerAuth(app: FastifyInstance, _kernel: Kernel): Promise<void> {
  app.decorateRequest('keyId', null);
}
