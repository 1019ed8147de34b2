// KernelOptions.components: a kernel that loads one component and what its mesh requests name
// (what `warden/testing` and `warden test-component` start), on a real kernel and real workers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kernel } from '../../kernel/kernel.js';
import { KERNEL_GRANTS } from '../../kernel/grants/index.js';
import { KERNEL_PID_FILE } from '../../kernel/store/index.js';
import { tempDir } from '../support/fixtures.js';

describe('a kernel started with components: [coder]', () => {
  let kernel: Kernel;
  let workspace: string;

  beforeAll(async () => {
    kernel = await Kernel.start({ dataDir: tempDir('data'), quiet: true, components: ['coder'] });
    workspace = tempDir('ws');
    writeFileSync(join(workspace, 'notes.txt'), 'one\ntwo\n');
  });

  afterAll(async () => {
    await kernel?.close();
  });

  it('loads coder and the tools its mesh requests name, and nothing else', () => {
    expect(Object.keys(kernel.state.current.components).sort()).toEqual(['coder', 'edit-file', 'grep', 'line-count', 'list-files', 'read-file', 'write-file']);
    expect(kernel.mesh.pools().map((p) => p.name).sort()).toEqual(['coder', 'edit-file', 'grep', 'line-count', 'list-files', 'read-file', 'write-file']);
  });

  it('serves calls to what it loaded', async () => {
    const session = kernel.sessions.begin(workspace);
    const reply = await kernel.mesh.call('read-file', 'call', { tag: 'json', val: JSON.stringify({ path: 'notes.txt' }) }, {
      taskId: '', sessionId: session.id, chain: [], deadline: Date.now() + 10_000, grants: KERNEL_GRANTS,
    });
    expect(reply.ok).toBe(true);
    expect(reply.ok && JSON.parse(reply.payload.val as string)).toEqual({ output: '1\tone\n2\ttwo' });
    kernel.sessions.rollback(session.id);
  });

  it('refuses a task, which needs the supervisor, saying why', () => {
    expect(() => kernel.submitTask({ prompt: 'hello', workspace })).toThrow(/^this kernel loads only coder, .*\(KernelOptions\.components\): tasks need the supervisor$/);
  });
});

it('a name nobody registered is refused before the kernel takes the data directory', async () => {
  const dataDir = tempDir('data');
  await expect(Kernel.start({ dataDir, quiet: true, components: ['nope'] })).rejects.toThrow(/^no component named nope is registered \(known: coder, edit-file, grep, line-count, list-files, read-file, supervisor, write-file\)$/);
  expect(existsSync(join(dataDir, KERNEL_PID_FILE))).toBe(false);
  // The store was closed: another kernel opens the same directory at once.
  const again = await Kernel.start({ dataDir, quiet: true, components: ['grep'] });
  expect(Object.keys(again.state.current.components)).toEqual(['grep']);
  await again.close();
});
