// Mesh calls under stress and failure, with real components (one componentize-qjs actor guest
// loaded under many names) in real workers: deadlines, cycles, a callee that traps, one that
// loops forever, one whose worker is killed mid call, queue overflow, 1,000 concurrent calls with
// no loss and no duplicate, fresh instances, pool growth and shrinking, large bytes payloads
// through shared memory, spans and metrics.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { DEFAULT_LIMITS, NO_GRANTS, parseManifest } from '../../kernel/grants/index.js';
import type { Kernel } from '../../kernel/kernel.js';
import { SHARED_THRESHOLD, type CallReply } from '../../kernel/mesh/index.js';
import { buildServer } from '../../kernel/server/index.js';
import { startScriptedServer, type ScriptedServer } from '../support/scripted-openai.js';
import { workspace } from '../support/fixtures.js';
import { authed } from '../support/auth.js';
import {
  innerOutput, json, kernelCtx, outputOf, samples, scopeRows, sleep, startActorKernel, until, type GuestAttempt,
} from './harness.js';

let kernel: Kernel;
let dataDir: string;
const RESIDUE = join(import.meta.dirname, 'guests/residue.wasm');
let scripted: ScriptedServer;

const ONE = { min: 1, max: 1 };
beforeAll(async () => {
  scripted = await startScriptedServer([{ content: 'nothing to do' }]);
  ({ kernel, dataDir } = await startActorKernel({
    // A general guest caller, and the tools it calls.
    g: { mesh: ['*'], pool: ONE },
    trapper: { pool: ONE },
    // 5 s leaves room for a replacement worker to start and serve its first (cold) call on a loaded
    // machine (2.5 s was once too little under the full suite in CI).
    spinner: { limits: { timeoutMs: 5000 }, pool: ONE },
    sleeper: { pool: ONE },
    // Deadlines: `dl-short` may run 1.2 s; the ticker records when it is still running.
    'dl-short': { mesh: ['dl-*'], limits: { timeoutMs: 1200 }, pool: ONE },
    'dl-relay': { mesh: ['dl-*'], pool: ONE },
    'dl-relay2': { mesh: ['dl-*'], pool: ONE },
    'dl-ticker': { sql: { scope: 'ticks', mode: 'rw' }, pool: { min: 2, max: 2 } },
    // Cycles.
    'cyc-a': { mesh: ['cyc-*'], pool: ONE },
    'cyc-b': { mesh: ['cyc-*'], pool: ONE },
    'cyc-c': { mesh: ['cyc-*'], pool: ONE },
    // Load.
    echo: { pool: { min: 2, max: 4, queue: 1000 } },
    'caller-1': { mesh: ['echo'], pool: ONE },
    'caller-2': { mesh: ['echo'], pool: ONE },
    'caller-3': { mesh: ['echo'], pool: ONE },
    'caller-4': { mesh: ['echo'], pool: ONE },
    narrow: { pool: { min: 1, max: 1, queue: 4 } },
    elastic: { pool: { min: 1, max: 3, idleMs: 300 } },
    // Bytes through shared memory.
    'blob-sink': { sql: { scope: 'blobs', mode: 'rw' }, pool: ONE },
  }, { baseURL: scripted.baseURL }));
  // A C tool that reads back its zero-initialised static memory (test/mesh/guests/residue.c).
  await kernel.loadComponent({
    name: 'residue',
    manifest: parseManifest({ name: 'residue', version: '0.0.1', kind: 'tool', requests: {} }, 'test:residue'),
    file: RESIDUE,
    builtin: false,
  });
});

afterAll(async () => {
  await kernel?.close();
  await scripted?.close();
});

/** The kernel calls `target` with the actor input `input`. */
function call(target: string, input: object, ms = 20_000): Promise<CallReply> {
  return kernel.mesh.call(target, 'call', json(input), kernelCtx(ms));
}

/** Guest `caller` makes one mesh call to `target` with `input`; what it saw. */
async function viaGuest(caller: string, target: string, input: object): Promise<GuestAttempt> {
  return JSON.parse(outputOf(await call(caller, { op: 'call', target, input }))) as GuestAttempt;
}

function pool(name: string) {
  return kernel.mesh.pools().find((p) => p.name === name)!;
}

/** Wait until `name` has a worker serving a call; its id. */
async function busyWorker(name: string): Promise<number> {
  const id = await until(() => pool(name).workers.find((w) => w.load > 0)?.workerId, 10_000, 10);
  if (id === undefined) throw new Error(`${name} never started serving`);
  return id;
}

/** Wait until `name`'s workers are all in service and idle (a stopped one has been replaced). */
async function idle(name: string): Promise<void> {
  const settled = await until(() => {
    const p = pool(name);
    return p.workers.length >= p.settings.min && p.workers.every((w) => w.load === 0) ? true : undefined;
  }, 10_000, 10);
  if (!settled) throw new Error(`${name} did not settle`);
}

function ticks(label: string): number[] {
  return scopeRows<{ at: bigint | number }>(dataDir, 'ticks', 'SELECT at FROM ticks WHERE label = ? ORDER BY at', label).map((r) => Number(r.at));
}

describe('deadlines', () => {
  it('a guest caller with 1.2 s gets a timeout within its own deadline, not after the slow tool\'s 30 s limit', async () => {
    const result = await viaGuest('g', 'dl-short', { op: 'call', target: 'dl-ticker', input: { op: 'tick', ms: 4000, step: 100, label: 'short' } });
    // dl-short's wait and g's wait end at the same instant: g sees the timeout itself, or
    // dl-short's own report of it (its output) when dl-short answers first.
    const seen = result.ok ? (JSON.parse(innerOutput(result)) as GuestAttempt) : result;
    expect(seen.ok).toBe(false);
    expect(seen.error?.tag).toBe('timeout');
    expect(seen.error?.val).toMatch(/^E_LIMIT_TIME: /);
    // 1.2 s deadline; generous margin, far below the tool's 4 s of work and 30 s limit.
    expect(result.ms).toBeGreaterThanOrEqual(1100);
    expect(result.ms).toBeLessThan(3000);
  });

  it('the deadline travels down the chain: two levels below a caller with 2 s left, a 30 s tool is stopped at those 2 s', async () => {
    // kernel (2 s) → dl-relay → dl-relay2 → dl-ticker (30 s limit, 5 s of work). dl-relay is
    // killed early, so nothing above dl-relay2 enforces the 2 s any more: only the deadline
    // dl-relay2 inherited (the kernel's remainder) can stop the ticker when the 2 s run out.
    const started = Date.now();
    const deadline = started + 2000;
    const pending = kernel.mesh.call('dl-relay', 'call', json({
      op: 'call', target: 'dl-relay2', input: { op: 'call', target: 'dl-ticker', input: { op: 'tick', ms: 5000, step: 100, label: 'chain' } },
    }), { ...kernelCtx(0), deadline });
    await until(() => (ticks('chain').length > 0 ? true : undefined), 5000, 20);
    await kernel.mesh.terminateWorker(await busyWorker('dl-relay'));
    const reply = await pending;
    expect(!reply.ok && reply.error.message).toMatch(/^E_MESH_FAILED: /);
    await sleep(deadline + 2000 - Date.now());
    const seen = ticks('chain');
    expect(seen.length).toBeGreaterThan(0);
    // Stopped at the 2 s deadline (+ a margin for a loaded machine), not after its 5 s of work.
    expect(Math.max(...seen) - deadline).toBeLessThan(1000);
  });

  it('a callee whose caller died is still stopped at its deadline (not left running past it)', async () => {
    // kernel (2 s) → dl-relay → dl-ticker (5 s of work); dl-relay is killed mid call.
    const started = Date.now();
    const deadline = started + 2000;
    const pending = kernel.mesh.call('dl-relay', 'call', json({ op: 'call', target: 'dl-ticker', input: { op: 'tick', ms: 5000, step: 100, label: 'orphan' } }), { ...kernelCtx(0), deadline });
    await until(() => (ticks('orphan').length > 0 ? true : undefined), 5000, 20);
    await kernel.mesh.terminateWorker(await busyWorker('dl-relay'));
    expect((await pending).ok).toBe(false);
    await sleep(deadline + 2000 - Date.now());
    const seen = ticks('orphan');
    expect(seen.length).toBeGreaterThan(0);
    expect(Math.max(...seen) - deadline).toBeLessThan(1000);
  });
});

describe('cycles', () => {
  it('A → B → A fails at once with E_MESH_CYCLE; A → A and A → B → C → A too; A → B → C works', async () => {
    const aba = await viaGuest('cyc-a', 'cyc-b', { op: 'call', target: 'cyc-a', input: { op: 'echo' } });
    const inner = JSON.parse(innerOutput(aba)) as GuestAttempt;
    expect(inner.ok).toBe(false);
    expect(inner.error).toEqual({ tag: 'cycle', val: 'E_MESH_CYCLE: cyc-a → cyc-b → cyc-a would re-enter cyc-a' });
    expect(inner.ms).toBeLessThan(1000);

    const self = await viaGuest('cyc-a', 'cyc-a', { op: 'echo' });
    expect(self.error?.tag).toBe('cycle');
    expect(self.error?.val).toMatch(/^E_MESH_CYCLE: cyc-a → cyc-a /);

    const abca = await viaGuest('cyc-a', 'cyc-b', { op: 'call', target: 'cyc-c', input: { op: 'call', target: 'cyc-a', input: { op: 'echo' } } });
    const bc = JSON.parse(innerOutput(abca)) as GuestAttempt;
    const ca = JSON.parse(innerOutput(bc)) as GuestAttempt;
    expect(ca.error?.tag).toBe('cycle');
    expect(ca.error?.val).toMatch(/^E_MESH_CYCLE: cyc-a → cyc-b → cyc-c → cyc-a /);

    const abc = await viaGuest('cyc-a', 'cyc-b', { op: 'call', target: 'cyc-c', input: { op: 'echo', hello: 'c' } });
    const reachedC = JSON.parse(innerOutput(abc)) as GuestAttempt;
    expect(innerOutput(reachedC)).toBe(JSON.stringify({ op: 'echo', hello: 'c' }));
  });
});

describe('failing callees', () => {
  it('a callee that traps: its caller gets `failed` naming the trap; the next call runs on a fresh instance', async () => {
    const trapped = await viaGuest('g', 'trapper', { op: 'trap' });
    expect(trapped.ok).toBe(false);
    expect(trapped.error?.tag).toBe('failed');
    expect(trapped.error?.val).toMatch(/^trapper trapped: .*unreachable/);
    const next = await viaGuest('g', 'trapper', { op: 'count' });
    expect(innerOutput(next)).toBe('1');

    // From the kernel: the reply says it trapped; an error result (a tool-error) is not a trap.
    const direct = await call('trapper', { op: 'trap' });
    expect(!direct.ok && { tag: direct.error.tag, trapped: direct.trapped }).toEqual({ tag: 'failed', trapped: true });
    const refused = await call('trapper', { op: 'fail' });
    expect(!refused.ok && { message: refused.error.message, trapped: refused.trapped }).toEqual({ message: 'failed: refused on purpose', trapped: false });
    expect(outputOf(await call('trapper', { op: 'count' }))).toBe('1');
  });

  it('a callee that loops forever: its caller gets a timeout at the callee\'s 5 s limit, the worker is replaced, the next call succeeds', async () => {
    const [before] = pool('spinner').workers.map((w) => w.workerId);
    const spun = await viaGuest('g', 'spinner', { op: 'spin' });
    expect(spun.ok).toBe(false);
    expect(spun.error?.tag).toBe('timeout');
    expect(spun.error?.val).toMatch(/^E_LIMIT_TIME: spinner\.call did not answer/);
    expect(spun.ms).toBeGreaterThanOrEqual(4900);
    expect(spun.ms).toBeLessThan(7000);
    // The spinning worker is gone, replaced by a new one (the next call waits for it).
    const replaced = await until(() => {
      const now = pool('spinner').workers.map((w) => w.workerId);
      return now.length === 1 && now[0] !== before ? now : undefined;
    }, 10_000);
    expect(replaced).toBeDefined();
    expect(innerOutput(await viaGuest('g', 'spinner', { op: 'echo', after: 'spin' }))).toBe(JSON.stringify({ op: 'echo', after: 'spin' }));
  });

  it('a callee stopped at its deadline by a guest caller is audited as a limit hit, like one stopped by the kernel', async () => {
    const limitHits = () => kernel.store.auditEvents(1000).filter((e) => e.kind === 'limit' && e.component === 'spinner');
    await idle('spinner');
    const before = limitHits().length;
    // The kernel as caller: the spinner is stopped at the deadline and the hit is audited.
    const direct = await call('spinner', { op: 'spin' }, 1000);
    expect(direct.ok ? 'ok' : `${direct.error.tag}: ${direct.error.message}`).toMatch(/^timeout: E_LIMIT_TIME: /);
    await until(() => (limitHits().length > before ? true : undefined), 3000);
    expect(limitHits().length).toBe(before + 1);
    expect(JSON.parse(limitHits()[0]!.detail)).toMatchObject({ limit: 'timeoutMs' });
    // A guest caller: the same limit hit, so the same audit record.
    await idle('spinner');
    const spun = await viaGuest('g', 'spinner', { op: 'spin' });
    expect(spun.error?.tag).toBe('timeout');
    await until(() => (limitHits().length > before + 1 ? true : undefined), 3000);
    expect(limitHits().length).toBe(before + 2);
  });

  it('a call made right after a worker was stopped at its deadline is served by the replacement, not failed', async () => {
    await idle('spinner');
    const timedOut = await call('spinner', { op: 'spin' }, 1000);
    expect(!timedOut.ok && timedOut.error.tag).toBe('timeout');
    const next = await call('spinner', { op: 'count' });
    expect(next.ok ? outputOf(next) : next.error.message).toBe('1');

    await idle('spinner');
    const spun = await viaGuest('g', 'spinner', { op: 'spin' });
    expect(spun.error?.tag).toBe('timeout');
    const after = await viaGuest('g', 'spinner', { op: 'count' });
    expect(after.ok ? innerOutput(after) : after.error?.val).toBe('1');

    // The same two calls from inside one guest call: the second is claimed microseconds after the
    // first timed out, before the main thread has stopped the worker.
    await idle('spinner');
    const both = await call('g', { op: 'seq', steps: [{ target: 'spinner', input: { op: 'spin' } }, { target: 'spinner', input: { op: 'count' } }] });
    const [spinAttempt, countAttempt] = JSON.parse(outputOf(both)) as GuestAttempt[];
    expect(spinAttempt!.error?.tag).toBe('timeout');
    expect(countAttempt!.ok ? innerOutput(countAttempt!) : countAttempt!.error?.val).toBe('1');
  });

  it('a deadline timer that fires before the clock reaches the deadline still stops the looping callee, not "waited behind another call"', async () => {
    // Node counts a timer from the event loop's clock, which can be a millisecond or more behind
    // `Date.now()`: the timer then fires while the call's own deadline is still ahead. Arm the
    // kernel's timer 30 ms short to make that certain.
    await idle('spinner');
    const [before] = pool('spinner').workers.map((w) => w.workerId);
    const real = globalThis.setTimeout;
    globalThis.setTimeout = ((fn: () => void, ms?: number) => real(fn, Math.max(0, (ms ?? 0) - 30))) as typeof setTimeout;
    let pending: Promise<CallReply>;
    try {
      pending = call('spinner', { op: 'spin' }, 1000);
    } finally {
      globalThis.setTimeout = real;
    }
    const reply = await pending;
    expect(reply.ok ? 'ok' : reply.error.message).toMatch(/^E_LIMIT_TIME: spinner\.call did not answer within \d+ ms; its worker was stopped/);
    const replaced = await until(() => {
      const now = pool('spinner').workers.map((w) => w.workerId);
      return now.length === 1 && now[0] !== before ? now : undefined;
    }, 10_000);
    expect(replaced).toBeDefined();
  });

  it('a call queued behind a long one on the only worker times out at its own deadline without stopping the worker: the long call finishes', async () => {
    const worker = (await until(() => pool('sleeper').workers[0]?.workerId, 10_000))!;
    const long = call('sleeper', { op: 'sleep', ms: 3000 }, 15_000);
    await busyWorker('sleeper');
    // From the kernel: queued behind the sleep, 1 s deadline.
    const started = Date.now();
    const queued = await call('sleeper', { op: 'count' }, 1000);
    expect(!queued.ok && queued.error.tag).toBe('timeout');
    expect(!queued.ok && queued.error.message).toMatch(/^E_LIMIT_TIME: sleeper\.call waited \d+ ms behind another call on its worker and never started$/);
    expect(Date.now() - started).toBeLessThan(2500);
    // From a guest caller with 1 s left: the same, or its own deadline first when it answers late.
    const guest = await call('g', { op: 'call', target: 'sleeper', input: { op: 'count' } }, 1000);
    if (guest.ok) {
      const seen = JSON.parse(outputOf(guest)) as GuestAttempt;
      expect(seen.error?.tag).toBe('timeout');
      expect(seen.error?.val).toMatch(/^E_LIMIT_TIME: sleeper\.call waited \d+ ms behind another call on its worker and never started$/);
    } else {
      expect(guest.error.tag).toBe('timeout');
    }
    // The long call was not stopped, the worker was not replaced, and neither queued call ran.
    expect(outputOf(await long)).toBe('slept 3000');
    expect(pool('sleeper').workers.map((w) => w.workerId)).toEqual([worker]);
    expect(outputOf(await call('sleeper', { op: 'count' }))).toBe('1');
  });

  it('a callee whose worker is killed mid call: the guest caller gets E_MESH_FAILED at once, the next call succeeds', async () => {
    const pending = viaGuest('g', 'sleeper', { op: 'sleep', ms: 15_000 });
    const victim = await busyWorker('sleeper');
    const killedAt = Date.now();
    expect(await kernel.mesh.terminateWorker(victim)).toBe(true);
    const result = await pending;
    expect(result.ok).toBe(false);
    expect(result.error?.tag).toBe('failed');
    expect(result.error?.val).toMatch(/^E_MESH_FAILED: sleeper crashed during call/);
    // Well before its 20 s deadline (and the 15 s sleep).
    expect(Date.now() - killedAt).toBeLessThan(5000);
    expect(innerOutput(await viaGuest('g', 'sleeper', { op: 'count' }))).toBe('1');

    // The kernel as caller: the same.
    const direct = call('sleeper', { op: 'sleep', ms: 15_000 });
    await kernel.mesh.terminateWorker(await busyWorker('sleeper'));
    const reply = await direct;
    expect(!reply.ok && reply.error.tag).toBe('failed');
    expect(!reply.ok && reply.error.message).toMatch(/^E_MESH_FAILED: /);
    expect(outputOf(await call('sleeper', { op: 'count' }))).toBe('1');
    expect(await until(() => (pool('sleeper').workers.length === 1 ? true : undefined), 10_000)).toBe(true);
  });
});

describe('queue bound', () => {
  it('past the queue bound (4) callers get E_MESH_BUSY at once, the admitted calls all succeed, and the queue drains', async () => {
    const order: string[] = [];
    const replies = await Promise.all(Array.from({ length: 10 }, (_, i) => call('narrow', { op: 'sleep', ms: 300, i }).then((r) => {
      order.push(r.ok ? 'ok' : r.error.tag);
      return r;
    })));
    const ok = replies.filter((r) => r.ok);
    const busy = replies.filter((r) => !r.ok);
    expect(ok.length).toBe(4);
    expect(busy.length).toBe(6);
    for (const r of busy) {
      expect(!r.ok && r.error.tag).toBe('busy');
      expect(!r.ok && r.error.message).toMatch(/^E_MESH_BUSY: narrow has 4 calls queued or running/);
    }
    // Refused at once: every refusal came back before the first admitted call finished.
    expect(order.slice(0, 6)).toEqual(Array(6).fill('busy'));
    // (the worker frees its place on the board just after posting its reply)
    expect(await until(() => (pool('narrow').depth === 0 ? true : undefined), 5000, 10)).toBe(true);

    // A guest caller is refused the same way while the queue is full (the first call holds it
    // full for 1.5 s, ample time for the guest to ask).
    const filling = [1500, 100, 100, 100].map((ms) => call('narrow', { op: 'sleep', ms }));
    const refused = await viaGuest('g', 'narrow', { op: 'echo' });
    expect(refused.error?.tag).toBe('busy');
    expect(refused.error?.val).toMatch(/^E_MESH_BUSY: /);
    expect((await Promise.all(filling)).every((r) => r.ok)).toBe(true);
    expect(await until(() => (pool('narrow').depth === 0 ? true : undefined), 5000, 10)).toBe(true);
    expect(outputOf(await call('narrow', { op: 'count' }))).toBe('1');
  });
});

describe('load', () => {
  const served = (name: string) => pool(name).workers.reduce((n, w) => n + w.served, 0);

  it('1,000 concurrent calls from the kernel: 1,000 answers, each its own, each served once', async () => {
    const before = served('echo');
    const inputs = Array.from({ length: 1000 }, (_, k) => ({ op: 'echo', k, nonce: Math.random().toString(36).slice(2) }));
    const replies = await Promise.all(inputs.map((input) => call('echo', input, 60_000)));
    const failures = replies.filter((r) => !r.ok).map((r) => !r.ok && r.error.message);
    expect(failures.slice(0, 3)).toEqual([]);
    const matching = replies.filter((r, k) => outputOf(r) === JSON.stringify(inputs[k]));
    expect(matching.length).toBe(1000);
    // No call ran twice (and the pool did not retire a worker meanwhile: its idle time is 30 s).
    // Served counts are bumped just after each reply is posted: wait for the last ones.
    await until(() => (served('echo') - before >= 1000 ? true : undefined), 5000, 10);
    await sleep(100);
    expect(served('echo') - before).toBe(1000);
  });

  it('1,000 calls from four guest callers at once (250 each): every reply matches its call', async () => {
    const before = served('echo');
    const results = await Promise.all([1, 2, 3, 4].map(async (n) =>
      JSON.parse(outputOf(await call(`caller-${n}`, { op: 'calls', target: 'echo', n: 250, tag: `c${n}` }, 60_000))) as { ok: number; mismatched: number; errors: unknown[] }));
    expect(results).toEqual(Array(4).fill({ ok: 250, mismatched: 0, errors: [] }));
    await until(() => (served('echo') - before >= 1000 ? true : undefined), 5000, 10);
    await sleep(100);
    expect(served('echo') - before).toBe(1000);
  });

  it('every tool call runs on a fresh instance: a module-level counter is 1 on every call', async () => {
    const sequential = [];
    for (let i = 0; i < 5; i++) sequential.push(outputOf(await call('trapper', { op: 'count' })));
    const concurrent = (await Promise.all(Array.from({ length: 20 }, () => call('trapper', { op: 'count' })))).map(outputOf);
    const fromGuest = [];
    for (let i = 0; i < 3; i++) fromGuest.push(innerOutput(await viaGuest('g', 'trapper', { op: 'count' })));
    expect([...sequential, ...concurrent, ...fromGuest]).toEqual(Array(28).fill('1'));
  });

  it('a fresh instance starts clean after calls that grew their memory or not (recycled memories are zeroed)', async () => {
    // A big input grows the instance's linear memory (never reused); small calls leave it at its initial size (reused, zeroed).
    const big = await call('trapper', { op: 'echo', pad: 'x'.repeat(6 * 2 ** 20) }, 30_000);
    expect(big.ok).toBe(true);
    expect(big.memoryBytes).toBeGreaterThan(6 * 2 ** 20);
    const counts = [];
    for (let i = 0; i < 30; i++) {
      counts.push(outputOf(await call('trapper', { op: 'count' })));
      expect(outputOf(await call('trapper', { op: 'echo', i }))).toBe(JSON.stringify({ op: 'echo', i }));
    }
    expect(counts).toEqual(Array(30).fill('1'));
  });

  it('what a call wrote into memory no data segment covers (.bss) is gone for the next instance, given that memory', async () => {
    // Each worker of the pool made its spare before the write, so the read that follows, once every
    // worker holds a spare again, is served by the same worker (the first idle one with a spare),
    // from the instance it made after the write: the one given the writer's memory.
    const spared = async () => {
      const ok = await until(() => (pool('residue').workers.every((w) => w.load === 0 && w.ready > 0) ? true : undefined), 10_000, 5);
      expect(ok).toBe(true);
    };
    const sizes = new Set<number | undefined>();
    for (let round = 0; round < 5; round++) {
      await spared();
      const wrote = await call('residue', `w:secret of call ${round}` as unknown as object);
      expect(outputOf(wrote)).toBe(`wrote ${`secret of call ${round}`.length}`);
      sizes.add(wrote.memoryBytes);
      await spared();
      const read = await call('residue', 'r' as unknown as object);
      expect(outputOf(read)).toBe('');
      sizes.add(read.memoryBytes);
    }
    // The memory never grew, so every dropped one was eligible for reuse.
    expect(sizes.size).toBe(1);
    // The read is not blind: one long-lived instance of the same tool reads back its own write.
    await kernel.mesh.add({
      name: 'residue-kept', kind: 'tool', fresh: false, pool: { min: 1, max: 1 },
      compiled: await kernel.engine.load(RESIDUE), grants: NO_GRANTS, limits: DEFAULT_LIMITS,
    });
    expect(outputOf(await call('residue-kept', 'w:kept' as unknown as object))).toBe('wrote 4');
    expect(outputOf(await call('residue-kept', 'r' as unknown as object))).toBe('kept');
  });

  it('a pool grows under load, never past its max (3), and shrinks back to its min (1) when idle', async () => {
    expect(pool('elastic').workers.length).toBe(1);
    let most = 0;
    const servedBy = new Set<number>();
    const sampler = setInterval(() => {
      const { workers } = pool('elastic');
      most = Math.max(most, workers.length);
      for (const w of workers) if (w.served > 0) servedBy.add(w.workerId);
    }, 10);
    // Three calls at once: the second and third find the only worker busy, so the pool grows.
    const calls = Array.from({ length: 3 }, (_, i) => call('elastic', { op: 'sleep', ms: 1500, i }));
    expect(await until(() => (pool('elastic').workers.length >= 2 ? true : undefined), 15_000, 20)).toBe(true);
    // Calls made now go to the new workers instead of queueing behind the first.
    for (let i = 0; i < 6; i++) {
      calls.push(call('elastic', { op: 'sleep', ms: 300, i }));
      await sleep(100);
    }
    const replies = await Promise.all(calls);
    clearInterval(sampler);
    expect(replies.every((r) => r.ok)).toBe(true);
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(3);
    // Spread over the new workers, not all queued on the first (sampled: with idleMs 300 a new
    // worker may already be retired by now).
    expect(servedBy.size).toBeGreaterThan(1);
    // idleMs 300, checked every second: back to min within a few seconds.
    expect(await until(() => (pool('elastic').workers.length === 1 ? true : undefined), 10_000, 100)).toBe(true);
    expect(outputOf(await call('elastic', { op: 'count' }))).toBe('1');
  });
});

describe('bytes payloads', () => {
  it('bytes payloads above, at and below the shared-memory threshold arrive intact guest to guest, call after call', async () => {
    // 1 MiB (shared memory), sizes around the threshold (the region is reused), small ones
    // (structured clone), then 1.5 MiB (the region grows).
    const T = SHARED_THRESHOLD;
    const sizes = [1 << 20, T, T - 1, T + 1, 5000, 3 << 19, 4096];
    const sent = [];
    for (const [i, size] of sizes.entries()) {
      const out = JSON.parse(outputOf(await call('g', { op: 'bytes', target: 'blob-sink', size, seed: i * 7 + 1 }))) as { sum: number; size: number; ok: boolean; error: unknown };
      expect(out.ok ? null : out.error).toBeNull();
      sent.push({ size: out.size, sum: out.sum });
    }
    const received = scopeRows<{ size: bigint | number; sum: bigint | number }>(dataDir, 'blobs', 'SELECT size, sum FROM blobs ORDER BY rowid')
      .map((r) => ({ size: Number(r.size), sum: Number(r.sum) }));
    expect(sent.map((s) => s.size)).toEqual(sizes);
    expect(received).toEqual(sent);
  });
});

describe('spans and metrics', () => {
  let app: FastifyInstance;
  beforeAll(async () => {
    app = await buildServer(kernel);
  });
  afterAll(async () => app?.close());

  it('each mesh call made for a task is a span on the task: caller, target, method, outcome, duration', async () => {
    const id = kernel.submitTask({ prompt: 'nothing', workspace: workspace({ 'a.txt': 'a' }), model: 'scripted' });
    expect((await kernel.waitForTask(id)).status).toBe('succeeded');
    const reply = await kernel.mesh.call('cyc-a', 'call', json({ op: 'call', target: 'cyc-b', input: { op: 'call', target: 'cyc-a', input: { op: 'echo' } } }), kernelCtx(20_000, id));
    expect(reply.ok).toBe(true);
    const spans = await until(() => {
      const calls = Object.values(kernel.state.current.tasks[id]!.toolCalls).filter((c) => c.target.startsWith('cyc-'));
      return calls.length === 3 && calls.every((c) => c.status !== 'running') ? calls : undefined;
    }, 5000);
    expect(spans?.map((s) => [s.caller, s.target, s.method, s.status, s.outcome]).sort()).toEqual([
      ['cyc-a', 'cyc-b', 'call', 'ok', 'ok'],
      ['cyc-b', 'cyc-a', 'call', 'error', 'cycle'],
      ['kernel', 'cyc-a', 'call', 'ok', 'ok'],
    ]);
    for (const span of spans!) expect(typeof span.durationUs === 'number' && span.durationUs >= 0).toBe(true);
    const outer = spans!.find((s) => s.caller === 'kernel')!;
    const middle = spans!.find((s) => s.caller === 'cyc-a')!;
    // The outer call contains the inner one.
    expect(outer.durationUs!).toBeGreaterThanOrEqual(middle.durationUs!);
    expect(spans!.find((s) => s.outcome === 'cycle')!.output).toMatch(/^E_MESH_CYCLE: /);
  });

  it('calls after the first on a port (sent compact, without their context) still carry their own call\'s task and chain', async () => {
    const tasks: string[] = [];
    for (const name of ['first', 'second']) {
      const id = kernel.submitTask({ prompt: name, workspace: workspace({ 'a.txt': name }), model: 'scripted' });
      expect((await kernel.waitForTask(id)).status).toBe('succeeded');
      tasks.push(id);
    }
    // Per task: cyc-a calls cyc-b three times in a row (one port: the first call carries the
    // context, the next two go compact), and each time cyc-b calls back cyc-a: a cycle, which
    // needs the chain; cyc-b reports that span on the task of the context it was handed.
    const back = { op: 'call', target: 'cyc-a', input: { op: 'echo' } };
    for (const id of tasks) {
      const reply = await kernel.mesh.call('cyc-a', 'call', json({ op: 'seq', steps: [1, 2, 3].map(() => ({ target: 'cyc-b', input: back })) }), kernelCtx(20_000, id));
      const attempts = JSON.parse(outputOf(reply)) as GuestAttempt[];
      expect(attempts.map((a) => a.ok)).toEqual([true, true, true]);
      for (const a of attempts) expect((JSON.parse(innerOutput(a)) as GuestAttempt).error).toMatchObject({ tag: 'cycle' });
    }
    for (const id of tasks) {
      const spans = await until(() => {
        const calls = Object.values(kernel.state.current.tasks[id]!.toolCalls).filter((c) => c.caller === 'cyc-b');
        return calls.length === 3 ? calls : undefined;
      }, 5000);
      expect(spans?.map((s) => [s.target, s.outcome])).toEqual([['cyc-a', 'cycle'], ['cyc-a', 'cycle'], ['cyc-a', 'cycle']]);
    }
  });

  it('GET /metrics counts every call by caller, target, method and outcome', async () => {
    let body = '';
    const { headers } = authed(kernel, 'metrics');
    const count = (caller: string, target: string, outcome: string) =>
      samples(body, 'warden_mesh_call_duration_seconds_count')
        .filter((s) => s.labels['caller'] === caller && s.labels['target'] === target && s.labels['method'] === 'call' && s.labels['outcome'] === outcome)
        .reduce((n, s) => n + s.value, 0);
    // Guest calls outside tasks are counted in batches (each worker reports every second).
    await until(async () => {
      const res = await app.inject({ method: 'GET', url: '/metrics', headers });
      expect(res.statusCode).toBe(200);
      body = res.body;
      return count('caller-4', 'echo', 'ok') >= 250 && count('g', 'narrow', 'busy') >= 1 ? true : undefined;
    }, 5000, 200);
    // Exact where this file made a known number of calls.
    for (const n of [1, 2, 3, 4]) expect(count(`caller-${n}`, 'echo', 'ok')).toBe(250);
    expect(count('kernel', 'narrow', 'busy')).toBe(6);
    expect(count('g', 'narrow', 'busy')).toBe(1);
    expect(count('kernel', 'echo', 'ok')).toBe(1000);
    // One in `cycles`, one in the first span test, six in the compact-call test.
    expect(count('cyc-b', 'cyc-a', 'cycle')).toBe(8);
    expect(count('cyc-a', 'cyc-a', 'cycle')).toBe(1);
    expect(count('cyc-c', 'cyc-a', 'cycle')).toBe(1);
    // (at least: how many spinner calls were made depends on where the known-failing tests stop)
    expect(count('g', 'spinner', 'timeout')).toBeGreaterThanOrEqual(1);
    expect(count('kernel', 'spinner', 'timeout')).toBeGreaterThanOrEqual(1);
    expect(count('g', 'trapper', 'failed')).toBe(1);
    expect(count('g', 'sleeper', 'failed')).toBe(1);
    expect(count('kernel', 'trapper', 'failed')).toBe(2);
    // The pool gauges are there too.
    expect(samples(body, 'warden_mesh_pool_workers').find((s) => s.labels['component'] === 'elastic')?.value).toBe(1);
    expect(samples(body, 'warden_mesh_queue_depth').find((s) => s.labels['component'] === 'echo')?.value).toBe(0);
  });
});
