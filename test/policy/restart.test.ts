// Approvals across a restart, modes along a real call chain, and commit rules. A kernel (`warden
// serve`, a child process) asks for an approval and is killed; `warden approve` decides it while no
// kernel runs; the next kernel shows the decision, and the resumed task repeats the action and
// proceeds without asking again. Then, in that kernel: an agent configured `bypassPermissions`
// acts so when called directly and at its caller's `default` when called by another agent; and a
// component's session commit asks (mode default) or is refused by a `commit(GLOB)` deny rule.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Kernel } from '../../kernel/kernel.js';
import { KERNEL_GRANTS } from '../../kernel/grants/index.js';
import { openDataDir } from '../../kernel/cli/component.js';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import { shareTranspileCache } from '../../kernel/testing.js';
import type { RuntimeEvent } from '../../kernel/runtime/events.js';
import type { Approval, TaskState } from '../../kernel/state/index.js';
import { startScriptedServer, type ScriptedServer, type ScriptedTurn } from '../support/scripted-openai.js';
import { tempDir, workspace } from '../support/fixtures.js';
import { buildWorld } from '../support/worlds.js';
import { freePort, until } from '../support/net.js';

const run = promisify(execFile);
const warden = join(PACKAGE_ROOT, 'bin/warden.js');
const TOOLS = ['read-file', 'list-files', 'grep', 'write-file', 'edit-file', 'line-count'];

/** An agent that hands its task to the coder agent: a parent in a real agent → agent chain. */
const RELAY = `
import { call } from 'warden:kernel/mesh@0.1.0';
export const agent = {
  run(task) {
    const result = call('coder', 'run', { tag: 'json', val: JSON.stringify(task) });
    return JSON.parse(result.val);
  },
};
`;

/** A tool that commits the session its input names (the session capability is granted to it). */
const COMMITTER = `
import { commit } from 'warden:kernel/session@0.1.0';
export const tool = {
  describe() { return { name: 'committer', description: 'commit a session', inputSchema: '{}' }; },
  call(input) {
    try {
      commit(JSON.parse(input).session);
      return 'committed';
    } catch (e) {
      const v = e && e.payload !== undefined ? e.payload : e;
      return 'error: ' + JSON.stringify(v);
    }
  },
};
`;

const PLANS: Record<string, ScriptedTurn[]> = {
  'restart me': [{ toolCalls: [{ name: 'write-file', arguments: { path: 'src/a.ts', content: 'export const a = 1;\n' } }] }, { content: 'wrote src/a.ts' }],
  'chain direct': [{ toolCalls: [{ name: 'write-file', arguments: { path: 'notes/direct.md', content: 'direct\n' } }] }, { content: 'done' }],
  'chain relay': [{ toolCalls: [{ name: 'write-file', arguments: { path: 'notes/relayed.md', content: 'relayed\n' } }] }, { content: 'done' }],
};

let model: ScriptedServer;
let data: string;
let ws: string;
let kernel: Kernel | undefined;
const events: RuntimeEvent[] = [];
let taskId: string;

beforeAll(async () => {
  model = await startScriptedServer((_n, body) => {
    const prompt = body.messages.find((m) => m.role === 'user')?.content ?? '';
    return PLANS[prompt]?.[body.messages.filter((m) => m.role === 'assistant').length] ?? { content: 'done' };
  });
  data = tempDir('policy-restart');
  shareTranspileCache(data);
  ws = workspace({ 'README.md': '# project\n' });
  writeFileSync(join(data, 'warden.config.json'), JSON.stringify({
    server: { auth: false },
    policy: {
      mode: 'default',
      rules: { ask: ['write-file(src/**)'], deny: ['commit(secrets/**)'] },
      agents: { coder: { mode: 'bypassPermissions' }, relay: { mode: 'default' } },
    },
    grants: {
      relay: { filesystem: 'session:rw', mesh: ['coder', ...TOOLS], inference: ['*'] },
      committer: { session: true },
    },
  }));
  const [relay, committer] = await Promise.all([
    buildWorld('relay', RELAY, 'import warden:kernel/mesh@0.1.0;\nexport warden:kernel/agent@0.1.0;'),
    buildWorld('committer', COMMITTER, 'import warden:kernel/session@0.1.0;\nexport warden:kernel/tool@0.1.0;'),
  ]);
  const manifests = {
    relay: { name: 'relay', version: '1.0.0', kind: 'agent', requests: { filesystem: 'session:rw', mesh: ['coder', ...TOOLS], inference: ['*'] } },
    committer: { name: 'committer', version: '1.0.0', kind: 'tool', requests: { session: true } },
  };
  const dir = openDataDir(data);
  try {
    for (const [name, file] of [['relay', relay], ['committer', committer]] as const) {
      const manifestPath = join(tempDir(`manifest-${name}`), 'manifest.json');
      writeFileSync(manifestPath, JSON.stringify(manifests[name]));
      await dir.registry.add(file, { name, manifestPath });
    }
  } finally {
    dir.close();
  }
}, 120_000);

afterAll(async () => {
  await kernel?.close();
  await model?.close();
});

describe('approvals across a restart', () => {
  it('a pending approval survives the kernel\'s death, is approved by the CLI while no kernel runs, and the resumed task proceeds without asking again', async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const child = spawn(process.execPath, [warden, 'serve', '--port', String(port), '--data-dir', data, '--base-url', model.baseURL], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    let pending: Approval;
    try {
      await until(async () => (await fetch(`${base}/health`).then((r) => r.ok, () => false)) || undefined, 60_000, 'kernel A to listen')
        .catch((err: Error) => Promise.reject(new Error(`${err.message}; its stderr: ${stderr}`)));
      const res = await fetch(`${base}/api/tasks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ task: 'restart me', workspace: ws, model: 'scripted' }) });
      expect(res.status).toBe(201);
      taskId = ((await res.json()) as { id: string }).id;
      pending = await until(async () => {
        const { approvals } = (await (await fetch(`${base}/api/approvals`)).json()) as { approvals: Approval[] };
        return approvals.find((a) => a.taskId === taskId);
      }, 30_000, 'the approval in kernel A');
      expect(pending).toMatchObject({ subject: 'write-file(src/a.ts)', rule: 'ask: write-file(src/**)', status: 'pending', component: 'coder' });
    } finally {
      child.kill('SIGKILL');
    }
    expect(await exited).toBe('SIGKILL');

    // No kernel runs: the CLI lists and decides it in the store.
    const listed = await run(process.execPath, [warden, 'approvals', '--data-dir', data]);
    expect(listed.stdout).toContain(`${pending.id}  pending`);
    expect(listed.stdout).toContain('write-file(src/a.ts)');
    const approved = await run(process.execPath, [warden, 'approve', pending.id, '--json', '--data-dir', data]);
    expect(JSON.parse(approved.stdout)).toMatchObject({ id: pending.id, status: 'approved', decidedBy: 'cli' });

    kernel = await Kernel.start({ dataDir: data, baseURL: model.baseURL, quiet: true });
    kernel.events.on((e) => events.push(e));
    expect(kernel.state.current.approvals[pending.id]).toMatchObject({ status: 'approved', decidedBy: 'cli', taskId });
    expect(kernel.state.current.tasks[taskId]!.status).toBe('interrupted');

    kernel.resumeTask(taskId);
    const task = await kernel.waitForTask(taskId);
    expect(task.status).toBe('succeeded');
    expect(task.diff?.map((c) => c.path)).toEqual(['src/a.ts']);
    // The coder's span notices travel on its own port: they may land just after the task's end.
    await until(() => Object.values(kernel!.state.current.tasks[taskId]!.toolCalls).find((c) => c.target === 'write-file' && c.status === 'ok'), 10_000, 'the write-file span');
    // The repeated action reused the approval: no second one, and the decision event names it.
    expect(Object.values(kernel.state.current.approvals).filter((a) => a.taskId === taskId).map((a) => a.id)).toEqual([pending.id]);
    expect(events.filter((e) => e.type === 'policy' && e.decision === 'ask').map((e) => (e as { approvalId?: string }).approvalId)).toEqual([pending.id]);
    // The model was asked the same first turn twice (once per kernel), then for the answer.
    expect(model.requests.filter((r) => r.messages.find((m) => m.role === 'user')?.content === 'restart me')).toHaveLength(3);
  }, 120_000);
});

/** A task for an agent's `run`, in the resumed task's session. */
function agentTask(prompt: string): string {
  const task = kernel!.state.current.tasks[taskId]!;
  return JSON.stringify({ id: taskId, prompt, workspace: task.workspace, model: 'scripted', sessionId: task.sessionId, maxTurns: 5, history: null });
}

const callIn = (target: string, method: string, payload: string, sessionId: string | null) => kernel!.mesh.call(target, method, { tag: 'json', val: payload }, {
  taskId, sessionId, chain: [], deadline: Date.now() + 60_000, grants: KERNEL_GRANTS,
});

describe('modes along a call chain', () => {
  it('the coder (bypassPermissions) writes without asking when called directly, and asks when its caller is an agent in mode default', async () => {
    const sessionId = kernel!.state.current.tasks[taskId]!.sessionId;
    const direct = await callIn('coder', 'run', agentTask('chain direct'), sessionId);
    expect(direct.ok).toBe(true);
    const allowed = events.filter((e) => e.type === 'policy' && e.subject === 'write-file(notes/direct.md)');
    expect(allowed).toEqual([expect.objectContaining({ decision: 'allow', mode: 'bypassPermissions', rule: 'mode bypassPermissions' })]);

    const relayed = callIn('relay', 'run', agentTask('chain relay'), sessionId);
    const asked = await until(() => Object.values(kernel!.state.current.approvals).find((a) => a.subject === 'write-file(notes/relayed.md)'), 30_000, 'the relayed write to ask');
    expect(asked).toMatchObject({ component: 'coder', rule: 'mode default', status: 'pending' });
    kernel!.approvals.decide(asked.id, 'approve', 'ui');
    const reply = await relayed;
    expect(reply.ok).toBe(true);
    expect(events.filter((e) => e.type === 'policy' && e.subject === 'write-file(notes/relayed.md)')).toEqual([
      expect.objectContaining({ decision: 'ask', mode: 'default', approvalId: asked.id }),
    ]);
    expect(kernel!.sessions.diff(sessionId!).map((c) => c.path).sort()).toEqual(['notes/direct.md', 'notes/relayed.md', 'src/a.ts']);
  });

  it('a task may lower the configured mode, never raise it', () => {
    expect(() => kernel!.submitTask({ prompt: 'x', workspace: ws, model: 'scripted', mode: 'acceptEdits' })).toThrow(/mode acceptEdits is above the configured policy.mode default/);
  });
});

describe('commit rules', () => {
  it('a commit by a component asks in mode default (approved, it lands); commit(secrets/**) in deny refuses one that touches secrets/', async () => {
    const sessionId = kernel!.state.current.tasks[taskId]!.sessionId!;
    const committing = callIn('committer', 'call', JSON.stringify({ session: sessionId }), null);
    const asked = await until(() => Object.values(kernel!.state.current.approvals).find((a) => a.kind === 'commit'), 30_000, 'the commit to ask');
    expect(asked).toMatchObject({ subject: `commit(${sessionId})`, component: 'committer', rule: 'mode default' });
    expect(asked.detail.split('\n').sort()).toEqual(['added notes/direct.md', 'added notes/relayed.md', 'added src/a.ts']);
    kernel!.approvals.decide(asked.id, 'approve', 'ui');
    const committed = await committing;
    expect(committed.ok && JSON.parse((committed.payload as { val: string }).val)).toEqual({ output: 'committed' });
    expect(readFileSync(join(ws, 'src/a.ts'), 'utf8')).toBe('export const a = 1;\n');

    const secret = kernel!.sessions.begin(ws).id;
    const overlay = kernel!.sessions.overlay(secret, 'rw');
    overlay.mkdir('secrets');
    overlay.create('secrets/k.txt', true);
    overlay.write('secrets/k.txt', 0, Buffer.from('k\n'));
    const refused = await callIn('committer', 'call', JSON.stringify({ session: secret }), null);
    const output = refused.ok ? (JSON.parse((refused.payload as { val: string }).val) as { output: string }).output : '';
    expect(output).toMatch(/^error: .*denied.*E_POLICY_DENIED: commit\(s-[0-9a-f]+\) is denied by the policy rule `deny: commit\(secrets\/\*\*\)` of committer/);
    expect(existsSync(join(ws, 'secrets'))).toBe(false);
    expect(kernel!.store.auditEvents(50, { kind: 'policy.deny' }).map((r) => JSON.parse(r.detail).subject)).toContain(`commit(${secret})`);
    expect(Object.values(kernel!.state.current.approvals).filter((a) => a.subject === `commit(${secret})`)).toEqual([]);
    const task = kernel!.state.current.tasks[taskId] as TaskState;
    expect(Object.values(task.steps).some((s) => s.step === 'denied' && s.detail.includes(`commit(${secret})`))).toBe(true);
  });
});
