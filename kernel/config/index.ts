/**
 * The operator's configuration: backends, grants per component, worker pools, the HTTP control
 * plane. Read from `warden.config.json` or `warden.config.toml` in the data directory when
 * present; validated with errors naming the file and the field. Secrets are never in the file:
 * backends name the environment variable that holds their key, granted env values that are
 * secrets are `"$NAME"` references (see `secrets.ts` for the rule).
 */
import { existsSync } from 'node:fs';
import { z } from 'zod';
import { isWardenError } from '../errors.js';
import { DEFAULT_BASE_URL, backendSchema, checkInferenceTargets, inferenceSchema, type Backend } from '../inference/index.js';
import { grantFields, limitsSchema } from '../grants/index.js';
import { policySchema } from '../policy/index.js';
import { configError, readConfigFile, type ConfigIssue } from './file.js';
import { ENV_NAME, envReference, envValueProblem, maskConfig } from './secrets.js';

export { configFile, type ConfigIssue } from './file.js';
export { maskConfig, MASK } from './secrets.js';

/** Granted env values: a `"$NAME"` reference, or a literal that does not look like a secret. */
const envValues = z
  .record(z.string().regex(ENV_NAME, 'an environment variable name'), z.string())
  .superRefine((env, ctx) => {
    for (const [name, value] of Object.entries(env)) {
      const problem = envValueProblem(name, value);
      if (problem) ctx.addIssue({ code: 'custom', path: [name], message: problem });
    }
  });

const grantSchema = z
  .object({
    filesystem: grantFields.filesystem.optional(),
    sql: grantFields.sql.optional(),
    mesh: grantFields.mesh.optional(),
    inference: grantFields.inference.optional(),
    session: grantFields.session.optional(),
    /** Variable name → value; a value `$NAME` is read from the kernel's environment at start. */
    env: envValues.optional(),
    http: grantFields.http.optional(),
    sockets: grantFields.sockets.optional(),
    /** Overrides of the component's limits (win over its manifest). */
    limits: limitsSchema.optional(),
  })
  .strict();

const poolSchema = z
  .object({
    min: z.number().int().min(1).max(64),
    max: z.number().int().min(1).max(64),
    queue: z.number().int().min(1).max(1_000_000),
    idleMs: z.number().int().min(100).max(86_400_000),
    spares: z.number().int().min(0).max(64),
  })
  .partial()
  .strict()
  .refine((p) => p.min === undefined || p.max === undefined || p.min <= p.max, { message: 'min must not exceed max' });

/**
 * The HTTP control plane: authentication, limits per API key, shutdown. Every field has a
 * default, so `{}` is a complete configuration.
 */
export const serverSchema = z
  .object({
    /**
     * Require an API key on every route but `GET /health`. `false` is accepted only when the
     * kernel listens on a loopback address (start is refused otherwise).
     */
    auth: z.boolean().default(true),
    /** Requests per key (per client address before authentication) in each window; past it, 429 with `Retry-After`. */
    rateLimit: z
      .object({ max: z.number().int().min(1).max(1_000_000).default(600), timeWindowMs: z.number().int().min(1000).max(86_400_000).default(60_000) })
      .strict()
      .default({ max: 600, timeWindowMs: 60_000 }),
    /**
     * Failed authentications (bad key, cookie or login link) per client address per minute;
     * past it the address gets 429 until the minute is over, even with a good key.
     */
    authFailuresPerMinute: z.number().int().min(1).max(1_000_000).default(50),
    /** Largest request body, bytes. */
    bodyLimitBytes: z.number().int().min(1024).max(64 * 2 ** 20).default(2 ** 20),
    /** Largest WebSocket frame a client may send, bytes. */
    wsMaxPayloadBytes: z.number().int().min(256).max(16 * 2 ** 20).default(2 ** 16),
    /** Open WebSocket/SSE streams per key. */
    streamsPerKey: z.number().int().min(1).max(10_000).default(16),
    /**
     * Unsent bytes a stream client may have queued (on top of its last snapshot) before it is cut
     * to "snapshot on next message" instead of being sent every envelope: bounds memory per slow client.
     */
    streamBufferBytes: z.number().int().min(4096).max(256 * 2 ** 20).default(2 ** 20),
    /**
     * Liveness of stream clients, ms: a WebSocket is pinged this often and terminated when its pong has
     * not come back by the next ping; an SSE stream gets a comment line (heartbeat) this often.
     */
    pingIntervalMs: z.number().int().min(50).max(600_000).default(15_000),
    /** Envelopes the patch log retains for resuming clients (`?since=N`, `Last-Event-ID`); older positions get a snapshot. */
    retainedEnvelopes: z.number().int().min(1).max(1_000_000).default(10_000),
    /** Tasks per key that may be queued or running at once. */
    tasksPerKey: z.number().int().min(1).max(10_000).default(8),
    /** On SIGTERM, how long running tasks may go on before they are interrupted, ms. */
    shutdownGraceMs: z.number().int().min(0).max(600_000).default(10_000),
    /** Lifetime of a web UI login (HttpOnly cookie), ms. */
    loginTtlMs: z.number().int().min(60_000).max(90 * 86_400_000).default(7 * 86_400_000),
  })
  .strict();

/**
 * Agent budgets: defaults for every task (a task may set its own `maxTokens`, `maxCostUsd`,
 * `maxWallMs`); a task over one is stopped and fails with a reason naming it. `maxTokens`:
 * prompt + completion tokens; `maxCostUsd`: US dollars from the backends' prices; `maxWallMs`:
 * wall-clock time of one run, ms; `doomLoopRepeats`: identical consecutive calls (same target,
 * method and input, or refused the same way before they started) that stop a task, 0 turns the
 * check off (default 3).
 */
export const budgetsSchema = z
  .object({
    maxTokens: z.number().int().min(1).optional(),
    maxCostUsd: z.number().positive().optional(),
    maxWallMs: z.number().int().min(1).max(7 * 86_400_000).optional(),
    doomLoopRepeats: z
      .number()
      .int()
      .min(0)
      .max(1000)
      .refine((n) => n !== 1, { message: 'must be 0 (off) or at least 2: one call is not a repeat' })
      .default(3),
  })
  .strict();

/** Validated `server` section. */
export type ServerConfig = z.infer<typeof serverSchema>;

const configSchema = z
  .object({
    backends: z
      .array(backendSchema)
      .min(1)
      .superRefine((backends, ctx) => {
        backends.forEach((b, i) => {
          if (backends.findIndex((other) => other.name === b.name) < i) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `backend ${b.name} is defined twice` });
        });
      })
      .optional(),
    /** Grants per component name; a component without an entry gets what its manifest requests if it is built in, nothing otherwise. */
    grants: z.record(z.string(), grantSchema).default({}),
    /** Default limits per call for every component (a manifest may lower or raise them; a grant overrides both). */
    limits: limitsSchema.default({}),
    /**
     * Pools per component name: `min`/`max` workers, `queue` bound (calls queued or running before
     * `E_MESH_BUSY`), `idleMs` before a worker above `min` is stopped, `spares` (ready fresh
     * instances per tool worker). Absent fields: the defaults of the component's kind.
     */
    pools: z.record(z.string(), poolSchema).default({}),
    maxTurns: z.number().int().min(1).max(200).default(30),
    /** Agent budgets per task (absent: unlimited) and doom-loop detection; see {@link budgetsSchema}. */
    budgets: budgetsSchema.default(budgetsSchema.parse({})),
    /**
     * Session policy. `orphanDays`: an open session no running task uses (its task finished,
     * failed or was interrupted, or it has none) is discarded at kernel start once it is older
     * than this many days; 0 keeps orphans until an operator commits or discards them.
     */
    sessions: z.object({ orphanDays: z.number().min(0).max(3650) }).partial().strict().default({}),
    /** The HTTP control plane (auth, limits, shutdown); see {@link serverSchema}. */
    server: serverSchema.default(serverSchema.parse({})),
    /**
     * Permission policy inside tasks: `mode` (`default` | `acceptEdits` | `bypassPermissions`,
     * default `default`), `rules` `{deny, ask, allow}` (patterns checked at load), `agents`
     * (per-component `{mode, rules}`); see `kernel/policy`.
     */
    policy: policySchema.prefault({}),
    /**
     * Inference: privacy level, streaming interval, retries, circuit breaker, health, fallback
     * chains and category targets; see `kernel/inference/config.ts`. Targets are checked
     * against the backends.
     */
    inference: inferenceSchema.prefault({}),
  })
  .strict()
  .superRefine((config, ctx) => {
    const backends = config.backends ?? [{ name: 'default' }];
    for (const problem of checkInferenceTargets(backends, config.inference)) ctx.addIssue({ code: 'custom', path: problem.path, message: problem.message });
  });

/** Validated configuration. */
export type Config = z.infer<typeof configSchema> & { backends: Backend[] };

/** Operator grant for one component (fields absent: as requested). */
export type GrantConfig = z.infer<typeof grantSchema>;

/** A loaded configuration, where it came from, and what is worth a warning. */
export interface LoadedConfig {
  config: Config;
  /** The file read, or null when there was none (all defaults). */
  file: string | null;
  /** References to environment variables that are not set (names only, never values). */
  warnings: ConfigIssue[];
}

/**
 * Read and validate a configuration file (`null`: no file, all defaults). Backends default to
 * one, `default`, at `OPENAI_BASE_URL` (or {@link DEFAULT_BASE_URL}) with the key in
 * `OPENAI_API_KEY`; `baseURL` overrides the first backend's.
 * @throws WardenError `E_CONFIG` naming the file and each bad field (`detail.issues`)
 */
export function readConfig(file: string | null, env: NodeJS.ProcessEnv = process.env, baseURL?: string): LoadedConfig {
  const raw = file ? readConfigFile(file) : {};
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) throw configError(file ?? 'config', issuesOf(parsed.error));
  const backends = parsed.data.backends ?? [
    { name: 'default', baseURL: baseURL ?? env['OPENAI_BASE_URL'] ?? DEFAULT_BASE_URL, apiKeyEnv: 'OPENAI_API_KEY' },
  ];
  const first = backends[0]!;
  if (baseURL && parsed.data.backends && first.kind !== 'replay') backends[0] = { ...first, baseURL };
  return { config: { ...parsed.data, backends }, file, warnings: unsetReferences(parsed.data, env) };
}

/**
 * Load the configuration at `path` (all defaults when it does not exist); see {@link readConfig}.
 * @throws WardenError `E_CONFIG` naming the file and field
 */
export function loadConfig(path: string | null, env: NodeJS.ProcessEnv = process.env, baseURL?: string): Config {
  return readConfig(path && existsSync(path) ? path : null, env, baseURL).config;
}

/** What `warden config check` reports. */
export interface ConfigReport {
  ok: boolean;
  file: string | null;
  errors: ConfigIssue[];
  warnings: ConfigIssue[];
  /** The effective configuration (defaults applied), masked; null when invalid. */
  effective: unknown;
}

/** Validate a configuration file without starting anything. Never throws for a bad file. */
export function checkConfig(file: string | null, env: NodeJS.ProcessEnv = process.env): ConfigReport {
  try {
    const loaded = readConfig(file, env);
    return { ok: true, file, errors: [], warnings: loaded.warnings, effective: maskConfig(loaded.config) };
  } catch (err) {
    if (!isWardenError(err, 'E_CONFIG')) throw err;
    const issues = (err.detail?.['issues'] as ConfigIssue[] | undefined) ?? [{ path: '', message: err.message }];
    return { ok: false, file, errors: issues, warnings: [], effective: null };
  }
}

/** Zod issues as config issues; an unknown key is reported at its own path with the known ones. */
function issuesOf(error: z.ZodError): ConfigIssue[] {
  return error.issues.flatMap((issue) => {
    const path = issue.path.map(String);
    if (issue.code !== 'unrecognized_keys') return [{ path: path.join('.'), message: issue.message }];
    const known = knownFields(path);
    return issue.keys.map((key) => ({ path: [...path, key].join('.'), message: `unknown field${known.length ? ` (known: ${known.join(', ')})` : ''}` }));
  });
}

/** The field names the schema allows in the object at `path`. */
function knownFields(path: string[]): string[] {
  let schema: z.core.$ZodType | undefined = configSchema;
  const step = (s: z.core.$ZodType, key: string | null): z.core.$ZodType | undefined => {
    const def = s._zod.def as unknown as Record<string, z.core.$ZodType | Record<string, z.core.$ZodType>> & { type: string };
    if (def.type === 'default' || def.type === 'prefault' || def.type === 'optional' || def.type === 'nullable') return step(def['innerType'] as z.core.$ZodType, key);
    if (key === null) return s;
    // A union (backends: `openai` | `replay`): the first option that has the field.
    if (def.type === 'union') return (def['options'] as unknown as z.core.$ZodType[]).map((o) => step(o, key)).find((x) => x !== undefined);
    if (def.type === 'object') return (def['shape'] as Record<string, z.core.$ZodType>)[key];
    if (def.type === 'record') return def['valueType'] as z.core.$ZodType;
    if (def.type === 'array') return def['element'] as z.core.$ZodType;
    return undefined;
  };
  for (const key of path) schema = schema && step(schema, key);
  schema = schema && step(schema, null);
  const def = schema?._zod.def as { type: string; shape?: Record<string, unknown>; options?: Array<{ _zod: { def: { shape?: Record<string, unknown> } } }> } | undefined;
  if (def?.type === 'union') return [...new Set((def.options ?? []).flatMap((o) => Object.keys(o._zod.def.shape ?? {})))];
  return def?.type === 'object' && def.shape ? Object.keys(def.shape) : [];
}

/** Referenced environment variables that are not set: configured backends' keys, `$NAME` env grants. */
function unsetReferences(data: z.infer<typeof configSchema>, env: NodeJS.ProcessEnv): ConfigIssue[] {
  const warnings: ConfigIssue[] = [];
  (data.backends ?? []).forEach((b, i) => {
    if (b.kind !== 'replay' && !env[b.apiKeyEnv]) warnings.push({ path: `backends.${i}.apiKeyEnv`, message: `${b.apiKeyEnv} is not set; backend ${b.name} is called without a key` });
  });
  for (const [component, grant] of Object.entries(data.grants)) {
    for (const [name, value] of Object.entries(grant.env ?? {})) {
      const ref = envReference(value);
      if (ref && env[ref] === undefined) warnings.push({ path: `grants.${component}.env.${name}`, message: `${ref} is not set; ${component} sees ${name} empty` });
    }
  }
  return warnings;
}
