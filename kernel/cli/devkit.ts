/**
 * `warden new tool|agent NAME` and `warden build [DIR] [--watch]`: the component developer kit.
 * Exit codes: 0 done, 1 build or type errors (each printed as `FILE:LINE:COL: error …`), 2 a
 * usage error (bad kind or name, an existing directory, a directory that is no component).
 */
import { Option, type Command } from 'commander';
import { join, relative } from 'node:path';
import { isWardenError, messageOf } from '../errors.js';
import type { BuildResult } from '../devkit/build.js';
import type { NewKind, NewResult } from '../devkit/scaffold.js';
import type { BuildError } from '../devkit/typecheck.js';
import type { PinReport } from '../devkit/watch.js';

// Loaded when a command runs: TypeScript, esbuild and componentize-qjs would slow every `warden` start.
const devkit = async () => ({
  ...(await import('../devkit/build.js')),
  ...(await import('../devkit/typecheck.js')),
  ...(await import('../devkit/watch.js')),
});

function fail(err: unknown, code: number): never {
  process.stderr.write(`warden: ${messageOf(err)}\n`);
  process.exit(code);
}

/** Commander's own usage errors exit 2 (help and version 0). */
function usageExit(command: Command): Command {
  return command.exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));
}

/** `1.57 MiB` */
function mebibytes(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(2)} MiB`;
}

/** A path for the person at the terminal: relative to the working directory when that is shorter. */
function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && rel.length < path.length ? rel : path;
}

function builtLine(r: BuildResult): string {
  return `built ${r.name} ${r.version} → ${shown(r.file)} (${mebibytes(r.size)}, sha256 ${r.sha256.slice(0, 12)}…) in ${r.ms} ms`;
}

function pinnedLine(p: PinReport): string {
  return p.unchanged
    ? `pinned ${p.name} sha256 ${p.sha256.slice(0, 12)}… in ${shown(p.dataDir)} already: nothing to reload`
    : `pinned ${p.name} sha256 ${p.sha256.slice(0, 12)}… in ${shown(p.dataDir)}: a running kernel reloads it`;
}

const builtJson = (r: BuildResult) => ({ name: r.name, version: r.version, kind: r.kind, file: r.file, size: r.size, sha256: r.sha256, ms: r.ms });

interface BuildOptions {
  watch?: boolean;
  add?: boolean;
  dataDir: string;
  json?: boolean;
}

/**
 * Report a failure of a build: its errors (file names as the user typed the directory) and
 * exit code 1, or one line and exit code 2 for a directory that holds no component.
 */
function reportFailure(kit: Awaited<ReturnType<typeof devkit>>, err: unknown, dir: string, json: boolean): 1 | 2 {
  const errors: BuildError[] | null = kit.buildErrorsOf(err);
  const usage = !errors && isWardenError(err, 'E_NOT_FOUND');
  const located = (errors ?? []).map((e) => ({ ...e, file: join(dir, e.file) }));
  if (json && !usage) {
    const list = errors ? located : [{ file: dir, line: 1, column: 1, message: messageOf(err) }];
    process.stdout.write(`${JSON.stringify({ errors: list })}\n`);
  } else if (errors) {
    for (const e of located) process.stderr.write(`${kit.formatBuildError(e)}\n`);
    process.stderr.write(`warden: build failed: ${errors.length} error${errors.length === 1 ? '' : 's'}\n`);
  } else {
    process.stderr.write(`warden: ${messageOf(err)}\n`);
  }
  return usage ? 2 : 1;
}

async function buildOnce(dir: string, opts: BuildOptions): Promise<never> {
  const kit = await devkit();
  let result: BuildResult;
  try {
    result = await kit.buildComponent(dir);
  } catch (err) {
    process.exit(reportFailure(kit, err, dir, opts.json ?? false));
  }
  process.stdout.write(opts.json ? `${JSON.stringify(builtJson(result))}\n` : `${builtLine(result)}\n`);
  try {
    const pin = await kit.repin(result, join(dir, 'manifest.json'), opts.dataDir, opts.add ?? false);
    if (pin) process.stdout.write(opts.json ? `${JSON.stringify({ pinned: pin })}\n` : `${pinnedLine(pin)}\n`);
  } catch (err) {
    fail(`built, but pinning in ${opts.dataDir} failed: ${messageOf(err)}`, 1);
  }
  process.exit(0);
}

async function buildAndWatch(dir: string, opts: BuildOptions): Promise<void> {
  const kit = await devkit();
  const json = opts.json ?? false;
  const stop = kit.watchComponent(dir, { dataDir: opts.dataDir, add: opts.add ?? false }, {
    built: (r) => process.stdout.write(json ? `${JSON.stringify(builtJson(r))}\n` : `${builtLine(r)}\n`),
    pinned: (p) => process.stdout.write(json ? `${JSON.stringify({ pinned: p })}\n` : `${pinnedLine(p)}\n`),
    failed: (err) => {
      if (kit.buildErrorsOf(err) || isWardenError(err, 'E_NOT_FOUND')) reportFailure(kit, err, dir, json);
      else process.stderr.write(`warden: ${messageOf(err)}\n`);
      if (!json) process.stderr.write('warden: still watching; fix it and save\n');
    },
  });
  process.stderr.write(`warden: watching ${dir === '.' ? 'this directory' : dir} (its .ts files, manifest.json, wit/); Ctrl-C stops\n`);
  const exit = () => {
    stop();
    process.exit(0);
  };
  process.on('SIGINT', exit);
  process.on('SIGTERM', exit);
}

/** Add `new` and `build` to `program`. */
export function registerDevkitCommands(program: Command): void {
  usageExit(
    program
      .command('new')
      .description('scaffold a component in TypeScript: ./NAME/ (index.ts, manifest.json, a test, README.md, tsconfig.json, package.json), or components/NAME/ inside the Warden checkout')
      .argument('<kind>', 'tool or agent')
      .argument('<name>', 'lower-case kebab-case, e.g. word-count')
      .option('--dir <dir>', 'create it in DIR/NAME/ (the Warden checkout or its components/: components/NAME/ with a test in test/components/)', '.')
      .option('--json', 'print {kind, name, dir, inRepo, files, ms} as JSON')
      .action(async (kind: string, name: string, opts: { dir: string; json?: boolean }) => {
        if (kind !== 'tool' && kind !== 'agent') {
          fail(`${kind}: \`warden new\` makes a tool or an agent (a supervisor is written by hand: see docs/components.md)`, 2);
        }
        let result: NewResult;
        try {
          result = (await import('../devkit/scaffold.js')).newComponent({ kind: kind as NewKind, name, parent: opts.dir });
        } catch (err) {
          fail(err, 2);
        }
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
          return;
        }
        const where = shown(result.dir);
        const lines = [`created ${kind} ${name} in ${where}/ in ${result.ms} ms:`, ...result.files.map((f) => `  ${shown(f)}`), ''];
        if (result.inRepo) {
          lines.push('next:', '  npm run build', `  npx vitest run test/components/${name}.test.ts`);
        } else {
          lines.push('next:', `  cd ${where} && warden build && node --test`, '  (without warden on your PATH: npx warden build; npm test)', `then see ${where}/README.md to add it to a kernel`);
        }
        process.stdout.write(`${lines.join('\n')}\n`);
      }),
  );

  usageExit(
    program
      .command('build')
      .description('build a component directory (index.ts + manifest.json): typecheck against its world, bundle, componentize-qjs; writes dist/NAME.wasm')
      .argument('[dir]', 'the component directory', '.')
      .option('--watch', 'rebuild on every change of its .ts files, manifest.json or wit/; a failed build keeps watching')
      .option('--add', 'pin every good build in --data-dir even when it is not pinned there yet (`warden component add`)')
      .addOption(new Option('--data-dir <dir>', 'data directory whose pin of this component each good build replaces (a running kernel reloads it)').default('.warden'))
      .option('--json', 'print {name, version, kind, file, size, sha256, ms} or {errors: [{file, line, column, message}]} (with --watch: one line per build)')
      .action(async (dir: string, opts: BuildOptions) => {
        if (opts.watch) await buildAndWatch(dir, opts);
        else await buildOnce(dir, opts);
      }),
  );
}
