/**
 * A circuit breaker per backend (the pattern of Nygard's *Release It!*, as in resilience4j and
 * Polly): `closed` (requests pass; consecutive failures counted) → `open` after
 * `failureThreshold` consecutive failures (requests refused at once) → `half-open` once
 * `cooldownMs` have passed (at most `halfOpenProbes` requests in flight at a time, the probes)
 * → `closed` after `successThreshold` probe successes, or `open` again at the first probe
 * failure.
 *
 * What counts: a failure is an attempt that failed in a retryable way (429, 5xx, timeout,
 * connection error, malformed answer); a success is an answer. Other outcomes (a 400, a 401, a
 * cancelled call) release the permit without counting either way. An outcome of a request
 * admitted before the breaker last changed state is ignored: it says nothing about the backend
 * as it is now.
 */
import type { Clock } from './types.js';

/** Breaker states. */
export type BreakerState = 'closed' | 'open' | 'half-open';

/** Breaker settings (`inference.breaker`). */
export interface BreakerSettings {
  /** Consecutive failures that open the breaker. */
  failureThreshold: number;
  /** How long the breaker stays open before it admits probes, ms. */
  cooldownMs: number;
  /** Probes admitted at a time while half-open. */
  halfOpenProbes: number;
  /**
   * Probe successes that close it. Default 3, equal to `halfOpenProbes`: one full wave of
   * concurrent probes must succeed, so a single lucky request does not close a breaker over a
   * backend that is still failing most of its requests (Polly's one-probe rule flaps there),
   * while recovery needs no more than one wave.
   */
  successThreshold: number;
}

/** Defaults: 5 failures, 30 s, 3 probes, 3 successes. */
export const DEFAULT_BREAKER: BreakerSettings = { failureThreshold: 5, cooldownMs: 30_000, halfOpenProbes: 3, successThreshold: 3 };

/** Leave to send one request; report its outcome exactly once (later reports are ignored). */
export interface Permit {
  /** Whether the request is a half-open probe. */
  readonly probe: boolean;
  success(): void;
  failure(): void;
  /** Neither: the outcome says nothing about the backend's health. */
  release(): void;
}

/** Why {@link CircuitBreaker.admit} refused. */
export interface Refusal {
  state: 'open' | 'half-open';
  /** A person's sentence: `circuit open since … (5 consecutive failures); probes from …`. */
  reason: string;
}

/** One backend's breaker. */
export class CircuitBreaker {
  private current: BreakerState = 'closed';
  private failures = 0;
  private openedAtMs: number | undefined;
  private probesInFlight = 0;
  private probeSuccesses = 0;
  /** Incremented at every state change; permits of an older generation are ignored. */
  private generation = 0;

  /**
   * @param onTransition called at every state change (after it), for the state document and
   *   the `breaker` event
   */
  constructor(
    private readonly settings: BreakerSettings,
    private readonly clock: Clock,
    private readonly onTransition: (from: BreakerState, to: BreakerState) => void = () => undefined,
  ) {}

  /** The state, as of the last admission or outcome (an open breaker becomes half-open at the next admission after its cool-down). */
  get state(): BreakerState {
    return this.current;
  }

  /** Consecutive failures counted while closed. */
  get consecutiveFailures(): number {
    return this.failures;
  }

  /** When the breaker last opened, ms since the epoch (undefined unless open or half-open). */
  get openedAt(): number | undefined {
    return this.openedAtMs;
  }

  /** Leave for one request, or why not. */
  admit(): Permit | Refusal {
    if (this.current === 'open' && this.clock.now() - this.openedAtMs! >= this.settings.cooldownMs) this.move('half-open');
    if (this.current === 'open') {
      const probesAt = new Date(this.openedAtMs! + this.settings.cooldownMs).toISOString();
      return { state: 'open', reason: `circuit open after ${this.settings.failureThreshold} consecutive failures; probes again from ${probesAt}` };
    }
    if (this.current === 'half-open') {
      if (this.probesInFlight >= this.settings.halfOpenProbes) {
        return { state: 'half-open', reason: `circuit half-open with ${this.probesInFlight} probe(s) in flight (at most ${this.settings.halfOpenProbes})` };
      }
      this.probesInFlight++;
      return this.permit(true);
    }
    return this.permit(false);
  }

  private permit(probe: boolean): Permit {
    const generation = this.generation;
    let settled = false;
    const settle = (outcome: 'success' | 'failure' | 'release') => {
      if (settled) return;
      settled = true;
      if (generation !== this.generation) return;
      if (probe) this.probesInFlight--;
      if (outcome === 'success') this.onSuccess(probe);
      else if (outcome === 'failure') this.onFailure(probe);
    };
    return { probe, success: () => settle('success'), failure: () => settle('failure'), release: () => settle('release') };
  }

  private onSuccess(probe: boolean): void {
    if (!probe) {
      this.failures = 0;
      return;
    }
    this.probeSuccesses++;
    if (this.probeSuccesses >= this.settings.successThreshold) this.move('closed');
  }

  private onFailure(probe: boolean): void {
    if (probe) {
      this.move('open');
      return;
    }
    this.failures++;
    if (this.failures >= this.settings.failureThreshold) this.move('open');
  }

  private move(to: BreakerState): void {
    const from = this.current;
    this.current = to;
    this.generation++;
    this.probesInFlight = 0;
    this.probeSuccesses = 0;
    if (to === 'open') this.openedAtMs = this.clock.now();
    if (to === 'closed') {
      this.failures = 0;
      this.openedAtMs = undefined;
    }
    this.onTransition(from, to);
  }
}

/** Whether {@link CircuitBreaker.admit} refused. */
export function refused(answer: Permit | Refusal): answer is Refusal {
  return 'reason' in answer;
}
