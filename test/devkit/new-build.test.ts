// `warden new` and `warden build [--watch]` as an author meets them: the built CLI run as a child
// process in a temporary directory. A scaffolded tool and agent build and pass their own tests
// (`node --test`, which loads the .wasm in a real kernel through `warden/testing`); build errors
// point at file, line and column; `--watch` rebuilds, survives a broken build and re-pins each good
// build in a data directory. The in-repo layout is checked in-process on a stand-in checkout.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, readlinkSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import ts from 'typescript';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import { newComponent } from '../../kernel/devkit/scaffold.js';
import { tempDir } from '../support/fixtures.js';

const warden = join(PACKAGE_ROOT, 'bin/warden.js');

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], cwd: string, timeout = 240_000): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, timeout, env: { ...process.env, NODE_OPTIONS: '' } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr });
    });
  });
}

const cli = (args: string[], cwd: string) => run(process.execPath, [warden, ...args], cwd);

const BUILT_LINE = /^built (\S+) 0\.1\.0 → dist\/\1\.wasm \((\d+\.\d\d) MiB, sha256 ([0-9a-f]{12})…\) in (\d+) ms$/m;

/** A copy of a scaffolded component's sources (no node_modules, no dist). */
function copySources(from: string, to: string): string {
  cpSync(from, to, { recursive: true, filter: (src) => !/\/(node_modules|dist)(\/|$)/.test(src.slice(from.length)) });
  return to;
}

// Each componentize takes seconds and each kernel start more on a loaded machine; no step here may take these long.
const SLOW = { timeout: 600_000 };

let root: string;

beforeAll(() => {
  root = tempDir('devkit');
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

describe('warden new tool, then warden build, then node --test', () => {
  let hello: string;

  it('scaffolds ./hello with its source, manifest, test, README and a link to this checkout', SLOW, async () => {
    const made = await cli(['new', 'tool', 'hello'], root);
    expect(made.stderr).toBe('');
    expect(made.code).toBe(0);
    hello = join(root, 'hello');
    expect(made.stdout).toMatch(/^created tool hello in hello\/ in \d+ ms:/);
    expect(made.stdout).toContain('cd hello && warden build && node --test');
    for (const file of ['index.ts', 'manifest.json', 'hello.test.mjs', 'tsconfig.json', 'package.json', 'README.md']) {
      expect(existsSync(join(hello, file)), file).toBe(true);
    }
    expect(realpathSync(join(hello, 'node_modules/warden'))).toBe(realpathSync(PACKAGE_ROOT));
    expect(readlinkSync(join(hello, 'node_modules/.bin/warden'))).toBe('../warden/bin/warden.js');
    const manifest = JSON.parse(readFileSync(join(hello, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ name: 'hello', kind: 'tool', requests: { filesystem: 'session:ro' } });
    expect(Object.keys(manifest.requests)).toEqual(['filesystem']);
    expect(JSON.parse(readFileSync(join(hello, 'package.json'), 'utf8'))).toMatchObject({ type: 'module', scripts: { build: 'warden build', test: 'node --test' } });
    const readme = readFileSync(join(hello, 'README.md'), 'utf8');
    expect(readme).toContain('npx warden component add dist/hello.wasm --name hello --manifest manifest.json --data-dir DATA_DIR');
    expect(readme).toContain('{ "grants": { "hello": {"filesystem":"session:ro"} } }');
  });

  it('refuses a taken directory, a bad name, a built-in\'s name and an unknown kind, with exit code 2', SLOW, async () => {
    const again = await cli(['new', 'tool', 'hello'], root);
    expect(again).toMatchObject({ code: 2, stdout: '' });
    expect(again.stderr).toMatch(/^warden: hello exists already; choose another name or move it away \(nothing was written\)\n$/);
    const bad = await cli(['new', 'tool', 'Hello_World'], root);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^warden: "Hello_World": a component name is lower-case kebab-case/);
    const builtin = await cli(['new', 'tool', 'read-file'], root);
    expect(builtin.code).toBe(2);
    expect(builtin.stderr).toContain('read-file: Warden has a built-in component or folder of that name');
    const kind = await cli(['new', 'widget', 'w'], root);
    expect(kind.code).toBe(2);
    expect(kind.stderr).toContain('widget: `warden new` makes a tool or an agent');
    expect(existsSync(join(root, 'Hello_World'))).toBe(false);
    expect(existsSync(join(root, 'w'))).toBe(false);
  });

  it('builds dist/hello.wasm and prints its size, sha256 and the time taken', SLOW, async () => {
    const built = await cli(['build'], hello);
    expect(built.stderr).toBe('');
    expect(built.code).toBe(0);
    const [, name, mib, sha, ms] = BUILT_LINE.exec(built.stdout) ?? [];
    expect(name).toBe('hello');
    const bytes = readFileSync(join(hello, 'dist/hello.wasm'));
    expect(Number(mib)).toBeCloseTo(bytes.length / 2 ** 20, 2);
    expect(createHash('sha256').update(bytes).digest('hex').slice(0, 12)).toBe(sha);
    expect(Number(ms)).toBeGreaterThan(0);
  });

  it('its own test passes: node --test loads the wasm in a real kernel and calls it', SLOW, async () => {
    const tested = await run(process.execPath, ['--test'], hello);
    expect(tested.stdout).toMatch(/^# pass 3$/m);
    expect(tested.stdout).toMatch(/^# fail 0$/m);
    expect(tested.code).toBe(0);
  });

  it('its tsconfig.json finds every host function through warden/types/tool-component', SLOW, async () => {
    // What an editor does: the project's own tsconfig, the guest types resolved through the link.
    const checked = await run(process.execPath, [join(PACKAGE_ROOT, 'node_modules/typescript/bin/tsc'), '-p', '.'], hello);
    expect(checked.stdout).toBe('');
    expect(checked.code).toBe(0);
  });

  describe('build errors', () => {
    let broken: string;

    beforeAll(() => {
      broken = copySources(hello, join(root, 'broken'));
    });

    it('a type error against the WIT points at its line and column, exit code 1', SLOW, async () => {
      const source = readFileSync(join(hello, 'index.ts'), 'utf8').split('\n');
      const at = source.findIndex((l) => l.includes('const bytes = readFile(path);'));
      // read() takes u64 offsets: a string where the WIT says u64 is a type error.
      source[at] = "    const bytes = readFile(path); getDirectories()[0]![0].read(1 as unknown as bigint, 'start');";
      writeFileSync(join(broken, 'index.ts'), source.join('\n'));
      const built = await cli(['build'], broken);
      expect(built.code).toBe(1);
      const column = source[at]!.indexOf("'start'") + 1;
      expect(built.stderr).toContain(`index.ts:${at + 1}:${column}: error TS2345: Argument of type 'string' is not assignable to parameter of type 'bigint'.`);
      expect(built.stderr).toMatch(/\nwarden: build failed: 1 error\n$/);
      expect(existsSync(join(broken, 'dist'))).toBe(false);
    });

    it('a missing export is one sentence naming the export the world expects (and JSON with --json)', SLOW, async () => {
      writeFileSync(join(broken, 'index.ts'), readFileSync(join(hello, 'index.ts'), 'utf8').replace('export const tool = {', 'export const tol = {'));
      const built = await cli(['build'], broken);
      expect(built.code).toBe(1);
      expect(built.stderr).toContain(
        'index.ts:1:1: error: world tool-component expects index.ts to export `tool` (interface warden:kernel/tool@0.1.0: an object with describe(), call(input)), but index.ts exports `tol`',
      );
      const json = await cli(['build', '--json'], broken);
      expect(json.code).toBe(1);
      expect(JSON.parse(json.stdout)).toEqual({
        errors: [{ file: 'index.ts', line: 1, column: 1, message: expect.stringContaining('expects index.ts to export `tool`') }],
      });
    });

    it('a syntax error in the component\'s own wit/ names the file, line and column', SLOW, async () => {
      writeFileSync(join(broken, 'index.ts'), readFileSync(join(hello, 'index.ts'), 'utf8'));
      mkdirSync(join(broken, 'wit'));
      writeFileSync(join(broken, 'wit/world.wit'), [
        'package my:hello@0.1.0;',
        '',
        'world tool-component {',
        '  include warden:kernel/tool-component@0.1.0',
        '  export extra: func() -> string;',
        '}',
        '',
      ].join('\n'));
      const built = await cli(['build'], broken);
      expect(built.code).toBe(1);
      expect(built.stderr).toContain("wit/world.wit:5:3: error: WIT: expected ';', found keyword `export`");
    });
  });
});

describe('warden new agent, then warden build, then node --test', () => {
  it('scaffolds an agent that asks for inference, the session and read-file only, builds, and passes its test against a scripted model', SLOW, async () => {
    const made = await cli(['new', 'agent', 'helper'], root);
    expect(made.code).toBe(0);
    const helper = join(root, 'helper');
    expect(JSON.parse(readFileSync(join(helper, 'manifest.json'), 'utf8')).requests).toEqual({ filesystem: 'session:ro', mesh: ['read-file'], inference: ['*'] });
    expect(readFileSync(join(helper, 'helper.test.mjs'), 'utf8')).toContain("import { startKernelWith, startScriptedModel } from 'warden/testing';");
    const built = await cli(['build'], helper);
    expect(built.code).toBe(0);
    expect(BUILT_LINE.exec(built.stdout)?.[1]).toBe('helper');
    const tested = await run(process.execPath, ['--test'], helper);
    expect(tested.stdout).toMatch(/^# pass 1$/m);
    expect(tested.code).toBe(0);
  });
});

describe('warden build --watch --add', () => {
  let child: ChildProcess | undefined;

  afterAll(() => {
    child?.kill('SIGKILL');
  });

  it('rebuilds on change, keeps watching through a failed build, and re-pins every good build in the data directory', SLOW, async () => {
    const dir = copySources(join(root, 'hello'), join(root, 'watched'));
    const dataDir = join(root, 'data');
    const out = { stdout: '', stderr: '' };
    child = spawn(process.execPath, [warden, 'build', '--watch', '--add', '--data-dir', dataDir], { cwd: dir, env: { ...process.env, NODE_OPTIONS: '' } });
    child.stdout!.on('data', (b: Buffer) => (out.stdout += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (out.stderr += b.toString()));
    const exited = new Promise<number | null>((resolve) => child!.on('exit', (code) => resolve(code)));

    const builds = () => [...out.stdout.matchAll(new RegExp(BUILT_LINE.source, 'gm'))].map((m) => m[3]!);
    const pins = () => [...out.stdout.matchAll(/^pinned hello sha256 ([0-9a-f]{12})… in \S+: a running kernel reloads it$/gm)].map((m) => m[1]!);
    const pinned = () => {
      const db = new Database(join(dataDir, 'warden.db'), { readonly: true });
      try {
        return (db.prepare('SELECT sha256 FROM pins WHERE name = ?').get('hello') as { sha256: string }).sha256;
      } finally {
        db.close();
      }
    };
    const until = async (what: string, ok: () => boolean, ms = 300_000) => {
      const end = Date.now() + ms;
      while (!ok()) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}\nstdout:\n${out.stdout}\nstderr:\n${out.stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };

    await until('the first pin', () => pins().length === 1);
    expect(out.stderr).toContain('warden: watching this directory');
    expect(builds()).toHaveLength(1);
    expect(pinned().slice(0, 12)).toBe(builds()[0]);

    const source = readFileSync(join(dir, 'index.ts'), 'utf8');
    writeFileSync(join(dir, 'index.ts'), source.replace('of a text file of the session.', 'of a text file of the session (v2).'));
    await until('the second pin', () => pins().length === 2);
    expect(builds()).toHaveLength(2);
    expect(builds()[1]).not.toBe(builds()[0]);
    expect(pinned().slice(0, 12)).toBe(builds()[1]);

    const lines = source.split('\n');
    const at = lines.findIndex((l) => l.includes('const lines = bytes.reduce'));
    lines.splice(at, 0, "    const broken: number = 'not a number';");
    writeFileSync(join(dir, 'index.ts'), lines.join('\n'));
    await until('the type error', () => out.stderr.includes('warden: still watching'));
    expect(out.stderr).toContain(`index.ts:${at + 1}:11: error TS2322: Type 'string' is not assignable to type 'number'.`);
    expect(child.exitCode).toBeNull();

    writeFileSync(join(dir, 'index.ts'), source.replace('of a text file of the session.', 'of a text file of the session (v3).'));
    await until('the third pin', () => pins().length === 3);
    expect(new Set(builds()).size).toBe(3);
    expect(pinned().slice(0, 12)).toBe(builds()[2]);

    child.kill('SIGINT');
    expect(await exited).toBe(0);

    // Without --watch or --add: a component pinned there already is pinned again, here for a
    // manifest change alone (same bytes, new manifest: a running kernel reloads that too).
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ ...manifest, description: 'changed in the manifest only' }));
    const once = await cli(['build', '--data-dir', dataDir], dir);
    expect(once.code).toBe(0);
    const sha = BUILT_LINE.exec(once.stdout)?.[3];
    expect(once.stdout).toContain(`pinned hello sha256 ${sha}… in `);
    const db = new Database(join(dataDir, 'warden.db'), { readonly: true });
    const pin = db.prepare('SELECT sha256, manifest FROM pins WHERE name = ?').get('hello') as { sha256: string; manifest: string };
    db.close();
    expect(pin.sha256.slice(0, 12)).toBe(sha);
    expect(JSON.parse(pin.manifest).description).toBe('changed in the manifest only');
  });
});

describe('warden new inside the Warden checkout', () => {
  it('makes components/NAME/ like the built-ins and a vitest test in test/components/, nothing else', SLOW, () => {
    const checkout = tempDir('checkout');
    mkdirSync(join(checkout, 'components'));
    const made = newComponent({ kind: 'tool', name: 'word-stats', parent: join(checkout, 'components'), repoRoot: checkout });
    expect(made.inRepo).toBe(true);
    expect(made.files.map((f) => f.slice(checkout.length + 1)).sort()).toEqual([
      'components/word-stats/index.ts', 'components/word-stats/manifest.json', 'test/components/word-stats.test.ts',
    ]);
    // The checkout itself as the parent means the same.
    const agent = newComponent({ kind: 'agent', name: 'asker', parent: checkout, repoRoot: checkout });
    expect(agent.dir).toBe(join(checkout, 'components/asker'));
    expect(() => newComponent({ kind: 'tool', name: 'word-stats', parent: checkout, repoRoot: checkout })).toThrow(/components\/word-stats exists already|word-stats: Warden has a built-in/);
    rmSync(checkout, { recursive: true, force: true });
  });

  it('the vitest test it writes typechecks where it would live, against the kernel\'s testing module', SLOW, () => {
    const checkout = tempDir('checkout');
    mkdirSync(join(checkout, 'components'));
    const tool = readFileSync(newComponent({ kind: 'tool', name: 'word-stats', parent: checkout, repoRoot: checkout }).files[2]!, 'utf8');
    const agent = readFileSync(newComponent({ kind: 'agent', name: 'asker', parent: checkout, repoRoot: checkout }).files[2]!, 'utf8');
    rmSync(checkout, { recursive: true, force: true });
    // Checked as if at test/components/ of this repository, without writing there (others work in it).
    const virtual = new Map([[join(PACKAGE_ROOT, 'test/components/word-stats.test.ts'), tool], [join(PACKAGE_ROOT, 'test/components/asker.test.ts'), agent]]);
    const config = ts.parseJsonConfigFileContent(ts.readConfigFile(join(PACKAGE_ROOT, 'tsconfig.json'), ts.sys.readFile).config, ts.sys, PACKAGE_ROOT);
    const host = ts.createCompilerHost({ ...config.options, noEmit: true });
    const getSourceFile = host.getSourceFile.bind(host);
    host.getSourceFile = (name, version, ...rest) => (virtual.has(name) ? ts.createSourceFile(name, virtual.get(name)!, version) : getSourceFile(name, version, ...rest));
    const fileExists = host.fileExists.bind(host);
    host.fileExists = (name) => virtual.has(name) || fileExists(name);
    const program = ts.createProgram({ rootNames: [...virtual.keys()], options: { ...config.options, noEmit: true }, host });
    const problems = ts.getPreEmitDiagnostics(program).map((d) => `${d.file?.fileName}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`);
    expect(problems).toEqual([]);
  });
});
