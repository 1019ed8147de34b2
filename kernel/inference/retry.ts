/**
 * Retries: which failures are worth another attempt, how long to wait before it (exponential
 * backoff with jitter, or the server's `Retry-After`), and the real clock.
 */
import type { Clock } from './types.js';

/** Retry settings (`inference.retry` in the configuration). Durations in ms. */
export interface RetrySettings {
  /** Attempts after the first, per target (0: no retry). */
  maxRetries: number;
  /** The first backoff delay; each further one doubles. */
  baseDelayMs: number;
  /** The largest backoff delay. */
  maxDelayMs: number;
  /** Relative jitter: a delay `d` becomes uniform in `[d·(1−j), d·(1+j)]`. */
  jitter: number;
  /** The largest `Retry-After` honoured; a longer one is cut to this. */
  retryAfterCapMs: number;
}

/** Defaults: 2 retries (3 attempts, as the `openai` package's own default), 1 s → 60 s, ±30 %, `Retry-After` capped at 60 s. */
export const DEFAULT_RETRY: RetrySettings = { maxRetries: 2, baseDelayMs: 1000, maxDelayMs: 60_000, jitter: 0.3, retryAfterCapMs: 60_000 };

/** How one attempt failed: an HTTP status, or no usable answer. */
export type AttemptStatus = number | 'timeout' | 'connection' | 'malformed';

/**
 * Whether a failed attempt is worth retrying: 429 and 5xx statuses, timeouts, connection
 * errors, and malformed answers (invalid JSON, a stream cut midway). Other 4xx are not: the
 * request itself is wrong, or the key is.
 */
export function retryable(status: AttemptStatus): boolean {
  if (typeof status !== 'number') return true;
  return status === 429 || status >= 500;
}

/**
 * The delay before retry number `retry` (1 for the first retry), ms: the nominal delay
 * `baseDelayMs · 2^(retry−1)`, at most `maxDelayMs`, then jittered by ±`jitter` (so that clients
 * that failed together do not retry together; a capped delay stays spread, 42–78 s by default).
 * `random` returns a number in [0, 1).
 */
export function backoffDelay(retry: number, settings: RetrySettings, random: () => number): number {
  const exponential = Math.min(settings.maxDelayMs, settings.baseDelayMs * 2 ** Math.max(0, retry - 1));
  const factor = 1 - settings.jitter + 2 * settings.jitter * random();
  return Math.max(0, Math.round(exponential * factor));
}

/**
 * A `Retry-After` header value as a delay in ms from `now` (RFC 9110 §10.2.3): either
 * delay-seconds (a non-negative integer) or an HTTP-date (IMF-fixdate, or the obsolete RFC 850
 * and asctime forms `Date.parse` reads). A date in the past is 0. Undefined when the header is
 * absent or neither form.
 */
export function parseRetryAfter(value: string | null | undefined, now: number): number | undefined {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  if (!/[A-Za-z]/.test(text)) return undefined;
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/** The delay before a retry: the server's `Retry-After` (capped) when it sent one, else backoff. */
export function retryDelay(retry: number, retryAfterMs: number | undefined, settings: RetrySettings, random: () => number): number {
  if (retryAfterMs !== undefined) return Math.min(retryAfterMs, settings.retryAfterCapMs);
  return backoffDelay(retry, settings, random);
}

/** The real clock: `Date.now` and a `setTimeout` that an abort signal cancels. */
export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal!.reason);
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};
