/**
 * The kernel's Prometheus metrics (prom-client), one registry per kernel, exposed at
 * `GET /metrics` in the text exposition format. Names follow Prometheus conventions: base
 * units (seconds), `_total` for counters.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { CallStats, Mesh, SpanNotice } from './mesh/index.js';

/** Call durations from 20 µs to 30 s: the mesh's floor is tens of µs, a tool call can take seconds. */
const CALL_BUCKETS = [2e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 5e-2, 0.25, 1, 5, 30];

/** Metrics of one kernel. */
export class Metrics {
  readonly registry = new Registry();
  /** `warden_mesh_call_duration_seconds{caller,target,method,outcome}`; its `_count` counts calls. */
  readonly meshCalls: Histogram<'caller' | 'target' | 'method' | 'outcome'>;
  /** `warden_events_total{topic,result}`: published, delivered, retried, dead_lettered. */
  readonly events: Counter<'topic' | 'result'>;

  constructor(mesh: Mesh) {
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

  /** Count one finished mesh call. */
  observeCall(caller: string, span: SpanNotice): void {
    this.meshCalls.observe({ caller, target: span.target, method: span.method, outcome: span.outcome ?? 'ok' }, (span.durationUs ?? 0) / 1e6);
  }

  /** Count a batch of calls made outside tasks by `caller`. */
  observeStats(caller: string, batch: CallStats[]): void {
    for (const stats of batch) {
      const child = this.meshCalls.labels({ caller, target: stats.target, method: stats.method, outcome: stats.outcome });
      for (const us of stats.durationsUs) child.observe(us / 1e6);
    }
  }

  /** The exposition text. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }
}
