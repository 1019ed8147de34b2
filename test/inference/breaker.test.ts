// The circuit breaker per backend: closed → open after N consecutive failures → half-open after
// the cool-down with at most M probes in flight → closed after K probe successes, or open again.
// Unit transitions on fake time, then through Inference against faulty servers on real ports.
import { afterEach, describe, expect, it } from 'vitest';
import { CircuitBreaker, DEFAULT_BREAKER, Inference, inferenceSchema, type BreakerState, type ChatRequest, type InferenceFailure } from '../../kernel/inference/index.js';
import { RuntimeEvents, type RuntimeEvent } from '../../kernel/runtime/events.js';
import type { BackendState } from '../../kernel/state/index.js';
import { fakeClock, startFaultyServer, type Fault, type FaultyServer } from '../support/faulty-openai.js';

const servers: FaultyServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

function permitOf(breaker: CircuitBreaker) {
  const answer = breaker.admit();
  if ('reason' in answer) throw new Error(`refused: ${answer.reason}`);
  return answer;
}

describe('CircuitBreaker', () => {
  it('opens after 5 consecutive failures, a success in between resetting the count', () => {
    const time = fakeClock();
    const moves: string[] = [];
    const breaker = new CircuitBreaker(DEFAULT_BREAKER, time.clock, (from, to) => moves.push(`${from}→${to}`));
    for (let i = 0; i < 4; i++) permitOf(breaker).failure();
    permitOf(breaker).success();
    expect(breaker.consecutiveFailures).toBe(0);
    for (let i = 0; i < 4; i++) permitOf(breaker).failure();
    expect(breaker.state).toBe('closed');
    permitOf(breaker).failure();
    expect(breaker.state).toBe('open');
    expect(breaker.openedAt).toBe(time.clock.now());
    expect(moves).toEqual(['closed→open']);
    expect(breaker.admit()).toEqual({ state: 'open', reason: expect.stringMatching(/^circuit open after 5 consecutive failures; probes again from /) });
  });

  it('half-open after 30 s admits at most 3 probes at a time; 3 successes close it', () => {
    const time = fakeClock();
    const moves: Array<[BreakerState, BreakerState]> = [];
    const breaker = new CircuitBreaker(DEFAULT_BREAKER, time.clock, (from, to) => moves.push([from, to]));
    for (let i = 0; i < 5; i++) permitOf(breaker).failure();
    time.advance(29_999);
    expect('reason' in breaker.admit()).toBe(true);
    time.advance(1);
    const probes = [permitOf(breaker), permitOf(breaker), permitOf(breaker)];
    expect(breaker.state).toBe('half-open');
    expect(probes.every((p) => p.probe)).toBe(true);
    expect(breaker.admit()).toEqual({ state: 'half-open', reason: 'circuit half-open with 3 probe(s) in flight (at most 3)' });
    probes[0]!.success();
    probes[0]!.success(); // reported twice: counted once
    const fourth = permitOf(breaker);
    probes[1]!.success();
    expect(breaker.state).toBe('half-open');
    fourth.success();
    expect(breaker.state).toBe('closed');
    probes[2]!.failure(); // admitted before the breaker closed: ignored
    expect(breaker.state).toBe('closed');
    expect(breaker.consecutiveFailures).toBe(0);
    expect(moves).toEqual([['closed', 'open'], ['open', 'half-open'], ['half-open', 'closed']]);
  });

  it('a probe failure opens it again for a new cool-down; released permits count neither way', () => {
    const time = fakeClock();
    const breaker = new CircuitBreaker(DEFAULT_BREAKER, time.clock);
    for (let i = 0; i < 5; i++) permitOf(breaker).failure();
    time.advance(30_000);
    permitOf(breaker).release();
    permitOf(breaker).failure();
    expect(breaker.state).toBe('open');
    expect(breaker.openedAt).toBe(time.clock.now());
    time.advance(29_000);
    expect('reason' in breaker.admit()).toBe(true);
    time.advance(1000);
    expect(permitOf(breaker).probe).toBe(true);
  });
});

const request = (model: string): ChatRequest => ({ model, messages: [{ role: 'user', content: 'hi', toolCalls: [] }], tools: [] });

describe('breakers in routing', () => {
  async function twoBackends(primary: Fault[] | ((n: number) => Fault)) {
    const a = await startFaultyServer(primary);
    const b = await startFaultyServer([], { kind: 'answer', content: 'from b' });
    servers.push(a, b);
    const time = fakeClock();
    const events = new RuntimeEvents();
    const seen: RuntimeEvent[] = [];
    events.on((e) => seen.push(e));
    const states: BackendState[] = [];
    const inference = new Inference(
      [
        { name: 'a', baseURL: a.baseURL, apiKeyEnv: 'A_KEY' },
        { name: 'b', baseURL: b.baseURL, apiKeyEnv: 'B_KEY' },
      ],
      { env: {}, clock: time.clock, events, onBackendState: (s) => states.push(s), settings: inferenceSchema.parse({ retry: { maxRetries: 1 }, fallback: { 'm@a': ['m@b'] } }) },
    );
    return { a, b, time, inference, seen, states };
  }

  it('skips an open breaker straight to the fallback, records why, and shows it in the backend state and events', async () => {
    const { a, b, inference, seen, states } = await twoBackends((n) => ({ kind: 'status', status: 503, message: `n${n}` }));
    const fallbacks: string[] = [];
    for (let i = 0; i < 3; i++) {
      const result = await inference.chat(request('m@a'), { onFallback: (f) => fallbacks.push(`${f.from}→${f.to}: ${f.reason}`) });
      expect(result.target).toBe('m@b');
    }
    // 2 attempts, 2 attempts, then the 5th failure opened it: the third call made one attempt.
    expect(a.requests).toHaveLength(5);
    expect(b.requests).toHaveLength(3);
    expect(fallbacks[0]).toMatch(/^m@a→m@b: http:.* answered 503: n1 \(2 attempts\)$/);
    expect(fallbacks[2]).toMatch(/answered 503: n4 \(1 attempt; the circuit opened\)$/);
    await inference.chat(request('m@a'), { onFallback: (f) => fallbacks.push(`${f.from}→${f.to}: ${f.reason}`) });
    expect(a.requests).toHaveLength(5);
    expect(fallbacks[3]).toMatch(/^m@a→m@b: a: circuit open after 5 consecutive failures/);
    expect(seen.filter((e) => e.type === 'breaker')).toEqual([expect.objectContaining({ type: 'breaker', backend: 'a', from: 'closed', to: 'open' })]);
    expect(inference.backendStates()['a']).toMatchObject({ breaker: 'open', health: 'unhealthy', zdr: false, baseURL: a.baseURL });
    expect(states.filter((s) => s.name === 'a').at(-1)).toMatchObject({ breaker: 'open', health: 'unhealthy' });
    expect(inference.backendStates()['b']).toMatchObject({ breaker: 'closed', health: 'healthy', consecutiveFailures: 0 });
  });

  it('the only target behind an open breaker fails at once with E_BACKEND_OPEN', async () => {
    const { a, inference } = await twoBackends(Array(5).fill({ kind: 'status', status: 500 }));
    for (let i = 0; i < 3; i++) await inference.chat(request('m@a')).catch(() => undefined);
    expect(a.requests).toHaveLength(5);
    const err = (await inference.chat(request('other@a')).catch((e: unknown) => e)) as InferenceFailure;
    expect(err).toEqual({ tag: 'unavailable', val: expect.stringMatching(/^a: circuit open after 5 consecutive failures/), code: 'E_BACKEND_OPEN' });
    expect(a.requests).toHaveLength(5);
  });

  it('half-open: 3 concurrent probes reach the backend, the 4th call is routed to the fallback; 3 successes close it', async () => {
    const { a, b, time, inference, seen } = await twoBackends((n) => (n < 5 ? { kind: 'status', status: 503 } : { kind: 'answer', content: 'a is back', delayMs: 150 }));
    for (let i = 0; i < 3; i++) await inference.chat(request('m@a'));
    expect(inference.backendStates()['a']!.breaker).toBe('open');
    time.advance(30_000);
    const reasons: string[] = [];
    const results = await Promise.all([0, 1, 2, 3].map(() => inference.chat(request('m@a'), { onFallback: (f) => reasons.push(f.reason) })));
    expect(results.map((r) => r.target).sort()).toEqual(['m@a', 'm@a', 'm@a', 'm@b']);
    expect(reasons).toEqual(['a: circuit half-open with 3 probe(s) in flight (at most 3)']);
    expect(a.requests).toHaveLength(8);
    expect(b.requests).toHaveLength(4);
    expect(inference.backendStates()['a']).toMatchObject({ breaker: 'closed', consecutiveFailures: 0 });
    expect(seen.filter((e) => e.type === 'breaker').map((e) => (e.type === 'breaker' ? `${e.from}→${e.to}` : ''))).toEqual(['closed→open', 'open→half-open', 'half-open→closed']);
  });
});
