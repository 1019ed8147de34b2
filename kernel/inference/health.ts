/**
 * Health of a backend over a sliding window of its last attempts:
 * - `unhealthy`: its breaker is open, or failures are more than half of the window's outcomes;
 * - `degraded`: the median latency of the window's successes is over `degradedMs`, or the
 *   breaker is half-open (recovering);
 * - `healthy` otherwise (also before any attempt).
 *
 * Latency is the time to the answer: the whole answer without streaming, the response headers
 * with streaming (the time to first byte, which a long answer does not inflate). Health is
 * shown (`KernelState.backends`), not used for routing: routing follows the breaker.
 */
import type { BreakerState } from './breaker.js';

/** Health settings (`inference.health`). */
export interface HealthSettings {
  /** Outcomes kept in the window. */
  window: number;
  /** Median success latency above which a backend is degraded, ms. */
  degradedMs: number;
}

/** Defaults: the last 20 attempts, degraded over 10 s. */
export const DEFAULT_HEALTH: HealthSettings = { window: 20, degradedMs: 10_000 };

/** Health levels. */
export type Health = 'healthy' | 'degraded' | 'unhealthy';

/** The window of one backend. */
export class HealthWindow {
  /** Latency in ms for a success, null for a failure; oldest first. */
  private readonly outcomes: Array<number | null> = [];

  constructor(private readonly settings: HealthSettings) {}

  /** Record a success and its latency (ms). */
  success(latencyMs: number): void {
    this.push(latencyMs);
  }

  /** Record a failure (a retryable one: 429, 5xx, timeout, connection, malformed). */
  failure(): void {
    this.push(null);
  }

  private push(outcome: number | null): void {
    this.outcomes.push(outcome);
    if (this.outcomes.length > this.settings.window) this.outcomes.shift();
  }

  /** Median latency of the window's successes, ms (undefined without any). */
  get latencyP50Ms(): number | undefined {
    const latencies = this.outcomes.filter((o): o is number => o !== null).sort((a, b) => a - b);
    if (latencies.length === 0) return undefined;
    const mid = latencies.length >> 1;
    return latencies.length % 2 === 1 ? latencies[mid]! : Math.round((latencies[mid - 1]! + latencies[mid]!) / 2);
  }

  /** The backend's health given its breaker's state. */
  health(breaker: BreakerState): Health {
    if (breaker === 'open') return 'unhealthy';
    const failures = this.outcomes.filter((o) => o === null).length;
    if (failures * 2 > this.outcomes.length) return 'unhealthy';
    const p50 = this.latencyP50Ms;
    if (breaker === 'half-open' || (p50 !== undefined && p50 > this.settings.degradedMs)) return 'degraded';
    return 'healthy';
  }
}
