/**
 * The SQL test guest for the scoped-SQL suites: one QuickJS tool importing `warden:kernel/sql`,
 * loaded under several component names, each with its own scope grant. What it runs is chosen
 * by its input (JSON):
 *
 * - `{steps: [{q: SQL} | {x: SQL}, …], then?: 'spin'}`: each step through `sql.query` (`q`) or
 *   `sql.execute` (`x`) with its `params`, in order; answers one {@link StepResult} per step. With
 *   `then: 'spin'` it loops forever after the steps (the call runs into its deadline).
 * - `{fill: step, max, after?: steps}`: repeats `step` until it fails (at most `max` times),
 *   then runs `after`; answers `{n, error, after}`.
 *
 * Parameters are JSON: `null`, `{int: n}`, `{real: x}`, `{text: s}`, `{blob: [bytes]}`.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kernel } from '../../kernel/kernel.js';
import { KERNEL_GRANTS, parseManifest } from '../../kernel/grants/index.js';
import { tempDir } from '../support/fixtures.js';
import { buildWorld } from '../support/worlds.js';

const SOURCE = `
import { execute, query } from 'warden:kernel/sql@0.1.0';
const errorOf = (e) => (e && e.payload !== undefined ? e.payload : { tag: 'thrown', val: String(e) });
function param(p) {
  if (p === null) return { tag: 'null' };
  if ('int' in p) return { tag: 'integer', val: p.int };
  if ('real' in p) return { tag: 'real', val: p.real };
  if ('text' in p) return { tag: 'text', val: p.text };
  return { tag: 'blob', val: new Uint8Array(p.blob) };
}
function plain(v) {
  if (v.tag === 'null') return null;
  if (v.tag === 'blob') return { blob: Array.from(v.val) };
  if (v.tag === 'integer') return { int: Number(v.val) };
  if (v.tag === 'real') return { real: v.val };
  return v.val;
}
function step(s) {
  const params = (s.params || []).map(param);
  try {
    if (s.q !== undefined) {
      const r = query(s.q, params);
      return { ok: true, columns: r.columns, rows: r.values.map((row) => row.map(plain)) };
    }
    const r = execute(s.x, params);
    return { ok: true, changes: Number(r.changes), lastInsertRowid: Number(r.lastInsertRowid) };
  } catch (e) {
    return { ok: false, error: errorOf(e) };
  }
}
export const tool = {
  describe() { return { name: 'sql-prober', description: 'runs SQL in its scope', inputSchema: '{}' }; },
  call(input) {
    const req = JSON.parse(input);
    if (req.fill) {
      let n = 0;
      let error = null;
      for (; n < req.max; n++) {
        const r = step(req.fill);
        if (!r.ok) { error = r.error; break; }
      }
      return JSON.stringify({ n, error, after: (req.after || []).map(step) });
    }
    const results = (req.steps || []).map(step);
    if (req.then === 'spin') for (;;) {}
    return JSON.stringify(results);
  },
};`;

const WORLD = 'import warden:kernel/sql@0.1.0;\nexport warden:kernel/tool@0.1.0;';

/** A parameter as the guest takes it. */
export type Param = null | { int: number } | { real: number } | { text: string } | { blob: number[] };
/** One statement for the guest: `q` (through `sql.query`) or `x` (through `sql.execute`). */
export type Step = ({ q: string } | { x: string }) & { params?: Param[] };
/** What the guest answers for one step. */
export interface StepResult {
  ok: boolean;
  columns?: string[];
  rows?: unknown[][];
  changes?: number;
  lastInsertRowid?: number;
  error?: { tag: string; val: string };
}

/** One component of the suite: its scope grant and optionally its pool. */
export interface ProberSpec {
  sql: { scope: string; mode: 'ro' | 'rw' };
  pool?: { min: number; max: number };
}

/** A kernel with the SQL guest loaded under each name of `probers`, and how to call it. */
export interface SqlKernel {
  kernel: Kernel;
  dataDir: string;
  /** Call `name` with `input`; `ms` is the call's deadline. Throws when the call itself failed. */
  call<T>(name: string, input: object, ms?: number): Promise<T>;
  /** The steps' results (throws when the call itself failed). */
  steps(name: string, steps: Step[]): Promise<StepResult[]>;
}

/** Start a kernel in a fresh data directory with the operator granting each prober its scope. */
export async function startSqlKernel(probers: Record<string, ProberSpec>): Promise<SqlKernel> {
  const dataDir = tempDir('data');
  const grants = Object.fromEntries(Object.entries(probers).map(([name, spec]) => [name, { sql: spec.sql }]));
  const pools = Object.fromEntries(Object.entries(probers).filter(([, spec]) => spec.pool).map(([name, spec]) => [name, spec.pool]));
  writeFileSync(join(dataDir, 'warden.config.json'), JSON.stringify({ grants, pools }));
  const [kernel, wasm] = await Promise.all([Kernel.start({ dataDir, quiet: true }), buildWorld('sql-prober', SOURCE, WORLD)]);
  for (const [name, spec] of Object.entries(probers)) {
    const manifest = parseManifest({ name, version: '0.0.1', kind: 'tool', requests: { sql: spec.sql } }, `test:${name}`);
    await kernel.loadComponent({ name, manifest, file: wasm, builtin: false });
  }
  const call = async <T>(name: string, input: object, ms = 20_000): Promise<T> => {
    const ctx = { taskId: '', sessionId: null, chain: [] as string[], deadline: Date.now() + ms, grants: KERNEL_GRANTS };
    const reply = await kernel.mesh.call(name, 'call', { tag: 'json', val: JSON.stringify(input) }, ctx);
    if (!reply.ok) throw new Error(reply.error.message);
    return JSON.parse((JSON.parse((reply.payload as { val: string }).val) as { output: string }).output) as T;
  };
  return { kernel, dataDir, call, steps: (name, steps) => call<StepResult[]>(name, { steps }) };
}
