/**
 * Inference over configured backends: OpenAI-compatible endpoints through the `openai` package
 * (streaming by default) and recorded transcripts (`replay`). Targets are `model@backend`; a
 * bare model name uses the default (first) backend.
 *
 * One call ({@link Inference.chat}) is routed (`router.ts`: category target, fallback chain,
 * privacy level), then each target is tried in order: its circuit breaker admits the attempt
 * (`breaker.ts`), failures worth it are retried with backoff or after `Retry-After`
 * (`retry.ts`), the backend's health window is fed (`health.ts`), and when a target is given
 * up the next one is tried (a fallback). The whole call stays within its deadline.
 *
 * API keys are read once from the environment and held in memory only: they never reach a log,
 * a patch, an event or an error message.
 */
import type { Logger } from 'pino';
import { WardenError } from '../errors.js';
import type { RuntimeEvents } from '../runtime/events.js';
import type { BackendState } from '../state/index.js';
import { CircuitBreaker, refused, type BreakerState } from './breaker.js';
import { DEFAULT_INFERENCE, type InferenceSettings } from './config.js';
import { costUsd, priceOf } from './cost.js';
import { HealthWindow } from './health.js';
import { OpenAIProvider } from './openai-provider.js';
import { AttemptError, type AttemptAnswer, type Provider } from './provider.js';
import { ReplayProvider } from './replay.js';
import { retryable, retryDelay, systemClock, type AttemptStatus } from './retry.js';
import { Router, failure, type Target } from './router.js';
import type { Backend, ChatOptions, ChatRequest, ChatResult, Clock, InferenceFailure } from './types.js';

export type * from './types.js';
export { parseTarget, secretsIn, strictestPrivacy, type Route, type Target } from './router.js';
export { backendSchema, inferenceSchema, checkInferenceTargets, DEFAULT_INFERENCE, type InferenceSettings } from './config.js';
export { parseRetryAfter, backoffDelay, retryDelay, systemClock, DEFAULT_RETRY, type RetrySettings } from './retry.js';
export { CircuitBreaker, DEFAULT_BREAKER, type BreakerSettings, type BreakerState } from './breaker.js';
export { HealthWindow, DEFAULT_HEALTH, type HealthSettings } from './health.js';
export { ReplayProvider } from './replay.js';
export { DeltaBuffer } from './chunks.js';
export { costUsd, priceOf } from './cost.js';

/** Default base URL: a local Ollama. */
export const DEFAULT_BASE_URL = 'http://127.0.0.1:11434/v1';

/** What {@link Inference} takes besides the backends. */
export interface InferenceOptions {
  /** Where API keys are read from (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** The `inference` section (default: all defaults). */
  settings?: InferenceSettings;
  /** Time and sleeping (default: the real clock); tests inject fake time. */
  clock?: Clock;
  /** Uniform in [0, 1), for backoff jitter (default `Math.random`). */
  random?: () => number;
  /** Receives `inference.attempt` and `breaker` kernel events. */
  events?: RuntimeEvents;
  /** Called whenever a backend's breaker, health or failure count changes. */
  onBackendState?: (state: BackendState) => void;
  /** Where breaker moves and `sensitive` warnings are logged (names and states only). */
  log?: Logger;
}

/** One backend's moving parts. */
interface Entry {
  backend: Backend;
  provider: Provider;
  breaker: CircuitBreaker;
  health: HealthWindow;
}

/** How trying one target ended. */
type TargetOutcome =
  | { ok: true; answer: AttemptAnswer }
  | { ok: false; final: InferenceFailure }
  /** Given up: `message` says why (it becomes the fallback's reason). */
  | { ok: false; final?: undefined; message: string; tag: InferenceFailure['tag']; breakerOpen: boolean };

/** Chat completions over configured backends; the kernel's one entry point (`kernel.inference`). */
export class Inference {
  private readonly entries = new Map<string, Entry>();
  private readonly router: Router;
  private readonly settings: InferenceSettings;
  private readonly clock: Clock;
  private readonly random: () => number;

  /**
   * @param backends configured backends; the first is the default
   * @throws WardenError `E_REPLAY` (a replay backend's transcript cannot be read)
   */
  constructor(readonly backends: Backend[], private readonly options: InferenceOptions = {}) {
    this.settings = options.settings ?? DEFAULT_INFERENCE;
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.router = new Router(backends, this.settings);
    for (const backend of backends) {
      const provider = backend.kind === 'replay' ? ReplayProvider.load(backend.transcript) : new OpenAIProvider(backend, options.env ?? process.env, this.clock);
      const breaker = new CircuitBreaker(this.settings.breaker, this.clock, (from, to) => this.onTransition(backend.name, from, to));
      this.entries.set(backend.name, { backend, provider, breaker, health: new HealthWindow(this.settings.health) });
    }
  }

  /** Name of the default backend. */
  get defaultBackend(): string {
    return this.router.defaultBackend;
  }

  /** Every backend as the state document shows it. */
  backendStates(): Record<string, BackendState> {
    return Object.fromEntries([...this.entries.keys()].map((name) => [name, this.stateOf(name)]));
  }

  /** One backend as the state document shows it (never its key). */
  stateOf(name: string): BackendState {
    const { backend, breaker, health } = this.entries.get(name)!;
    const p50 = health.latencyP50Ms;
    return {
      name,
      baseURL: backend.kind === 'replay' ? `replay:${backend.transcript}` : withoutUserinfo(backend.baseURL),
      zdr: this.router.zdr(name),
      breaker: breaker.state,
      health: health.health(breaker.state),
      consecutiveFailures: breaker.consecutiveFailures,
      ...(breaker.openedAt !== undefined ? { openedAt: breaker.openedAt } : {}),
      ...(p50 !== undefined ? { latencyP50Ms: p50 } : {}),
    };
  }

  /**
   * One chat completion, routed, retried and failed over as the module header says.
   * @throws InferenceFailure (a plain `{tag, val, code?}`, the WIT `inference-error`):
   *   `invalid-request` (unknown backend, a 4xx other than 401/403/404/429, a replay that ran
   *   out: `E_REPLAY`); `unavailable` (every target failed or was skipped, the message naming
   *   each and what to set; every breaker open: `E_BACKEND_OPEN`; strict privacy without a
   *   zero-data-retention target: `E_PRIVACY_STRICT`; the deadline passed; the call was cancelled)
   */
  async chat(request: ChatRequest, options: ChatOptions = {}): Promise<ChatResult> {
    const started = this.clock.now();
    const deadline = options.deadline ?? Number.POSITIVE_INFINITY;
    const route = this.router.route(request, options.category, options.privacy);
    options.onPrivacy?.(route.privacy);
    const state = { attempts: 0, delivered: false };
    const failures: Array<{ target: string; message: string; tag: InferenceFailure['tag']; breakerOpen: boolean }> = [];
    for (const [i, target] of route.targets.entries()) {
      if (i > 0) {
        const previous = failures[failures.length - 1]!;
        options.onFallback?.({ from: previous.target, to: target.target, reason: previous.message });
      }
      const outcome = await this.tryTarget(target, request, options, deadline, state);
      if (outcome.ok) {
        const { response } = outcome.answer;
        const backend = this.entries.get(target.backend)!.backend;
        const warning = route.privacy.level === 'sensitive' && !this.router.zdr(target.backend)
          ? `sensitive: served by ${target.target}, which has no zero data retention (no ZDR target of the chain answered)`
          : undefined;
        if (warning) this.options.log?.warn({ task: options.taskId, backend: target.backend }, warning);
        return {
          response, backend: target.backend, model: target.model, target: target.target,
          costUsd: costUsd(priceOf(backend.prices, target.model), response.usage.promptTokens, response.usage.completionTokens),
          durationMs: this.clock.now() - started,
          attempts: state.attempts,
          privacy: { level: route.privacy.level, ...(route.privacy.reason ? { reason: route.privacy.reason } : {}) },
          ...(warning ? { warning } : {}),
        };
      }
      if (outcome.final) throw outcome.final;
      failures.push({ target: target.target, message: outcome.message, tag: outcome.tag, breakerOpen: outcome.breakerOpen });
      if (this.clock.now() >= deadline) break;
    }
    throw this.giveUp(failures, route.targets, state.attempts, this.clock.now() >= deadline);
  }

  /** Try one target: attempts while its breaker admits them, retries worth it are left and the deadline allows. */
  private async tryTarget(
    target: Target,
    request: ChatRequest,
    options: ChatOptions,
    deadline: number,
    state: { attempts: number; delivered: boolean },
  ): Promise<TargetOutcome> {
    const entry = this.entries.get(target.backend)!;
    const signal = options.signal ?? new AbortController().signal;
    for (let attempt = 1; ; attempt++) {
      const now = this.clock.now();
      if (now >= deadline) return { ok: false, message: `the call's deadline passed before attempt ${attempt}`, tag: 'unavailable', breakerOpen: false };
      const permit = entry.breaker.admit();
      if (refused(permit)) {
        this.publish(target.backend);
        return { ok: false, message: `${target.backend}: ${permit.reason}`, tag: 'unavailable', breakerOpen: true };
      }
      if (state.delivered) {
        options.onRestart?.();
        state.delivered = false;
      }
      state.attempts++;
      const timeoutMs = Math.max(1, Math.min(this.settings.timeoutMs, deadline - now));
      let answer: AttemptAnswer;
      try {
        answer = await entry.provider.complete(target.model, request, {
          signal, timeoutMs,
          onDelta: (text) => {
            state.delivered = true;
            options.onDelta?.(text);
          },
        });
      } catch (err) {
        if (!(err instanceof AttemptError)) {
          permit.release();
          throw cancelled(err);
        }
        this.attemptEvent(entry, target.model, err.status, now);
        if (err.final) {
          permit.release();
          return { ok: false, final: err.final };
        }
        if (!retryable(err.status)) {
          permit.release();
          this.publish(target.backend);
          // A refused key or an unknown model may be this backend's problem only: fall back. Any other 4xx is the request's.
          if (err.status === 401 || err.status === 403 || err.status === 404) {
            return { ok: false, message: err.message, tag: err.status === 404 ? 'invalid-request' : 'unavailable', breakerOpen: false };
          }
          return { ok: false, final: failure('invalid-request', err.message) };
        }
        permit.failure();
        entry.health.failure();
        this.publish(target.backend);
        const attempts = `${attempt} attempt${attempt === 1 ? '' : 's'}`;
        if (attempt > this.settings.retry.maxRetries) return { ok: false, message: `${err.message} (${attempts})`, tag: 'unavailable', breakerOpen: false };
        if (entry.breaker.state === 'open') return { ok: false, message: `${err.message} (${attempts}; the circuit opened)`, tag: 'unavailable', breakerOpen: false };
        const delay = retryDelay(attempt, err.retryAfterMs, this.settings.retry, this.random);
        if (this.clock.now() + delay >= deadline) {
          return { ok: false, message: `${err.message} (${attempts}; a retry in ${delay} ms would pass the call's deadline)`, tag: 'unavailable', breakerOpen: false };
        }
        try {
          await this.clock.sleep(delay, signal);
        } catch (reason) {
          throw cancelled(reason);
        }
        continue;
      }
      permit.success();
      entry.health.success(answer.latencyMs);
      this.attemptEvent(entry, target.model, answer.status ?? 200, now, answer.response.usage);
      this.publish(target.backend);
      return { ok: true, answer };
    }
  }

  /** The failure after every target was given up. */
  private giveUp(failures: Array<{ target: string; message: string; tag: InferenceFailure['tag']; breakerOpen: boolean }>, targets: Target[], attempts: number, pastDeadline: boolean): InferenceFailure {
    const last = failures[failures.length - 1]!;
    const deadline = pastDeadline ? `the call's deadline passed after ${attempts} attempt(s); ` : '';
    if (failures.length === 1 && targets.length === 1) return failure(last.tag, `${deadline}${last.message}`, last.breakerOpen ? 'E_BACKEND_OPEN' : undefined);
    const each = failures.map((f) => `${f.target}: ${f.message}`).join('; ');
    const skipped = targets.length > failures.length ? ` (not tried: ${targets.slice(failures.length).map((t) => t.target).join(', ')})` : '';
    return failure(last.tag, `${deadline}no target answered: ${each}${skipped}`, failures.every((f) => f.breakerOpen) ? 'E_BACKEND_OPEN' : undefined);
  }

  private attemptEvent(entry: Entry, model: string, status: AttemptStatus, started: number, usage?: { promptTokens: number; completionTokens: number }): void {
    if (!entry.provider.http) return;
    this.options.events?.emit(undefined, {
      type: 'inference.attempt', backend: entry.backend.name, model, status, durationMs: this.clock.now() - started,
      ...(usage ? { promptTokens: usage.promptTokens, completionTokens: usage.completionTokens } : {}),
    });
  }

  private onTransition(backend: string, from: BreakerState, to: BreakerState): void {
    this.options.log?.[to === 'open' ? 'warn' : 'info']({ backend, from, to }, `circuit breaker of backend ${backend}: ${from} → ${to}`);
    this.options.events?.emit(undefined, { type: 'breaker', backend, from, to });
    this.publish(backend);
  }

  private publish(backend: string): void {
    this.options.onBackendState?.(this.stateOf(backend));
  }
}

/** A cancelled call (task stopped, kernel draining, deadline signal) as an inference failure. */
function cancelled(reason: unknown): InferenceFailure {
  const why = reason instanceof Error ? reason.message : typeof reason === 'string' ? reason : 'cancelled';
  return failure('unavailable', `the inference request was cancelled: ${why}`);
}

/** A URL without user info (`https://user:pw@host` → `https://host`). */
function withoutUserinfo(url: string): string {
  try {
    const u = new URL(url);
    if (!u.username && !u.password) return url;
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return url;
  }
}

/**
 * Wrap a WIT inference error as a kernel error for CLI and HTTP callers: its `code` when it
 * has one (`E_PRIVACY_STRICT`, `E_BACKEND_OPEN`, `E_REPLAY`), else by tag.
 */
export function inferenceFailure(error: { tag: string; val: string; code?: InferenceFailure['code'] }): WardenError {
  return new WardenError(error.code ?? (error.tag === 'unavailable' ? 'E_INFERENCE_UNAVAILABLE' : 'E_INFERENCE_INVALID'), error.val);
}
