/**
 * The operator's configuration: backends, grants per component, worker pools. Read from
 * `warden.config.json` in the data directory when present; validated with errors naming the field.
 * Secrets are never in the file: backends name the environment variable that holds their key.
 */
import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { WardenError } from '../errors.js';
import { DEFAULT_BASE_URL, type Backend } from '../inference/index.js';
import { formatIssues, grantFields, limitsSchema } from '../grants/index.js';

const grantSchema = z
  .object({
    filesystem: grantFields.filesystem.optional(),
    sql: grantFields.sql.optional(),
    mesh: grantFields.mesh.optional(),
    inference: grantFields.inference.optional(),
    session: grantFields.session.optional(),
    /** Variable name → value; a value `$NAME` is read from the kernel's environment at start. */
    env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name'), z.string()).optional(),
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
    /** Largest request body, bytes. */
    bodyLimitBytes: z.number().int().min(1024).max(64 * 2 ** 20).default(2 ** 20),
    /** Largest WebSocket frame a client may send, bytes. */
    wsMaxPayloadBytes: z.number().int().min(256).max(16 * 2 ** 20).default(2 ** 16),
    /** Open WebSocket/SSE streams per key. */
    streamsPerKey: z.number().int().min(1).max(10_000).default(16),
    /** Tasks per key that may be queued or running at once. */
    tasksPerKey: z.number().int().min(1).max(10_000).default(8),
    /** On SIGTERM, how long running tasks may go on before they are interrupted, ms. */
    shutdownGraceMs: z.number().int().min(0).max(600_000).default(10_000),
    /** Lifetime of a web UI login (HttpOnly cookie), ms. */
    loginTtlMs: z.number().int().min(60_000).max(90 * 86_400_000).default(7 * 86_400_000),
  })
  .strict();

/** Validated `server` section. */
export type ServerConfig = z.infer<typeof serverSchema>;

const configSchema = z
  .object({
    backends: z
      .array(z.object({ name: z.string().min(1), baseURL: z.string().url(), apiKeyEnv: z.string().min(1) }).strict())
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
    /**
     * Session policy. `orphanDays`: an open session no running task uses (its task finished,
     * failed or was interrupted, or it has none) is discarded at kernel start once it is older
     * than this many days; 0 keeps orphans until an operator commits or discards them.
     */
    sessions: z.object({ orphanDays: z.number().min(0).max(3650) }).partial().strict().default({}),
    /** The HTTP control plane (auth, limits, shutdown); see {@link serverSchema}. */
    server: serverSchema.default(serverSchema.parse({})),
  })
  .strict();

/** Validated configuration. */
export type Config = z.infer<typeof configSchema> & { backends: Backend[] };

/** Operator grant for one component (fields absent: as requested). */
export type GrantConfig = z.infer<typeof grantSchema>;

/**
 * Load the configuration. Backends default to one, `default`, at `OPENAI_BASE_URL`
 * (or {@link DEFAULT_BASE_URL}) with the key in `OPENAI_API_KEY`.
 * @throws WardenError `E_CONFIG` naming the file and field
 */
export function loadConfig(path: string | null, env: NodeJS.ProcessEnv = process.env, baseURL?: string): Config {
  let raw: unknown = {};
  if (path && existsSync(path)) {
    try {
      raw = JSON.parse(readFileSync(path, 'utf8'));
    } catch (cause) {
      throw new WardenError('E_CONFIG', `${path}: not valid JSON (${(cause as Error).message})`, { cause });
    }
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) throw new WardenError('E_CONFIG', formatIssues(path ?? 'config', parsed.error.issues));
  const backends = parsed.data.backends ?? [
    { name: 'default', baseURL: baseURL ?? env['OPENAI_BASE_URL'] ?? DEFAULT_BASE_URL, apiKeyEnv: 'OPENAI_API_KEY' },
  ];
  if (baseURL && parsed.data.backends) backends[0] = { ...backends[0]!, baseURL };
  return { ...parsed.data, backends };
}
