// `GET /metrics` over a real socket after real tasks: the coder agent with real tools and a
// scripted model, a backend that refuses connections (its breaker opens), a stream client.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Kernel } from '../../kernel/kernel.js';
import { buildServer } from '../../kernel/server/index.js';
import { BoundedLabel } from '../../kernel/metrics.js';
import { startScriptedServer, type ScriptedServer } from '../support/scripted-openai.js';
import { freePort, until } from '../support/net.js';
import { workspace, kernelDataDir } from '../support/fixtures.js';
import { authed } from '../support/auth.js';

let server: ScriptedServer;
let kernel: Kernel;
let app: FastifyInstance;
let base: string;
let headers: { authorization: string };
const repo = workspace({ 'a.txt': 'alpha\n' });
let okTask: string;
let downTask: string;

/** `GET /metrics` as text. */
async function scrape(): Promise<string> {
  const res = await fetch(`${base}/metrics`, { headers });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
}

/** The value of one series (`name{labels}` exactly as exposed), or undefined. */
function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

beforeAll(async () => {
  server = await startScriptedServer([
    { toolCalls: [{ name: 'read-file', arguments: { path: 'a.txt' } }] },
    { toolCalls: [{ name: 'read-file', arguments: { path: 'missing.txt' } }, { name: 'no-such-tool', arguments: {} }] },
    { content: 'Read it.' },
  ]);
  const dataDir = kernelDataDir('metrics');
  const down = await freePort();
  writeFileSync(join(dataDir, 'warden.config.json'), JSON.stringify({
    backends: [
      { name: 'default', baseURL: server.baseURL, apiKeyEnv: 'OPENAI_API_KEY' },
      { name: 'down', baseURL: `http://127.0.0.1:${down}/v1`, apiKeyEnv: 'OPENAI_API_KEY' },
    ],
    inference: { retry: { maxRetries: 0 }, breaker: { failureThreshold: 1, cooldownMs: 600_000 } },
  }));
  kernel = await Kernel.start({ dataDir, quiet: true });
  app = await buildServer(kernel);
  await app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  headers = authed(kernel).headers;
  okTask = kernel.submitTask({ prompt: 'read a.txt', workspace: repo, model: 'scripted' });
  downTask = kernel.submitTask({ prompt: 'anything', workspace: repo, model: 'm@down' });
  await Promise.all([kernel.waitForTask(okTask), kernel.waitForTask(downTask)]);
});

afterAll(async () => {
  await app?.close();
  await kernel?.close();
  await server?.close();
});

describe('GET /metrics', () => {
  it('shows tokens, inference requests and latency by backend and model after a task', async () => {
    expect(kernel.state.current.tasks[okTask]!.status).toBe('succeeded');
    const text = await scrape();
    // The scripted model reports 10·n prompt tokens and 5 completion tokens per answer.
    expect(value(text, 'warden_inference_tokens_total{backend="default",model="scripted",direction="in"}')).toBe(10 + 20 + 30);
    expect(value(text, 'warden_inference_tokens_total{backend="default",model="scripted",direction="out"}')).toBe(15);
    expect(value(text, 'warden_inference_cost_usd_total{backend="default",model="scripted"}')).toBe(0);
    expect(value(text, 'warden_inference_requests_total{backend="default",model="scripted",status="200"}')).toBe(3);
    expect(value(text, 'warden_inference_request_duration_seconds_count{backend="default",model="scripted"}')).toBe(3);
    expect(text).toContain('# TYPE warden_inference_request_duration_seconds histogram');
  });

  it('shows tool calls by component and outcome, and an unknown tool without its name', async () => {
    const text = await scrape();
    expect(value(text, 'warden_tool_calls_total{component="read-file",method="call",outcome="ok"}')).toBe(1);
    expect(value(text, 'warden_tool_calls_total{component="read-file",method="call",outcome="failed"}')).toBe(1);
    expect(text).toMatch(/^warden_tool_calls_total\{component="unknown",method="call",outcome="[a-z-]+"\} 1$/m);
    expect(text).not.toContain('no-such-tool');
    // The agent and the supervisor are not tools: their calls are in the mesh histogram only.
    expect(text).not.toMatch(/warden_tool_calls_total\{component="(coder|supervisor)"/);
    expect(text).toMatch(/^warden_mesh_call_duration_seconds_count\{caller="supervisor",target="coder",method="run",outcome="ok"\} 1$/m);
  });

  it('shows tasks by status, sessions and policy decisions', async () => {
    const text = await scrape();
    expect(kernel.state.current.tasks[downTask]!.status).toBe('failed');
    expect(value(text, 'warden_tasks{status="succeeded"}')).toBe(1);
    expect(value(text, 'warden_tasks{status="failed"}')).toBe(1);
    expect(value(text, 'warden_tasks{status="running"}')).toBe(0);
    expect(value(text, 'warden_tasks_finished_total{status="succeeded"}')).toBe(1);
    expect(value(text, 'warden_tasks_finished_total{status="failed"}')).toBe(1);
    expect(value(text, 'warden_session_events_total{action="begin"}')).toBe(2);
    expect(value(text, 'warden_sessions_open')).toBe(2);
    expect(value(text, 'warden_policy_decisions_total{kind="tool",decision="allow"}')).toBeGreaterThanOrEqual(2);
  });

  it('shows a refused backend\'s attempts, its breaker trip and its state', async () => {
    const text = await scrape();
    expect(value(text, 'warden_inference_requests_total{backend="down",model="m",status="connection"}')).toBe(1);
    expect(value(text, 'warden_breaker_trips_total{backend="down"}')).toBe(1);
    expect(value(text, 'warden_breaker_state{backend="down",state="open"}')).toBe(1);
    expect(value(text, 'warden_breaker_state{backend="down",state="closed"}')).toBe(0);
  });

  it('shows stream clients while they are connected', async () => {
    expect(value(await scrape(), 'warden_stream_clients{kind="sse"}')).toBe(0);
    const stream = new AbortController();
    const res = await fetch(`${base}/api/events?since=0`, { headers, signal: stream.signal });
    expect(res.status).toBe(200);
    await until(async () => (value(await scrape(), 'warden_stream_clients{kind="sse"}') === 1 ? true : undefined), 5000, 'the SSE client to be counted');
    stream.abort();
    await until(async () => (value(await scrape(), 'warden_stream_clients{kind="sse"}') === 0 ? true : undefined), 5000, 'the SSE client to be gone');
  });

  it('needs authentication', async () => {
    expect((await fetch(`${base}/metrics`)).status).toBe(401);
  });
});

describe('label values from requests', () => {
  it('are cleaned, bounded in number, and never hold a secret', () => {
    const label = new BoundedLabel(3);
    expect(label.value('gpt-4o')).toBe('gpt-4o');
    expect(label.value('meta-llama/Llama-3.1-8B:q4')).toBe('meta-llama/Llama-3.1-8B:q4');
    expect(label.value('model with "quotes"\n')).toBe('model_with__quotes__');
    expect(label.value('one-more')).toBe('other');
    expect(label.value('gpt-4o')).toBe('gpt-4o');
    expect(label.value('sk-proj-abcdefghijklmnopqrstuvwxyz123456')).toBe('redacted');
    expect(label.value('x'.repeat(500))).toBe('other');
  });
});
