// `warden inspect` reads a component's world without running it; `warden test-component` runs a
// component through a real kernel's conformance checks. Both through the built CLI (dist/).
import { beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Engine } from '../../kernel/engine/index.js';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import type { Inspection } from '../../kernel/devkit/inspect.js';
import type { ConformanceReport } from '../../kernel/devkit/conformance.js';
import { tempDir, workspace } from '../support/fixtures.js';
import { buildTool } from '../support/guest.js';
import { buildWorld } from '../support/worlds.js';

const BUILT = join(PACKAGE_ROOT, 'build/components');

function warden(args: string[], timeout = 240_000): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(PACKAGE_ROOT, 'bin/warden.js'), ...args], { encoding: 'utf8', timeout }, (err, stdout, stderr) => {
      resolve({ status: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

async function inspectJson(file: string): Promise<Inspection> {
  const result = await warden(['inspect', file, '--json']);
  expect(result.stderr).toBe('');
  expect(result.status).toBe(0);
  return JSON.parse(result.stdout) as Inspection;
}

/** A tool whose world imports `test:guest/shell`, an interface no kernel provides. */
let shellTool: string;

beforeAll(async () => {
  shellTool = await buildWorld('shell', `
    import { run } from 'test:guest/shell';
    export const tool = {
      describe() { return { name: 'shell', description: 'runs commands', inputSchema: '{"type":"object"}' }; },
      call(input) { return run(input); },
    };`, 'import shell;\nexport warden:kernel/tool@0.1.0;', 'interface shell { run: func(cmd: string) -> string; }');
});

describe('warden inspect', () => {
  it('shows grep as a tool whose imports the kernel all knows, needing filesystem, with the sha256 node:crypto computes', async () => {
    const file = join(BUILT, 'grep.wasm');
    const inspection = await inspectJson(file);
    expect(Object.keys(inspection).sort()).toEqual(['exports', 'file', 'grants', 'imports', 'initialMemory', 'kind', 'loadable', 'sha256', 'size', 'unknownImports', 'verdict']);
    expect(inspection.sha256).toBe(createHash('sha256').update(readFileSync(file)).digest('hex'));
    expect(inspection.size).toBe(statSync(file).size);
    expect(inspection.kind).toBe('tool');
    expect(inspection.loadable).toBe(true);
    expect(inspection.unknownImports).toEqual([]);
    expect(inspection.imports.every((i) => i.known)).toBe(true);
    expect(inspection.exports.map((e) => e.name)).toContain('warden:kernel/tool@0.1.0');
    expect(inspection.grants.map((g) => g.field)).toContain('filesystem');
    const preopens = inspection.imports.find((i) => i.name === 'wasi:filesystem/preopens@0.2.12')!;
    expect(preopens).toMatchObject({ interface: 'wasi:filesystem/preopens', known: true, grant: 'filesystem', functions: ['get-directories'] });
    expect(inspection.imports.find((i) => i.interface === 'wasi:filesystem/types')!.functions).toContain('descriptor.read-via-stream');
    expect(inspection.initialMemory.pages).toBeGreaterThan(0);

    const text = await warden(['inspect', file]);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toContain(`sha256   ${inspection.sha256}`);
    expect(text.stdout).toMatch(/known {4}wasi:filesystem\/types@0\.2\.12 +grant: filesystem/);
    expect(text.stdout).toContain('session:ro or session:rw: the component decides at run time');
    expect(text.stdout).toContain('the kernel would load it as a tool');
  });

  it('shows coder as an agent needing mesh and inference', async () => {
    const inspection = await inspectJson(join(BUILT, 'coder.wasm'));
    expect(inspection.kind).toBe('agent');
    expect(inspection.loadable).toBe(true);
    expect(inspection.grants.map((g) => g.field)).toEqual(expect.arrayContaining(['mesh', 'inference']));
    expect(inspection.imports.find((i) => i.interface === 'warden:kernel/inference')!.functions).toEqual(['chat']);
    expect(inspection.imports.find((i) => i.interface === 'warden:kernel/mesh')!.functions).toEqual(expect.arrayContaining(['call', 'list-tools']));
  });

  it('shows the C tool line-count needing only filesystem (it imports no environment)', async () => {
    const inspection = await inspectJson(join(PACKAGE_ROOT, 'components/line-count/line-count.wasm'));
    expect(inspection.kind).toBe('tool');
    expect(inspection.loadable).toBe(true);
    expect(inspection.grants.map((g) => g.field)).toEqual(['filesystem']);
    expect(inspection.imports.some((i) => i.interface === 'wasi:cli/environment')).toBe(false);
  });

  it('shows the hostile C program as a wasi:cli/command for `warden tool run`', async () => {
    const inspection = await inspectJson(join(PACKAGE_ROOT, 'test/security/guests/hostile.wasm'));
    expect(inspection.kind).toBe('command');
    expect(inspection.exports.map((e) => e.name)).toEqual(['wasi:cli/run@0.2.12']);
    expect(inspection.verdict).toContain('warden tool run');
  });

  it('marks an import the kernel does not provide unknown and says the kernel would refuse it, as the engine does', async () => {
    const inspection = await inspectJson(shellTool);
    expect(inspection.loadable).toBe(false);
    expect(inspection.unknownImports).toEqual(['test:guest/shell']);
    expect(inspection.imports.find((i) => i.name === 'test:guest/shell')).toMatchObject({ known: false, functions: ['run'] });
    const text = await warden(['inspect', shellTool]);
    expect(text.stdout).toMatch(/UNKNOWN +test:guest\/shell/);
    expect(text.stdout).toContain('the kernel would refuse it (E_UNKNOWN_IMPORT)');
    // The engine the kernel loads with refuses exactly what inspect marked unknown.
    await expect(new Engine(tempDir('engine-cache')).load(shellTool)).rejects.toMatchObject({ code: 'E_UNKNOWN_IMPORT', detail: { unknown: ['test:guest/shell'] } });
  });

  it('says a core module is not a component and how to make one', async () => {
    const core = join(tempDir('core'), 'module.wasm');
    writeFileSync(core, Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]));
    const result = await warden(['inspect', core]);
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^warden: .*module\.wasm is a WebAssembly core module, not a component: wrap it with `wasm-tools component new /);
    expect(result.stderr).toContain('preview1 adapter');
  });

  it('gives one clear line for a file that is not WebAssembly, a missing file, a directory and a broken component', async () => {
    const broken = join(tempDir('broken'), 'broken.wasm');
    writeFileSync(broken, Buffer.concat([Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]), Buffer.from('garbage')]));
    const cases: Array<[string, RegExp]> = [
      [join(PACKAGE_ROOT, 'package.json'), /is not WebAssembly: it does not start with the bytes \\0asm/],
      [join(tempDir('none'), 'missing.wasm'), /missing\.wasm: no such file/],
      [PACKAGE_ROOT, /is a directory, not a \.wasm file/],
      [broken, /broken\.wasm is not a valid component: /],
    ];
    for (const [file, message] of cases) {
      const result = await warden(['inspect', file]);
      expect(result.status).toBe(1);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
      expect(result.stderr).toMatch(message);
    }
  });
});

async function testComponent(args: string[]): Promise<{ status: number; report: ConformanceReport; stderr: string }> {
  const result = await warden(['test-component', ...args, '--json']);
  expect(result.stderr).toBe('');
  return { status: result.status, report: JSON.parse(result.stdout) as ConformanceReport, stderr: result.stderr };
}

function check(report: ConformanceReport, name: string | RegExp) {
  const found = report.checks.find((c) => (typeof name === 'string' ? c.name === name : name.test(c.name)));
  expect(found, `check ${String(name)} in ${report.checks.map((c) => c.name).join(', ')}`).toBeDefined();
  return found!;
}

describe('warden test-component', () => {
  it.each(['read-file', 'list-files', 'line-count', 'write-file'])('passes the built-in tool %s (default workspace holding example.txt)', async (name) => {
    const file = name === 'line-count' ? join(PACKAGE_ROOT, 'components/line-count/line-count.wasm') : join(BUILT, `${name}.wasm`);
    const { status, report } = await testComponent([file, '--manifest', join(PACKAGE_ROOT, 'components', name, 'manifest.json')]);
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(status).toBe(0);
    expect(report.ok).toBe(true);
    // A built-in's own build runs as the built-in; another file of it is pinned under another name.
    expect(report.component).toMatchObject({ name: name === 'line-count' ? 'line-count-under-test' : name, kind: 'tool', inputs: expect.stringContaining('synthesized') });
    expect(check(report, 'describe').detail).toContain(`name "${name}"`);
    expect(check(report, 'malformed: not JSON').detail).toMatch(/^err invalid-input/);
    for (const c of report.checks.filter((c) => c.name !== 'load')) {
      expect(c.ms).toBeGreaterThanOrEqual(0);
      // Measured per call: at least the memory the component starts with, a whole number of
      // 64 KiB pages, and within the cap of each of its core memories.
      expect(c.memoryBytes, c.name).toBeGreaterThanOrEqual(report.component.memory.initialBytes);
      expect(c.memoryBytes! % 65_536, c.name).toBe(0);
    }
    if (name === 'read-file') expect(check(report, /^example 1/).detail).toMatch(/→ ok, \d+ bytes: 1 example 2 second line/);
  }, 300_000);

  it('passes grep against the workspace given with --dir, and prints a table with a summary line', async () => {
    const dir = workspace({ 'notes.txt': 'an example line\n' });
    const args = [join(BUILT, 'grep.wasm'), '--manifest', join(PACKAGE_ROOT, 'components/grep/manifest.json'), '--dir', dir];
    const { status, report } = await testComponent(args);
    expect(status).toBe(0);
    expect(check(report, /^example 1/).detail).toContain('notes.txt:1:an example line');
    expect(check(report, 'malformed: missing required "pattern"').ok).toBe(true);
    const text = await warden(['test-component', ...args]);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^describe +PASS +\d+ +\d+(\.\d+)? MiB +name "grep"/m);
    expect(text.stdout).toMatch(/^\d+ checks: \d+ passed, 0 failed, 0 skipped — PASS$/m);
    expect(text.stdout).toContain('per call: the linear memory of the instance that served it');
  }, 300_000);

  it('skips describe and the run of an agent that needs a model, saying why', async () => {
    const { status, report } = await testComponent([join(BUILT, 'coder.wasm'), '--manifest', join(PACKAGE_ROOT, 'components/coder/manifest.json')]);
    expect(status).toBe(0);
    expect(check(report, 'load').ok).toBe(true);
    expect(check(report, 'describe')).toMatchObject({ ok: true, skipped: true, detail: expect.stringContaining('there is no describe') });
    expect(check(report, 'run')).toMatchObject({ ok: true, skipped: true, detail: expect.stringContaining('warden:kernel/inference') });
  }, 300_000);

  it('fails the load of a component with an unknown import, with the registry\'s reason', async () => {
    const { status, report } = await testComponent([shellTool]);
    expect(status).toBe(1);
    expect(report.ok).toBe(false);
    expect(report.checks).toHaveLength(1);
    expect(report.checks[0]).toMatchObject({ name: 'load', ok: false, detail: expect.stringContaining('E_UNKNOWN_IMPORT') });
  }, 120_000);

  describe('deliberately broken tools fail the right checks with exit 1', () => {
    const SCHEMA = JSON.stringify(JSON.stringify({ type: 'object', properties: { path: { type: 'string', examples: ['example.txt'] } }, required: ['path'] }));
    /** Build a tool and write a manifest next to it (found without --manifest). */
    async function broken(name: string, source: string): Promise<string> {
      const wasm = await buildTool(name, source);
      writeFileSync(join(dirname(wasm), 'manifest.json'), JSON.stringify({ name, version: '0.0.1', kind: 'tool', requests: { filesystem: 'session:ro' } }));
      return wasm;
    }

    it('a tool that traps on bad input fails every malformed-input check, not describe or its example', async () => {
      const wasm = await broken('trapper', `
        export const tool = {
          describe() { return { name: 'trapper', description: 'traps on bad input', inputSchema: ${SCHEMA} }; },
          call(input) { const args = JSON.parse(input); return 'length ' + args.path.length.toFixed(0); },
        };`);
      const { status, report } = await testComponent([wasm]);
      expect(status).toBe(1);
      expect(report.component.manifest).toBe(join(dirname(wasm), 'manifest.json'));
      expect(report.component.inputs).toContain('"examples"/"default" of path');
      expect(check(report, 'describe').ok).toBe(true);
      expect(check(report, /^example 1/)).toMatchObject({ ok: true, detail: expect.stringContaining('ok, 9 bytes: length 11') });
      const malformed = report.checks.filter((c) => c.name.startsWith('malformed:'));
      expect(malformed.length).toBeGreaterThanOrEqual(4);
      for (const c of malformed) expect(c, c.name).toMatchObject({ ok: false, detail: expect.stringMatching(/^trapped: /) });
    }, 300_000);

    it('a tool that never returns fails its calls at the --timeout-ms deadline', async () => {
      const wasm = await broken('sleeper', `
        export const tool = {
          describe() { return { name: 'sleeper', description: 'never answers', inputSchema: ${SCHEMA} }; },
          call(input) { for (;;) {} },
        };`);
      const started = Date.now();
      const { status, report } = await testComponent([wasm, '--timeout-ms', '1500']);
      expect(status).toBe(1);
      expect(check(report, 'describe').ok).toBe(true);
      const calls = report.checks.filter((c) => c.name.startsWith('example') || c.name.startsWith('malformed:'));
      expect(calls.length).toBeGreaterThanOrEqual(3);
      for (const c of calls) {
        // Either the call itself ran out of time, or (the worker it looped in being replaced)
        // no fresh worker was in service before its deadline: a timeout both ways, never an answer.
        expect(c, c.name).toMatchObject({ ok: false, detail: expect.stringMatching(/(^|→ )no answer before the deadline: E_LIMIT_TIME: sleeper(\.call did not answer| had no worker in service within)/) });
        expect(c.ms).toBeGreaterThanOrEqual(1400);
      }
      expect(Date.now() - started).toBeLessThan(200_000);
    }, 300_000);

    it('a tool whose describe gives an input schema that is not JSON fails describe and nothing its calls got right', async () => {
      const wasm = await broken('garbled', `
        export const tool = {
          describe() { return { name: 'garbled', description: 'bad schema', inputSchema: '{"type": "object", ' }; },
          call(input) {
            let args;
            try { args = JSON.parse(input); } catch { throw { tag: 'invalid-input', val: 'not JSON' }; }
            if (!args || typeof args !== 'object' || Array.isArray(args)) throw { tag: 'invalid-input', val: 'not an object' };
            return 'fine';
          },
        };`);
      const { status, report } = await testComponent([wasm]);
      expect(status).toBe(1);
      expect(check(report, 'describe')).toMatchObject({ ok: false, detail: expect.stringMatching(/^inputSchema is not JSON: /) });
      expect(check(report, /^example 1/)).toMatchObject({ ok: true, detail: expect.stringContaining('→ ok, 4 bytes: fine') });
      expect(check(report, 'malformed: not JSON')).toMatchObject({ ok: true, detail: 'err invalid-input: not JSON' });
      expect(check(report, 'malformed: a JSON array, not an object').ok).toBe(true);
      expect(report.checks.filter((c) => !c.ok).map((c) => c.name)).toEqual(['describe']);
    }, 300_000);
  });
});
