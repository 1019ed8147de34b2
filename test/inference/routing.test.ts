// Routing over faulty servers on real ports: fallback chains, category targets, privacy levels
// (escalation by secrets in the request, strict without ZDR), streaming assembly, cost, health,
// the replay backend, and the validation of the inference configuration.
import { afterEach, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Inference, inferenceSchema, type Backend, type ChatOptions, type ChatRequest, type InferenceFailure } from '../../kernel/inference/index.js';
import { readConfig } from '../../kernel/config/index.js';
import { isWardenError, type WardenError } from '../../kernel/errors.js';
import { fakeClock, startFaultyServer, type Fault, type FaultyServer } from '../support/faulty-openai.js';
import { tempDir } from '../support/fixtures.js';

const servers: FaultyServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function server(script: Fault[] | ((n: number) => Fault), after?: Fault): Promise<FaultyServer> {
  const s = await startFaultyServer(script, after);
  servers.push(s);
  return s;
}

function ask(model: string, content = 'hello', extra: Partial<ChatRequest['messages'][number]> = {}): ChatRequest {
  return { model, messages: [{ role: 'system', content: 'you help', toolCalls: [] }, { role: 'user', content, toolCalls: [], ...extra }], tools: [] };
}

function make(backends: Backend[], settings: Record<string, unknown> = {}) {
  return new Inference(backends, { env: {}, clock: fakeClock().clock, settings: inferenceSchema.parse(settings) });
}

async function failureOf(promise: Promise<unknown>): Promise<InferenceFailure> {
  return promise.then(
    () => {
      throw new Error('expected a failure');
    },
    (err: InferenceFailure) => err,
  );
}

/** Collects what a chat reports through its callbacks. */
function recorder(extra: ChatOptions = {}) {
  const seen = { fallbacks: [] as Array<{ from: string; to: string; reason: string }>, privacy: [] as unknown[], deltas: [] as string[] };
  const options: ChatOptions = { ...extra, onFallback: (f) => seen.fallbacks.push(f), onPrivacy: (p) => seen.privacy.push(p), onDelta: (d) => seen.deltas.push(d) };
  return { seen, options };
}

describe('fallback chains', () => {
  it('primary → secondary → local: each given-up target is recorded with its reason, the cost is the server\'s', async () => {
    const primary = await server([], { kind: 'status', status: 503 });
    const secondary = await server([], { kind: 'reset' });
    const local = await server([{ kind: 'answer', content: 'local answer', usage: { prompt: 1_000_000, completion: 500_000 } }]);
    const inference = make(
      [
        { name: 'openai', baseURL: primary.baseURL, apiKeyEnv: 'K', prices: { 'gpt-4o': { inputPerMTok: 2.5, outputPerMTok: 10 } } },
        { name: 'anthropic', baseURL: secondary.baseURL, apiKeyEnv: 'K' },
        { name: 'local', baseURL: local.baseURL, apiKeyEnv: 'K', prices: { '*': { inputPerMTok: 0.1, outputPerMTok: 0.2 } } },
      ],
      { retry: { maxRetries: 1 }, fallback: { 'gpt-4o@openai': ['claude@anthropic', 'qwen2.5-coder:7b@local'] } },
    );
    const { seen, options } = recorder();
    const result = await inference.chat(ask('gpt-4o@openai'), options);
    expect(result).toMatchObject({ target: 'qwen2.5-coder:7b@local', backend: 'local', model: 'qwen2.5-coder:7b', attempts: 5, costUsd: 0.2 });
    expect(local.requests[0]!.body.model).toBe('qwen2.5-coder:7b');
    expect(seen.fallbacks).toEqual([
      { from: 'gpt-4o@openai', to: 'claude@anthropic', reason: expect.stringMatching(/answered 503: scripted 503 \(2 attempts\)$/) },
      { from: 'claude@anthropic', to: 'qwen2.5-coder:7b@local', reason: expect.stringMatching(/cannot reach the model endpoint .*backend anthropic's baseURL.*\(2 attempts\)$/) },
    ]);
    // A bare model means the default backend; `"*"` is the chain of every target without its own.
    const star = make([{ name: 'a', baseURL: primary.baseURL, apiKeyEnv: 'K' }, { name: 'b', baseURL: local.baseURL, apiKeyEnv: 'K' }], { retry: { maxRetries: 0 }, fallback: { '*': ['small@b'] } });
    expect((await star.chat(ask('big'))).target).toBe('small@b');
  });

  it('a 400 is the request\'s fault: no fallback; every target failing names each', async () => {
    const bad = await server([{ kind: 'status', status: 400, message: 'context too long' }]);
    const never = await server([]);
    const inference = make([{ name: 'a', baseURL: bad.baseURL, apiKeyEnv: 'K' }, { name: 'b', baseURL: never.baseURL, apiKeyEnv: 'K' }], { fallback: { 'm@a': ['m@b'] } });
    expect(await failureOf(inference.chat(ask('m@a')))).toEqual({ tag: 'invalid-request', val: expect.stringContaining('answered 400: context too long') });
    expect(never.requests).toHaveLength(0);

    const down = await server([], { kind: 'status', status: 502 });
    const all = make([{ name: 'a', baseURL: down.baseURL, apiKeyEnv: 'K' }, { name: 'b', baseURL: down.baseURL, apiKeyEnv: 'K' }], { retry: { maxRetries: 0 }, fallback: { 'm@a': ['n@b'] } });
    const err = await failureOf(all.chat(ask('m@a')));
    expect(err.tag).toBe('unavailable');
    expect(err.val).toMatch(/^no target answered: m@a: .*answered 502.*; n@b: .*answered 502/);
    expect(await failureOf(all.chat(ask('m@nowhere')))).toEqual({ tag: 'invalid-request', val: 'unknown backend "nowhere" in target m@nowhere; configured: a, b' });
  });

  it('a task category\'s target replaces the requested one (with its own chain)', async () => {
    const a = await server([], { kind: 'answer', content: 'from a' });
    const b = await server([], { kind: 'answer', content: 'from b' });
    const inference = make([{ name: 'a', baseURL: a.baseURL, apiKeyEnv: 'K' }, { name: 'b', baseURL: b.baseURL, apiKeyEnv: 'K' }], {
      categories: { coding: 'coder-model@b', planning: 'o3@a' },
    });
    expect((await inference.chat(ask('small@a'), { category: 'coding' })).target).toBe('coder-model@b');
    expect(b.requests[0]!.body.model).toBe('coder-model');
    expect((await inference.chat(ask('small@a'), { category: 'exploration' })).target).toBe('small@a');
    expect((await inference.chat(ask('small@a'))).target).toBe('small@a');
  });
});

describe('privacy', () => {
  const PEM = '-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7bq9\n-----END RSA PRIVATE KEY-----';
  const CARD = '4111 1111 1111 1111';

  async function zdrSetup(settings: Record<string, unknown> = {}) {
    const open = await server([], { kind: 'answer', content: 'from open' });
    const zdr = await server([], { kind: 'answer', content: 'from zdr' });
    const inference = make(
      [{ name: 'open', baseURL: open.baseURL, apiKeyEnv: 'K' }, { name: 'private', baseURL: zdr.baseURL, apiKeyEnv: 'K', zdr: true }],
      { fallback: { 'm@open': ['m@private'] }, ...settings },
    );
    return { open, zdr, inference };
  }

  it.each([
    ['a PEM private key in a tool result', { role: 'tool', content: `cat id_rsa\n${PEM}` }, /PEM private key in a tool result/],
    ['an api_key assignment', { role: 'user', content: 'use api_key=abcd1234efgh5678 for it' }, /api_key assignment in a user message/],
    ['a Luhn-valid card number', { role: 'user', content: `charge ${CARD} please` }, /payment card number \(Luhn\) in a user message/],
    ['a credential in tool-call arguments', { role: 'assistant', content: '', toolCalls: [{ id: 'c', name: 'write-file', arguments: '{"content":"ghp_abcdefghijklmnopqrstuvwxyz0123456789"}' }] }, /credential token in an assistant message/],
  ])('%s escalates to strict: only ZDR backends, the reason names the kind, never the secret', async (_name, message, reason) => {
    const { open, zdr, inference } = await zdrSetup();
    const request: ChatRequest = { model: 'm@open', messages: [{ role: 'user', content: 'task', toolCalls: [] }, { toolCalls: [], ...message } as ChatRequest['messages'][number]], tools: [] };
    const { seen, options } = recorder();
    const result = await inference.chat(request, options);
    expect(result.target).toBe('m@private');
    expect(open.requests).toHaveLength(0);
    expect(zdr.requests).toHaveLength(1);
    expect(seen.privacy).toEqual([{ level: 'strict', reason: expect.stringMatching(reason), escalated: true }]);
    expect(seen.fallbacks).toEqual([]);
    const text = JSON.stringify([seen, result.privacy]);
    for (const secret of ['MIIEpAIBAAKCAQEA7bq9', 'abcd1234efgh5678', '4111', 'ghp_abc']) expect(text).not.toContain(secret);
  });

  it.each([
    ['"tokenizer" and "secretary"', 'the tokenizer = bpe; secretary: Jane'],
    ['a Luhn-invalid number', 'order 4111 1111 1111 1112 shipped'],
    ['a $VAR reference', 'set token=$GITHUB_TOKEN and password: ${DB_PASSWORD}'],
  ])('%s leaves the level as it was', async (_name, content) => {
    const { open, inference } = await zdrSetup();
    const { seen, options } = recorder();
    expect((await inference.chat(ask('m@open', content), options)).target).toBe('m@open');
    expect(open.requests).toHaveLength(1);
    expect(seen.privacy).toEqual([{ level: 'standard', escalated: false }]);
  });

  it('strict without a ZDR target fails clearly: level, reason, and the ZDR backends (E_PRIVACY_STRICT)', async () => {
    const { inference, open } = await zdrSetup({ fallback: {} });
    const err = await failureOf(inference.chat(ask('m@open', `deploy with ${PEM}`)));
    expect(err).toEqual({
      tag: 'unavailable',
      code: 'E_PRIVACY_STRICT',
      val: "privacy level strict (secrets in the request: PEM private key in a user message) allows only backends with zero data retention, and no target of m@open's chain (m@open) is on one; ZDR backends: private; add a target on one to inference.fallback for m@open",
    });
    expect(open.requests).toHaveLength(0);
    const none = make([{ name: 'open', baseURL: open.baseURL, apiKeyEnv: 'K' }]);
    expect((await failureOf(none.chat(ask('m@open'), { privacy: 'strict' }))).val).toMatch(/^privacy level strict allows only .* no backend is marked ZDR: set "zdr": true/);
  });

  it('sensitive prefers ZDR targets; served elsewhere it warns', async () => {
    const { zdr, inference } = await zdrSetup();
    const result = await inference.chat(ask('m@open'), { privacy: 'sensitive' });
    expect(result.target).toBe('m@private');
    expect(result.warning).toBeUndefined();
    expect(zdr.requests).toHaveLength(1);
    const only = await zdrSetup({ fallback: {} });
    const served = await only.inference.chat(ask('m@open'), { privacy: 'sensitive' });
    expect(served.target).toBe('m@open');
    expect(served.warning).toBe('sensitive: served by m@open, which has no zero data retention (no ZDR target of the chain answered)');
  });
});

describe('streaming and whole answers', () => {
  const tools = [{ name: 'read-file', description: 'reads', parameters: '{"type":"object"}' }];

  it('streams by default with usage requested, delivering text deltas and assembling tool-call deltas', async () => {
    const s = await server([
      { kind: 'answer', content: 'Let me look at two files.', toolCalls: [{ name: 'read-file', arguments: { path: 'a.ts' } }, { name: 'read-file', arguments: { path: 'b.ts' } }], usage: { prompt: 42, completion: 7 } },
    ]);
    const inference = make([{ name: 'a', baseURL: s.baseURL, apiKeyEnv: 'K' }]);
    const { seen, options } = recorder();
    const { response } = await inference.chat({ ...ask('m@a'), tools }, options);
    expect(s.requests[0]!.body).toMatchObject({ stream: true, stream_options: { include_usage: true }, tools: [{ type: 'function', function: { name: 'read-file' } }] });
    expect(seen.deltas.length).toBeGreaterThan(3);
    expect(seen.deltas.join('')).toBe('Let me look at two files.');
    expect(response).toEqual({
      content: 'Let me look at two files.',
      toolCalls: [{ id: 'call_0_0', name: 'read-file', arguments: '{"path":"a.ts"}' }, { id: 'call_0_1', name: 'read-file', arguments: '{"path":"b.ts"}' }],
      usage: { promptTokens: 42, completionTokens: 7 },
      finishReason: 'tool_calls',
    });
  });

  it('stream: false asks for the whole answer', async () => {
    const s = await server([{ kind: 'answer', toolCalls: [{ name: 'read-file', arguments: { path: 'x' } }], usage: { prompt: 3, completion: 4 } }]);
    const inference = make([{ name: 'a', baseURL: s.baseURL, apiKeyEnv: 'K', stream: false }]);
    const { response } = await inference.chat({ ...ask('m@a'), tools });
    expect(s.requests[0]!.body.stream).toBeUndefined();
    expect(response).toEqual({ content: '', toolCalls: [{ id: 'call_0_0', name: 'read-file', arguments: '{"path":"x"}' }], usage: { promptTokens: 3, completionTokens: 4 }, finishReason: 'tool_calls' });
  });
});

describe('health', () => {
  it('degraded when the median latency passes degradedMs; unhealthy when failures dominate the window', async () => {
    const slow = await server([], { kind: 'answer', content: 'slow', delayMs: 120 });
    const inference = new Inference([{ name: 'a', baseURL: slow.baseURL, apiKeyEnv: 'K', stream: false }], { env: {}, settings: inferenceSchema.parse({ health: { degradedMs: 50, window: 4 } }) });
    expect(inference.backendStates()['a']).toMatchObject({ health: 'healthy', breaker: 'closed' });
    await inference.chat(ask('m@a'));
    expect(inference.stateOf('a').health).toBe('degraded');
    expect(inference.stateOf('a').latencyP50Ms).toBeGreaterThanOrEqual(120);

    const flaky = await server((n) => (n === 0 || n === 3 ? { kind: 'answer', content: 'ok' } : { kind: 'status', status: 500 }));
    const f = make([{ name: 'a', baseURL: flaky.baseURL, apiKeyEnv: 'K' }], { retry: { maxRetries: 1 }, health: { window: 4 }, breaker: { failureThreshold: 10 } });
    await f.chat(ask('m@a'));
    await failureOf(f.chat(ask('m@a')));
    // ok, 500, 500: failures dominate, though the breaker is still closed.
    expect(f.stateOf('a')).toMatchObject({ health: 'unhealthy', breaker: 'closed', consecutiveFailures: 2 });
    await f.chat(ask('m@a'));
    expect(f.stateOf('a')).toMatchObject({ health: 'healthy', consecutiveFailures: 0 });
  });
});

describe('the replay backend', () => {
  it('serves the recorded answers in order whatever the model, then fails naming the transcript and the turn', async () => {
    const file = join(tempDir('replay'), 't-1.jsonl');
    const response = (content: string, toolCalls: unknown[] = []) => ({ content, toolCalls, usage: { promptTokens: 10, completionTokens: 2 }, finishReason: toolCalls.length ? 'tool_calls' : 'stop' });
    writeFileSync(file, [
      { type: 'transcript', version: 1, taskId: 't-1', ts: 1 },
      { type: 'task.start', taskId: 't-1', ts: 2, prompt: 'p', workspace: '/w', model: 'gpt-4o@openai', resumed: false },
      { type: 'inference.response', taskId: 't-1', ts: 3, turn: 1, response: response('', [{ id: 'c1', name: 'read-file', arguments: '{"path":"a"}' }]) },
      { type: 'tool.result', taskId: 't-1', ts: 4 },
      { type: 'inference.response', taskId: 't-1', ts: 5, turn: 2, response: response('all done') },
    ].map((l) => JSON.stringify(l)).join('\n') + '\n');
    const inference = make([{ name: 'replay', kind: 'replay', transcript: file }]);
    expect(inference.stateOf('replay')).toMatchObject({ zdr: true, baseURL: `replay:${file}` });
    const first = await inference.chat(ask('anything'));
    expect(first.response.toolCalls).toEqual([{ id: 'c1', name: 'read-file', arguments: '{"path":"a"}' }]);
    const { seen, options } = recorder();
    expect((await inference.chat(ask('other-model@replay'), options)).response.content).toBe('all done');
    expect(seen.deltas).toEqual(['all done']);
    expect(await failureOf(inference.chat(ask('x')))).toEqual({
      tag: 'invalid-request', code: 'E_REPLAY',
      val: expect.stringContaining(`the transcript ${file} has no answer for turn 3: it recorded 2 inference response(s)`),
    });
    writeFileSync(file, '{"type":"task.start"}\n');
    expect(() => make([{ name: 'replay', kind: 'replay', transcript: file }])).toThrow(/does not start with a version 1 transcript header/);
  });
});

describe('configuration', () => {
  function configIn(value: unknown): string {
    const file = join(tempDir('cfg'), 'warden.config.json');
    writeFileSync(file, JSON.stringify(value));
    return file;
  }
  function issuesOf(value: unknown): Array<{ path: string; message: string }> {
    try {
      readConfig(configIn(value), {});
    } catch (err) {
      if (isWardenError(err, 'E_CONFIG')) return (err as WardenError).detail!['issues'] as Array<{ path: string; message: string }>;
      throw err;
    }
    return [];
  }
  const backends = [
    { name: 'openai', baseURL: 'https://api.openai.com/v1', apiKeyEnv: 'OPENAI_API_KEY', prices: { 'gpt-4o': { inputPerMTok: 2.5, outputPerMTok: 10 } } },
    { name: 'local', baseURL: 'http://127.0.0.1:11434/v1', apiKeyEnv: 'LOCAL_KEY', zdr: true, stream: false },
  ];

  it('accepts the documented shape and fills the defaults', () => {
    const { config } = readConfig(configIn({ backends, inference: { fallback: { 'gpt-4o@openai': ['qwen@local'] }, categories: { coding: 'gpt-4o@openai' }, retry: { maxRetries: 4 } } }), {});
    expect(config.inference).toEqual({
      privacy: 'standard', deltaIntervalMs: 50, timeoutMs: 120_000,
      retry: { maxRetries: 4, baseDelayMs: 1000, maxDelayMs: 60_000, jitter: 0.3, retryAfterCapMs: 60_000 },
      breaker: { failureThreshold: 5, cooldownMs: 30_000, halfOpenProbes: 3, successThreshold: 3 },
      health: { window: 20, degradedMs: 10_000 },
      fallback: { 'gpt-4o@openai': ['qwen@local'] }, categories: { coding: 'gpt-4o@openai' },
    });
    expect(config.backends).toEqual(backends);
  });

  it('refuses targets naming unknown backends, bare targets, strict without ZDR, and unknown fields (naming the known ones)', () => {
    expect(issuesOf({ backends, inference: { fallback: { 'gpt-4o@openai': ['claude@anthropic'] }, categories: { planning: 'o3@nowhere', coding: 'bare' } } }).sort((a, b) => a.path.localeCompare(b.path))).toEqual([
      { path: 'inference.categories.coding', message: 'a target model@backend' },
      { path: 'inference.categories.planning', message: 'o3@nowhere names backend nowhere, which is not configured (backends: openai, local)' },
      { path: 'inference.fallback.gpt-4o@openai.0', message: 'claude@anthropic names backend anthropic, which is not configured (backends: openai, local)' },
    ]);
    expect(issuesOf({ backends: [backends[0]], inference: { privacy: 'strict' } })).toEqual([{ path: 'inference.privacy', message: expect.stringContaining('strict needs a backend with zero data retention') }]);
    expect(issuesOf({ backends: [{ ...backends[0], zdr: 'yes', retries: 3 }] }).map((i) => i.path).sort()).toEqual(['backends.0.retries', 'backends.0.zdr']);
    expect(issuesOf({ backends: [{ ...backends[0], retries: 3 }] })[0]!.message).toMatch(/^unknown field \(known: kind, name, zdr, prices, baseURL, apiKeyEnv, stream, transcript\)$/);
    expect(issuesOf({ backends: [{ name: 'r', kind: 'replay' }] })).toEqual([{ path: 'backends.0.transcript', message: expect.any(String) }]);
  });
});
