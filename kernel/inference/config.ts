/**
 * The configuration of inference: `backends` (each an OpenAI-compatible endpoint or a recorded
 * transcript) and the `inference` section (privacy, streaming, retries, breaker, health,
 * fallback chains, category targets). zod schemas; `kernel/config` embeds them and runs
 * {@link checkInferenceTargets} over the whole file.
 */
import { z } from 'zod';
import { ENV_NAME, urlProblem } from '../config/secrets.js';
import { DEFAULT_BREAKER } from './breaker.js';
import { DEFAULT_HEALTH } from './health.js';
import { DEFAULT_RETRY } from './retry.js';

const priceSchema = z
  .object({
    /** US dollars per million prompt tokens. */
    inputPerMTok: z.number().min(0).max(100_000),
    /** US dollars per million completion tokens. */
    outputPerMTok: z.number().min(0).max(100_000),
  })
  .strict();

const backendName = z.string().regex(/^[^@\s]+$/, 'a name without "@" or spaces (targets are model@backend)');

const common = {
  name: backendName,
  /** Zero data retention: the provider keeps no prompt or answer (what `sensitive` prefers and `strict` requires). */
  zdr: z.boolean().optional(),
  /** Per model name (`"*"`: any other model): US dollars per million tokens. */
  prices: z.record(z.string().min(1), priceSchema).optional(),
};

/** One backend: `kind` `openai` (the default) or `replay`. */
export const backendSchema = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('openai').optional(),
      ...common,
      baseURL: z
        .string()
        .url()
        .superRefine((url, ctx) => {
          const problem = urlProblem(url);
          if (problem) ctx.addIssue({ code: 'custom', message: problem });
        }),
      apiKeyEnv: z.string().regex(ENV_NAME, 'the name of the environment variable that holds the key (not the key)'),
      /** Stream answers (default true); false asks for whole answers. */
      stream: z.boolean().optional(),
    })
    .strict(),
  z
    .object({
      kind: z.literal('replay'),
      ...common,
      /** The transcript to serve again (`<dataDir>/transcripts/<taskId>.jsonl`). */
      transcript: z.string().min(1),
    })
    .strict(),
]);

/** `model@backend`. */
const target = z.string().regex(/^[^\s]+@[^@\s]+$/, 'a target model@backend');

const ms = (min: number, max: number) => z.number().int().min(min).max(max);

/** The `inference` section. Every field has a default, so `{}` is complete. */
export const inferenceSchema = z
  .object({
    /** The privacy level tasks start at (a task may ask for its own; secrets in a request escalate to `strict`). */
    privacy: z.enum(['standard', 'sensitive', 'strict']).default('standard'),
    /** How often streamed text is published into the task's `turns[n].chunks`, ms. */
    deltaIntervalMs: ms(10, 10_000).default(50),
    /** One attempt's time limit, ms (streams: the longest silence between chunks). The call's deadline bounds it too. */
    timeoutMs: ms(100, 3_600_000).default(120_000),
    retry: z
      .object({
        maxRetries: z.number().int().min(0).max(10).default(DEFAULT_RETRY.maxRetries),
        baseDelayMs: ms(1, 600_000).default(DEFAULT_RETRY.baseDelayMs),
        maxDelayMs: ms(1, 600_000).default(DEFAULT_RETRY.maxDelayMs),
        jitter: z.number().min(0).max(1).default(DEFAULT_RETRY.jitter),
        retryAfterCapMs: ms(0, 600_000).default(DEFAULT_RETRY.retryAfterCapMs),
      })
      .strict()
      .default(DEFAULT_RETRY),
    breaker: z
      .object({
        failureThreshold: z.number().int().min(1).max(1000).default(DEFAULT_BREAKER.failureThreshold),
        cooldownMs: ms(0, 3_600_000).default(DEFAULT_BREAKER.cooldownMs),
        halfOpenProbes: z.number().int().min(1).max(100).default(DEFAULT_BREAKER.halfOpenProbes),
        successThreshold: z.number().int().min(1).max(100).default(DEFAULT_BREAKER.successThreshold),
      })
      .strict()
      .default(DEFAULT_BREAKER),
    health: z
      .object({
        window: z.number().int().min(1).max(10_000).default(DEFAULT_HEALTH.window),
        degradedMs: ms(1, 3_600_000).default(DEFAULT_HEALTH.degradedMs),
      })
      .strict()
      .default(DEFAULT_HEALTH),
    /**
     * Fallback chains: a target (or `"*"`, for every target without its own chain) → the
     * targets tried after it, in order.
     */
    fallback: z.record(z.union([z.literal('*'), target]), z.array(target).min(1)).default({}),
    /** Task category (`coding`, `planning`, `exploration`, …) → the target its requests use. */
    categories: z.record(z.string().regex(/^[a-z][a-z0-9-]*$/, 'a category name (lower case, digits, -)'), target).default({}),
  })
  .strict();

/** Validated `inference` section. */
export type InferenceSettings = z.infer<typeof inferenceSchema>;

/** The defaults (`inference: {}`). */
export const DEFAULT_INFERENCE: InferenceSettings = inferenceSchema.parse({});

/**
 * Problems of the `inference` section against the backends: every target must name a
 * configured backend; `strict` as the default level needs a backend with zero data retention.
 * @returns `{path, message}` per problem, paths relative to the file's root
 */
export function checkInferenceTargets(backends: Array<{ name: string; kind?: string; zdr?: boolean }>, inference: InferenceSettings): Array<{ path: (string | number)[]; message: string }> {
  const names = new Set(backends.map((b) => b.name));
  const problems: Array<{ path: (string | number)[]; message: string }> = [];
  const check = (value: string, path: (string | number)[]) => {
    if (!value.includes('@')) return; // not a target: reported by the schema
    const backend = value.slice(value.lastIndexOf('@') + 1);
    if (!names.has(backend)) problems.push({ path, message: `${value} names backend ${backend}, which is not configured (backends: ${[...names].join(', ')})` });
  };
  for (const [from, chain] of Object.entries(inference.fallback)) {
    if (from !== '*') check(from, ['inference', 'fallback', from]);
    chain.forEach((to, i) => check(to, ['inference', 'fallback', from, i]));
  }
  for (const [category, to] of Object.entries(inference.categories)) check(to, ['inference', 'categories', category]);
  if (inference.privacy === 'strict' && !backends.some((b) => b.zdr ?? b.kind === 'replay')) {
    problems.push({ path: ['inference', 'privacy'], message: 'strict needs a backend with zero data retention: set "zdr": true on one that keeps no data' });
  }
  return problems;
}
