// Components written in C (prebuilt by `npm run build:c`): the line-count tool and the hostile
// wasi:cli/command, run through the real kernel: escapes, environment, exit, and limit attacks
// (loop, alloc, output, recurse, abort).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kernel } from '../../kernel/kernel.js';
import { KERNEL_GRANTS, parseManifest } from '../../kernel/grants/index.js';
import { runTool, type ToolRunOptions } from '../../kernel/cli/tool-run.js';
import { BUILT_COMPONENTS, PACKAGE_ROOT } from '../../kernel/paths.js';
import { tempDir, workspace } from '../support/fixtures.js';

const LINE_COUNT = join(BUILT_COMPONENTS, 'line-count.wasm');
const HOSTILE = join(PACKAGE_ROOT, 'test/security/guests/hostile.wasm');

/** Run a component once in-process; stdout and stderr are collected as text. */
async function run(component: string, args: string[], overrides: Partial<ToolRunOptions> = {}) {
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  const result = await runTool({
    component, args, dirs: [], dirsRw: [], commit: false, env: [], timeoutMs: 20_000, maxMemoryMb: 64,
    dataDir: tempDir('data'), stdin: () => new Uint8Array(),
    stdout: (b) => stdout.push(Buffer.from(b)), stderr: (b) => stderr.push(Buffer.from(b)),
    ...overrides,
  });
  return { ...result, stdout: Buffer.concat(stdout).toString(), stderr: Buffer.concat(stderr).toString() };
}

describe('line-count, a tool written in C', () => {
  it('counts lines, words and bytes of session files through a read-only mount, with or without a leading slash', async () => {
    const ws = workspace({ 'a.txt': 'hello world\nsecond line here\n', 'sub/b.txt': 'no newline  at\tend' });
    const result = await run(LINE_COUNT, [JSON.stringify({ paths: ['a.txt', '/sub/b.txt'] })], { dirs: [`${ws}::/`] });
    expect(result.exitCode).toBe(0);
    expect(JSON.parse(result.output!)).toEqual({
      files: [
        { path: 'a.txt', lines: 2, words: 5, bytes: 29 },
        { path: '/sub/b.txt', lines: 0, words: 4, bytes: 18 },
      ],
      total: { lines: 2, words: 9, bytes: 47 },
    });
    const one = await run(LINE_COUNT, ['{"path": "/a.txt"}'], { dirs: [`${ws}::/`] });
    expect(JSON.parse(one.output!).total).toEqual({ lines: 2, words: 5, bytes: 29 });
    expect(readFileSync(join(ws, 'a.txt'), 'utf8')).toBe('hello world\nsecond line here\n');
  });

  it('answers a missing file, a directory, a path outside the session and bad input with an error result, not a trap', async () => {
    const ws = workspace({ 'a.txt': 'x\n', 'sub/b.txt': 'y' });
    writeFileSync(join(ws, '..', 'secret.txt'), 'TOP SECRET');
    const cases: Array<[string, RegExp]> = [
      ['{"path": "missing.txt"}', /^failed: missing\.txt: no such file or directory$/],
      ['{"path": "sub"}', /^failed: sub: is a directory$/],
      ['{"path": "../secret.txt"}', /^failed: \.\.\/secret\.txt: outside the session root$/],
      ['{"paths": ["a.txt", "nope"]}', /^failed: nope: no such file or directory$/],
      ['{"path": ', /^invalid-input: input is not valid JSON/],
      ['', /^invalid-input: input is not valid JSON/],
      ['["a.txt"]', /^invalid-input: input must be a JSON object$/],
      ['{"path": 3}', /^invalid-input: field "path" must be a string$/],
      ['{"file": "a.txt"}', /^invalid-input: unknown field "file"/],
    ];
    for (const [input, expected] of cases) {
      const result = await run(LINE_COUNT, [input], { dirs: [`${ws}::/`] });
      expect({ input, exitCode: result.exitCode, output: result.output }).toEqual({ input, exitCode: 1, output: expect.stringMatching(expected) });
    }
    const unmounted = await run(LINE_COUNT, ['{"path": "a.txt"}']);
    expect(unmounted.output).toBe('failed: no session is mounted: this tool needs a filesystem grant');
  });
});

describe('hostile, a wasi:cli/command written in C', () => {
  it('cannot read outside its mount: /etc/passwd and ../x fail without leaking their content', async () => {
    const ws = workspace({ 'a.txt': 'inside\n' });
    writeFileSync(join(ws, '..', 'x'), 'TOP SECRET');
    const inside = await run(HOSTILE, ['read', 'a.txt'], { dirs: [`${ws}::/`] });
    expect([inside.exitCode, inside.stdout]).toEqual([0, 'inside\n']);
    for (const [path, mounted, error] of [
      ['/etc/passwd', true, /No such file or directory/],
      ['/etc/passwd', false, /Capabilities insufficient/],
      ['../x', true, /Operation not permitted/],
      ['/../x', true, /Operation not permitted/],
    ] as const) {
      const result = await run(HOSTILE, ['read', path], { dirs: mounted ? [`${ws}::/`] : [] });
      expect({ path, exitCode: result.exitCode, stdout: result.stdout }).toEqual({ path, exitCode: 1, stdout: '' });
      expect(result.stderr).toMatch(error);
      expect(result.stderr).not.toMatch(/TOP SECRET|root:/);
    }
  });

  it('sees only the environment variables it is granted', async () => {
    process.env['WARDEN_C_SECRET'] = 'hunter2';
    try {
      const none = await run(HOSTILE, ['env']);
      expect([none.exitCode, none.stdout]).toEqual([0, '']);
      const granted = await run(HOSTILE, ['env'], { env: ['GREETING=hi'] });
      expect(granted.stdout).toBe('GREETING=hi\n');
      expect(`${none.stdout}${none.stderr}${granted.stdout}${granted.stderr}`).not.toContain('hunter2');
    } finally {
      delete process.env['WARDEN_C_SECRET'];
    }
  });

  it('warden tool run exits with the code the guest exits with', () => {
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, [join(PACKAGE_ROOT, 'bin/warden.js'), 'tool', 'run', '--data-dir', tempDir('data'), HOSTILE, '--', ...args], { encoding: 'utf8' });
    expect(cli('exit-code', '7').status).toBe(7);
    // exit(7) in C goes through the preview1 adapter to WASI 0.2 `exit(err)`, which carries no code.
    expect(cli('exit', '7').status).toBe(1);
    expect(cli('exit', '0').status).toBe(0);
  });
});

describe('hostile C: writes, symlinks and limits', () => {
  it('cannot write under a read-only mount, nor follow planted symlinks out of the workspace', async () => {
    const outside = tempDir('outside');
    writeFileSync(join(outside, 'secret.txt'), 'TOP SECRET');
    const ws = workspace({ 'a.txt': 'inside\n' });
    symlinkSync(join(outside, 'secret.txt'), join(ws, 'escape'));
    symlinkSync(outside, join(ws, 'dirlink'));
    const write = await run(HOSTILE, ['write', 'a.txt', 'owned'], { dirs: [`${ws}::/`] });
    expect(write.exitCode).toBe(1);
    expect(write.stderr).toMatch(/Read-only file system/);
    expect(readFileSync(join(ws, 'a.txt'), 'utf8')).toBe('inside\n');
    for (const path of ['escape', 'dirlink/secret.txt']) {
      const read = await run(HOSTILE, ['read', path], { dirs: [`${ws}::/`] });
      expect({ path, exitCode: read.exitCode }).toEqual({ path, exitCode: 1 });
      expect(read.stdout + read.stderr).not.toContain('TOP SECRET');
    }
    const list = await run(HOSTILE, ['ls', 'dirlink'], { dirs: [`${ws}::/`] });
    expect(list.stdout).not.toContain('secret.txt');
  });

  it('an infinite loop is stopped at the wall-clock limit: exit 124, and the next run works', async () => {
    const started = Date.now();
    const loop = await run(HOSTILE, ['loop'], { timeoutMs: 1500 });
    expect(loop.exitCode).toBe(124);
    expect(loop.reason).toMatch(/wall-clock limit of 1500 ms/);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect((await run(HOSTILE, ['output', '3'])).stdout).toBe('xxx');
  });

  it('a memory bomb fails its malloc at the cap and is reported as E_LIMIT_MEMORY (exit 125)', async () => {
    const before = process.memoryUsage().rss;
    const bomb = await run(HOSTILE, ['alloc'], { maxMemoryMb: 64 });
    expect(bomb.exitCode).toBe(125);
    expect(bomb.stderr).toMatch(/malloc failed at \d+ MiB/);
    expect(bomb.reason).toMatch(/^E_LIMIT_MEMORY: guest ran out of memory at its cap of 64 MiB/);
    expect(process.memoryUsage().rss - before).toBeLessThan(512 * 2 ** 20);
  });

  it('huge output is cut at the limit with one marker', async () => {
    const flood = await run(HOSTILE, ['output', '5000000'], { outputBytes: 100_000 });
    expect(flood.exitCode).toBe(0);
    expect(flood.stdout.length).toBeLessThan(100_100);
    expect(flood.stdout.slice(100_000)).toBe('\n[warden: output truncated at 100000 bytes]\n');
  });

  it('unbounded recursion and abort() trap (exit 125); neither takes the host down', async () => {
    for (const mode of ['recurse', 'abort']) {
      const result = await run(HOSTILE, [mode]);
      expect({ mode, exitCode: result.exitCode }).toEqual({ mode, exitCode: 125 });
      expect(result.reason).toMatch(/trapped/);
    }
    expect((await run(HOSTILE, ['output', '2'])).stdout).toBe('xx');
  });
});

describe('C components inside a running kernel', () => {
  let kernel: Kernel;
  const ctx = (args: string[] = []) => ({ taskId: '', sessionId: null, chain: [], deadline: Date.now() + 20_000, grants: KERNEL_GRANTS, args, stdin: new Uint8Array() });

  beforeAll(async () => {
    kernel = await Kernel.start({ dataDir: tempDir('data'), quiet: true });
    const manifest = parseManifest({ name: 'hostile', version: '1', kind: 'command' }, 'test');
    await kernel.loadComponent({ name: 'hostile', manifest, file: HOSTILE, builtin: false });
  });

  afterAll(async () => {
    await kernel?.close();
  });

  it('loads line-count with the built-in tools, and it describes itself', async () => {
    const tools = await kernel.mesh.listTools(KERNEL_GRANTS);
    const info = tools.find((t) => t.name === 'line-count');
    expect(info?.description).toMatch(/^Count lines, words and bytes/);
    expect(JSON.parse(info!.inputSchema)).toMatchObject({ type: 'object', properties: { path: { type: 'string' } } });
  });

  it('a guest exiting with code 7 ends only its own call; the kernel keeps serving', async () => {
    const exited = await kernel.mesh.call('hostile', 'run', { tag: 'json', val: 'null' }, ctx(['hostile', 'exit-code', '7']));
    expect(exited.exitCode).toBe(7);
    const again = await kernel.mesh.call('hostile', 'run', { tag: 'json', val: 'null' }, ctx(['hostile', 'clock']));
    expect(again).toMatchObject({ ok: true, exitCode: 0 });
    const tool = await kernel.mesh.call('line-count', 'call', { tag: 'json', val: '{"path": "a.txt"}' }, ctx());
    expect(tool).toMatchObject({ ok: false, error: { message: 'failed: no session is mounted: this tool needs a filesystem grant' } });
  });
});
