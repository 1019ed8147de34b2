/**
 * The kernel's Prometheus metrics (prom-client), one registry per kernel, exposed at
 * `GET /metrics` in the text exposition format. Names follow Prometheus conventions: base
 * units (seconds), `_total` for counters.
 *
 * Mesh series come from the mesh's spans and statistics; the runtime series (inference,
 * breakers, tokens, cost, tool calls, denials, sessions, stream clients, tasks, budget stops)
 * from the runtime event bus ({@link Metrics.watch}). Label values are bounded and never hold
 * secrets: backends and components are names from the config and the registry, statuses and
 * outcomes are fixed sets, and model names (which come from requests) pass through
 * {@link BoundedLabel} — cut, cleaned, at most {@link MAX_MODELS} distinct values, `other` after.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { CallStats, Mesh, SpanNotice } from './mesh/index.js';
import type { RuntimeEvent, RuntimeEvents } from './runtime/events.js';
import { hasSecret } from './secrets/detect.js';

/** Call durations from 20 µs to 30 s: the mesh's floor is tens of µs, a tool call can take seconds. */
const CALL_BUCKETS = [2e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 5e-2, 0.25, 1, 5, 30];

/** Inference request durations from 50 ms to 5 min (a local model can take minutes). */
const INFERENCE_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** Distinct model label values kept per kernel; later ones are counted as `other`. */
export const MAX_MODELS = 50;

/**
 * A label whose values come from outside (a model name in a request): values are cut to 64
 * characters of `[A-Za-z0-9._:@/+-]` (others become `_`), a value holding a secret becomes
 * `redacted`, and past `max` distinct values every new one becomes `other`, so a client cannot
 * grow the series without bound.
 */
export class BoundedLabel {
  private readonly seen = new Set<string>();

  constructor(private readonly max: number) {}

  /** The label value to use for `raw`. */
  value(raw: string): string {
    if (hasSecret(raw)) return 'redacted';
    const clean = raw.slice(0, 64).replace(/[^A-Za-z0-9._:@/+-]/g, '_') || 'none';
    if (this.seen.has(clean)) return clean;
    if (this.seen.size >= this.max) return 'other';
    this.seen.add(clean);
    return clean;
  }
}

/** What the collected runtime gauges read from the kernel at scrape time. */
export interface MetricsView {
  /** Every task the kernel knows, with its status. */
  tasks(): Iterable<{ status: string }>;
  /** Sessions open now (in the store). */
  openSessions(): number;
  /** Kind of a loaded component (`tool`, `agent`, `supervisor`), undefined when none is loaded by that name. */
  kindOf(component: string): string | undefined;
}

/** Breaker states, in the order of the `warden_breaker_state` gauge's `state` label. */
const BREAKER_STATES = ['closed', 'half-open', 'open'] as const;

/** Metrics of one kernel. */
export class Metrics {
  readonly registry = new Registry();
  /** `warden_mesh_call_duration_seconds{caller,target,method,outcome}`; its `_count` counts calls. */
  readonly meshCalls: Histogram<'caller' | 'target' | 'method' | 'outcome'>;
  /** `warden_events_total{topic,result}`: published, delivered, retried, dead_lettered. */
  readonly events: Counter<'topic' | 'result'>;

  constructor(private readonly mesh: Mesh) {
    this.meshCalls = new Histogram({
      name: 'warden_mesh_call_duration_seconds',
      help: 'Mesh calls by caller, target, method and outcome (ok or the mesh-error case), with their duration in seconds',
      labelNames: ['caller', 'target', 'method', 'outcome'],
      buckets: CALL_BUCKETS,
      registers: [this.registry],
    });
    this.events = new Counter({
      name: 'warden_events_total',
      help: 'Pub-sub events by topic and result (published, delivered, retried, dead_lettered)',
      labelNames: ['topic', 'result'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const t of mesh.topics.stats()) {
          this.inc({ topic: t.topic, result: 'published' }, t.published);
          this.inc({ topic: t.topic, result: 'delivered' }, t.delivered);
          this.inc({ topic: t.topic, result: 'retried' }, t.retried);
          this.inc({ topic: t.topic, result: 'dead_lettered' }, t.deadLettered);
        }
      },
    });
    new Gauge({
      name: 'warden_mesh_pool_workers',
      help: 'Workers in service per component',
      labelNames: ['component'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const pool of mesh.pools()) this.set({ component: pool.name }, pool.workers.length);
      },
    });
    new Gauge({
      name: 'warden_mesh_queue_depth',
      help: 'Calls queued or running per component (E_MESH_BUSY at the pool queue bound)',
      labelNames: ['component'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const pool of mesh.pools()) this.set({ component: pool.name }, pool.depth);
      },
    });
  }

  /** `warden_budget_stops_total{budget}`: tasks stopped by a budget (tokens, cost, wall_time, doom_loop, turns). */
  readonly budgetStops = new Counter({
    name: 'warden_budget_stops_total',
    help: 'Tasks stopped by a budget, by budget (tokens, cost, wall_time, doom_loop, turns)',
    labelNames: ['budget'],
    registers: [this.registry],
  });

  /**
   * Count the runtime's events from now on and register the gauges read from `view` at scrape
   * time. Call once per kernel. @returns unsubscribe
   */
  watch(events: RuntimeEvents, view: MetricsView): () => void {
    const registers = [this.registry];
    const models = new BoundedLabel(MAX_MODELS);
    const requests = new Counter({
      name: 'warden_inference_requests_total',
      help: 'HTTP attempts against model backends, by backend, model and status (the HTTP status, or timeout, connection, malformed)',
      labelNames: ['backend', 'model', 'status'], registers,
    });
    const latency = new Histogram({
      name: 'warden_inference_request_duration_seconds',
      help: 'Duration of HTTP attempts against model backends in seconds, by backend and model',
      labelNames: ['backend', 'model'], buckets: INFERENCE_BUCKETS, registers,
    });
    const tokens = new Counter({
      name: 'warden_inference_tokens_total',
      help: 'Tokens of served inference responses, by backend, model and direction (in: prompt, out: completion)',
      labelNames: ['backend', 'model', 'direction'], registers,
    });
    const cost = new Counter({
      name: 'warden_inference_cost_usd_total',
      help: 'Cost of served inference responses in US dollars (the backends\' configured prices), by backend and model',
      labelNames: ['backend', 'model'], registers,
    });
    const trips = new Counter({
      name: 'warden_breaker_trips_total',
      help: 'Circuit-breaker transitions to open, by backend',
      labelNames: ['backend'], registers,
    });
    const breaker = new Gauge({
      name: 'warden_breaker_state',
      help: 'Current circuit-breaker state per backend: 1 for the state it is in (closed, half-open, open), 0 for the others',
      labelNames: ['backend', 'state'], registers,
    });
    const toolCalls = new Counter({
      name: 'warden_tool_calls_total',
      help: 'Tool calls made for tasks, by tool component, method and outcome (ok or the mesh-error case); unknown: a tool that is not loaded',
      labelNames: ['component', 'method', 'outcome'], registers,
    });
    const denials = new Counter({
      name: 'warden_denials_total',
      help: 'Denials, by source (capability: a grant refused it; policy: a policy rule or mode) and kind (the capability, or tool, mesh, commit, http)',
      labelNames: ['source', 'kind'], registers,
    });
    const decisions = new Counter({
      name: 'warden_policy_decisions_total',
      help: 'Policy decisions, by kind (tool, mesh, commit, http) and decision (allow, deny, ask)',
      labelNames: ['kind', 'decision'], registers,
    });
    const sessionEvents = new Counter({
      name: 'warden_session_events_total',
      help: 'Sessions of tasks begun, committed and discarded, by action',
      labelNames: ['action'], registers,
    });
    new Gauge({
      name: 'warden_sessions_open',
      help: 'Sessions open now (not yet committed or discarded)',
      registers,
      collect() {
        this.set(view.openSessions());
      },
    });
    const clients = new Gauge({
      name: 'warden_stream_clients',
      help: 'Stream clients connected now, by kind (ws: WebSocket patch stream, sse: Server-Sent Events, agui: AG-UI)',
      labelNames: ['kind'], registers,
    });
    for (const kind of ['ws', 'sse', 'agui']) clients.set({ kind }, 0);
    new Gauge({
      name: 'warden_tasks',
      help: 'Tasks the kernel knows, by status (queued, running, succeeded, failed, interrupted)',
      labelNames: ['status'], registers,
      collect() {
        this.reset();
        for (const status of ['queued', 'running', 'succeeded', 'failed', 'interrupted']) this.set({ status }, 0);
        for (const task of view.tasks()) this.inc({ status: task.status });
      },
    });
    const finished = new Counter({
      name: 'warden_tasks_finished_total',
      help: 'Task runs that ended since the kernel started, by status (succeeded, failed, interrupted)',
      labelNames: ['status'], registers,
    });
    const setBreaker = (backend: string, state: string) => {
      for (const s of BREAKER_STATES) breaker.set({ backend, state: s }, s === state ? 1 : 0);
    };
    const onEvent = (event: RuntimeEvent): void => {
      switch (event.type) {
        case 'inference.attempt': {
          const model = models.value(event.model);
          requests.inc({ backend: event.backend, model, status: String(event.status) });
          latency.observe({ backend: event.backend, model }, event.durationMs / 1000);
          break;
        }
        case 'usage': {
          const labels = { backend: event.backend, model: models.value(event.model) };
          tokens.inc({ ...labels, direction: 'in' }, event.promptTokens);
          tokens.inc({ ...labels, direction: 'out' }, event.completionTokens);
          cost.inc(labels, event.costUsd);
          break;
        }
        case 'breaker':
          if (event.to === 'open') trips.inc({ backend: event.backend });
          setBreaker(event.backend, event.to);
          break;
        case 'tool.result': {
          const kind = view.kindOf(event.target);
          if (kind !== undefined && kind !== 'tool') break;
          toolCalls.inc({ component: kind ? event.target : 'unknown', method: kind ? event.method : 'call', outcome: event.outcome });
          break;
        }
        case 'denied':
          denials.inc({ source: 'capability', kind: event.capability });
          break;
        case 'policy':
          decisions.inc({ kind: event.kind, decision: event.decision });
          if (event.decision === 'deny') denials.inc({ source: 'policy', kind: event.kind });
          break;
        case 'session':
          sessionEvents.inc({ action: event.action });
          break;
        case 'client':
          clients.inc({ kind: event.kind }, event.delta);
          break;
        case 'task.end':
          finished.inc({ status: event.status });
          break;
        default:
          break;
      }
    };
    return events.on(onEvent);
  }

  /** A call's target as a label: a loaded component's name, else `unknown` (a name a model made up is not a label). */
  private targetLabel(target: string): string {
    return this.mesh.component(target) ? target : 'unknown';
  }

  /** Count one finished mesh call. */
  observeCall(caller: string, span: SpanNotice): void {
    this.meshCalls.observe({ caller, target: this.targetLabel(span.target), method: span.method, outcome: span.outcome ?? 'ok' }, (span.durationUs ?? 0) / 1e6);
  }

  /** Count a batch of calls made outside tasks by `caller`. */
  observeStats(caller: string, batch: CallStats[]): void {
    for (const stats of batch) {
      const child = this.meshCalls.labels({ caller, target: this.targetLabel(stats.target), method: stats.method, outcome: stats.outcome });
      for (const us of stats.durationsUs) child.observe(us / 1e6);
    }
  }

  /** The exposition text. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }
}
