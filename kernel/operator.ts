/**
 * Calls the operator makes to a loaded tool outside any task (`POST /api/components/:name/call`):
 * to try a component the kernel just loaded or hot-reloaded, through the running kernel.
 */
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { WardenError } from './errors.js';
import { KERNEL_GRANTS } from './grants/index.js';
import type { Kernel } from './kernel.js';

/** A tool's answer: its output (the `call` result's text, or the `describe` record), or its error case. */
export type OperatorCallResult = (
  | { ok: true; output: unknown }
  | { ok: false; error: { tag: string; message: string } }
) & {
  /** Wall time of the call, ms. */
  ms: number;
  /** Version and generation of the component that served it (a hot reload increments the generation). */
  version: string;
  generation: number;
};

/**
 * Call the loaded tool `name` once: `describe`, or `call` with `input` (sent as JSON text; a
 * string is sent as it is). The caller's grants are the kernel's, so the tool gets at most its
 * own effective grants; the deadline is its `limits.timeoutMs`. With `workspace`, the call sees
 * it through a session that is rolled back afterwards: the tool may read the workspace, and
 * nothing it writes reaches it. Without one, it has no filesystem.
 * @throws WardenError `E_NOT_FOUND` (no such component, or no such workspace directory),
 *   `E_BAD_INPUT` (not a tool: agents and supervisors run in tasks), `E_SHUTTING_DOWN`
 */
export async function callTool(kernel: Kernel, name: string, method: 'call' | 'describe', input: unknown, options: { workspace?: string } = {}): Promise<OperatorCallResult> {
  if (!kernel.accepting) throw new WardenError('E_SHUTTING_DOWN', 'the kernel is shutting down and accepts no new work');
  const shown = kernel.state.current.components[name];
  const loaded = kernel.mesh.component(name);
  if (!shown || !loaded) throw new WardenError('E_NOT_FOUND', `no component ${name} is loaded; loaded: ${kernel.mesh.names().join(', ')}`);
  if (loaded.kind !== 'tool') throw new WardenError('E_BAD_INPUT', `${name} is ${loaded.kind === 'agent' ? 'an agent' : `a ${loaded.kind}`}: only tools are called directly; submit a task instead (POST /api/tasks)`);
  let sessionId: string | null = null;
  if (options.workspace !== undefined) {
    const workspace = resolve(options.workspace);
    if (!existsSync(workspace) || !statSync(workspace).isDirectory()) throw new WardenError('E_NOT_FOUND', `workspace ${workspace} is not a directory`);
    sessionId = kernel.sessions.begin(workspace).id;
  }
  const { version, generation = 1 } = shown;
  const started = performance.now();
  try {
    const payload = { tag: 'json' as const, val: method === 'describe' ? 'null' : typeof input === 'string' ? input : JSON.stringify(input ?? null) };
    const reply = await kernel.mesh.call(name, method, payload, {
      taskId: '', sessionId, chain: [], deadline: Date.now() + loaded.limits.timeoutMs, grants: KERNEL_GRANTS,
    });
    const ms = Math.round(performance.now() - started);
    if (!reply.ok) return { ok: false, error: { tag: reply.error.tag, message: reply.error.message }, ms, version, generation };
    const value: unknown = reply.payload.tag === 'json' ? JSON.parse(reply.payload.val) : reply.payload.val;
    const output = method === 'call' && value && typeof value === 'object' && 'output' in value ? (value as { output: unknown }).output : value;
    return { ok: true, output, ms, version, generation };
  } finally {
    if (sessionId) {
      try {
        kernel.sessions.rollback(sessionId);
      } catch {
        // The tool closed its session itself; nothing is left to roll back.
      }
    }
  }
}
