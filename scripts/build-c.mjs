#!/usr/bin/env node
// Rebuilds the C components from source (`npm run build:c`) with Debian's clang-16 + wasi-libc:
//   components/line-count/line-count.c  → line-count.wasm  (a Warden tool, world tool-component,
//                                          preview1 reactor adapter)
//   test/security/guests/hostile.c      → hostile.wasm     (a wasi:cli/command, command adapter,
//                                          world hostile in hostile.wit)
//   test/vfs/guests/fsconf.c            → fsconf.wasm      (a wasi:cli/command exercising wasi:filesystem
//                                          through C stdio/POSIX, command adapter, world fsconf)
//   bench/guests/echo.c                 → echo.wasm        (the echo tool of bench/mesh.ts, world
//                                          tool-component, no WASI: the adapter goes unused)
//   bench/guests/caller.c               → caller.wasm      (the caller tool of bench/mesh.ts, world
//                                          caller-c in bench/guests/c-guests.wit, imports the mesh
//                                          and the monotonic clock directly)
//   test/mesh/guests/residue.c         → residue.wasm     (a tool that reads back its zero-initialised
//                                          static memory: recycled memories start clean; no WASI)
// The .wasm files are committed, so `npm install` needs no C toolchain; without one this script
// says so and exits 0. Needs wit/deps (created by `npm run build`).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLANG = 'clang-16';
// clang 16 predates the `wasm32-wasip1` triple; `wasm32-wasi` is the same target (WASI preview 1).
const TARGET = '--target=wasm32-wasi';
const COMPILE = ['-O2', '-Wall', '-Wextra'];
// --stack-first: a stack overflow runs below address 0 and traps instead of overwriting data.
const LINK = ['-Wl,--strip-debug', '-Wl,--stack-first'];
const ADAPTERS = join(root, 'node_modules/@bytecodealliance/jco/lib');

const OUTPUTS = [
  {
    source: 'components/line-count/line-count.c',
    wasm: 'components/line-count/line-count.wasm',
    // A reactor without crt1-reactor.o: wit-component would call its `_initialize` during
    // instantiation, before the kernel attaches a session; line-count.c runs its constructors on
    // its first call instead.
    link: ['-mexec-model=reactor', '-nostartfiles', '-Wl,--no-entry'],
    adapter: 'reactor',
    wit: 'wit',
    world: 'tool-component',
  },
  {
    source: 'test/security/guests/hostile.c',
    wasm: 'test/security/guests/hostile.wasm',
    link: ['-mexec-model=command'],
    adapter: 'command',
    wit: 'test/security/guests/hostile.wit',
    world: 'hostile',
  },
  {
    source: 'test/vfs/guests/fsconf.c',
    wasm: 'test/vfs/guests/fsconf.wasm',
    link: ['-mexec-model=command'],
    adapter: 'command',
    wit: 'test/vfs/guests/fsconf.wit',
    world: 'fsconf',
  },
  // The C guests of bench/mesh.ts. Reactors like line-count; they use no WASI and run no
  // constructors, so the core module imports nothing from wasi_snapshot_preview1 and
  // wit-component leaves the adapter out.
  {
    source: 'bench/guests/echo.c',
    wasm: 'bench/guests/echo.wasm',
    link: ['-mexec-model=reactor', '-nostartfiles', '-Wl,--no-entry'],
    adapter: 'reactor',
    wit: 'wit',
    world: 'tool-component',
  },
  {
    source: 'bench/guests/caller.c',
    wasm: 'bench/guests/caller.wasm',
    link: ['-mexec-model=reactor', '-nostartfiles', '-Wl,--no-entry'],
    adapter: 'reactor',
    wit: 'bench/guests/c-guests.wit',
    world: 'caller-c',
  },
  {
    source: 'test/mesh/guests/residue.c',
    wasm: 'test/mesh/guests/residue.wasm',
    link: ['-mexec-model=reactor', '-nostartfiles', '-Wl,--no-entry'],
    adapter: 'reactor',
    wit: 'wit',
    world: 'tool-component',
  },
];

const say = (msg) => console.log(`[warden build:c] ${msg}`);
const skip = (why) => {
  say(`skipped: ${why} — using the committed .wasm`);
  process.exit(0);
};

/** The missing piece of the toolchain, or null when clang-16 can link a wasm32-wasi program. */
function missingToolchain() {
  const ask = (...args) => {
    try {
      return execFileSync(CLANG, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return null;
    }
  };
  if (ask('--version') === null) return `${CLANG} not found`;
  const libc = ask(TARGET, '-print-file-name=libc.a');
  if (!libc || !existsSync(libc)) return 'wasi-libc not found (apt install wasi-libc)';
  const builtins = ask(TARGET, '-print-libgcc-file-name');
  if (!builtins || !existsSync(builtins)) return 'clang runtime for wasm32 not found (apt install libclang-rt-16-dev-wasm32)';
  return null;
}

const missing = missingToolchain();
if (missing) skip(missing);
if (!existsSync(join(root, 'wit/deps/cli/package.wit'))) {
  console.error('[warden build:c] wit/deps is missing: run `npm run build` once first');
  process.exit(1);
}

const scratch = mkdtempSync(join(tmpdir(), 'warden-build-c-'));
// jco's wasm-tools reads WIT through preview2-shim, which no longer preopens `/`: give it the
// repository and the scratch directory (build time only, as scripts/build.mjs does).
const { _setPreopens } = await import('@bytecodealliance/preview2-shim/filesystem');
const { componentEmbed, componentNew, componentWit } = await import('@bytecodealliance/jco');
_setPreopens({ [root]: root, [scratch]: scratch });

/**
 * A WIT directory for `wit`: wit/ itself, or a single .wit file beside a copy of wit/deps with
 * wit/kernel.wit added as the dependency `deps/kernel/` (so a world there can use warden:kernel).
 */
function witDir(wit) {
  if (!wit.endsWith('.wit')) return join(root, wit);
  const dir = join(scratch, 'wit');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir);
  cpSync(join(root, wit), join(dir, basename(wit)));
  cpSync(join(root, 'wit/deps'), join(dir, 'deps'), { recursive: true });
  mkdirSync(join(dir, 'deps/kernel'));
  cpSync(join(root, 'wit/kernel.wit'), join(dir, 'deps/kernel/kernel.wit'));
  return dir;
}

try {
  say(execFileSync(CLANG, ['--version'], { encoding: 'utf8' }).split('\n')[0]);
  for (const { source, wasm, link, adapter, wit, world } of OUTPUTS) {
    const started = Date.now();
    const object = join(scratch, 'out.o');
    const core = join(scratch, 'core.wasm');
    // Compile and link separately: clang runs any `wasm-opt` it finds on PATH (node_modules/.bin
    // has one under npm) when the link line has -O, which would make the output depend on PATH.
    execFileSync(CLANG, [TARGET, ...COMPILE, '-c', source, '-o', object], { cwd: root, stdio: 'inherit' });
    execFileSync(CLANG, [TARGET, ...LINK, ...link, object, '-o', core], { cwd: root, stdio: 'inherit' });
    const module = await componentEmbed({ binary: readFileSync(core), witPath: witDir(wit), world });
    const adapterWasm = readFileSync(join(ADAPTERS, `wasi_snapshot_preview1.${adapter}.wasm`));
    const component = await componentNew(module, [['wasi_snapshot_preview1', adapterWasm]]);
    writeFileSync(join(root, wasm), component);
    const imports = (await componentWit(component)).split('\n').filter((l) => /^\s*import /.test(l)).map((l) => l.trim().replace(/^import |;$/g, ''));
    const sha = createHash('sha256').update(component).digest('hex').slice(0, 16);
    say(`${wasm}: ${(component.length / 1024).toFixed(1)} KiB (core module with WIT ${(module.length / 1024).toFixed(1)} KiB), sha256 ${sha}…, ${Date.now() - started} ms`);
    say(`  imports: ${imports.join(', ')}`);
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
