/**
 * Benchmark `sandbox`: what the kernel's sandbox costs a tool.
 *
 *   npm run bench -- sandbox [--calls N] [--instances N]
 *
 * 1. Warm instantiate. For each QuickJS tool (read-file, list-files, grep, write-file, edit-file)
 *    the core modules are compiled once by the kernel's Engine and the imports are built once;
 *    then `glue.instantiate(getCoreModule, imports, instantiateCore)` — called as worker.ts
 *    calls it — is timed `--instances` times (default 60, after 5 unrecorded ones). That is
 *    what a tool pool worker does per call, off the critical path (worker.ts `instantiate`,
 *    `prewarm`). `warm_instantiate_ms` is the worst tool's median. Goal: ≤ 10 ms.
 *
 * 2. Sandboxed vs bare. The SAME component, warm (one instance per path, reused for every
 *    call), called in one thread `--calls` times per path (default 600, after 100 warm-up
 *    calls), for two workloads: read-file of a ~4 KiB text file, and grep over a small tree
 *    (`src/`: 13 files of 8–16 lines in 4 directories; grep is given `path: "src"` because the
 *    shim's preopened root descriptor refuses `read-directory` with `bad-descriptor`).
 *    Two instances per workload:
 *      (a) sandboxed: the imports a tool worker builds for a `session:ro` grant: kernel/wasi
 *          `filesystemImports` over a session Overlay (kernel/vfs, a real session begun by
 *          SessionFs on the workspace), kernel/wasi `cliImports` (granted env only, output
 *          sinks), `warden:kernel/log` and `progress` as notices posted on a MessagePort;
 *      (b) bare: @bytecodealliance/preview2-shim's own Node implementations (what jco gives
 *          a guest by default), the same workspace preopened at `/` with the shim's
 *          `createFilesystem({ preopens })`, and a no-op log.
 *    Calls alternate between the two paths in blocks of 50, so load from other processes on
 *    the machine falls on both alike. Both paths must return the same output (checked).
 *    Ratio = sandboxed median / bare median per call (p99 ratio reported too);
 *    `sandboxed_vs_bare_ratio` is the worse of the two workloads. Goal: ≤ 1.2.
 *
 * Where it runs: in a worker thread started as the mesh starts a tool worker (`env: {}`; the
 * main thread only prints), so the guest, the jco glue and the kernel's WASI run in the same
 * kind of thread as in production. It does not run kernel/mesh/worker.ts itself: that module
 * builds its imports from module state it owns (`buildImports`) and offers no way to swap in the
 * shim's, so the two paths could not be compared there on one component in one thread.
 * `buildImports` is a thin composition of exported kernel pieces (filesystemImports, cliImports,
 * Overlay, deniedInterface) around the current call's context; `kernelImports` below composes
 * the same pieces the same way for a tool granted `session:ro` with no mesh, sql, session or
 * inference grant. Every wasi:filesystem/io/cli function the guest reaches is the kernel's own
 * code, unchanged. Only the mesh transport of a call is left out; both paths would share it.
 *
 * Runs the kernel from its TypeScript sources (tsx), so it measures the code as checked out.
 * Profile with: node --cpu-prof --import tsx bench/sandbox.ts
 * The LAST line of output is one JSON object with every figure.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { isMainThread, MessageChannel, parentPort, Worker } from 'node:worker_threads';
import * as shim from '@bytecodealliance/preview2-shim';
import { Engine, enableWasmFeatures, instantiateCore, type CompiledComponent } from '../kernel/engine/index.js';
import { BUILT_COMPONENTS, COMPONENT_SOURCES } from '../kernel/paths.js';
import { Overlay, SessionFs } from '../kernel/vfs/index.js';
import { cliImports, deniedInterface } from '../kernel/wasi/cli.js';
import { filesystemImports } from '../kernel/wasi/filesystem.js';
import { option, summarise, type Summary } from './lib/stats.js';

type Imports = Record<string, unknown>;
type ToolExport = { call: (input: string) => string };
type Exports = Record<string, unknown>;
type Glue = {
  instantiate: (
    getCoreModule: (name: string) => WebAssembly.Module,
    imports: Imports,
    instantiateCore?: (module: WebAssembly.Module, imports?: WebAssembly.Imports) => WebAssembly.Instance,
  ) => Exports;
};

const TOOLS = ['read-file', 'list-files', 'grep', 'write-file', 'edit-file'] as const;
const GOAL_RATIO = 1.2;
const GOAL_INSTANTIATE_MS = 10;
const BLOCK = 50;

const INSTANCES = Math.max(50, option('instances', 60));
const CALLS = Math.max(500, option('calls', 600));

// ---- statistics -----------------------------------------------------------------------------

const round = (x: number, digits = 3): number => Number(x.toFixed(digits));
const nowNs = (): bigint => process.hrtime.bigint();
const elapsedMs = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

// ---- fixtures ---------------------------------------------------------------------------------

/** A workspace: one ~4 KiB text file, and a small source tree to grep (13 files, ~6 KiB, under `src/`). */
function makeWorkspace(root: string): void {
  const lines: string[] = [];
  for (let i = 1; lines.join('\n').length < 4096 - 80; i++) {
    lines.push(`line ${String(i).padStart(3, '0')}: the quick brown fox jumps over the lazy dog ${i % 7}`);
  }
  writeFileSync(join(root, 'notes.txt'), `${lines.join('\n')}\n`);
  const tree: Record<string, number> = { 'src/index.ts': 12, 'src/util.ts': 14, 'src/parse.ts': 16, 'src/README.md': 8 };
  for (const dir of ['src/lib', 'src/cli', 'src/test']) for (let f = 0; f < 3; f++) tree[`${dir}/m${f}.ts`] = 8 + 2 * f;
  for (const [path, count] of Object.entries(tree)) {
    const body: string[] = [];
    for (let i = 0; i < count; i++) {
      body.push(i % 5 === 0 ? `export function parseArgs${i}(argv: string[]) { return argv.slice(${i}); }` : `const value${i} = compute(${i}, 'text ${path}');`);
    }
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), `${body.join('\n')}\n`);
  }
}

// ---- the two sets of imports ------------------------------------------------------------------

/** The sandboxed path: the imports a tool worker builds for a `session:ro` grant (see header). */
function kernelImports(component: CompiledComponent, overlay: Overlay, notices: MessageChannel['port1']): Imports {
  const send = (op: string, body: unknown) => notices.postMessage({ type: 'notice', op, body, component: 'bench' });
  const audit = (name: string, member: string) => send('denied', { capability: name, member });
  const mounts = new Map([['bench-session:ro', overlay]]);
  const fs = filesystemImports(
    () => [{ overlay: mounts.get('bench-session:ro')!, guestPath: '/' }],
    (operation, path, reason) => send('denied', { capability: 'filesystem', operation, path, reason }),
  );
  const imports: Imports = {
    ...cliImports({
      env: () => [],
      args: () => ['bench'],
      stdin: () => new Uint8Array(),
      stdout: (b) => send('stderr', b.slice()),
      stderr: (b) => send('stderr', b.slice()),
    }),
    'wasi:filesystem/types': fs.types,
    'wasi:filesystem/preopens': fs.preopens,
    'warden:kernel/log': { log: (level: string, message: string) => send('log', { level, message: message.slice(0, 8192) }) },
    'warden:kernel/progress': { report: (step: string, detail: string) => send('progress', { step, detail: detail.slice(0, 8192) }) },
  };
  for (const name of component.imports) if (!(name in imports)) imports[name] = deniedInterface(name, audit);
  return imports;
}

/** `terminal-input` → `terminalInput`. */
const camel = (s: string): string => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/**
 * The shim's Node `createFilesystem`. TypeScript resolves the package's browser typings (its
 * export map lists `types` before the `node` condition); at run time Node loads `dist/nodejs`.
 */
const createFilesystem = shim.filesystem.createFilesystem as unknown as (config: { preopens: Record<string, string> }) => Record<string, unknown>;

/** The bare path: preview2-shim's Node implementations, `workspace` preopened at `/`. */
function bareImports(component: CompiledComponent, workspace: string): Imports {
  const packages: Record<string, Record<string, unknown>> = {
    cli: shim.cli, clocks: shim.clocks, io: shim.io, random: shim.random,
    filesystem: createFilesystem({ preopens: { '/': workspace } }),
  };
  const imports: Imports = {};
  for (const name of component.imports) {
    const m = /^wasi:([a-z-]+)\/([a-z-]+)$/.exec(name);
    if (m) {
      const iface = packages[m[1]!]?.[camel(m[2]!)];
      if (!iface) throw new Error(`preview2-shim has no ${name}`);
      imports[name] = iface;
    } else if (name === 'warden:kernel/log') imports[name] = { log: () => undefined };
    else if (name === 'warden:kernel/progress') imports[name] = { report: () => undefined };
    else throw new Error(`bare path cannot provide ${name}`);
  }
  return imports;
}

function toolOf(exports: Exports): ToolExport {
  const key = Object.keys(exports).find((k) => k.startsWith('warden:kernel/tool@'));
  if (!key) throw new Error('component does not export warden:kernel/tool');
  return exports[key] as ToolExport;
}

// ---- measurements -----------------------------------------------------------------------------

/** Times `glue.instantiate` as worker.ts calls it (recording each core instance's memories). */
function measureInstantiate(glue: Glue, component: CompiledComponent, imports: Imports): Summary {
  const getCoreModule = (name: string) => component.modules[name]!;
  const once = () => {
    const memories: WebAssembly.Memory[] = [];
    glue.instantiate(getCoreModule, imports, (module, coreImports) => {
      const core = instantiateCore(component, module, coreImports ?? {}).instance;
      for (const value of Object.values(core.exports)) if (value instanceof WebAssembly.Memory) memories.push(value);
      return core;
    });
    return memories;
  };
  for (let i = 0; i < 5; i++) once();
  const samples: number[] = [];
  for (let i = 0; i < INSTANCES; i++) {
    const t0 = nowNs();
    once();
    samples.push(elapsedMs(t0));
  }
  return summarise(samples);
}

interface Comparison {
  sandboxed: Summary;
  bare: Summary;
  ratio: number;
  ratioP99: number;
}

/** Alternate blocks of calls on the two paths; per-call times in µs. */
function compare(sandboxed: ToolExport, bare: ToolExport, input: string): Comparison {
  const a = sandboxed.call(input);
  const b = bare.call(input);
  if (a !== b) throw new Error(`the two paths disagree on ${input}:\n--- sandboxed\n${a.slice(0, 400)}\n--- bare\n${b.slice(0, 400)}`);
  for (let i = 0; i < 100; i++) {
    sandboxed.call(input);
    bare.call(input);
  }
  const samples = { sandboxed: [] as number[], bare: [] as number[] };
  for (let done = 0; done < CALLS; done += BLOCK) {
    for (const [path, tool] of [['sandboxed', sandboxed], ['bare', bare]] as const) {
      for (let i = 0; i < BLOCK; i++) {
        const t0 = nowNs();
        tool.call(input);
        samples[path].push(Number(nowNs() - t0) / 1e3);
      }
    }
  }
  const s = summarise(samples.sandboxed);
  const r = summarise(samples.bare);
  return { sandboxed: s, bare: r, ratio: s.median / r.median, ratioP99: s.p99 / r.p99 };
}

// ---- main -------------------------------------------------------------------------------------

/** Everything measured; printed as the last line. */
interface Result {
  bench: 'sandbox';
  node: string;
  warm_instantiate_ms: number;
  sandboxed_vs_bare_ratio: number;
  instantiate: Record<string, { median_ms: number; p99_ms: number; min_ms: number; glue_kb: number; jspi_probe_throws: number }>;
  calls: Record<string, Record<string, number>>;
  iterations: { instantiations_per_tool: number; calls_per_path: number; block: number };
  goals: Record<'sandboxed_vs_bare_ratio' | 'warm_instantiate_ms', { goal: number; met: boolean }>;
}

/** The whole measurement; runs in a worker thread set up as the mesh sets up a tool worker. */
async function measure(say: (line: string) => void): Promise<Result> {
  enableWasmFeatures();
  const scratch = mkdtempSync(join(tmpdir(), 'warden-bench-sandbox-'));
  const notices = new MessageChannel();
  notices.port2.on('message', () => undefined);
  try {
    const workspace = join(scratch, 'workspace');
    mkdirSync(workspace);
    makeWorkspace(workspace);
    const sessions = new SessionFs(join(scratch, 'sessions'));
    const meta = sessions.begin(workspace);
    const overlay = new Overlay(meta.workspace, sessions.dirOf(meta.id), 'ro');

    say(`sandbox benchmark — node ${process.version}, ${INSTANCES} instantiations per tool, ${CALLS} calls per path, in a worker thread`);
    const engine = new Engine(join(tmpdir(), 'warden-bench-transpile-cache'));
    const loaded = new Map<string, { component: CompiledComponent; glue: Glue; kernel: Imports; glueKb: number; probes: number }>();
    // Without JSPI (Node 20) every `WebAssembly.promising(...)` the glue tries at instantiation
    // throws a TypeError (caught); counted because each one costs V8 a re-parse of the glue's
    // init function to render the error message (see bench/README.md).
    const hasJspi = typeof (WebAssembly as unknown as { promising?: unknown }).promising === 'function';
    for (const name of TOOLS) {
      const manifest = JSON.parse(readFileSync(join(COMPONENT_SOURCES, name, 'manifest.json'), 'utf8')) as { limits?: { memoryMb?: number } };
      const t0 = nowNs();
      const component = await engine.load(join(BUILT_COMPONENTS, `${name}.wasm`), { memoryMb: manifest.limits?.memoryMb ?? 128 });
      const glue = (await import(component.glueUrl)) as Glue;
      const glueText = readFileSync(new URL(component.glueUrl), 'utf8');
      const glueKb = Math.round(glueText.length / 1024);
      const probes = hasJspi ? 0 : glueText.split('WebAssembly.promising(').length - 1;
      say(`  loaded ${name.padEnd(10)} ${(component.size / 2 ** 20).toFixed(2)} MB, glue ${glueKb} KiB, transpiled+compiled in ${elapsedMs(t0).toFixed(0)} ms`);
      loaded.set(name, { component, glue, kernel: kernelImports(component, overlay, notices.port1), glueKb, probes });
    }

    say('\nwarm instantiate (modules compiled, imports built), ms:');
    const instantiate: Result['instantiate'] = {};
    for (const [name, { component, glue, kernel, glueKb, probes }] of loaded) {
      const s = measureInstantiate(glue, component, kernel);
      instantiate[name] = { median_ms: round(s.median), p99_ms: round(s.p99), min_ms: round(s.min), glue_kb: glueKb, jspi_probe_throws: probes };
      say(
        `  ${name.padEnd(10)} median ${s.median.toFixed(2).padStart(6)}  p99 ${s.p99.toFixed(2).padStart(6)}  min ${s.min.toFixed(2).padStart(6)}` +
          (probes > 0 ? `  (${probes} WebAssembly.promising probes throw per instantiation)` : ''),
      );
    }
    const warmInstantiateMs = Math.max(...Object.values(instantiate).map((v) => v.median_ms));

    say('\nper call on a warm instance, µs (sandboxed = kernel imports over a session overlay; bare = preview2-shim):');
    const workloads = [
      { name: 'read_file', tool: 'read-file', input: JSON.stringify({ path: 'notes.txt' }) },
      { name: 'grep', tool: 'grep', input: JSON.stringify({ pattern: 'parseArgs\\d+', path: 'src' }) },
    ];
    const calls: Result['calls'] = {};
    for (const w of workloads) {
      const { component, glue, kernel } = loaded.get(w.tool)!;
      const getCoreModule = (name: string) => component.modules[name]!;
      const core = (module: WebAssembly.Module, imports?: WebAssembly.Imports) => instantiateCore(component, module, imports ?? {}).instance;
      const sandboxed = toolOf(glue.instantiate(getCoreModule, kernel, core));
      const bare = toolOf(glue.instantiate(getCoreModule, bareImports(component, workspace), core));
      const c = compare(sandboxed, bare, w.input);
      calls[w.name] = {
        sandboxed_median_us: round(c.sandboxed.median, 1), sandboxed_p99_us: round(c.sandboxed.p99, 1),
        bare_median_us: round(c.bare.median, 1), bare_p99_us: round(c.bare.p99, 1),
        ratio: round(c.ratio), ratio_p99: round(c.ratioP99),
      };
      say(
        `  ${w.name.padEnd(10)} sandboxed median ${c.sandboxed.median.toFixed(1).padStart(7)} p99 ${c.sandboxed.p99.toFixed(1).padStart(7)}` +
          `  |  bare median ${c.bare.median.toFixed(1).padStart(7)} p99 ${c.bare.p99.toFixed(1).padStart(7)}` +
          `  |  ratio ${c.ratio.toFixed(2)} (p99 ${c.ratioP99.toFixed(2)})`,
      );
    }
    const ratio = Math.max(...Object.values(calls).map((c) => c.ratio!));
    return {
      bench: 'sandbox',
      node: process.version,
      warm_instantiate_ms: warmInstantiateMs,
      sandboxed_vs_bare_ratio: round(ratio),
      instantiate,
      calls,
      iterations: { instantiations_per_tool: INSTANCES, calls_per_path: CALLS, block: BLOCK },
      goals: {
        sandboxed_vs_bare_ratio: { goal: GOAL_RATIO, met: ratio <= GOAL_RATIO },
        warm_instantiate_ms: { goal: GOAL_INSTANTIATE_MS, met: warmInstantiateMs <= GOAL_INSTANTIATE_MS },
      },
    };
  } finally {
    notices.port1.close();
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (isMainThread) {
  // A worker as the mesh starts one (kernel/mesh/index.ts `spawn`: empty environment); lines and
  // the result come back as messages so the JSON line is printed last, by this thread. On Node 20
  // a worker's entry module does not go through `--import` loaders: register tsx first.
  const boot = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}); })`;
  const worker = new Worker(boot, { eval: true, argv: process.argv.slice(2), env: {} });
  let result: Result | undefined;
  worker.on('message', (m: { line?: string; result?: Result }) => {
    if (m.line !== undefined) console.log(m.line);
    if (m.result) result = m.result;
  });
  worker.on('error', (err) => {
    console.error(`benchmark failed: ${err.stack ?? err.message}`);
    process.exitCode = 1;
  });
  worker.on('exit', () => {
    if (!result) {
      process.exitCode = 1;
      return;
    }
    const { goals } = result;
    console.log(`\nsandboxed vs bare: ${result.sandboxed_vs_bare_ratio.toFixed(2)}× (goal ≤ ${GOAL_RATIO}: ${goals.sandboxed_vs_bare_ratio.met ? 'met' : 'NOT met'})`);
    console.log(`warm instantiate: ${result.warm_instantiate_ms.toFixed(2)} ms worst median (goal ≤ ${GOAL_INSTANTIATE_MS}: ${goals.warm_instantiate_ms.met ? 'met' : 'NOT met'})`);
    console.log(JSON.stringify(result));
  });
} else {
  const result = await measure((line) => parentPort!.postMessage({ line }));
  parentPort!.postMessage({ result });
}
