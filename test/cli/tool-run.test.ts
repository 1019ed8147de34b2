// `warden tool run` runs a standard wasi:cli/command component the way `wasmtime run` does.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import { buildCommand } from '../support/guest.js';
import { tempDir } from '../support/fixtures.js';

const ECHO = `
import { getArguments } from 'wasi:cli/environment@0.2.12';
import { getStdout } from 'wasi:cli/stdout@0.2.12';
import { getStderr } from 'wasi:cli/stderr@0.2.12';
import { getStdin } from 'wasi:cli/stdin@0.2.12';
import { exit } from 'wasi:cli/exit@0.2.12';
const bytes = (s) => Uint8Array.from([...s].map((c) => c.charCodeAt(0)));
export const run = {
  run() {
    const args = getArguments();
    let input = '';
    const stdin = getStdin();
    try { for (;;) for (const b of stdin.blockingRead(4096)) input += String.fromCharCode(b); } catch (e) {}
    getStdout().blockingWriteAndFlush(bytes('args=' + args.slice(1).join(',') + ' stdin=' + input));
    getStderr().blockingWriteAndFlush(bytes('to stderr'));
    if (args[1] === 'fail') exit({ tag: 'err' });
  },
};`;

describe('warden tool run with a wasi:cli/command component', () => {
  it('passes args and stdin, returns stdout, stderr and the exit code', async () => {
    const wasm = await buildCommand('echo', ECHO);
    const run = (args: string[], input: string) =>
      spawnSync(process.execPath, [join(PACKAGE_ROOT, 'bin/warden.js'), 'tool', 'run', '--data-dir', tempDir('data'), wasm, '--', ...args], { input, encoding: 'utf8' });
    const ok = run(['a', 'b'], 'hello');
    expect(ok.stdout).toBe('args=a,b stdin=hello');
    expect(ok.stderr).toContain('to stderr');
    expect(ok.status).toBe(0);
    const failed = run(['fail'], '');
    expect(failed.stdout).toBe('args=fail stdin=');
    expect(failed.status).toBe(1);
  });

  it('refuses a file that is not a component with exit 125 and one line', () => {
    const result = spawnSync(process.execPath, [join(PACKAGE_ROOT, 'bin/warden.js'), 'tool', 'run', '--data-dir', tempDir('data'), join(PACKAGE_ROOT, 'package.json')], { encoding: 'utf8' });
    expect(result.status).toBe(125);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/^warden: not a valid WebAssembly component/);
  });
});
