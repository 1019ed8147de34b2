/**
 * The kernel's runtime event bus: one typed, synchronous fan-out of what happens while tasks run
 * (inference requests and responses, fallbacks, tool calls, policy decisions, usage, steps) and
 * of kernel-wide facts (inference attempts, circuit-breaker transitions, stream clients).
 *
 * Producers (the kernel, inference routing, the policy engine, the stream routes) call
 * {@link RuntimeEvents.emit}; consumers (transcripts, metrics, budgets and doom-loop detection)
 * subscribe with {@link RuntimeEvents.on}. Listeners run synchronously in emit order; a listener
 * that throws is logged and skipped, never breaks the producer. Events never hold secrets in
 * clear: producers pass what they have, and consumers that persist text (transcripts) redact it.
 */
import type { Logger } from 'pino';
import type { ChatRequest, ChatResponse } from '../inference/index.js';

/** Events that belong to one task (`taskId` set by {@link RuntimeEvents.emit}). */
export type TaskEvent =
  | { type: 'task.start'; prompt: string; workspace: string; model: string; resumed: boolean }
  | { type: 'task.end'; status: 'succeeded' | 'failed' | 'interrupted'; summary?: string; error?: string; stopReason?: string }
  /** Before a chat request leaves: `turn` counts the task's inference requests from 1. */
  | { type: 'inference.request'; turn: number; target: string; messages: ChatRequest['messages']; tools: string[] }
  /** A chat response as the agent receives it, with where it was served. `costUsd` from the backend's prices (0 when unpriced). */
  | { type: 'inference.response'; turn: number; target: string; backend: string; model: string; response: ChatResponse; costUsd: number; durationMs: number }
  | { type: 'inference.error'; turn: number; target: string; error: string }
  /** The router moved on from `from` (`model@backend`) to `to`, for `reason`. */
  | { type: 'fallback'; turn: number; from: string; to: string; reason: string }
  /** The privacy level a request was routed under, and why when escalated. */
  | { type: 'privacy'; turn: number; level: 'standard' | 'sensitive' | 'strict'; reason?: string }
  | { type: 'usage'; backend: string; model: string; promptTokens: number; completionTokens: number; costUsd: number }
  | { type: 'tool.call'; id: string; caller: string; target: string; method: string; input: string }
  | { type: 'tool.result'; id: string; caller: string; target: string; method: string; outcome: string; output: string; durationMs: number }
  /** A policy decision on a tool call, mesh call, session commit or outbound host. */
  | { type: 'policy'; subject: string; kind: 'tool' | 'mesh' | 'commit' | 'http'; decision: 'allow' | 'deny' | 'ask'; rule?: string; mode: string; approvalId?: string }
  | { type: 'approval'; id: string; status: 'approved' | 'denied' | 'expired'; by?: string; reason?: string }
  | { type: 'step'; component: string; step: string; detail: string }
  | { type: 'denied'; component: string; capability: string; reason: string }
  | { type: 'session'; session: string; action: 'begin' | 'commit' | 'discard' };

/** Kernel-wide events (no task). */
export type KernelEvent =
  /** One HTTP attempt against a backend: `status` is the HTTP status, or `timeout` / `connection` / `malformed`. */
  | { type: 'inference.attempt'; backend: string; model: string; status: number | 'timeout' | 'connection' | 'malformed'; durationMs: number; promptTokens?: number; completionTokens?: number }
  | { type: 'breaker'; backend: string; from: 'closed' | 'open' | 'half-open'; to: 'closed' | 'open' | 'half-open' }
  /** A stream client connected (+1) or went away (-1). */
  | { type: 'client'; kind: 'ws' | 'sse' | 'agui'; delta: 1 | -1 };

/** What listeners receive: the event with its time (ms since the epoch) and task. */
export type RuntimeEvent = (TaskEvent & { taskId: string; ts: number }) | (KernelEvent & { taskId?: undefined; ts: number });

type Listener = (event: RuntimeEvent) => void;

/** The bus. One per kernel (`kernel.events`). */
export class RuntimeEvents {
  private readonly listeners = new Set<Listener>();

  constructor(private readonly log?: Logger) {}

  /** Subscribe to every event. @returns unsubscribe */
  on(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Emit a task event. */
  emit(taskId: string, event: TaskEvent): void;
  /** Emit a kernel-wide event. */
  emit(taskId: undefined, event: KernelEvent): void;
  emit(taskId: string | undefined, event: TaskEvent | KernelEvent): void {
    const full = { ...event, taskId, ts: Date.now() } as RuntimeEvent;
    for (const listener of this.listeners) {
      try {
        listener(full);
      } catch (err) {
        this.log?.error({ err: err instanceof Error ? err.message : String(err), event: event.type }, 'runtime event listener failed');
      }
    }
  }
}
