/** Request validation shared by the routes (zod at the boundary, one error shape). */
import type { z } from 'zod';
import { WardenError } from '../errors.js';

/**
 * Parse `value` (a body, params or query) with `schema`.
 * @throws WardenError `E_BAD_INPUT` naming the first bad field (`body` for the value itself)
 */
export function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new WardenError('E_BAD_INPUT', `${issue.path.join('.') || 'body'}: ${issue.message}`);
  }
  return parsed.data;
}
