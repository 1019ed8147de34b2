/** What a backend kind implements: one attempt at a chat completion. */
import type { AttemptStatus } from './retry.js';
import type { ChatRequest, ChatResponse, InferenceFailure } from './types.js';

/** What one attempt takes. */
export interface AttemptOptions {
  /** Aborts the attempt (the call was cancelled); the provider then throws the signal's reason. */
  signal: AbortSignal;
  /** The attempt's time limit, ms (for a stream: the longest silence between chunks). */
  timeoutMs: number;
  /** Streamed text as it arrives. */
  onDelta?: (text: string) => void;
}

/** A successful attempt. */
export interface AttemptAnswer {
  response: ChatResponse;
  /** HTTP status of the answer (200), or undefined for a provider that makes no HTTP request. */
  status?: number;
  /** Time to the answer (to the response headers for a stream), ms. */
  latencyMs: number;
}

/** A failed attempt: how (for retries, the breaker and `inference.attempt`), and a message without secrets. */
export class AttemptError extends Error {
  constructor(
    readonly status: AttemptStatus,
    message: string,
    /** The server's `Retry-After`, ms from now. */
    readonly retryAfterMs?: number,
    /** A failure that is final as it stands (a replay that ran out): not retried, not a fallback reason. */
    readonly final?: InferenceFailure,
  ) {
    super(message);
    this.name = 'AttemptError';
  }
}

/** One backend kind. */
export interface Provider {
  /** Whether attempts are HTTP requests (counted as `inference.attempt` events). */
  readonly http: boolean;
  /**
   * One attempt.
   * @throws AttemptError how it failed; the signal's reason when it was aborted
   */
  complete(model: string, request: ChatRequest, options: AttemptOptions): Promise<AttemptAnswer>;
}
