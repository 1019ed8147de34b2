/**
 * Approvals over REST (the web UI's buttons call the same route):
 * - `GET /api/approvals[?status=pending|approved|denied|expired|all]` → 200 `{approvals: Approval[]}`,
 *   oldest first (default `pending`).
 * - `POST /api/approvals/:id` with `{decision: "approve" | "deny", reason?}` → 200 `{approval}`;
 *   404 `E_NOT_FOUND`; 409 `E_APPROVAL_DECIDED` when it was already decided or expired.
 * The decision is recorded as by `rest:<key id>` (a Bearer key) or `ui:<key id>` (the login cookie).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Kernel } from '../../kernel.js';
import { parse } from '../parse.js';

const approvalId = z.object({ id: z.string().regex(/^a-[0-9a-f]{8}$/, 'not an approval id (a-…)') });
const decisionBody = z
  .object({
    decision: z.enum(['approve', 'deny']),
    reason: z.string().max(1000).optional(),
  })
  .strict();
const listQuery = z.object({ status: z.enum(['pending', 'approved', 'denied', 'expired', 'all']).default('pending') }).strict();

/** Who decides, as the approval records it: the channel and the API key id when there is one. */
function decidedBy(req: FastifyRequest): string {
  const channel = req.headers.authorization ? 'rest' : 'ui';
  return req.keyId ? `${channel}:${req.keyId}` : channel;
}

/** `GET /api/approvals`, `POST /api/approvals/:id`. */
export async function approvalRoutes(app: FastifyInstance, opts: { kernel: Kernel }): Promise<void> {
  const { kernel } = opts;
  app.get('/api/approvals', async (req) => {
    const { status } = parse(listQuery, req.query ?? {});
    const all = kernel.approvals.list({ all: true });
    return { approvals: status === 'all' ? all : all.filter((a) => a.status === status) };
  });
  app.post('/api/approvals/:id', async (req) => {
    const { id } = parse(approvalId, req.params);
    const body = parse(decisionBody, req.body);
    return { approval: kernel.approvals.decide(id, body.decision, decidedBy(req), body.reason) };
  });
}
