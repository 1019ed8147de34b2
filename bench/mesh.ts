/**
 * Benchmark `mesh`: what a call between two components costs over the kernel's mesh.
 *
 *   npm run bench -- mesh [--calls N] [--pace-us N] [--throughput-ms N]
 *
 * Guests (bench/guests/, componentized with componentize-qjs by test/support/worlds.ts `buildWorld`,
 * cached under $TMPDIR/warden-bench-mesh-guests by a hash of source, world, WIT and toolchain):
 * `echo`, a tool that answers its input (a `bytes` payload: only its length), and `caller`, a
 * tool importing `warden:kernel/mesh` whose `call(input)` makes n mesh calls of a given payload
 * to a target's `call` and times each one inside the guest with `performance.now()`. Every mesh
 * runs on the kernel's real `Mesh` (kernel/mesh, its workers from dist/kernel/mesh/worker.js);
 * the main thread only starts the guests' calls and prints.
 *
 * The same two guests also exist in C (bench/guests/echo.c, caller.c; built by
 * scripts/build-c.mjs, the .wasm committed beside them): the same inputs and outputs, with as
 * little work inside the guest as possible (hand-written canonical ABI glue, no JSON library, the
 * payload built once per `call(input)`, the reply freed unread). `caller.c` reads
 * `wasi:clocks/monotonic-clock.now` directly. With them, the part of a call that is the QuickJS
 * guests can be told apart from the mesh itself (kernel, jco glue, transport): a C → C call is
 * what the mesh costs with (almost) free guests.
 *
 * The guest's clock is an import (`wasi:clocks/monotonic-clock` through the jco glue) and a read
 * costs ~10–20 µs, where Node's `performance.now()` costs ~0.05 µs. So after each timed call the
 * guest also times two back-to-back clock reads; every guest figure below ("corrected") is the
 * raw figure minus the median of those clock pairs of the same series (raw figures are reported
 * too, as `*_raw_*`, with the clock cost as `guest_clock_read_us`).
 *
 * 1. Floor vs call (`--calls`, default 3000 per series, after 4000 unrecorded ones: V8 takes a
 *    few thousand calls to settle the jco glue and the kernel's code, the first blocks run up to
 *    twice as slow; the warm-up runs exactly like the measurement).
 *    Floor: the bare round trip over the same transport, no wasm: two worker_threads; the caller
 *    posts `{id, payload}` on a MessagePort to the callee and blocks on `Atomics.wait` on a
 *    SharedArrayBuffer word; the callee's `port.on('message')` posts `{id, payload}` back, then
 *    `Atomics.store` + `Atomics.notify`; the caller takes the reply with `receiveMessageOnPort`.
 *    Timed in the caller worker with `performance.now()` per call.
 *    Call: component → component, the caller guest calling `echo-reused` (the echo tool with
 *    `fresh: false`: one long-lived instance, so the figure is the mesh's transport, not an
 *    instantiation). Payloads: a JSON string literal of 16 B and of 4 KiB on both paths.
 *    Floor and call alternate in blocks of 250 calls, so load from other processes falls on both.
 *    `ratio_p50` / `ratio_p99` = call (corrected) / floor at 16 B. Goals: ≤ 1.5 and ≤ 3.
 *    C guests, in the same blocks of the same rotation (after the 4000 unrecorded calls too):
 *    `caller-c` → `echo-c` (both C, `fresh: false`) at 16 B and 4 KiB (`c_call_*`, `c_ratio_*`
 *    = C → C / floor at 16 B), `caller-c` → `echo-reused` (C caller, QuickJS callee:
 *    `c_to_qjs_*`) and `caller-1` → `echo-c` (QuickJS caller, C callee: `qjs_to_c_*`), 16 B.
 *    Each series is corrected by the median of its own caller's clock pairs (`c_guest_clock_read_us`
 *    is the C caller's: one direct `now` import through the jco glue).
 *
 * 2. Fresh vs reused (400 paced calls per target, blocks of 50, alternating). The same echo
 *    tool registered twice with the default tool pool: `echo-fresh` (a fresh instance per call,
 *    taken from the worker's spare and refilled after the call) and `echo-reused`
 *    (`fresh: false`). The caller busy-waits `--pace-us` (default 5000 µs) before each call so a
 *    worker's spare is refilled by the time it gets the next call; `fresh_paced_over_2ms`
 *    counts paced fresh calls over 2 ms (a call that found no spare and instantiated inline,
 *    or met a garbage collection of dropped instances in the tool worker).
 *    `fresh_vs_reused_ratio` = median fresh / median reused. Goal: ≤ 1.2.
 *    The floor runs with the same pause in the same rotation (`floor_paced_*`): it shows what
 *    waking an idle callee thread costs on the machine, which paced calls pay and tight ones do not.
 *    Also 500 calls back to back (alternating in blocks of 250 with reused ones): the tight-loop
 *    fresh median is bound by instantiation (each call consumes a spare that its worker must
 *    rebuild, milliseconds of work), reported as `fresh_tight_p50_us` and `fresh_tight_ratio`.
 *
 * 3. Throughput (`--throughput-ms`, default 1500 per run). Callers `caller-1`..`caller-8`
 *    (the caller guest, each one worker, `fresh: false`) call a target back to back with 16 B
 *    JSON, 1, 2 and 8 of them at once (started together); calls/s = total calls / wall time
 *    on the main thread. For `echo-reused` and `echo-fresh` (whose pool may grow to its max
 *    of 4 workers under this load: `workers` is how many it had at the end).
 *
 * 4. Memory (first, on a fresh process). RSS of the whole process (`process.memoryUsage().rss`,
 *    worker threads included; median of 5 samples after 500 ms settle): before, after a pool of
 *    4 echo workers with 1 spare each (`idle-4`), and after another pool of 4 workers holding
 *    25 spares each (`idle-100`: 100 idle pre-instantiated instances), both waited for until
 *    every worker reports all its spares ready (`mesh.pools()`). `rss_100_idle_mb` is what the
 *    100-instance pool added (its 4 workers included); `mb_per_instance` = that / 100;
 *    `mb_per_extra_instance` removes the cost of its 4 workers as measured by `idle-4`.
 *
 * 5. Shared memory vs structured clone for `bytes` payloads (4 KiB: 1000 calls, 64 KiB: 600,
 *    1 MiB: 120 per mode, after 2000 unrecorded 4 KiB calls per mode). Two meshes,
 *    `sharedThreshold: 0` (every `bytes` request goes through the caller's SharedArrayBuffer
 *    region) and `sharedThreshold: Infinity` (structured clone), each with a caller and an
 *    echo (`fresh: false`); blocks alternate between the meshes. The
 *    echo answers a `bytes` payload with its length: a tool's reply is always JSON text, so only
 *    the request's transport differs. Strings (JSON payloads) are always cloned.
 *
 * Workers run dist/kernel/mesh/worker.js: after changing kernel/, run `npm run build` (the
 * benchmark warns when dist/ is older than kernel/). Profile with
 *   node --cpu-prof --import tsx bench/mesh.ts
 * (one .cpuprofile per thread: each mesh worker writes its own).
 * The LAST line of output is one JSON object with every figure.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MessageChannel, Worker } from 'node:worker_threads';
import { Engine, type CompiledComponent } from '../kernel/engine/index.js';
import { DEFAULT_LIMITS, KERNEL_GRANTS, NO_GRANTS } from '../kernel/grants/index.js';
import { Mesh, type MeshComponent, type Notice } from '../kernel/mesh/index.js';
import { PACKAGE_ROOT } from '../kernel/paths.js';
import { buildWorld } from '../test/support/worlds.js';
import { option, summarise, type Summary } from './lib/stats.js';

const GOAL_RATIO_P50 = 1.5;
const GOAL_RATIO_P99 = 3;
const GOAL_FRESH_VS_REUSED = 1.2;
const BLOCK = 250;
const WARMUP = 4000;
const PACED_CALLS = 400;
const PACED_BLOCK = 50;
const TIGHT_CALLS = 500;
const CALLERS = 8;
/** A paced fresh call slower than this met an inline instantiation or a GC pause of its worker. */
const SLOW_US = 2000;
const BYTES_WARMUP = 2000;
const BYTES_SIZES = [
  { name: '4k', size: 4096, calls: 1000, block: 100 },
  { name: '64k', size: 65536, calls: 600, block: 100 },
  { name: '1m', size: 1 << 20, calls: 120, block: 20 },
] as const;

const CALLS = Math.ceil(Math.max(1000, option('calls', 3000)) / BLOCK) * BLOCK;
const PACE_US = option('pace-us', 5000);
const THROUGHPUT_MS = option('throughput-ms', 1500);

// ---- statistics -----------------------------------------------------------------------------

const round = (x: number, digits = 1): number => Number(x.toFixed(digits));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- the floor: two worker_threads, no wasm ---------------------------------------------------

const FLOOR_CALLER = `
const { parentPort, workerData, receiveMessageOnPort } = require('node:worker_threads');
const { port, signal } = workerData;
const word = new Int32Array(signal);
let id = 0;
parentPort.on('message', ({ n, size, pauseUs }) => {
  const payload = JSON.stringify('a'.repeat(Math.max(0, size - 2)));
  const us = new Array(n);
  for (let i = 0; i < n; i++) {
    if (pauseUs > 0) {
      const until = performance.now() + pauseUs / 1000;
      while (performance.now() < until);
    }
    const mine = ++id;
    Atomics.store(word, 0, 0);
    const t0 = performance.now();
    port.postMessage({ id: mine, payload });
    for (;;) {
      const received = receiveMessageOnPort(port);
      if (received && received.message.id === mine) break;
      Atomics.wait(word, 0, 0);
      Atomics.store(word, 0, 0);
    }
    us[i] = (performance.now() - t0) * 1000;
  }
  parentPort.postMessage(us);
});`;

const FLOOR_CALLEE = `
const { workerData } = require('node:worker_threads');
const { port, signal } = workerData;
const word = new Int32Array(signal);
port.on('message', (m) => {
  port.postMessage({ id: m.id, payload: m.payload });
  Atomics.store(word, 0, 1);
  Atomics.notify(word, 0);
});`;

/** The bare round trip: a caller worker and a callee worker joined by a MessagePort and a signal word. */
class Floor {
  private readonly caller: Worker;
  private readonly callee: Worker;
  private pending: ((us: number[]) => void) | null = null;

  constructor() {
    const { port1, port2 } = new MessageChannel();
    const signal = new SharedArrayBuffer(4);
    this.callee = new Worker(FLOOR_CALLEE, { eval: true, workerData: { port: port2, signal }, transferList: [port2], env: {} });
    this.caller = new Worker(FLOOR_CALLER, { eval: true, workerData: { port: port1, signal }, transferList: [port1], env: {} });
    this.caller.on('message', (us: number[]) => this.pending?.(us));
    for (const w of [this.caller, this.callee]) w.on('error', (err) => console.error(`floor worker failed: ${err.stack ?? err.message}`));
  }

  /** `n` round trips of a `size`-byte JSON string, busy-waiting `pauseUs` before each; µs per call. */
  run(n: number, size: number, pauseUs = 0): Promise<number[]> {
    return new Promise((resolve) => {
      this.pending = resolve;
      this.caller.postMessage({ n, size, pauseUs });
    });
  }

  async close(): Promise<void> {
    await Promise.all([this.caller.terminate(), this.callee.terminate()]);
  }
}

// ---- the mesh ---------------------------------------------------------------------------------

/** What the caller guest answers (see bench/guests/caller.js). */
interface Timed {
  us: number[];
  clockUs: number[];
}
interface Counted {
  count: number;
  elapsedMs: number;
}

/** Guest-timed samples of one series: per call, and per back-to-back clock pair. */
class Series {
  readonly us: number[] = [];
  readonly clockUs: number[] = [];
  add(t: Timed): void {
    this.us.push(...t.us);
    this.clockUs.push(...t.clockUs);
  }
  get clock(): number {
    return summarise(this.clockUs).median;
  }
  /** Median and p99 with the guest's clock cost taken off. */
  corrected(): Summary & { raw: Summary } {
    const raw = summarise(this.us);
    const clock = this.clock;
    return { median: raw.median - clock, p99: raw.p99 - clock, min: raw.min - clock, n: raw.n, raw };
  }
}

const notices = new Map<string, number>();
const services = {
  request: async () => {
    throw new Error('no host services');
  },
  notice: (n: Notice) => {
    notices.set(n.op, (notices.get(n.op) ?? 0) + 1);
    const body = n.body as { level?: string; message?: string; reason?: string };
    if ((n.op === 'log' && body.level === 'error') || n.op === 'limit') console.error(`[${n.component}] ${n.op}: ${body.message ?? body.reason}`);
  },
};

function newMesh(scratch: string, sharedThreshold?: number): Mesh {
  return new Mesh(services, { sessionsDir: join(scratch, 'sessions'), sqlDir: join(scratch, 'sql'), ...(sharedThreshold === undefined ? {} : { sharedThreshold }) });
}

const LIMITS = { ...DEFAULT_LIMITS, timeoutMs: 120_000 };
const ctx = () => ({ taskId: '', sessionId: null, chain: [], deadline: Date.now() + LIMITS.timeoutMs, grants: KERNEL_GRANTS });

/** Run the caller guest once; throws when the call or any of its mesh calls failed. */
async function runCaller<T>(mesh: Mesh, caller: string, input: Record<string, unknown>): Promise<T> {
  const reply = await mesh.call(caller, 'call', { tag: 'json', val: JSON.stringify(input) }, ctx());
  if (!reply.ok) throw new Error(`${caller}: ${reply.error.message}`);
  const { output } = JSON.parse((reply.payload as { val: string }).val) as { output: string };
  const result = JSON.parse(output) as T & { failures: number; error: unknown };
  if (result.failures > 0) throw new Error(`${caller} → ${String(input.target)}: ${result.failures} calls failed, e.g. ${JSON.stringify(result.error)}`);
  return result;
}

const tool = (name: string, compiled: CompiledComponent, extra: Partial<MeshComponent> = {}): MeshComponent => ({
  name, kind: 'tool', compiled, grants: NO_GRANTS, limits: LIMITS, ...extra,
});
const caller = (name: string, compiled: CompiledComponent, targets: string[]): MeshComponent =>
  tool(name, compiled, { grants: { ...NO_GRANTS, mesh: targets }, fresh: false, pool: { min: 1, max: 1, spares: 0 } });

const workersOf = (mesh: Mesh, name: string): number => mesh.pools().find((p) => p.name === name)?.workers.length ?? 0;

// ---- phases -----------------------------------------------------------------------------------

/** RSS in MB: median of 5 samples after the process settled. */
async function rssMb(): Promise<number> {
  await sleep(500);
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    samples.push(process.memoryUsage().rss / 2 ** 20);
    await sleep(100);
  }
  return summarise(samples).median;
}

async function untilReady(mesh: Mesh, name: string, workers: number, spares: number): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const pool = mesh.pools().find((p) => p.name === name);
    if (pool && pool.workers.length === workers && pool.workers.every((w) => w.ready >= spares)) return;
    if (Date.now() > deadline) throw new Error(`${name}: ${workers} workers with ${spares} spares each not ready in 120 s: ${JSON.stringify(pool?.workers)}`);
    await sleep(50);
  }
}

async function measureMemory(mesh: Mesh, echo: CompiledComponent) {
  const before = await rssMb();
  await mesh.add(tool('idle-4', echo, { pool: { min: 4, max: 4, idleMs: 600_000, spares: 1 } }));
  await untilReady(mesh, 'idle-4', 4, 1);
  const small = await rssMb();
  await mesh.add(tool('idle-100', echo, { pool: { min: 4, max: 4, idleMs: 600_000, spares: 25 } }));
  await untilReady(mesh, 'idle-100', 4, 25);
  const after = await rssMb();
  await mesh.remove('idle-4');
  await mesh.remove('idle-100');
  const pool100 = after - small;
  const workersWithOne = small - before;
  return {
    rss_before_mb: round(small), rss_after_mb: round(after), rss_100_idle_mb: round(pool100),
    mb_per_instance: round(pool100 / 100, 2),
    mb_per_extra_instance: round((pool100 - workersWithOne) / 96, 2),
    mb_per_worker_with_1_instance: round(workersWithOne / 4, 1),
    rss_process_start_mb: round(before),
  };
}

async function measureLatency(mesh: Mesh, floor: Floor) {
  const floors = { 16: [] as number[], 4096: [] as number[] };
  const calls = { 16: new Series(), 4096: new Series() };
  /** The C guests' series: C → C at both sizes, and the two mixed pairs at 16 B. */
  const c = { cc: { 16: new Series(), 4096: new Series() }, cToQjs: new Series(), qjsToC: new Series() };
  const timed = (callerName: string, target: string, size: number) => runCaller<Timed>(mesh, callerName, { target, n: BLOCK, size, kind: 'json' });
  // V8 needs a few thousand calls to settle the jco glue and the kernel's code (the first
  // blocks run up to twice as slow); the warm-up runs exactly like the measurement.
  for (let done = 0; done < WARMUP + CALLS; done += BLOCK) {
    const record = done >= WARMUP;
    for (const size of [16, 4096] as const) {
      const f = await floor.run(BLOCK, size);
      const q = await timed('caller-1', 'echo-reused', size);
      const cc = await timed('caller-c', 'echo-c', size);
      if (!record) continue;
      floors[size].push(...f);
      calls[size].add(q);
      c.cc[size].add(cc);
    }
    const cToQjs = await timed('caller-c', 'echo-reused', 16);
    const qjsToC = await timed('caller-1', 'echo-c', 16);
    if (!record) continue;
    c.cToQjs.add(cToQjs);
    c.qjsToC.add(qjsToC);
  }
  return { floors: { 16: summarise(floors[16]), 4096: summarise(floors[4096]) }, calls: { 16: calls[16], 4096: calls[4096] }, c };
}

async function measureFreshVsReused(mesh: Mesh, floor: Floor) {
  const paced = { fresh: new Series(), reused: new Series(), floor: [] as number[] };
  const tight = { fresh: new Series(), reused: new Series() };
  const input = (target: string, n: number, pauseUs: number) => ({ target, n, size: 16, kind: 'json', pauseUs });
  for (const target of ['echo-fresh', 'echo-reused']) await runCaller<Timed>(mesh, 'caller-1', input(target, 20, PACE_US));
  for (let done = 0; done < PACED_CALLS; done += PACED_BLOCK) {
    paced.fresh.add(await runCaller<Timed>(mesh, 'caller-1', input('echo-fresh', PACED_BLOCK, PACE_US)));
    paced.reused.add(await runCaller<Timed>(mesh, 'caller-1', input('echo-reused', PACED_BLOCK, PACE_US)));
    paced.floor.push(...(await floor.run(PACED_BLOCK, 16, PACE_US)));
  }
  for (let done = 0; done < TIGHT_CALLS; done += BLOCK) {
    tight.fresh.add(await runCaller<Timed>(mesh, 'caller-1', input('echo-fresh', BLOCK, 0)));
    tight.reused.add(await runCaller<Timed>(mesh, 'caller-1', input('echo-reused', BLOCK, 0)));
  }
  return { paced, tight, slow: paced.fresh.us.filter((us) => us > SLOW_US).length, freshWorkers: workersOf(mesh, 'echo-fresh') };
}

async function measureThroughput(mesh: Mesh, say: (line: string) => void) {
  const out: Record<string, Record<string, { calls_per_s: number; calls: number; wall_ms: number; workers: number }>> = {};
  for (const target of ['echo-reused', 'echo-fresh']) {
    out[target] = {};
    await runCaller<Counted>(mesh, 'caller-1', { target, durationMs: 200, size: 16, kind: 'json' });
    for (const concurrency of [1, 2, CALLERS]) {
      const names = Array.from({ length: concurrency }, (_, i) => `caller-${i + 1}`);
      const t0 = performance.now();
      const results = await Promise.all(names.map((name) => runCaller<Counted>(mesh, name, { target, durationMs: THROUGHPUT_MS, size: 16, kind: 'json' })));
      const wallMs = performance.now() - t0;
      const calls = results.reduce((sum, r) => sum + r.count, 0);
      const row = { calls_per_s: Math.round(calls / (wallMs / 1000)), calls, wall_ms: Math.round(wallMs), workers: workersOf(mesh, target) };
      out[target]![String(concurrency)] = row;
      say(`  ${target.padEnd(11)} ${String(concurrency).padStart(2)} caller(s): ${String(row.calls_per_s).padStart(7)} calls/s  (${calls} calls in ${row.wall_ms} ms, ${row.workers} target workers)`);
    }
  }
  return out;
}

async function measureSharedVsClone(scratch: string, echo: CompiledComponent, callerWasm: CompiledComponent, say: (line: string) => void) {
  const meshes = { shared: newMesh(scratch, 0), clone: newMesh(scratch, Infinity) };
  try {
    for (const mesh of Object.values(meshes)) {
      await mesh.add(tool('echo', echo, { fresh: false, pool: { min: 1, max: 1 } }));
      await mesh.add(caller('caller', callerWasm, ['echo']));
    }
    for (let done = 0; done < BYTES_WARMUP; done += BLOCK) {
      for (const mode of ['shared', 'clone'] as const) await runCaller<Timed>(meshes[mode], 'caller', { target: 'echo', n: BLOCK, size: 4096, kind: 'bytes' });
    }
    const out: Record<string, Record<string, number>> = {};
    for (const { name, size, calls, block } of BYTES_SIZES) {
      const series = { shared: new Series(), clone: new Series() };
      const input = { target: 'echo', n: block, size, kind: 'bytes' };
      for (const mode of ['shared', 'clone'] as const) await runCaller<Timed>(meshes[mode], 'caller', input);
      for (let done = 0; done < calls; done += block) {
        for (const mode of ['shared', 'clone'] as const) series[mode].add(await runCaller<Timed>(meshes[mode], 'caller', input));
      }
      const shared = series.shared.corrected();
      const clone = series.clone.corrected();
      out[name] = {
        bytes: size, shared_p50_us: round(shared.median), shared_p99_us: round(shared.p99), clone_p50_us: round(clone.median), clone_p99_us: round(clone.p99),
        shared_over_clone: round(shared.median / clone.median, 3), calls,
      };
      say(`  ${name.padEnd(4)} shared ${shared.median.toFixed(1).padStart(8)} µs (p99 ${shared.p99.toFixed(1).padStart(8)})  |  clone ${clone.median.toFixed(1).padStart(8)} µs (p99 ${clone.p99.toFixed(1).padStart(8)})  |  shared/clone ${(shared.median / clone.median).toFixed(2)}`);
    }
    return out;
  } finally {
    await Promise.all(Object.values(meshes).map((m) => m.close()));
  }
}

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
/** Componentized guests by a hash of what they are built from (componentize-qjs takes ~3 s each). */
const GUEST_CACHE = join(tmpdir(), 'warden-bench-mesh-guests');

/** The guest bench/guests/NAME.js componentized for `worldBody`, built once per source, WIT and toolchain. */
async function guest(name: string, worldBody: string): Promise<string> {
  const source = readFileSync(join(BENCH_DIR, 'guests', `${name}.js`), 'utf8');
  const toolchain = (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'node_modules/componentize-qjs/package.json'), 'utf8')) as { version: string }).version;
  const key = createHash('sha256').update([source, worldBody, readFileSync(join(PACKAGE_ROOT, 'wit/kernel.wit'), 'utf8'), toolchain].join('\0')).digest('hex').slice(0, 16);
  const wasm = join(GUEST_CACHE, `${name}-${key}.wasm`);
  if (!existsSync(wasm)) {
    const built = await buildWorld(`bench-${name}`, source, worldBody);
    mkdirSync(GUEST_CACHE, { recursive: true });
    copyFileSync(built, wasm);
    rmSync(dirname(built), { recursive: true, force: true });
  }
  return wasm;
}

/** Warn when the workers' compiled code is older than the kernel's sources. */
function checkDist(): void {
  const worker = join(PACKAGE_ROOT, 'dist/kernel/mesh/worker.js');
  const built = statSync(worker).mtimeMs;
  const kernel = join(PACKAGE_ROOT, 'kernel');
  const stale = (readdirSync(kernel, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts') && statSync(join(kernel, f)).mtimeMs > built);
  if (stale.length > 0) console.error(`warning: dist/ is older than kernel/ (${stale.slice(0, 3).join(', ')}${stale.length > 3 ? ', …' : ''}); mesh workers run dist/kernel/mesh/worker.js: run \`npm run build\``);
}

// ---- main -------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const say = (line: string) => console.log(line);
  checkDist();
  const scratch = mkdtempSync(join(tmpdir(), 'warden-bench-mesh-'));
  const mesh = newMesh(scratch);
  const floor = new Floor();
  try {
    say(`mesh benchmark — node ${process.version}, ${cpus().length} CPUs, ${CALLS} calls per latency series, pace ${PACE_US} µs`);
    const t0 = performance.now();
    const world = 'export warden:kernel/tool@0.1.0;';
    const echoWasm = await guest('echo', world);
    const callerWasm = await guest('caller', `import warden:kernel/mesh@0.1.0;\n${world}`);
    const engine = new Engine(join(tmpdir(), 'warden-bench-transpile-cache'));
    const echo = await engine.load(echoWasm, { memoryMb: LIMITS.memoryMb });
    const callerComponent = await engine.load(callerWasm, { memoryMb: LIMITS.memoryMb });
    // The C guests are committed built (scripts/build-c.mjs): no toolchain needed here.
    const echoC = await engine.load(join(BENCH_DIR, 'guests', 'echo.wasm'), { memoryMb: LIMITS.memoryMb });
    const callerC = await engine.load(join(BENCH_DIR, 'guests', 'caller.wasm'), { memoryMb: LIMITS.memoryMb });
    say(`  guests ready (componentized, transpiled, compiled) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    say('\nmemory: RSS of the process before and after pools of idle instances');
    const memory = await measureMemory(mesh, echo);
    say(`  4 workers × 1 spare: +${(memory.rss_before_mb - memory.rss_process_start_mb).toFixed(1)} MB;  4 workers × 25 spares (100 instances): +${memory.rss_100_idle_mb} MB` +
      ` = ${memory.mb_per_instance} MB per instance, ${memory.mb_per_extra_instance} MB per instance beyond the first of each worker`);

    await mesh.add(tool('echo-reused', echo, { fresh: false }));
    await mesh.add(tool('echo-fresh', echo));
    await mesh.add(tool('echo-c', echoC, { fresh: false }));
    for (let i = 1; i <= CALLERS; i++) await mesh.add(caller(`caller-${i}`, callerComponent, ['echo-reused', 'echo-fresh', 'echo-c']));
    await mesh.add(caller('caller-c', callerC, ['echo-c', 'echo-reused']));

    say('\nfloor vs component → component (echo-reused), µs per call (guest figures minus the guest clock cost):');
    const latency = await measureLatency(mesh, floor);
    const call16 = latency.calls[16].corrected();
    const call4k = latency.calls[4096].corrected();
    const clock = summarise([...latency.calls[16].clockUs, ...latency.calls[4096].clockUs]).median;
    for (const [label, f, c] of [['16 B', latency.floors[16], call16], ['4 KiB', latency.floors[4096], call4k]] as const) {
      say(`  ${label.padEnd(5)} floor median ${f.median.toFixed(1).padStart(6)} p99 ${f.p99.toFixed(1).padStart(6)}  |  call median ${c.median.toFixed(1).padStart(6)} p99 ${c.p99.toFixed(1).padStart(7)}` +
        ` (raw ${c.raw.median.toFixed(1)} / ${c.raw.p99.toFixed(1)})  |  ratio ${(c.median / f.median).toFixed(2)} (p99 ${(c.p99 / f.p99).toFixed(2)})`);
    }
    say(`  guest clock read (two back-to-back performance.now()): median ${clock.toFixed(1)} µs`);
    const cc16 = latency.c.cc[16].corrected();
    const cc4k = latency.c.cc[4096].corrected();
    const cToQjs = latency.c.cToQjs.corrected();
    const qjsToC = latency.c.qjsToC.corrected();
    const clockC = summarise([...latency.c.cc[16].clockUs, ...latency.c.cc[4096].clockUs, ...latency.c.cToQjs.clockUs]).median;
    say('  C guests (bench/guests/*.c), same rotation:');
    for (const [label, f, c] of [['16 B', latency.floors[16], cc16], ['4 KiB', latency.floors[4096], cc4k]] as const) {
      say(`  ${label.padEnd(5)} C → C call median ${c.median.toFixed(1).padStart(6)} p99 ${c.p99.toFixed(1).padStart(7)}` +
        ` (raw ${c.raw.median.toFixed(1)} / ${c.raw.p99.toFixed(1)})  |  ratio to floor ${(c.median / f.median).toFixed(2)} (p99 ${(c.p99 / f.p99).toFixed(2)})`);
    }
    say(`  16 B  C → QuickJS echo median ${cToQjs.median.toFixed(1).padStart(6)} p99 ${cToQjs.p99.toFixed(1).padStart(7)}  |  QuickJS → C echo median ${qjsToC.median.toFixed(1).padStart(6)} p99 ${qjsToC.p99.toFixed(1).padStart(7)}`);
    say(`  C guest clock read (two back-to-back monotonic-clock.now()): median ${clockC.toFixed(1)} µs`);

    say(`\nfresh vs reused instance, 16 B, paced every ${PACE_US} µs, then back to back:`);
    const fr = await measureFreshVsReused(mesh, floor);
    const pfl = summarise(fr.paced.floor);
    const pf = fr.paced.fresh.corrected();
    const pr = fr.paced.reused.corrected();
    const tf = fr.tight.fresh.corrected();
    const tr = fr.tight.reused.corrected();
    const freshRatio = pf.median / pr.median;
    say(`  paced:        fresh median ${pf.median.toFixed(1).padStart(7)} p99 ${pf.p99.toFixed(1).padStart(8)}  |  reused median ${pr.median.toFixed(1).padStart(6)} p99 ${pr.p99.toFixed(1).padStart(7)}  |  ratio ${freshRatio.toFixed(2)}  (${fr.slow} of ${pf.n} fresh calls over ${SLOW_US} µs)`);
    say(`                floor median ${pfl.median.toFixed(1).padStart(7)} p99 ${pfl.p99.toFixed(1).padStart(8)}  (the same pause: a callee woken from idle)`);
    say(`  back to back: fresh median ${tf.median.toFixed(1).padStart(7)} p99 ${tf.p99.toFixed(1).padStart(8)}  |  reused median ${tr.median.toFixed(1).padStart(6)} p99 ${tr.p99.toFixed(1).padStart(7)}  |  ratio ${(tf.median / tr.median).toFixed(2)} (instantiation-bound; echo-fresh now has ${fr.freshWorkers} workers)`);

    say(`\nthroughput, 16 B, calls/s over ${THROUGHPUT_MS} ms per run:`);
    const throughput = await measureThroughput(mesh, say);
    await mesh.close();

    say('\nbytes payloads component → component: shared memory (sharedThreshold 0) vs structured clone (Infinity), µs per call:');
    const sharedVsClone = await measureSharedVsClone(scratch, echo, callerComponent, say);

    const f16 = latency.floors[16];
    const f4k = latency.floors[4096];
    const ratioP50 = call16.median / f16.median;
    const ratioP99 = call16.p99 / f16.p99;
    const result = {
      bench: 'mesh',
      node: process.version,
      cpus: cpus().length,
      floor_p50_us: round(f16.median), floor_p99_us: round(f16.p99),
      call_p50_us: round(call16.median), call_p99_us: round(call16.p99),
      ratio_p50: round(ratioP50, 3), ratio_p99: round(ratioP99, 3),
      floor_4k_p50_us: round(f4k.median), floor_4k_p99_us: round(f4k.p99),
      call_4k_p50_us: round(call4k.median), call_4k_p99_us: round(call4k.p99),
      ratio_4k_p50: round(call4k.median / f4k.median, 3), ratio_4k_p99: round(call4k.p99 / f4k.p99, 3),
      call_raw_p50_us: round(call16.raw.median), call_raw_p99_us: round(call16.raw.p99),
      call_4k_raw_p50_us: round(call4k.raw.median), call_4k_raw_p99_us: round(call4k.raw.p99),
      guest_clock_read_us: round(clock),
      c_call_p50_us: round(cc16.median), c_call_p99_us: round(cc16.p99),
      c_ratio_p50: round(cc16.median / f16.median, 3), c_ratio_p99: round(cc16.p99 / f16.p99, 3),
      c_call_4k_p50_us: round(cc4k.median), c_call_4k_p99_us: round(cc4k.p99),
      c_to_qjs_p50_us: round(cToQjs.median), c_to_qjs_p99_us: round(cToQjs.p99),
      qjs_to_c_p50_us: round(qjsToC.median), qjs_to_c_p99_us: round(qjsToC.p99),
      c_guest_clock_read_us: round(clockC),
      fresh_paced_p50_us: round(pf.median), fresh_paced_p99_us: round(pf.p99),
      reused_paced_p50_us: round(pr.median), reused_paced_p99_us: round(pr.p99),
      fresh_vs_reused_ratio: round(freshRatio, 3),
      fresh_paced_over_2ms: fr.slow,
      floor_paced_p50_us: round(pfl.median), floor_paced_p99_us: round(pfl.p99),
      fresh_tight_p50_us: round(tf.median), fresh_tight_p99_us: round(tf.p99),
      reused_tight_p50_us: round(tr.median),
      fresh_tight_ratio: round(tf.median / tr.median, 3),
      throughput,
      ...memory,
      shared_vs_clone: sharedVsClone,
      notices: Object.fromEntries(notices),
      iterations: { calls_per_series: CALLS, warmup: WARMUP, block: BLOCK, paced_calls: PACED_CALLS, pace_us: PACE_US, tight_calls: TIGHT_CALLS, throughput_ms: THROUGHPUT_MS },
      goals: {
        ratio_p50: { goal: GOAL_RATIO_P50, met: ratioP50 <= GOAL_RATIO_P50 },
        ratio_p99: { goal: GOAL_RATIO_P99, met: ratioP99 <= GOAL_RATIO_P99 },
        fresh_vs_reused_ratio: { goal: GOAL_FRESH_VS_REUSED, met: freshRatio <= GOAL_FRESH_VS_REUSED },
      },
    };
    const met = (ok: boolean) => (ok ? 'met' : 'NOT met');
    say(`\ncall vs floor (16 B): median ${ratioP50.toFixed(2)}× (goal ≤ ${GOAL_RATIO_P50}: ${met(result.goals.ratio_p50.met)}), p99 ${ratioP99.toFixed(2)}× (goal ≤ ${GOAL_RATIO_P99}: ${met(result.goals.ratio_p99.met)})`);
    say(`fresh vs reused (paced): ${freshRatio.toFixed(2)}× (goal ≤ ${GOAL_FRESH_VS_REUSED}: ${met(result.goals.fresh_vs_reused_ratio.met)})`);
    console.log(JSON.stringify(result));
  } finally {
    await floor.close();
    await mesh.close();
    rmSync(scratch, { recursive: true, force: true });
  }
}

await main();
