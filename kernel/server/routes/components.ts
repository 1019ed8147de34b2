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
  app.get('/api/components', async () => Object.values(kernel.state.current.components));
  // 200 whatever the tool answered: `{ok: true, output}` or its error case `{ok: false, error}`.
  app.post('/api/components/:name/call', async (req) => {
    const { name } = parse(componentName, req.params);
    const body = parse(callBody, req.body ?? {});
    return callTool(kernel, name, body.method, body.input, body.workspace === undefined ? {} : { workspace: body.workspace });
  });
}
