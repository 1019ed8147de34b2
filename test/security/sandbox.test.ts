// Hostile and curious components: read-only grants, escapes from the session root, runaway loops.
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BUILT_COMPONENTS, PACKAGE_ROOT, transpileCacheDir } from '../../kernel/paths.js';
import { Engine } from '../../kernel/engine/index.js';
import { runTool } from '../../kernel/cli/tool-run.js';
import { buildTool } from '../support/guest.js';
import { tempDir, workspace } from '../support/fixtures.js';

const run = promisify(execFile);
const component = (name: string) => join(BUILT_COMPONENTS, `${name}.wasm`);

async function tool(name: string, input: object, mounts: { ro?: string; rw?: string; commit?: boolean } = {}) {
  const stderr: string[] = [];
  const result = await runTool({
    component: component(name), args: [JSON.stringify(input)],
    dirs: mounts.ro ? [`${mounts.ro}::/`] : [], dirsRw: mounts.rw ? [`${mounts.rw}::/`] : [], commit: mounts.commit ?? false,
    env: [], timeoutMs: 20_000, maxMemoryMb: 128, dataDir: tempDir('data'),
    stdin: () => new Uint8Array(), stdout: () => undefined, stderr: (b) => stderr.push(Buffer.from(b).toString()),
  });
  return result;
}

describe('filesystem grants', () => {
  it('a tool granted the session read-only cannot write', async () => {
    const ws = workspace({ 'a.txt': 'hello\n' });
    const result = await tool('write-file', { path: 'a.txt', content: 'owned' }, { ro: ws });
    expect(result.exitCode).toBe(1);
    expect(result.output).toMatch(/read-only/);
    const edit = await tool('edit-file', { path: 'a.txt', old_string: 'hello', new_string: 'bye' }, { ro: ws });
    expect(edit.output).toMatch(/read-only/);
    expect(readFileSync(join(ws, 'a.txt'), 'utf8')).toBe('hello\n');
  });

  it('a read-write session reaches the host only with --commit', async () => {
    const ws = workspace({ 'a.txt': 'hello\n' });
    const discarded = await tool('write-file', { path: 'b.txt', content: 'x' }, { rw: ws });
    expect(discarded.exitCode).toBe(0);
    expect(discarded.changes[0]!.changes.map((c) => c.path)).toEqual(['b.txt']);
    expect(existsSync(join(ws, 'b.txt'))).toBe(false);
    const committed = await tool('write-file', { path: 'b.txt', content: 'x' }, { rw: ws, commit: true });
    expect(committed.changes[0]!.committed).toBe(true);
    expect(readFileSync(join(ws, 'b.txt'), 'utf8')).toBe('x');
  });

  it.each([
    ['a parent path', '../secret.txt'],
    ['a deeper parent path', 'sub/../../secret.txt'],
    ['an absolute path', '/etc/passwd'],
    ['a symlink that leaves the root', 'escape'],
    ['a symlink inside a directory that leaves the root', 'sub/link/secret.txt'],
  ])('no component can read a file outside its session through %s', async (_what, path) => {
    const outside = tempDir('outside');
    writeFileSync(join(outside, 'secret.txt'), 'TOP SECRET');
    const ws = workspace({ 'sub/ok.txt': 'fine' });
    symlinkSync(join(outside, 'secret.txt'), join(ws, 'escape'));
    symlinkSync(outside, join(ws, 'sub/link'));
    writeFileSync(join(ws, '..', 'secret.txt'), 'TOP SECRET');
    const result = await tool('read-file', { path }, { rw: ws });
    expect(result.exitCode).toBe(1);
    expect(result.output).not.toContain('TOP SECRET');
    expect(result.output).toMatch(/outside the session root|no such file/);
    const grep = await tool('grep', { pattern: 'SECRET' }, { rw: ws });
    expect(grep.output).not.toContain('TOP SECRET');
  });

  it('a tool run with no mount sees no filesystem at all', async () => {
    const result = await tool('list-files', {});
    expect(result.exitCode).toBe(1);
    expect(result.output).toMatch(/no session is mounted/);
  });
});

describe('limits', () => {
  it('warden tool run of a component looping forever exits 124 on time, and the kernel stays healthy', async () => {
    const wasm = await buildTool('spin', `
      export const tool = {
        describe() { return { name: 'spin', description: 'loops', inputSchema: '{}' }; },
        call(input) { for (;;) {} },
      };`);
    // Transpiling the new component (seconds on a loaded machine) is not what is timed here:
    // the CLI finds it in its data directory's cache.
    const dataDir = tempDir('data');
    await new Engine(transpileCacheDir(dataDir)).load(wasm);
    const started = Date.now();
    const result = await run(process.execPath, [join(PACKAGE_ROOT, 'bin/warden.js'), 'tool', 'run', '--timeout-ms', '1500', '--data-dir', dataDir, wasm, '{}'], { timeout: 30_000 }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    const elapsed = Date.now() - started;
    expect(result.code).toBe(124);
    expect(result.stderr).toMatch(/wall-clock limit of 1500 ms/);
    expect(elapsed).toBeLessThan(15_000);

    // In-process: the same runaway does not take the host down; the next run works.
    const again = await runTool({
      component: wasm, args: ['{}'], dirs: [], dirsRw: [], commit: false, env: [], timeoutMs: 500, maxMemoryMb: 64,
      dataDir: tempDir('data'), stdin: () => new Uint8Array(), stdout: () => undefined, stderr: () => undefined,
    });
    expect(again.exitCode).toBe(124);
    const ws = workspace({ 'a.txt': 'still here\n' });
    expect((await tool('read-file', { path: 'a.txt' }, { ro: ws })).output).toBe('1\tstill here');
  });

  it('the host environment is not visible to a guest', async () => {
    const wasm = await buildTool('env', `
      import { getEnvironment } from 'wasi:cli/environment@0.2.12';
      export const tool = {
        describe() { return { name: 'env', description: '', inputSchema: '{}' }; },
        call(input) { return JSON.stringify(getEnvironment()); },
      };`);
    process.env['WARDEN_TEST_SECRET'] = 'hunter2';
    const base = { component: wasm, args: ['{}'], dirs: [], dirsRw: [], commit: false, timeoutMs: 10_000, maxMemoryMb: 64, dataDir: tempDir('data'), stdin: () => new Uint8Array(), stdout: () => undefined, stderr: () => undefined };
    const none = await runTool({ ...base, env: [] });
    expect(none.output).toBe('[]');
    const one = await runTool({ ...base, env: ['GREETING=hi'] });
    expect(JSON.parse(one.output!)).toEqual([['GREETING', 'hi']]);
    delete process.env['WARDEN_TEST_SECRET'];
  });
});
