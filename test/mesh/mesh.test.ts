// The mesh: calls cross workers, and a call to an unknown target or past its deadline returns an
// error result instead of hanging; a stuck worker is replaced.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Kernel } from '../../kernel/kernel.js';
import { KERNEL_GRANTS, parseManifest } from '../../kernel/grants/index.js';
import { buildTool } from '../support/guest.js';
import { startScriptedServer, type ScriptedServer } from '../support/scripted-openai.js';
import { tempDir, workspace } from '../support/fixtures.js';

let kernel: Kernel;
let server: ScriptedServer;
const ctx = (ms: number) => ({ taskId: '', sessionId: null, chain: [], deadline: Date.now() + ms, grants: KERNEL_GRANTS });

beforeAll(async () => {
  server = await startScriptedServer([
    { toolCalls: [{ name: 'nope', arguments: {} }, { name: 'list-files', arguments: {} }] },
    { content: 'ok' },
  ]);
  kernel = await Kernel.start({ dataDir: tempDir('data'), baseURL: server.baseURL, quiet: true });
  const spin = await buildTool('spin', `
    export const tool = {
      describe() { return { name: 'spin', description: 'loops on "spin", echoes otherwise', inputSchema: '{}' }; },
      call(input) { if (input === '"spin"') for (;;) {} return input; },
    };`);
  const manifest = parseManifest({ name: 'spin', version: '0.0.1', kind: 'tool', limits: { timeoutMs: 800, memoryMb: 64 } }, 'test');
  await kernel.loadComponent({ name: 'spin', manifest, file: spin, builtin: false });
});

afterAll(async () => {
  await kernel?.close();
  await server?.close();
});

describe('mesh calls', () => {
  it('agent → tool calls cross workers; an unknown target is an error result the agent sees', async () => {
    const id = kernel.submitTask({ prompt: 'look around', workspace: workspace({ 'x.txt': '1' }), model: 'scripted' });
    const task = await kernel.waitForTask(id);
    expect(task.status).toBe('succeeded');
    const toolMessages = server.requests[1]!.messages.filter((m) => m.role === 'tool').map((m) => m.content);
    expect(toolMessages[0]).toMatch(/denied: capability not granted: mesh target nope/);
    expect(toolMessages[1]).toBe('x.txt');
    const spans = Object.values(task.toolCalls);
    expect(spans.find((s) => s.target === 'list-files')).toMatchObject({ caller: 'coder', status: 'ok' });
  });

  it('a call to an unknown component returns E_MESH_UNKNOWN_TARGET at once', async () => {
    const reply = await kernel.mesh.call('ghost', 'call', { tag: 'json', val: '{}' }, ctx(5000));
    expect(reply.ok).toBe(false);
    expect(!reply.ok && reply.error).toMatchObject({ tag: 'unknown-target' });
  });

  it('a call past its deadline returns a timeout, the worker is replaced, and the next call succeeds', async () => {
    const started = Date.now();
    const reply = await kernel.mesh.call('spin', 'call', { tag: 'json', val: '"spin"' }, ctx(700));
    expect(Date.now() - started).toBeLessThan(5000);
    expect(!reply.ok && reply.error.tag).toBe('timeout');
    let next;
    for (let i = 0; i < 50; i++) {
      next = await kernel.mesh.call('spin', 'call', { tag: 'json', val: '"echo"' }, ctx(5000));
      if (next.ok) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(next!.ok && JSON.parse((next!.payload as { val: string }).val)).toEqual({ output: '"echo"' });
  });
});
