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
  /**
   * Mesh targets: exact component names or `prefix*`, and topics to publish on or subscribe to:
   * `topic:NAME` or `topic:prefix*`; `*` is every component and every topic.
   */
  mesh: string[];
  /** Inference targets: `model@backend`, bare models, `prefix*`, or `*`. */
  inference: string[];
  /** May begin, diff, commit and roll back sessions. */
  session: boolean;
  /** Environment variables visible through `wasi:cli/environment`, by name. */
  env: Record<string, string>;
  /**
   * Outbound HTTP hosts for `wasi:http/outgoing-handler`: `host` (ports 80 and 443 only),
   * `host:port`, `*.suffix` (subdomains of `suffix`, not `suffix` itself; ports 80/443) or
   * `*.suffix:port`. Matched against the parsed, normalised request authority.
   */
  http: string[];
  /** Raw TCP addresses (`ip:port`) for `wasi:sockets`. Empty: every socket call is denied. */
  sockets: string[];
}

/** Limits for one component's calls. */
export interface Limits {
  /** Wall-clock deadline per call, ms. Past it the worker is terminated (`E_LIMIT_TIME`). */
  timeoutMs: number;
  /** Memory cap per core memory, MiB (rewritten into each memory's maximum; `E_LIMIT_MEMORY`). */
  memoryMb: number;
  /** Cap on stdout + stderr and on a result payload, bytes; excess is cut with a marker. */
  outputBytes: number;
}

const HOST_PATTERN = /^(\*|(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])(:\d{1,5})?$/i;
const ADDRESS = /^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-f:.]+\]):\d{1,5}$/i;

/** Schemas shared by manifests (what a component requests) and the operator's config (what it is granted). */
export const grantFields = {
  filesystem: z.enum(['none', 'session:ro', 'session:rw']),
  sql: z.object({ scope: z.string().regex(/^[a-z][a-z0-9_-]*$/, 'lower-case letters, digits, _ and -'), mode: z.enum(['ro', 'rw']) }).strict().nullable(),
  mesh: z.array(z.string().regex(/^(\*|[a-z][a-z0-9-]*\*?|topic:(\*|[a-z0-9][a-z0-9._-]*\*?))$/, 'a component name, `prefix*`, `topic:NAME`, `topic:prefix*` or `*`')),
  inference: z.array(z.string().min(1)),
  session: z.boolean(),
  http: z.array(z.string().regex(HOST_PATTERN, 'a host, `host:port`, `*.suffix` or `*.suffix:port` (no scheme, no path)')),
  sockets: z.array(z.string().regex(ADDRESS, 'an address `ip:port` (IPv6 in brackets)')),
};

/** Limits a manifest or the config may set (absent fields: the config's defaults). */
export const limitsSchema = z
  .object({
    timeoutMs: z.number().int().positive().max(86_400_000),
    memoryMb: z.number().int().positive().max(4096),
    outputBytes: z.number().int().positive().max(1 << 30),
  })
  .partial()
  .strict();

/** Default limits per call when neither the manifest nor the config sets them. */
export const DEFAULT_LIMITS: Limits = { timeoutMs: 30_000, memoryMb: 256, outputBytes: 1 << 20 };

const manifestSchema = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9-]*$/, 'lower-case letters, digits and dashes'),
    version: z.string().min(1),
    kind: z.enum(['tool', 'agent', 'supervisor', 'command']),
    description: z.string().default(''),
    requests: z
      .object({
        filesystem: grantFields.filesystem.default('none'),
        sql: grantFields.sql.default(null),
        mesh: grantFields.mesh.default([]),
        inference: grantFields.inference.default([]),
        session: grantFields.session.default(false),
        env: z.array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name')).default([]),
        http: grantFields.http.default([]),
        sockets: grantFields.sockets.default([]),
      })
      .strict()
      .default({ filesystem: 'none', sql: null, mesh: [], inference: [], session: false, env: [], http: [], sockets: [] }),
    limits: limitsSchema.default({}),
    /**
     * Topics whose events the component handles (`topic:NAME`, `topic:prefix*`); it must export
     * `warden:kernel/subscriber` and hold a grant for each topic (in `requests.mesh`).
     */
    subscribe: z.array(z.string().regex(/^topic:(\*|[a-z0-9][a-z0-9._-]*\*?)$/, '`topic:NAME` or `topic:prefix*`')).default([]),
  })
  .strict();

/** Render every zod issue as `source: field.path: message`, one per line. */
export function formatIssues(source: string, issues: ReadonlyArray<{ path: PropertyKey[]; message: string }>): string {
  return issues.map((issue) => `${source}: ${issue.path.map(String).join('.') || '(root)'}: ${issue.message}`).join('\n');
}

/** A component's manifest (`manifest.json` beside its source). */
export type Manifest = z.infer<typeof manifestSchema>;

/** Parse a manifest; errors name the field. @throws WardenError `E_BAD_INPUT` */
export function parseManifest(value: unknown, source: string): Manifest {
  const parsed = manifestSchema.safeParse(value);
  if (!parsed.success) {
    throw new WardenError('E_BAD_INPUT', formatIssues(source, parsed.error.issues), { detail: { issues: parsed.error.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message })) } });
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
export const NO_GRANTS: Grants = { filesystem: 'none', sql: null, mesh: [], inference: [], session: false, env: {}, http: [], sockets: [] };

/** The kernel's own authority, the caller of a supervisor: everything. */
export const KERNEL_GRANTS: Grants = {
  filesystem: 'session:rw', sql: null, mesh: ['*'], inference: ['*'], session: true, env: {}, http: ['*'], sockets: [],
};

/** What a manifest requests, as grants (env values resolved later, by the operator's grant). */
export function requested(manifest: Manifest): Grants {
  const r = manifest.requests;
  return {
    filesystem: r.filesystem, sql: r.sql, mesh: r.mesh, inference: r.inference, session: r.session,
    env: Object.fromEntries(r.env.map((k) => [k, ''])), http: r.http, sockets: r.sockets,
  };
}

const FS_ORDER: FsGrant[] = ['none', 'session:ro', 'session:rw'];

/** True when the pattern list allows `name` (`*`, `prefix*` or exact). */
export function allows(patterns: string[], name: string): boolean {
  const topic = name.startsWith('topic:');
  // `prefix*` of component names never reaches topics (and the reverse); `*` is everything.
  return patterns.some((p) => p === '*' || p === name || (p.endsWith('*') && p.startsWith('topic:') === topic && name.startsWith(p.slice(0, -1))));
}

interface HostPattern {
  /** Lower-case host, or `*.suffix`, or `*` for every host. */
  name: string;
  /** Exact port, or null for the default ports 80 and 443. */
  port: number | null;
}

function parseHostPattern(pattern: string): HostPattern {
  const match = /^(.*?)(?::(\d+))?$/.exec(pattern)!;
  return { name: match[1]!.toLowerCase(), port: match[2] === undefined ? null : Number(match[2]) };
}

function hostMatches(name: string, host: string): boolean {
  if (name === '*') return true;
  if (name.startsWith('*.')) return host.endsWith(name.slice(1)) && host.length > name.length - 1;
  return host === name;
}

/**
 * True when an outbound HTTP request to `host`:`port` is granted by `patterns`
 * (see {@link Grants.http}). `host` must already be normalised: lower case, no trailing dot,
 * IPv6 in brackets. `*` alone grants every host and port.
 */
export function hostAllowed(patterns: string[], host: string, port: number): boolean {
  return patterns.some((pattern) => {
    if (pattern === '*') return true;
    const p = parseHostPattern(pattern);
    const portOk = p.port === null ? port === 80 || port === 443 : p.port === port;
    return portOk && hostMatches(p.name, host);
  });
}

/** True when every request `inner` grants is also granted by `outer`. */
function hostCovers(outer: string, inner: string): boolean {
  if (outer === '*') return true;
  if (inner === '*') return false;
  const o = parseHostPattern(outer);
  const i = parseHostPattern(inner);
  if (o.port !== null && o.port !== i.port) return false;
  if (o.port === null && i.port !== null && i.port !== 80 && i.port !== 443) return false;
  if (i.name.startsWith('*.')) return o.name.startsWith('*.') && (i.name === o.name || i.name.endsWith(o.name.slice(1)));
  return hostMatches(o.name, i.name);
}

function intersectHosts(a: string[], b: string[]): string[] {
  const out = new Set<string>();
  for (const p of a) for (const q of b) {
    if (hostCovers(q, p)) out.add(p);
    else if (hostCovers(p, q)) out.add(q);
  }
  return [...out];
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
    http: intersectHosts(a.http, b.http),
    sockets: a.sockets.filter((address) => b.sockets.includes(address)),
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
