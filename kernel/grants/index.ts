/**
 * Component manifests, operator grants and effective grants.
 *
 * Effective = requested ∩ granted ∩ the caller's own (attenuation down the call chain),
 * deny by default. Grants are values passed to whoever builds an instance's imports
 * (CONVENTIONS.md: capabilities are values, never ambient).
 */
import { z } from 'zod';
import { readFileSync } from 'node:fs';
import { WardenError } from '../errors.js';

/** Filesystem access: none, the current session read-only, or read-write. */
export type FsGrant = 'none' | 'session:ro' | 'session:rw';
/** SQL access to one scope. */
export interface SqlGrant {
  scope: string;
  mode: 'ro' | 'rw';
}

/** The capabilities an instance (or one call) holds. */
export interface Grants {
  filesystem: FsGrant;
  sql: SqlGrant | null;
  /** Mesh targets: exact names, `prefix*`, or `*`. */
  mesh: string[];
  /** Inference targets: `model@backend`, bare models, `prefix*`, or `*`. */
  inference: string[];
  /** May begin, diff, commit and roll back sessions. */
  session: boolean;
  /** Environment variables visible through `wasi:cli/environment`, by name. */
  env: Record<string, string>;
}

/** Limits for one component's calls. */
export interface Limits {
  /** Wall-clock deadline per call, ms. */
  timeoutMs: number;
  /** Memory cap per core memory, MiB. */
  memoryMb: number;
}

const manifestSchema = z.object({
  name: z.string().regex(/^[a-z][a-z0-9-]*$/, 'lower-case letters, digits and dashes'),
  version: z.string().min(1),
  kind: z.enum(['tool', 'agent', 'supervisor', 'command']),
  description: z.string().default(''),
  requests: z
    .object({
      filesystem: z.enum(['none', 'session:ro', 'session:rw']).default('none'),
      sql: z.object({ scope: z.string().regex(/^[a-z][a-z0-9_-]*$/), mode: z.enum(['ro', 'rw']) }).nullable().default(null),
      mesh: z.array(z.string()).default([]),
      inference: z.array(z.string()).default([]),
      session: z.boolean().default(false),
      env: z.array(z.string()).default([]),
    })
    .strict()
    .default({ filesystem: 'none', sql: null, mesh: [], inference: [], session: false, env: [] }),
  limits: z
    .object({ timeoutMs: z.number().int().positive().default(30_000), memoryMb: z.number().int().positive().default(256) })
    .default({ timeoutMs: 30_000, memoryMb: 256 }),
});

/** A component's manifest (`manifest.json` beside its source). */
export type Manifest = z.infer<typeof manifestSchema>;

/** Parse a manifest; errors name the field. @throws WardenError `E_BAD_INPUT` */
export function parseManifest(value: unknown, source: string): Manifest {
  const parsed = manifestSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new WardenError('E_BAD_INPUT', `${source}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  return parsed.data;
}

/** Read and parse a manifest file. @throws WardenError `E_BAD_INPUT` / `E_NOT_FOUND` */
export function readManifest(path: string): Manifest {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new WardenError('E_NOT_FOUND', `cannot read manifest ${path}`, { cause });
  }
  try {
    return parseManifest(JSON.parse(text), path);
  } catch (cause) {
    if (cause instanceof WardenError) throw cause;
    throw new WardenError('E_BAD_INPUT', `${path}: not valid JSON`, { cause });
  }
}

/** The grants of nothing at all. */
export const NO_GRANTS: Grants = { filesystem: 'none', sql: null, mesh: [], inference: [], session: false, env: {} };

/** The kernel's own authority, the caller of a supervisor: everything. */
export const KERNEL_GRANTS: Grants = {
  filesystem: 'session:rw', sql: null, mesh: ['*'], inference: ['*'], session: true, env: {},
};

/** What a manifest requests, as grants (env values resolved later, by the operator's grant). */
export function requested(manifest: Manifest): Grants {
  const r = manifest.requests;
  return { filesystem: r.filesystem, sql: r.sql, mesh: r.mesh, inference: r.inference, session: r.session, env: Object.fromEntries(r.env.map((k) => [k, ''])) };
}

const FS_ORDER: FsGrant[] = ['none', 'session:ro', 'session:rw'];

/** True when the pattern list allows `name` (`*`, `prefix*` or exact). */
export function allows(patterns: string[], name: string): boolean {
  return patterns.some((p) => p === '*' || p === name || (p.endsWith('*') && name.startsWith(p.slice(0, -1))));
}

function intersectPatterns(a: string[], b: string[]): string[] {
  const out = new Set<string>();
  for (const p of a) for (const q of b) {
    if (allows([p], q)) out.add(q);
    else if (allows([q], p)) out.add(p);
  }
  return [...out];
}

/** Intersection of two grant sets: what both allow. */
export function intersect(a: Grants, b: Grants): Grants {
  const fs = FS_ORDER[Math.min(FS_ORDER.indexOf(a.filesystem), FS_ORDER.indexOf(b.filesystem))]!;
  let sql: SqlGrant | null = null;
  if (a.sql && b.sql && a.sql.scope === b.sql.scope) sql = { scope: a.sql.scope, mode: a.sql.mode === 'rw' && b.sql.mode === 'rw' ? 'rw' : 'ro' };
  const env: Record<string, string> = {};
  for (const key of Object.keys(a.env)) if (key in b.env) env[key] = b.env[key] || a.env[key] || '';
  return {
    filesystem: fs,
    sql,
    mesh: intersectPatterns(a.mesh, b.mesh),
    inference: intersectPatterns(a.inference, b.inference),
    session: a.session && b.session,
    env,
  };
}

/**
 * The attenuation of a caller's grants for a callee: the caller's SQL scope is its own and is
 * never inherited, so it passes through unchanged and the callee's own SQL grant applies.
 */
export function attenuate(callee: Grants, caller: Grants): Grants {
  const out = intersect(callee, { ...caller, sql: callee.sql, env: callee.env });
  return out;
}
