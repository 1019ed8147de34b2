// Policy in a running kernel: real tasks (the supervisor, the coder agent and the tools in their
// workers, a scripted model) under mode `default`. A write asks: approved over REST on a real port,
// denied with `warden approve --deny` run as a separate process, denied by the kernel when it stops
// the task, or left to expire after `policy.approvalTimeoutMs`; a deny rule refuses without asking; reads go on; every decision is an event, and
// denials and decisions are audited.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { Kernel } from '../../kernel/kernel.js';
import { buildServer } from '../../kernel/server/index.js';
import { shareTranspileCache } from '../../kernel/testing.js';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import type { RuntimeEvent } from '../../kernel/runtime/events.js';
import type { Approval, TaskState } from '../../kernel/state/index.js';
import { startScriptedServer, type ScriptedServer, type ScriptedTurn } from '../support/scripted-openai.js';
import { tempDir, workspace } from '../support/fixtures.js';
import { authed } from '../support/auth.js';
import { until } from '../support/net.js';

const run = promisify(execFile);
const warden = join(PACKAGE_ROOT, 'bin/warden.js');

/** The model's plan per task prompt: turn n (counted by the assistant messages so far) → answer. */
const PLANS: Record<string, ScriptedTurn[]> = {
  'approve over rest': [
    { toolCalls: [{ name: 'read-file', arguments: { path: 'README.md' } }, { name: 'list-files', arguments: { path: '.' } }] },
    { toolCalls: [{ name: 'write-file', arguments: { path: 'src/a.ts', content: 'export const a = 1;\n' } }] },
    { content: 'wrote src/a.ts' },
  ],
  'deny over the cli': [
    { toolCalls: [{ name: 'write-file', arguments: { path: 'src/b.ts', content: 'export const b = 2;\n' } }] },
    { content: 'could not write src/b.ts' },
  ],
  'deny rule': [
    { toolCalls: [{ name: 'write-file', arguments: { path: './.git/config', content: '[core]\n' } }] },
    { content: 'left .git alone' },
  ],
  'stopped while waiting': [
    { toolCalls: [{ name: 'write-file', arguments: { path: 'src/c.ts', content: 'export const c = 3;\n' } }] },
    { content: 'should never be asked' },
  ],
  'let it expire': [
    { toolCalls: [{ name: 'edit-file', arguments: { path: 'README.md', old_string: 'project', new_string: 'Project' } }] },
    { content: 'nobody answered' },
  ],
};

function script(_n: number, body: ScriptedServer['requests'][number]): ScriptedTurn {
  const prompt = body.messages.find((m) => m.role === 'user')?.content ?? '';
  const turn = body.messages.filter((m) => m.role === 'assistant').length;
  return PLANS[prompt]?.[turn] ?? { content: 'done' };
}

let model: ScriptedServer;
let kernel: Kernel;
let app: FastifyInstance;
let base: string;
let headers: { authorization: string };
let keyId: string;
let data: string;
const events: RuntimeEvent[] = [];

beforeAll(async () => {
  model = await startScriptedServer(script);
  data = tempDir('policy-data');
  shareTranspileCache(data);
  // Mode `default` (the default); approvals wait the default 10 min for a person.
  writeFileSync(join(data, 'warden.config.json'), JSON.stringify({
    policy: { rules: { deny: ['write-file(.git/**)'], allow: ['read-file'] } },
  }));
  kernel = await Kernel.start({ dataDir: data, baseURL: model.baseURL, quiet: true });
  kernel.events.on((e) => events.push(e));
  app = await buildServer(kernel);
  await app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  ({ headers, keyId } = authed(kernel));
}, 60_000);

afterAll(async () => {
  await app?.close();
  await kernel?.close();
  await model?.close();
});

const submit = (prompt: string) => kernel.submitTask({ prompt, workspace: workspace({ 'README.md': '# project\n' }), model: 'scripted' });
const pendingOf = (taskId: string) => until(() => Object.values(kernel.state.current.approvals).find((a) => a.taskId === taskId && a.status === 'pending'), 30_000, `an approval of ${taskId}`);
const decide = (id: string, body: unknown) => fetch(`${base}/api/approvals/${id}`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) });
const eventsOf = (taskId: string, type: string) => events.filter((e) => e.taskId === taskId && e.type === type) as Array<RuntimeEvent & Record<string, unknown>>;
const audits = (kind: string, taskId: string) => kernel.store.auditEvents(500, { kind }).filter((r) => r.task_id === taskId).map((r) => JSON.parse(r.detail) as Record<string, unknown>);
const callTo = (task: TaskState, target: string) => Object.values(task.toolCalls).find((c) => c.target === target);

describe('ask → approve over REST', () => {
  it('a write in mode default waits for an approval; approving it over REST lets the real task go on', async () => {
    const id = submit('approve over rest');
    const pending = await pendingOf(id);
    expect(pending).toMatchObject({
      taskId: id, component: 'coder', kind: 'tool', subject: 'write-file(src/a.ts)', rule: 'mode default', status: 'pending',
    });
    expect(pending.detail).toContain('export const a = 1;');
    expect(pending.expiresAt).toBeGreaterThan(Date.now());
    // The task waits: the write has not happened.
    expect(kernel.state.current.tasks[id]!.status).toBe('running');
    expect(callTo(kernel.state.current.tasks[id]!, 'write-file')).toBeUndefined();

    const listed = await (await fetch(`${base}/api/approvals?status=pending`, { headers })).json() as { approvals: Approval[] };
    expect(listed.approvals.map((a) => a.id)).toContain(pending.id);

    const res = await decide(pending.id, { decision: 'approve', reason: 'looks right' });
    expect(res.status).toBe(200);
    const { approval } = (await res.json()) as { approval: Approval };
    expect(approval).toMatchObject({ id: pending.id, status: 'approved', decidedBy: `rest:${keyId}`, reason: 'looks right' });

    const task = await kernel.waitForTask(id);
    expect(task.status).toBe('succeeded');
    expect(callTo(task, 'write-file')).toMatchObject({ status: 'ok', outcome: 'ok' });
    expect(task.diff?.map((c) => c.path)).toEqual(['src/a.ts']);
    expect(kernel.state.current.approvals[pending.id]!.status).toBe('approved');

    // Every decision is an event: the reads were allowed (one by rule, one by the mode), the write asked.
    const policy = eventsOf(id, 'policy');
    expect(policy.map((e) => [e['subject'], e['decision'], e['rule']])).toEqual(expect.arrayContaining([
      ['read-file(README.md)', 'allow', 'allow: read-file'],
      ['list-files(.)', 'allow', 'mode default'],
      ['mesh:coder', 'allow', 'mode default'],
      ['write-file(src/a.ts)', 'ask', 'mode default'],
    ]));
    expect(policy.find((e) => e['decision'] === 'ask')!['approvalId']).toBe(pending.id);
    expect(eventsOf(id, 'approval')).toEqual([expect.objectContaining({ id: pending.id, status: 'approved', by: `rest:${keyId}` })]);
    expect(audits('approval.request', id)).toEqual([expect.objectContaining({ id: pending.id, subject: 'write-file(src/a.ts)' })]);
    expect(audits('approval.decide', id)).toEqual([expect.objectContaining({ id: pending.id, status: 'approved', by: `rest:${keyId}` })]);

    // A decision is final: deciding again is a conflict; unknown and malformed ids are not found / bad input.
    const again = await decide(pending.id, { decision: 'deny' });
    expect(again.status).toBe(409);
    expect(await again.json()).toMatchObject({ error: 'E_APPROVAL_DECIDED', message: expect.stringContaining('already approved') });
    expect((await decide('a-00000000', { decision: 'approve' })).status).toBe(404);
    expect((await decide('nope', { decision: 'approve' })).status).toBe(400);
    expect((await decide(pending.id, { decision: 'maybe' })).status).toBe(400);
    const decided = await (await fetch(`${base}/api/approvals?status=approved`, { headers })).json() as { approvals: Approval[] };
    expect(decided.approvals.map((a) => a.id)).toContain(pending.id);
  });
});

describe('ask → deny with the CLI of another process', () => {
  it('`warden approve ID --deny` on the data directory of the running kernel denies the call; the agent gets the refusal and goes on', async () => {
    const id = submit('deny over the cli');
    const pending = await pendingOf(id);
    const listed = await run(process.execPath, [warden, 'approvals', '--json', '--data-dir', data]);
    expect((JSON.parse(listed.stdout) as Approval[]).map((a) => a.id)).toContain(pending.id);

    const denied = await run(process.execPath, [warden, 'approve', pending.id, '--deny', '--reason', 'not now', '--data-dir', data]);
    expect(denied.stdout).toBe(`denied ${pending.id}: write-file(src/b.ts) (task ${id})\n`);

    const task = await kernel.waitForTask(id);
    expect(task.status).toBe('succeeded');
    const call = callTo(task, 'write-file')!;
    expect(call).toMatchObject({ status: 'error', outcome: 'denied' });
    expect(call.output).toMatch(/E_POLICY_DENIED: write-file\(src\/b\.ts\) was denied by cli \(not now\), approval a-/);
    expect(task.diff).toEqual([]);
    // The model saw the refusal as the tool's result.
    const lastRequest = model.requests.filter((r) => r.messages.find((m) => m.role === 'user')?.content === 'deny over the cli').at(-1)!;
    expect(lastRequest.messages.find((m) => m.role === 'tool')?.content).toMatch(/E_POLICY_DENIED/);
    expect(kernel.state.current.approvals[pending.id]).toMatchObject({ status: 'denied', decidedBy: 'cli', reason: 'not now' });
    expect(eventsOf(id, 'approval')).toEqual([expect.objectContaining({ id: pending.id, status: 'denied', by: 'cli' })]);
    expect(audits('approval.decide', id)).toEqual([expect.objectContaining({ id: pending.id, status: 'denied', by: 'cli', reason: 'not now' })]);
    expect(audits('policy.deny', id)).toEqual([expect.objectContaining({ subject: 'write-file(src/b.ts)', approvalId: pending.id, status: 'denied' })]);
    expect(Object.values(task.steps).some((s) => s.step === 'denied' && s.detail.includes('write-file(src/b.ts)'))).toBe(true);

    // Deciding it again from the CLI fails with its own exit code.
    const twice = await run(process.execPath, [warden, 'approve', pending.id, '--data-dir', data]).catch((e: { code: number; stderr: string }) => e);
    expect(twice).toMatchObject({ code: 2, stderr: expect.stringContaining('already denied by cli') });
  });
});

describe('deny rules', () => {
  it('a deny rule refuses at once, without an approval, naming the rule; the refusal is a tool call outcome, a step, an event and an audit entry', async () => {
    const id = submit('deny rule');
    const task = await kernel.waitForTask(id);
    expect(task.status).toBe('succeeded');
    const call = callTo(task, 'write-file')!;
    expect(call).toMatchObject({ status: 'error', outcome: 'denied' });
    expect(call.input).toContain('.git/config');
    expect(call.output).toContain('E_POLICY_DENIED: write-file(.git/config) is denied by the policy rule `deny: write-file(.git/**)` of coder');
    expect(Object.values(kernel.state.current.approvals).filter((a) => a.taskId === id)).toEqual([]);
    expect(eventsOf(id, 'policy').filter((e) => e['decision'] === 'deny')).toEqual([
      expect.objectContaining({ subject: 'write-file(.git/config)', kind: 'tool', rule: 'deny: write-file(.git/**)', mode: 'default' }),
    ]);
    expect(audits('policy.deny', id)).toEqual([expect.objectContaining({ subject: 'write-file(.git/config)', rule: 'deny: write-file(.git/**)' })]);
    expect(Object.values(task.steps).find((s) => s.step === 'denied')?.detail).toBe('policy: write-file(.git/config) denied (deny: write-file(.git/**))');
    expect(task.diff).toEqual([]);
  });
});

describe('a task the kernel stops', () => {
  it('has its pending approvals denied by the kernel at once, and fails with the stop reason', async () => {
    const id = submit('stopped while waiting');
    const pending = await pendingOf(id);
    expect(pending.expiresAt - pending.createdAt).toBeGreaterThan(60_000);
    expect(kernel.stopTask(id, 'token budget exhausted (test)')).toBe(true);
    const task = await kernel.waitForTask(id);
    expect(task).toMatchObject({ status: 'failed', error: 'token budget exhausted (test)', stopReason: 'token budget exhausted (test)' });
    expect(kernel.state.current.approvals[pending.id]).toMatchObject({ status: 'denied', decidedBy: 'kernel', reason: 'the kernel stopped the task: token budget exhausted (test)' });
    expect(callTo(task, 'write-file')).toMatchObject({ outcome: 'denied' });
    expect(existsSync(join(task.workspace, 'src/c.ts'))).toBe(false);
  });
});

describe('expiry', () => {
  let short: Kernel;
  beforeAll(async () => {
    const dir = tempDir('policy-expiry');
    shareTranspileCache(dir);
    writeFileSync(join(dir, 'warden.config.json'), JSON.stringify({ policy: { approvalTimeoutMs: 2500 } }));
    short = await Kernel.start({ dataDir: dir, baseURL: model.baseURL, quiet: true });
    short.events.on((e) => events.push(e));
  }, 60_000);
  afterAll(async () => {
    await short?.close();
  });

  it('an approval nobody decides expires after policy.approvalTimeoutMs and the call is denied', async () => {
    const id = short.submitTask({ prompt: 'let it expire', workspace: workspace({ 'README.md': '# project\n' }), model: 'scripted' });
    const pending = await until(() => Object.values(short.state.current.approvals).find((a) => a.taskId === id && a.status === 'pending'), 30_000, `an approval of ${id}`);
    // `policy.approvalTimeoutMs` (2.5 s here), well within the agent's own deadline.
    expect(pending.expiresAt - pending.createdAt).toBeLessThanOrEqual(2500);
    expect(pending.expiresAt - pending.createdAt).toBeGreaterThan(2000);
    const task = await short.waitForTask(id);
    expect(task.status).toBe('succeeded');
    expect(short.state.current.approvals[pending.id]).toMatchObject({ status: 'expired', decidedBy: 'expired' });
    const call = callTo(task, 'edit-file')!;
    expect(call).toMatchObject({ outcome: 'denied' });
    expect(call.output).toMatch(/expired/);
    expect(eventsOf(id, 'approval')).toEqual([expect.objectContaining({ id: pending.id, status: 'expired' })]);
    expect(short.store.auditEvents(500, { kind: 'policy.deny' }).filter((r) => r.task_id === id).map((r) => JSON.parse(r.detail) as Record<string, unknown>)).toEqual([expect.objectContaining({ approvalId: pending.id, status: 'expired' })]);
    expect(() => short.approvals.decide(pending.id, 'approve', 'test')).toThrow(/E_APPROVAL_DECIDED|already|expired/);
    expect(existsSync(join(task.workspace, 'README.md'))).toBe(true);
    expect(task.diff).toEqual([]);
  });
});

describe('warden run waiting for an approval', () => {
  it('without a terminal it says how to approve from another shell, waits, and goes on once `warden approve` decides', async () => {
    const dir = tempDir('policy-run');
    shareTranspileCache(dir);
    const ws = workspace({ 'README.md': '# project\n' });
    const child = spawn(process.execPath, [warden, 'run', '--workspace', ws, '--model', 'scripted', '--base-url', model.baseURL, '--data-dir', dir, 'approve over rest'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk) => (stdout += chunk));
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const id = await until(() => /waiting for approval (a-[0-9a-f]{8}): coder wants write-file\(src\/a\.ts\)/.exec(stderr)?.[1], 60_000, '`warden run` to announce the approval');
      expect(stderr).toContain(`approve from another shell: warden approve ${id} --data-dir ${dir}`);
      const approved = await run(process.execPath, [warden, 'approve', id, '--data-dir', dir]);
      expect(approved.stdout).toMatch(new RegExp(`^approved ${id}: write-file\\(src/a\\.ts\\)`));
      expect(await exited).toBe(0);
      expect(stdout).toContain('A src/a.ts');
    } finally {
      child.kill('SIGKILL');
    }
  }, 120_000);
});
