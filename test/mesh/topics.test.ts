// Publish-subscribe between real components: a guest publishes with `mesh.publish`, subscribers
// (guests exporting `warden:kernel/subscriber`) record what they handle in their SQL scope.
// At-least-once, in order per topic per subscriber, grants on both ends, dead letters.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Kernel } from '../../kernel/kernel.js';
import type { TopicStats } from '../../kernel/mesh/index.js';
import { NO_GRANTS } from '../../kernel/grants/index.js';
import { json, kernelCtx, outputOf, samples, scopeRows, startActorKernel, until } from './harness.js';

let kernel: Kernel;
let dataDir: string;

const ONE = { min: 1, max: 1 };
beforeAll(async () => {
  ({ kernel, dataDir } = await startActorKernel({
    // May publish on three topics; asks for `topic:secret` too, which the operator does not grant.
    pub: { mesh: ['topic:orders', 'topic:flaky', 'topic:doomed', 'topic:secret'], withheld: ['topic:secret'], pool: ONE },
    'sub-orders': { mesh: ['topic:orders'], subscribe: ['topic:orders'], sql: { scope: 'orders', mode: 'rw' }, pool: ONE },
    // Subscribes by prefix.
    'sub-wild': { mesh: ['topic:ord*'], subscribe: ['topic:ord*'], sql: { scope: 'wild', mode: 'rw' }, pool: ONE },
    // Subscribes in its manifest, but the operator does not grant the topic: it gets nothing.
    'sub-ungranted': { mesh: ['topic:orders'], withheld: ['topic:orders'], subscribe: ['topic:orders'], sql: { scope: 'ungranted', mode: 'rw' }, pool: ONE },
    'sub-flaky': { mesh: ['topic:flaky'], subscribe: ['topic:flaky'], sql: { scope: 'flaky', mode: 'rw' }, pool: ONE },
    'sub-doomed': { mesh: ['topic:doomed'], subscribe: ['topic:doomed'], sql: { scope: 'doomed', mode: 'rw' }, pool: ONE },
  }));
});

afterAll(async () => kernel?.close());

function stats(topic: string): TopicStats | undefined {
  return kernel.mesh.topics.stats().find((s) => s.topic === topic);
}

async function publish(topic: string, n: number, extra: object = {}): Promise<{ published: number; errors: Array<{ tag: string; val: string }> }> {
  return JSON.parse(outputOf(await kernel.mesh.call('pub', 'call', json({ op: 'publish', topic, n, ...extra }), kernelCtx(30_000))));
}

/** Event numbers (`k`) a subscriber recorded in `table` of its scope, in the order it recorded them. */
function recorded(scope: string, table: 'attempts' | 'delivered', topic: string): number[] {
  return scopeRows<{ k: bigint | number }>(dataDir, scope, `SELECT k FROM ${table} WHERE topic = ? ORDER BY rowid`, topic).map((r) => Number(r.k));
}

const range = (n: number) => Array.from({ length: n }, (_, k) => k);

describe('publish-subscribe', () => {
  it('200 events published by a guest reach every granted subscriber once each, in publish order', async () => {
    expect(await publish('orders', 200)).toEqual({ published: 200, errors: [] });
    // sub-orders and sub-wild (by prefix) handle each event; sub-ungranted is not granted the topic.
    const done = await until(() => {
      const s = stats('orders');
      return s && s.delivered >= 400 && s.pending === 0 ? s : undefined;
    }, 30_000, 100);
    expect(done).toEqual({ topic: 'orders', published: 200, delivered: 400, retried: 0, deadLettered: 0, pending: 0 });
    expect(recorded('orders', 'delivered', 'orders')).toEqual(range(200));
    expect(recorded('orders', 'attempts', 'orders')).toEqual(range(200));
    expect(recorded('wild', 'delivered', 'orders')).toEqual(range(200));
    expect(recorded('ungranted', 'attempts', 'orders')).toEqual([]);
  });

  it('a handler that fails the first attempt of some events still gets every event in order; each retry comes right after its failure', async () => {
    const failFirst = [3, 17, 18, 40];
    expect(await publish('flaky', 50, { failFirst })).toEqual({ published: 50, errors: [] });
    const done = await until(() => {
      const s = stats('flaky');
      return s && s.delivered >= 50 && s.pending === 0 ? s : undefined;
    }, 30_000, 100);
    expect(done).toMatchObject({ published: 50, delivered: 50, retried: 4, deadLettered: 0 });
    expect(recorded('flaky', 'delivered', 'flaky')).toEqual(range(50));
    // At least once: the failed events were seen twice, each time straight after the failure,
    // before any later event.
    expect(recorded('flaky', 'attempts', 'flaky')).toEqual(range(50).flatMap((k) => (failFirst.includes(k) ? [k, k] : [k])));
  });

  it('publishing without the topic grant is denied and audited; so is a bad topic name', async () => {
    const denied = await publish('secret', 3);
    expect(denied.published).toBe(0);
    expect(denied.errors[0]).toEqual({ tag: 'denied', val: 'capability not granted: topic:secret' });
    const audit = kernel.store.auditEvents(100).filter((e) => e.kind === 'denied' && e.component === 'pub');
    expect(audit.some((e) => e.detail.includes('topic:secret'))).toBe(true);
    expect(stats('secret')).toBeUndefined();

    // The kernel's own publish checks the grants it is given too.
    expect(() => kernel.mesh.topics.publish('orders', json({ k: -1 }), 'test', { ...kernelCtx(1000), grants: NO_GRANTS })).toThrow();
    try {
      kernel.mesh.topics.publish('orders', json({ k: -1 }), 'test', { ...kernelCtx(1000), grants: { ...NO_GRANTS, mesh: ['topic:flaky'] } });
      expect.unreachable();
    } catch (err) {
      expect(err).toEqual({ tag: 'denied', val: 'capability not granted: topic:orders' });
    }
    try {
      kernel.mesh.topics.publish('Bad Topic', json({ k: -1 }), 'test', kernelCtx(1000));
      expect.unreachable();
    } catch (err) {
      expect(err).toMatchObject({ tag: 'denied' });
      expect((err as { val: string }).val).toMatch(/^E_BAD_INPUT: topic /);
    }
    expect(stats('orders')?.published).toBe(200);
  });

  it('a handler that always fails is dead-lettered after 8 attempts (audited), and the topic moves on to the next event', async () => {
    expect(await publish('doomed', 2, { doomed: [0] })).toEqual({ published: 2, errors: [] });
    // 8 attempts with backoff 50 ms doubling: about 6.4 s.
    const done = await until(() => {
      const s = stats('doomed');
      return s && s.deadLettered === 1 && s.delivered === 1 ? s : undefined;
    }, 20_000, 100);
    expect(done).toEqual({ topic: 'doomed', published: 2, delivered: 1, retried: 7, deadLettered: 1, pending: 0 });
    expect(recorded('doomed', 'attempts', 'doomed')).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 1]);
    expect(recorded('doomed', 'delivered', 'doomed')).toEqual([1]);
    const letter = kernel.store.auditEvents(100).find((e) => e.kind === 'dead-letter' && e.component === 'sub-doomed');
    expect(letter).toBeDefined();
    expect(JSON.parse(letter!.detail)).toEqual({ topic: 'doomed', seq: 1, publisher: 'pub', attempts: 8, reason: 'doomed on purpose' });
  });

  it('event counters are served as Prometheus metrics', async () => {
    const events = samples(await kernel.metrics.text(), 'warden_events_total');
    const value = (topic: string, result: string) => events.find((s) => s.labels['topic'] === topic && s.labels['result'] === result)?.value;
    expect([value('orders', 'published'), value('orders', 'delivered'), value('orders', 'retried')]).toEqual([200, 400, 0]);
    expect([value('flaky', 'delivered'), value('flaky', 'retried')]).toEqual([50, 4]);
    expect([value('doomed', 'delivered'), value('doomed', 'retried'), value('doomed', 'dead_lettered')]).toEqual([1, 7, 1]);
  });
});
