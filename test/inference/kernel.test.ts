// End to end: a real kernel with real components in real workers. The supervisor tags the task
// `coding`, whose configured target is on a backend that answers 503s; after its retries the
// router falls back to a second backend, the coder writes a file through a tool, and the task
// succeeds with its fallbacks, usage, cost and streamed turns in the state document.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kernel } from '../../kernel/kernel.js';
import { DeltaBuffer } from '../../kernel/inference/index.js';
import { shareTranspileCache } from '../../kernel/testing.js';
import type { RuntimeEvent } from '../../kernel/runtime/events.js';
import { startFaultyServer, type FaultyServer } from '../support/faulty-openai.js';
import { tempDir, workspace } from '../support/fixtures.js';

const PRIMARY_KEY = 'sk-primary-0123456789abcdefghijklmnop';
const SECONDARY_KEY = 'sk-secondary-0123456789abcdefghijklm';
const FINAL = 'I added NEW.md with a greeting for the team.';

let primary: FaultyServer;
let secondary: FaultyServer;
let kernel: Kernel;
const events: RuntimeEvent[] = [];

beforeAll(async () => {
  primary = await startFaultyServer([], { kind: 'status', status: 503, message: 'overloaded' });
  secondary = await startFaultyServer([
    { kind: 'answer', content: 'Writing it.', toolCalls: [{ name: 'write-file', arguments: { path: 'NEW.md', content: '# Hello\n' } }], usage: { prompt: 1000, completion: 50 } },
    // Streamed word by word, 40 ms apart: more than one delta interval (10 ms).
    { kind: 'answer', content: FINAL, usage: { prompt: 2000, completion: 100 }, chunkDelayMs: 40 },
  ]);
  const dataDir = tempDir('inference-e2e');
  shareTranspileCache(dataDir);
  writeFileSync(join(dataDir, 'warden.config.json'), JSON.stringify({
    backends: [
      { name: 'primary', baseURL: primary.baseURL, apiKeyEnv: 'PRIMARY_KEY' },
      { name: 'secondary', baseURL: secondary.baseURL, apiKeyEnv: 'SECONDARY_KEY', prices: { m: { inputPerMTok: 3, outputPerMTok: 15 } } },
    ],
    inference: {
      deltaIntervalMs: 10,
      retry: { maxRetries: 1, baseDelayMs: 20 },
      fallback: { 'm@primary': ['m@secondary'] },
      categories: { coding: 'm@primary' },
    },
  }));
  kernel = await Kernel.start({ dataDir, quiet: true, policyMode: 'acceptEdits', env: { ...process.env, PRIMARY_KEY, SECONDARY_KEY } });
  kernel.events.on((e) => events.push(e));
});

afterAll(async () => {
  await kernel?.close();
  await primary?.close();
  await secondary?.close();
});

describe('a task whose primary backend fails', () => {
  it('falls back to the second backend and records fallbacks, usage, cost and streamed turns', async () => {
    const id = kernel.submitTask({ prompt: 'Add a NEW.md file with a greeting', workspace: workspace({ 'README.md': '# repo\n' }), model: 'unused@secondary' });
    const task = await kernel.waitForTask(id);
    expect(task.error).toBeUndefined();
    expect(task.status).toBe('succeeded');
    expect(task.summary).toBe(FINAL);
    expect(task.diff?.map((c) => `${c.kind} ${c.path}`)).toEqual(['added NEW.md']);

    // The supervisor tagged it `coding`, so every request went to m@primary first, never to the requested target.
    expect(task.category).toBe('coding');
    expect(primary.requests.map((r) => r.body.model)).toEqual(['m', 'm', 'm', 'm']);
    expect(secondary.requests.map((r) => r.body.model)).toEqual(['m', 'm']);
    expect(primary.requests.every((r) => r.headers.authorization === `Bearer ${PRIMARY_KEY}` && r.body.stream === true)).toBe(true);

    expect(Object.values(task.fallbacks ?? {})).toEqual([1, 2].map((turn) => ({
      turn, from: 'm@primary', to: 'm@secondary', reason: expect.stringMatching(/answered 503: overloaded \(2 attempts\)$/), ts: expect.any(Number),
    })));
    const cost1 = (1000 * 3 + 50 * 15) / 1e6;
    const cost2 = (2000 * 3 + 100 * 15) / 1e6;
    expect(task.usage.promptTokens).toBe(3000);
    expect(task.usage.completionTokens).toBe(150);
    expect(task.usage.costUsd).toBeCloseTo(cost1 + cost2, 9);
    expect(task.usage.byTarget).toEqual({ 'm@secondary': { promptTokens: 3000, completionTokens: 150, costUsd: expect.closeTo(cost1 + cost2, 9), requests: 2 } });
    expect(task.privacy).toEqual({ level: 'standard' });

    const [turn1, turn2] = [task.turns?.['1'], task.turns?.['2']];
    expect(turn1).toMatchObject({ n: 1, target: 'unused@secondary', servedBy: 'm@secondary', status: 'done', chunks: ['Writing it.'], usage: { promptTokens: 1000, completionTokens: 50 } });
    expect(turn1!.toolCalls).toEqual([{ id: 'call_0_0', name: 'write-file', arguments: '{"path":"NEW.md","content":"# Hello\\n"}' }]);
    expect(turn2!.chunks.join('')).toBe(FINAL);
    expect(turn2!.chunks.length).toBeGreaterThan(1);
    expect(turn2!.chunks.length).toBeLessThan(FINAL.split(' ').length + 1);

    const backends = kernel.state.current.backends;
    expect(backends['primary']).toMatchObject({ breaker: 'closed', consecutiveFailures: 4, health: 'unhealthy', zdr: false });
    expect(backends['secondary']).toMatchObject({ breaker: 'closed', health: 'healthy', consecutiveFailures: 0 });

    const mine = events.filter((e) => e.taskId === id || e.taskId === undefined);
    expect(mine.filter((e) => e.type === 'inference.attempt').map((e) => (e.type === 'inference.attempt' ? `${e.backend}:${e.status}` : ''))).toEqual([
      'primary:503', 'primary:503', 'secondary:200', 'primary:503', 'primary:503', 'secondary:200',
    ]);
    expect(mine.filter((e) => e.type === 'fallback')).toHaveLength(2);
    const responses = mine.flatMap((e) => (e.type === 'inference.response' ? [e] : []));
    expect(responses.map((e) => [e.backend, e.model, e.costUsd])).toEqual([['secondary', 'm', cost1], ['secondary', 'm', cost2]]);
    expect(mine.flatMap((e) => (e.type === 'usage' ? [e.costUsd] : []))).toEqual([cost1, cost2]);
    expect(mine.filter((e) => e.type === 'privacy').map((e) => (e.type === 'privacy' ? e.level : ''))).toEqual(['standard']);

    const everything = JSON.stringify([kernel.state.snapshot(), events]);
    expect(everything).not.toContain(PRIMARY_KEY);
    expect(everything).not.toContain(SECONDARY_KEY);
  });

  it('a task asking for strict privacy with no zero-data-retention backend fails, saying why', async () => {
    const id = kernel.submitTask({ prompt: 'Explain the README', workspace: workspace({ 'README.md': '# repo\n' }), model: 'm@secondary', privacy: 'strict' });
    const task = await kernel.waitForTask(id);
    expect(task.status).toBe('failed');
    expect(task.error).toMatch(/privacy level strict allows only backends with zero data retention.*no backend is marked ZDR/);
    expect(task.category).toBe('exploration');
    expect(task.privacy).toEqual({ level: 'strict' });
    expect(task.turns?.['1']).toMatchObject({ status: 'error', error: expect.stringContaining('privacy level strict') });
  });
});

describe('DeltaBuffer', () => {
  it('publishes a burst of deltas as one chunk per interval, never one per token', async () => {
    const chunks: string[] = [];
    const buffer = new DeltaBuffer(20, (c) => chunks.push(c));
    for (let i = 0; i < 500; i++) buffer.push('t ');
    expect(chunks).toEqual([]);
    await new Promise((r) => setTimeout(r, 40));
    expect(chunks).toEqual(['t '.repeat(500)]);
    buffer.push('tail');
    buffer.flush();
    buffer.push('abandoned');
    buffer.discard();
    await new Promise((r) => setTimeout(r, 40));
    expect(chunks).toEqual(['t '.repeat(500), 'tail']);
  });
});
