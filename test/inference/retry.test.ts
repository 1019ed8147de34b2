// Retries against a fault-injecting OpenAI-compatible server on a real port, on fake time: which
// failures are retried, the backoff and Retry-After delays requested, the deadline, and the key
// kept out of everything but the Authorization header.
import { afterEach, describe, expect, it } from 'vitest';
import { Inference, backoffDelay, inferenceSchema, parseRetryAfter, DEFAULT_RETRY, type ChatRequest, type InferenceFailure } from '../../kernel/inference/index.js';
import { RuntimeEvents, type RuntimeEvent } from '../../kernel/runtime/events.js';
import { fakeClock, startFaultyServer, type Fault, type FaultyServer } from '../support/faulty-openai.js';

const KEY = 'sk-test-0123456789abcdefghijklmnopqrstuv';
const servers: FaultyServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

function request(content = 'hello'): ChatRequest {
  return { model: 'm@a', messages: [{ role: 'user', content, toolCalls: [] }], tools: [] };
}

/** An Inference on one backend `a` at a faulty server playing `script`, on fake time. */
async function setup(script: Fault[], settings: Record<string, unknown> = {}, backend: Record<string, unknown> = {}) {
  const server = await startFaultyServer(script);
  servers.push(server);
  const time = fakeClock();
  const events = new RuntimeEvents();
  const seen: RuntimeEvent[] = [];
  events.on((e) => seen.push(e));
  const states: unknown[] = [];
  const inference = new Inference([{ name: 'a', baseURL: server.baseURL, apiKeyEnv: 'A_KEY', ...backend }], {
    env: { A_KEY: KEY },
    settings: inferenceSchema.parse(settings),
    clock: time.clock,
    random: Math.random,
    events,
    onBackendState: (s) => states.push(s),
  });
  const attempts = () => seen.flatMap((e) => (e.type === 'inference.attempt' ? [e.status] : []));
  return { server, time, inference, seen, states, attempts };
}

async function failureOf(promise: Promise<unknown>): Promise<InferenceFailure> {
  try {
    await promise;
  } catch (err) {
    return err as InferenceFailure;
  }
  throw new Error('expected the call to fail');
}

function within(actual: number, nominal: number, jitter = 0.3): void {
  expect(actual).toBeGreaterThanOrEqual(Math.floor(nominal * (1 - jitter)));
  expect(actual).toBeLessThanOrEqual(Math.ceil(nominal * (1 + jitter)));
}

describe('Retry-After (RFC 9110 §10.2.3) and backoff', () => {
  const now = Date.UTC(2015, 9, 21, 7, 28, 0);

  it('reads delay-seconds and the three HTTP-date forms; a past date is 0; anything else is ignored', () => {
    expect(parseRetryAfter('7', now)).toBe(7000);
    expect(parseRetryAfter(' 0 ', now)).toBe(0);
    expect(parseRetryAfter('Wed, 21 Oct 2015 07:28:12 GMT', now)).toBe(12_000);
    expect(parseRetryAfter('Wednesday, 21-Oct-15 07:28:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Wed Oct 21 07:29:00 2015', now - new Date(now).getTimezoneOffset() * 60_000)).toBe(60_000);
    expect(parseRetryAfter('Wed, 21 Oct 2015 07:00:00 GMT', now)).toBe(0);
    for (const bad of ['7.5', '-3', 'soon', '', '1e3']) expect(parseRetryAfter(bad, now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
  });

  it('doubles from 1 s to at most 60 s, each delay within ±30 %', () => {
    const nominal = [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000];
    nominal.forEach((d, i) => {
      expect(backoffDelay(i + 1, DEFAULT_RETRY, () => 0)).toBe(d * 0.7);
      expect(backoffDelay(i + 1, DEFAULT_RETRY, () => 0.5)).toBe(d);
      within(backoffDelay(i + 1, DEFAULT_RETRY, () => 0.999_999), d);
    });
  });
});

describe('retries against a faulty server', () => {
  it('retries 503s after about 1 s, then 2 s, sending each attempt once (the client itself never retries)', async () => {
    const { server, time, inference, attempts } = await setup([
      { kind: 'status', status: 503 },
      { kind: 'status', status: 503 },
      { kind: 'answer', content: 'recovered' },
    ]);
    const result = await inference.chat(request());
    expect(result.response.content).toBe('recovered');
    expect(result.attempts).toBe(3);
    expect(server.requests).toHaveLength(3);
    expect(time.sleeps).toHaveLength(2);
    within(time.sleeps[0]!, 1000);
    within(time.sleeps[1]!, 2000);
    expect(attempts()).toEqual([503, 503, 200]);
  });

  it('backs off exponentially up to the 60 s cap, then gives up naming the endpoint and the attempts', async () => {
    const { time, inference, server } = await setup(Array(9).fill({ kind: 'status', status: 500 }), { retry: { maxRetries: 8 }, breaker: { failureThreshold: 100 } });
    const err = await failureOf(inference.chat(request()));
    expect(server.requests).toHaveLength(9);
    [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000].forEach((d, i) => within(time.sleeps[i]!, d));
    expect(err.tag).toBe('unavailable');
    expect(err.val).toContain(`${server.baseURL} answered 500`);
    expect(err.val).toContain('(9 attempts)');
  });

  it('honours Retry-After in seconds, as an HTTP-date, and caps it at 60 s', async () => {
    // After the first 7 s wait, this date is 12 s away.
    const date = new Date(fakeClock().clock.now() + 7_000 + 12_000).toUTCString();
    const { time, inference } = await setup([
      { kind: 'status', status: 429, retryAfter: '7' },
      { kind: 'status', status: 429, retryAfter: date },
      { kind: 'status', status: 503, retryAfter: '3600' },
      { kind: 'answer', content: 'ok' },
    ], { retry: { maxRetries: 3 } });
    expect((await inference.chat(request())).response.content).toBe('ok');
    expect(time.sleeps).toEqual([7000, 12_000, 60_000]);
  });

  it('does not retry a 400 (invalid-request) or a 401 (unavailable, naming the key variable, not the key)', async () => {
    const bad = await setup([{ kind: 'status', status: 400, message: 'bad tools' }]);
    const err400 = await failureOf(bad.inference.chat(request()));
    expect(bad.server.requests).toHaveLength(1);
    expect(err400).toEqual({ tag: 'invalid-request', val: expect.stringContaining('answered 400: bad tools') });
    expect(bad.time.sleeps).toEqual([]);

    const denied = await setup([{ kind: 'status', status: 401, message: `Incorrect API key provided: ${KEY}` }]);
    const err401 = await failureOf(denied.inference.chat(request()));
    expect(denied.server.requests).toHaveLength(1);
    expect(err401.tag).toBe('unavailable');
    expect(err401.val).toContain('check A_KEY');
    expect(err401.val).not.toContain(KEY);
    expect(err401.val).not.toContain(KEY.slice(3, 20));
  });

  it('retries a request that never gets an answer (attempt timeout), a reset connection and malformed JSON', async () => {
    const { inference, attempts, server } = await setup(
      [{ kind: 'hang' }, { kind: 'reset' }, { kind: 'malformed' }, { kind: 'answer', content: 'finally' }],
      { timeoutMs: 300, retry: { maxRetries: 3 } },
      { stream: false },
    );
    expect((await inference.chat(request())).response.content).toBe('finally');
    expect(attempts()).toEqual(['timeout', 'connection', 'malformed', 200]);
    expect(server.requests.every((r) => r.body.stream === undefined)).toBe(true);
  });

  it('retries a stream cut midway and malformed stream data, voiding the text already streamed', async () => {
    const { inference, attempts } = await setup([{ kind: 'cut', content: 'half of an answer' }, { kind: 'malformed' }, { kind: 'answer', content: 'the whole answer' }]);
    const deltas: string[] = [];
    let restarts = 0;
    const result = await inference.chat(request(), {
      onDelta: (t) => deltas.push(t),
      onRestart: () => {
        restarts++;
        deltas.length = 0;
      },
    });
    expect(attempts()).toEqual(['connection', 'malformed', 200]);
    expect(restarts).toBe(1);
    expect(deltas.join('')).toBe('the whole answer');
    expect(result.response.content).toBe('the whole answer');
  });

  it('never sleeps past the deadline: it gives up when the next retry would end after it', async () => {
    const { time, inference, server } = await setup(Array(5).fill({ kind: 'status', status: 503 }), { retry: { maxRetries: 4 } });
    const deadline = time.clock.now() + 2500;
    const err = await failureOf(inference.chat(request(), { deadline }));
    expect(time.clock.now()).toBeLessThanOrEqual(deadline);
    expect(time.sleeps.reduce((a, b) => a + b, 0)).toBeLessThan(2500);
    expect(server.requests.length).toBeLessThan(5);
    expect(err.val).toMatch(/would pass the call's deadline/);
  });

  it('a cancelled call stops at once, without further attempts', async () => {
    const { inference, server } = await setup([{ kind: 'hang' }]);
    const abort = new AbortController();
    const call = inference.chat(request(), { signal: abort.signal });
    await until(() => server.requests.length === 1);
    abort.abort(new Error('task stopped'));
    const err = await failureOf(call);
    expect(err).toEqual({ tag: 'unavailable', val: 'the inference request was cancelled: task stopped' });
    expect(server.requests).toHaveLength(1);
  });

  it('sends the key only as Authorization: Bearer; it is in no state, event or error', async () => {
    const { inference, server, seen, states } = await setup([{ kind: 'status', status: 503, message: `upstream said ${KEY}` }, { kind: 'reset' }, { kind: 'answer', content: 'ok' }]);
    const errors: string[] = [];
    await inference.chat(request(), { onFallback: (f) => errors.push(f.reason) });
    expect(server.requests.map((r) => r.headers.authorization)).toEqual(Array(3).fill(`Bearer ${KEY}`));
    const everything = JSON.stringify([seen, states, inference.backendStates(), errors]);
    expect(everything).not.toContain(KEY);
    const failed = await setup([{ kind: 'status', status: 500, message: `echo ${KEY}` }], { retry: { maxRetries: 0 } });
    expect(JSON.stringify(await failureOf(failed.inference.chat(request())))).not.toContain(KEY);
  });
});

async function until(probe: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !probe(); i++) await new Promise((r) => setTimeout(r, 10));
}
