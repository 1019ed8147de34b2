// Agent budgets and doom-loop detection on real tasks: the coder agent in its worker, real
// tools, a scripted model over a real socket (its behaviour chosen by the task's prompt), a
// priced backend for the cost budget. Each stop ends the task with a reason naming the budget,
// the figures and the field to raise.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Kernel } from '../../kernel/kernel.js';
import { buildServer } from '../../kernel/server/index.js';
import { readConfig } from '../../kernel/config/index.js';
import { parseBudgetFlags, parseDuration } from '../../kernel/cli/replay.js';
import { readTranscript, transcriptPath } from '../../kernel/transcript/index.js';
import type { TaskState } from '../../kernel/state/index.js';
import { startScriptedServer, type ScriptedServer, type ScriptedTurn } from '../support/scripted-openai.js';
import { tempDir, workspace, kernelDataDir } from '../support/fixtures.js';
import { authed } from '../support/auth.js';

/** US dollars per million tokens of the priced backend: 10 prompt tokens cost $0.01. */
const PRICE = { inputPerMTok: 1000, outputPerMTok: 2000 };

let server: ScriptedServer;
let kernel: Kernel;
let app: FastifyInstance;
let dataDir: string;
const repo = workspace({ 'a.txt': 'alpha\n', 'b.txt': 'beta\n' });
const tasks: Record<string, Promise<TaskState>> = {};

/** Tool calls that never repeat back to back: read-file and list-files in turn. */
function alternating(assistantTurns: number): ScriptedTurn {
  return assistantTurns % 2 === 0
    ? { toolCalls: [{ name: 'read-file', arguments: { path: 'a.txt' } }] }
    : { toolCalls: [{ name: 'list-files', arguments: { path: '.' } }] };
}

/** The scripted model: what it does depends on the task's prompt (its first word). */
function script(_n: number, body: ScriptedServer['requests'][number]): ScriptedTurn {
  const prompt = body.messages.find((m) => m.role === 'user')?.content ?? '';
  const turns = body.messages.filter((m) => m.role === 'assistant').length;
  if (prompt.startsWith('DOOM')) return { toolCalls: [{ name: 'read-file', arguments: { path: 'a.txt' } }] };
  if (prompt.startsWith('GHOST')) return { toolCalls: [{ name: 'no-such-tool', arguments: {} }] };
  if (prompt.startsWith('WALL')) return { hang: true };
  if (prompt.startsWith('TOKENS') || prompt.startsWith('COST') || prompt.startsWith('TURNS')) return alternating(turns);
  return { content: 'done' };
}

/** Requests the model received for the task whose prompt starts with `word`. */
function requestsFor(word: string): ScriptedServer['requests'] {
  return server.requests.filter((r) => r.messages.find((m) => m.role === 'user')?.content?.startsWith(word));
}

/** The tool calls the coder made in a task, by target. */
function coderCalls(task: TaskState): string[] {
  return Object.values(task.toolCalls).filter((c) => c.caller === 'coder').sort((a, b) => a.startedAt - b.startedAt).map((c) => c.target);
}

beforeAll(async () => {
  server = await startScriptedServer(script);
  dataDir = kernelDataDir('budgets');
  writeFileSync(join(dataDir, 'warden.config.json'), JSON.stringify({
    backends: [{ name: 'priced', baseURL: server.baseURL, apiKeyEnv: 'OPENAI_API_KEY', prices: { '*': PRICE } }],
  }));
  kernel = await Kernel.start({ dataDir, quiet: true });
  app = await buildServer(kernel);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  const { headers } = authed(kernel);
  // Every task at once (each budget is per task); the wall-time one through REST, with its budget in the body.
  const submit = (prompt: string, extra: Partial<Parameters<Kernel['submitTask']>[0]> = {}) => {
    const id = kernel.submitTask({ prompt, workspace: repo, model: 'scripted', ...extra });
    return kernel.waitForTask(id);
  };
  tasks['DOOM'] = submit('DOOM read a.txt');
  tasks['GHOST'] = submit('GHOST call a tool that is not there');
  tasks['TOKENS'] = submit('TOKENS explore', { maxTokens: 60 });
  tasks['COST'] = submit('COST explore', { maxCostUsd: 0.05 });
  tasks['TURNS'] = submit('TURNS explore', { maxTurns: 2 });
  const res = await fetch(`${base}/api/tasks`, {
    method: 'POST', headers: { ...headers, 'content-type': 'application/json' },
    body: JSON.stringify({ task: 'WALL wait for the model', workspace: repo, model: 'scripted', maxWallMs: 400 }),
  });
  expect(res.status).toBe(201);
  tasks['WALL'] = kernel.waitForTask(((await res.json()) as { id: string }).id);
  await Promise.all(Object.values(tasks));
});

afterAll(async () => {
  await app?.close();
  await kernel?.close();
  await server?.close();
});

describe('doom-loop detection', () => {
  it('fails a task whose agent makes the same call with identical input 3 times in a row, and no call happens after', async () => {
    const task = await tasks['DOOM']!;
    expect(task.status).toBe('failed');
    const reason = 'doom loop: coder called read-file.call 3 times in a row with identical input {"path":"a.txt"}; change the task or the model, or raise budgets.doomLoopRepeats in the config (0 turns the check off)';
    expect(task.stopReason).toBe(reason);
    expect(task.error).toBe(reason);
    expect(coderCalls(task)).toEqual(['read-file', 'read-file', 'read-file']);
    // The model was asked 3 times; the 4th request was refused before it left.
    expect(requestsFor('DOOM')).toHaveLength(3);
    const events = readTranscript(transcriptPath(dataDir, task.id)).events;
    expect(events.at(-1)).toMatchObject({ type: 'task.end', status: 'failed', stopReason: reason });
    expect(events.filter((e) => e.type === 'tool.call' && e.caller === 'coder')).toHaveLength(3);
  });

  it('counts the same call refused before it started (an unknown tool) as a repeat too', async () => {
    const task = await tasks['GHOST']!;
    expect(task.status).toBe('failed');
    expect(task.stopReason).toBe(
      'doom loop: coder called no-such-tool.call 3 times in a row, refused each time (denied); change the task or the model, or raise budgets.doomLoopRepeats in the config (0 turns the check off)',
    );
    expect(requestsFor('GHOST')).toHaveLength(3);
  });
});

describe('budgets', () => {
  it('stops a task at its token budget, naming the figures and the field to raise', async () => {
    const task = await tasks['TOKENS']!;
    expect(task.status).toBe('failed');
    const used = task.usage.promptTokens + task.usage.completionTokens;
    const usage = readTranscript(transcriptPath(dataDir, task.id)).events.filter((e) => e.type === 'usage') as Array<{ promptTokens: number; completionTokens: number }>;
    const last = usage.at(-1)!;
    // Stopped by the response that crossed 60, not before.
    expect(used).toBeGreaterThanOrEqual(60);
    expect(used - last.promptTokens - last.completionTokens).toBeLessThan(60);
    expect(task.stopReason).toBe(
      `token budget exhausted: ${used} tokens used of maxTokens 60; raise budgets.maxTokens in the config, or maxTokens for this task (warden run --max-tokens, POST /api/tasks maxTokens)`,
    );
    // No request after the one that crossed the budget, and the agent never got that answer: its tool call did not run.
    expect(requestsFor('TOKENS')).toHaveLength(usage.length);
    expect(coderCalls(task)).toHaveLength(usage.length - 1);
  });

  it('stops a task at its cost budget, from the backend\'s prices', async () => {
    const task = await tasks['COST']!;
    expect(task.status).toBe('failed');
    const usage = readTranscript(transcriptPath(dataDir, task.id)).events.filter((e) => e.type === 'usage') as Array<{ promptTokens: number; completionTokens: number; costUsd: number }>;
    for (const u of usage) expect(u.costUsd).toBeCloseTo((u.promptTokens * PRICE.inputPerMTok + u.completionTokens * PRICE.outputPerMTok) / 1e6, 9);
    const spent = usage.reduce((sum, u) => sum + u.costUsd, 0);
    expect(spent).toBeGreaterThanOrEqual(0.05);
    expect(spent - usage.at(-1)!.costUsd).toBeLessThan(0.05);
    expect(task.stopReason).toBe(
      `cost budget exhausted: $${spent.toFixed(6)} spent of maxCostUsd $0.05; raise budgets.maxCostUsd in the config, or maxCostUsd for this task (warden run --max-cost, POST /api/tasks maxCostUsd)`,
    );
    expect(task.usage.costUsd).toBeCloseTo(spent, 9);
    expect(coderCalls(task)).toHaveLength(usage.length - 1);
  });

  it('stops a task at its wall-time budget (set in the POST /api/tasks body)', async () => {
    // The model never answers: only the budget can end this task.
    const task = await tasks['WALL']!;
    expect(task.status).toBe('failed');
    expect(task.stopReason).toMatch(
      /^wall-time budget exhausted: the task ran \d+\.\d s of maxWallMs 400 ms; raise budgets\.maxWallMs in the config, or maxWallMs for this task \(warden run --max-wall, POST \/api\/tasks maxWallMs\)$/,
    );
    // A request in flight when the budget ran out was aborted (it never answered); none was made after.
    const requests = requestsFor('WALL').length;
    expect(requests).toBeLessThanOrEqual(1);
    const errors = readTranscript(transcriptPath(dataDir, task.id)).events.filter((e) => e.type === 'inference.error');
    expect(errors.length).toBeGreaterThanOrEqual(requests);
  });

  it('fails a task whose agent hit its turn limit, with the turn limit as its reason', async () => {
    const task = await tasks['TURNS']!;
    expect(task.status).toBe('failed');
    expect(task.stopReason).toBe(
      'turn limit reached: coder stopped after maxTurns 2 turns without a final answer; raise maxTurns in the config, or for this task (warden run --max-turns, POST /api/tasks maxTurns)',
    );
    expect(requestsFor('TURNS')).toHaveLength(2);
    expect(coderCalls(task)).toEqual(['read-file', 'list-files']);
    // The agent's own limit step is there, then the kernel's stop.
    expect(Object.values(task.steps).map((s) => `${s.component}:${s.step}`)).toEqual(expect.arrayContaining(['coder:limit', 'kernel:stopped']));
  });

  it('counts each stop in warden_budget_stops_total by budget', async () => {
    const text = await kernel.metrics.text();
    expect(text).toContain('warden_budget_stops_total{budget="doom_loop"} 2');
    for (const budget of ['tokens', 'cost', 'wall_time', 'turns']) expect(text).toContain(`warden_budget_stops_total{budget="${budget}"} 1`);
  });
});

describe('budget settings', () => {
  it('config budgets: defaults, validation naming the field', () => {
    const dir = tempDir('budget-config');
    expect(readConfig(null).config.budgets).toEqual({ doomLoopRepeats: 3 });
    const file = join(dir, 'warden.config.json');
    writeFileSync(file, JSON.stringify({ budgets: { maxTokens: 1000, maxCostUsd: 0.5, maxWallMs: 60_000, doomLoopRepeats: 0 } }));
    expect(readConfig(file).config.budgets).toEqual({ maxTokens: 1000, maxCostUsd: 0.5, maxWallMs: 60_000, doomLoopRepeats: 0 });
    writeFileSync(file, JSON.stringify({ budgets: { doomLoopRepeats: 1 } }));
    expect(() => readConfig(file)).toThrow(/budgets\.doomLoopRepeats.*must be 0 \(off\) or at least 2/s);
    writeFileSync(file, JSON.stringify({ budgets: { maxTokenz: 5 } }));
    expect(() => readConfig(file)).toThrow(/budgets\.maxTokenz/);
  });

  it('warden run flags: --max-tokens, --max-cost, --max-wall', () => {
    expect(parseBudgetFlags({ maxTokens: '5000', maxCost: '$0.25', maxWall: '90s' })).toEqual({ maxTokens: 5000, maxCostUsd: 0.25, maxWallMs: 90_000 });
    expect(parseBudgetFlags({})).toEqual({});
    expect(parseDuration('1500', '--max-wall')).toBe(1500);
    expect(parseDuration('1.5h', '--max-wall')).toBe(5_400_000);
    expect(() => parseBudgetFlags({ maxTokens: '1e3.5' })).toThrow('--max-tokens 1e3.5: expected a positive whole number of tokens');
    expect(() => parseBudgetFlags({ maxCost: 'free' })).toThrow('--max-cost free: expected a positive amount of US dollars');
    expect(() => parseDuration('soon', '--max-wall')).toThrow('--max-wall soon: expected a duration such as 500ms, 90s, 10m or 1h');
  });
});
