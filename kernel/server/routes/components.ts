/** `GET /api/components`, and `POST /api/components/:name/call`: the operator calls a loaded tool once. */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Kernel } from '../../kernel.js';
import { parse } from '../parse.js';
import { callTool } from '../../operator.js';

const callBody = z
  .object({
    /** The tool's input (JSON; a string is sent as it is). Absent for `describe`. */
    input: z.unknown().optional(),
    method: z.enum(['call', 'describe']).default('call'),
    /** A directory the call may read, through a session rolled back afterwards. */
    workspace: z.string().min(1).max(4096).optional(),
  })
  .strict();
const componentName = z.object({ name: z.string().regex(/^[a-z][a-z0-9-]{0,63}$/, 'not a component name (lower-case letters, digits, -)') });


export async function componentRoutes(app: FastifyInstance, opts: { kernel: Kernel }): Promise<void> {
  const { kernel } = opts;
  // Each component as in the state document, plus its effective grants and limits and where each
  // came from (`warden component grants`); granted env values may be secrets: names only.
  app.get('/api/components', async () => {
    const registered = new Map(kernel.registry.list().map((c) => [c.name, c]));
    return Object.values(kernel.state.current.components).map((state) => {
      const component = registered.get(state.name);
      if (!component) return state;
      const { grants, limits, explain } = kernel.effectiveFor(component.manifest, component.builtin);
      return { ...state, grants: { ...grants, env: Object.keys(grants.env).sort() }, limits, explain, ...(component.addedAt ? { pinnedAt: component.addedAt } : {}) };
    });
  });
  // 200 whatever the tool answered: `{ok: true, output}` or its error case `{ok: false, error}`.
  app.post('/api/components/:name/call', async (req) => {
    const { name } = parse(componentName, req.params);
    const body = parse(callBody, req.body ?? {});
    return callTool(kernel, name, body.method, body.input, body.workspace === undefined ? {} : { workspace: body.workspace });
  });
}
