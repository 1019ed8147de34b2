/**
 * Publish-subscribe between components, within one node. A component publishes with the
 * `mesh.publish` import; every component subscribed to the topic (it exports
 * `warden:kernel/subscriber` and its grants allow `topic:NAME`) gets the event through its
 * `handle-event` export, called over the mesh like any other call.
 *
 * Guarantees: **at-least-once** — an event leaves a subscriber's queue only when its handler
 * returned `ok`; an error, trap, crash, timeout or `E_MESH_BUSY` is retried with exponential
 * backoff (so a handler may see an event again after a failure that happened after it acted);
 * after `maxAttempts` failures the event is dead-lettered (logged and audited, never dropped
 * silently). **In order per topic** — each subscriber has one queue per topic and at most one
 * delivery of it in flight, so it handles a topic's events in publish order. Queues are bounded
 * (`maxPending` events per subscriber); past that, `publish` fails with `busy`.
 * Events live in memory: a kernel restart loses undelivered ones.
 */
import { allows } from '../grants/index.js';
import type { Mesh } from './index.js';
import type { CallContext, Notice, Payload } from './protocol.js';

/** Topic names: lower-case letters, digits, `.`, `_` and `-`, at most 128 characters. */
export const TOPIC = /^[a-z0-9][a-z0-9._-]{0,127}$/;

/** Options of {@link Topics}. */
export interface TopicOptions {
  /** Undelivered events per subscriber before `publish` answers `busy` (default 10,000). */
  maxPending: number;
  /** Deliveries of one event before it is dead-lettered (default 8). */
  maxAttempts: number;
  /** First retry delay, ms, doubled per attempt up to `maxBackoffMs` (defaults 50 and 5,000). */
  backoffMs: number;
  maxBackoffMs: number;
}

/** Counters of one topic. */
export interface TopicStats {
  topic: string;
  published: number;
  /** Successful `handle-event` calls (all subscribers). */
  delivered: number;
  /** Failed deliveries that were retried. */
  retried: number;
  deadLettered: number;
  /** Events waiting in subscriber queues. */
  pending: number;
}

interface Event {
  seq: number;
  topic: string;
  payload: Payload;
  publisher: string;
  taskId: string;
}

interface Queue {
  events: Event[];
  running: boolean;
}

interface Subscription {
  component: string;
  patterns: string[];
  queues: Map<string, Queue>;
  /** Events queued over all its topics. */
  pending: number;
}

/** A WIT `mesh-error` value, thrown to the publishing guest. */
type MeshErrorValue = { tag: 'denied' | 'busy' | 'failed'; val: string };

/** The node's topic broker (main thread). */
export class Topics {
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly counters = new Map<string, Omit<TopicStats, 'topic' | 'pending'>>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;
  private readonly options: TopicOptions;

  constructor(private readonly mesh: Mesh, private readonly notice: (notice: Notice) => void, options: Partial<TopicOptions> = {}) {
    this.options = { maxPending: 10_000, maxAttempts: 8, backoffMs: 50, maxBackoffMs: 5000, ...options };
  }

  /** Deliver events on topics matching `patterns` (`topic:NAME`, `topic:prefix*`) to `component`. */
  subscribe(component: string, patterns: string[]): void {
    this.subscriptions.set(component, { component, patterns, queues: new Map(), pending: 0 });
  }

  /** Stop delivering to `component`; its undelivered events are dropped with a log line. */
  unsubscribe(component: string): void {
    const sub = this.subscriptions.get(component);
    if (!sub) return;
    this.subscriptions.delete(component);
    if (sub.pending > 0) this.log('warn', component, `unsubscribed with ${sub.pending} undelivered events`);
  }

  /**
   * Publish `payload` on `topic` from `publisher` (whose call context is `ctx`).
   * @returns the event's sequence number on the topic and how many subscribers will get it
   * @throws a WIT `mesh-error`: `denied` (bad topic name or no `topic:` grant), `busy` (a
   *   subscriber's queue is full; nothing was queued for anyone)
   */
  publish(topic: string, payload: Payload, publisher: string, ctx: CallContext): { seq: number; subscribers: number } {
    if (!TOPIC.test(topic)) {
      throw { tag: 'denied', val: `E_BAD_INPUT: topic ${JSON.stringify(topic.slice(0, 64))} is not a valid name (lower-case letters, digits, . _ -)` } satisfies MeshErrorValue;
    }
    if (!allows(ctx.grants.mesh, `topic:${topic}`)) {
      throw { tag: 'denied', val: `capability not granted: topic:${topic}` } satisfies MeshErrorValue;
    }
    const targets: Subscription[] = [];
    for (const sub of this.subscriptions.values()) {
      const grants = this.mesh.component(sub.component)?.grants;
      if (!grants || !allows(sub.patterns, `topic:${topic}`) || !allows(grants.mesh, `topic:${topic}`)) continue;
      if (sub.pending >= this.options.maxPending) {
        throw { tag: 'busy', val: `E_MESH_BUSY: subscriber ${sub.component} has ${sub.pending} undelivered events; publish again later` } satisfies MeshErrorValue;
      }
      targets.push(sub);
    }
    const counters = this.countersOf(topic);
    const event: Event = { seq: ++counters.published, topic, payload, publisher, taskId: ctx.taskId };
    for (const sub of targets) {
      let queue = sub.queues.get(topic);
      if (!queue) {
        queue = { events: [], running: false };
        sub.queues.set(topic, queue);
      }
      queue.events.push(event);
      sub.pending++;
      void this.drain(sub, queue);
    }
    return { seq: event.seq, subscribers: targets.length };
  }

  /** Counters per topic, with events still queued. */
  stats(): TopicStats[] {
    return [...this.counters.entries()].map(([topic, c]) => {
      let pending = 0;
      for (const sub of this.subscriptions.values()) pending += sub.queues.get(topic)?.events.length ?? 0;
      return { topic, ...c, pending };
    });
  }

  /** Stop all deliveries (kernel shutdown). */
  close(): void {
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }

  private countersOf(topic: string): Omit<TopicStats, 'topic' | 'pending'> {
    let c = this.counters.get(topic);
    if (!c) {
      c = { published: 0, delivered: 0, retried: 0, deadLettered: 0 };
      this.counters.set(topic, c);
    }
    return c;
  }

  /** Deliver a queue's events one at a time, in order; at most one drain per queue. */
  private async drain(sub: Subscription, queue: Queue): Promise<void> {
    if (queue.running) return;
    queue.running = true;
    try {
      let attempts = 0;
      while (!this.closed && queue.events.length > 0 && this.subscriptions.get(sub.component) === sub) {
        const event = queue.events[0]!;
        const component = this.mesh.component(sub.component);
        if (!component) break;
        const reply = await this.mesh.call(sub.component, 'handle-event', event.payload, {
          taskId: event.taskId, sessionId: null, chain: [], deadline: Date.now() + component.limits.timeoutMs, grants: component.grants, topic: event.topic,
        });
        const counters = this.countersOf(event.topic);
        if (reply.ok) {
          queue.events.shift();
          sub.pending--;
          counters.delivered++;
          attempts = 0;
          continue;
        }
        attempts++;
        if (attempts >= this.options.maxAttempts) {
          queue.events.shift();
          sub.pending--;
          counters.deadLettered++;
          attempts = 0;
          this.notice({
            type: 'notice', op: 'dead-letter', component: sub.component,
            body: { topic: event.topic, seq: event.seq, publisher: event.publisher, attempts: this.options.maxAttempts, reason: reply.error.message },
            ...(event.taskId ? { ctx: { taskId: event.taskId } } : {}),
          });
          continue;
        }
        counters.retried++;
        const delay = Math.min(this.options.maxBackoffMs, this.options.backoffMs * 2 ** (attempts - 1));
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            this.timers.delete(timer);
            resolve();
          }, delay);
          this.timers.add(timer);
        });
      }
    } finally {
      queue.running = false;
    }
  }

  private log(level: string, component: string, message: string): void {
    this.notice({ type: 'notice', op: 'log', component, body: { level, message } });
  }
}
