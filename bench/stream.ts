/**
 * Benchmark `stream`: the patch stream under load.
 *
 *   npm run bench -- stream [--clients N] [--rate N] [--seconds N] [--history N]
 *   defaults: 200 clients, 2,000 updates/s, 10 s measured (after 2 s of warm-up), 50 finished tasks
 *
 * This process is the kernel: a real `Kernel` (data directory in $TMPDIR, components loaded) with
 * its fastify server on 127.0.0.1, auth on. Its state document is first given a history of
 * `--history` finished tasks (40 steps, 15 tool calls with 400-byte outputs, 4 turns of 150
 * chunks each) so that the document is long, plus 20 running tasks. The clients run in a child
 * process (this file again, `WARDEN_BENCH_STREAM_ROLE=clients`), so their work does not fall on
 * the kernel's event loop: `--clients` WebSocket clients (`ws`, authenticated with a key), each
 * holding the stream from its snapshot on.
 *
 * The kernel calls `kernel.state.update` directly, `--rate` times per second, paced by a 1 ms
 * timer (so a few updates fall in each tick and are coalesced into one envelope, as in the
 * kernel). The mix, over the 20 running tasks: 55% a chunk appended to the task's current turn
 * (`turns[n].chunks.push(text)`, 20–60 characters), 15% a step added, 10% a tool call started,
 * 10% a running tool call finished (status, outcome, a 200-byte output, duration), 5% usage
 * counted, 5% a turn finished and the next one started.
 *
 * Figures:
 * - lag: for every envelope every client receives during the measured window, the client's
 *   receive time (`performance.timeOrigin + performance.now()`) minus the envelope's `ts` (set by
 *   the kernel when it publishes, ms since the epoch, whole ms: the figure is at most 1 ms high);
 *   p50/p99/max over all clients in a 0.05 ms histogram. Also `update_to_publish`: in the kernel,
 *   from an update to the publication of its envelope (the wait for the end of the tick), and
 *   `fanout`: the stream hub's work per envelope (serializing it once and writing it to every client).
 * - the kernel: CPU (user + system, % of one core, over the window; worker threads included),
 *   RSS (start of the window and its maximum, sampled every 200 ms), event-loop delay p99
 *   (`monitorEventLoopDelay`), and the cost of one `update` on the long document (p50/p99 µs)
 *   against one fast-json-patch `compare` of the whole document (what every update cost when the
 *   draft was diffed whole).
 * - bytes: the WebSocket payload bytes (+ frame headers) one client received in the window per
 *   update issued in it, against the size of a snapshot of the document (mean of the window's
 *   start and end). `bytes_ratio` = per update / snapshot.
 * - completeness: envelopes missing in any client's sequence, and snapshots received after the
 *   first (clients cut for lagging, `server.streamBufferBytes`).
 *
 * Goals: `p99_lag_ms` ≤ 50, `bytes_ratio` ≤ 0.05. The LAST line of output is one JSON object.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import fastJsonPatch from 'fast-json-patch';
import WebSocket from 'ws';
import { option, summarise } from './lib/stats.js';
import { mulberry32 } from './lib/random.js';

const ROLE_VARIABLE = 'WARDEN_BENCH_STREAM_ROLE';
const GOAL_P99_LAG_MS = 50;
const GOAL_BYTES_RATIO = 0.05;
const ACTIVE_TASKS = 20;
const WARMUP_MS = 2000;
/** Lag histogram: 0.05 ms buckets up to 10 s. */
const BUCKET_MS = 0.05;
const BUCKETS = 200_000;

type FromKernel = { type: 'connect'; url: string; key: string; clients: number } | { type: 'measure'; startSeq: number } | { type: 'stop'; endSeq: number };
type FromClients =
  | { type: 'ready'; ms: number }
  | { type: 'result'; lag: { p50: number; p99: number; max: number; n: number }; bytes: number; envelopes: number; missing: number; cuts: number; complete: boolean };

const say = (line: string) => console.log(line);
const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;
const now = () => performance.timeOrigin + performance.now();

// ---- the kernel process -------------------------------------------------------------------------


const WORDS = 'the kernel reads a file then writes a patch to the session and calls grep over the tree'.split(' ');
function text(next: () => number, chars: number): string {
  let out = '';
  while (out.length < chars) out += WORDS[Math.floor(next() * WORDS.length)] + ' ';
  return out.slice(0, chars);
}

async function runKernel(): Promise<void> {
  const CLIENTS = option('clients', 200);
  const RATE = option('rate', 2000);
  const SECONDS = option('seconds', 10);
  const HISTORY = option('history', 50);
  const loadStart = loadavg()[0]!;
  // The kernel's modules are imported here so the clients' process does not load them.
  const { Kernel } = await import('../kernel/kernel.js');
  const { buildServer } = await import('../kernel/server/index.js');
  const { shareTranspileCache } = await import('../kernel/testing.js');
  type TaskState = import('../kernel/state/index.js').TaskState;

  const dataDir = mkdtempSync(join(tmpdir(), 'warden-bench-stream-'));
  shareTranspileCache(dataDir);
  writeFileSync(join(dataDir, 'warden.config.json'), JSON.stringify({ server: { streamsPerKey: CLIENTS + 10, rateLimit: { max: 1_000_000 } } }));
  say(`[stream] starting a kernel (${dataDir})`);
  const kernel = await Kernel.start({ dataDir, quiet: true });
  const app = await buildServer(kernel);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const url = `ws://127.0.0.1:${(app.server.address() as { port: number }).port}/api/stream`;
  const key = kernel.keys.create('bench').key;
  const next = mulberry32(42);

  // A long document: finished tasks with everything a task accumulates.
  const makeTask = (id: string, finished: boolean): TaskState => {
    const t: TaskState = {
      id, prompt: text(next, 120), workspace: '/work/repo', model: 'qwen@local', status: finished ? 'succeeded' : 'running', sessionId: null,
      createdAt: Date.now(), steps: {}, toolCalls: {}, usage: { promptTokens: 0, completionTokens: 0 }, turns: {},
    };
    if (!finished) return t;
    for (let s = 1; s <= 40; s++) t.steps[String(s)] = { n: s, component: 'coder', step: 'tool', detail: text(next, 80), ts: Date.now() };
    for (let c = 1; c <= 15; c++) {
      t.toolCalls[`c${c}`] = { id: `c${c}`, caller: 'coder', target: 'read-file', method: 'call', input: text(next, 60), status: 'ok', outcome: 'ok', output: text(next, 400), startedAt: Date.now(), durationMs: 3 };
    }
    for (let n = 1; n <= 4; n++) t.turns![String(n)] = { n, target: 'qwen@local', status: 'done', chunks: Array.from({ length: 150 }, () => text(next, 30)), startedAt: Date.now() };
    t.summary = text(next, 200);
    return t;
  };
  kernel.state.update((d) => {
    for (let i = 0; i < HISTORY; i++) d.tasks[`t-h${String(i).padStart(7, '0')}`] = makeTask(`t-h${String(i).padStart(7, '0')}`, true);
    for (let i = 0; i < ACTIVE_TASKS; i++) {
      const id = `t-a${String(i).padStart(7, '0')}`;
      d.tasks[id] = makeTask(id, false);
      d.tasks[id]!.turns!['1'] = { n: 1, target: 'qwen@local', status: 'streaming', chunks: [], startedAt: Date.now() };
    }
  });
  kernel.state.flush();
  const fullCompare = (() => {
    const copy = JSON.parse(JSON.stringify(kernel.state.current));
    const t = performance.now();
    fastJsonPatch.compare(copy, kernel.state.current);
    return performance.now() - t;
  })();
  say(`[stream] document: ${(Buffer.byteLength(kernel.state.snapshotJson().json) / 1024).toFixed(0)} KiB (${HISTORY} finished tasks, ${ACTIVE_TASKS} running); one full compare ${fullCompare.toFixed(2)} ms`);

  // The clients, in their own process.
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, [ROLE_VARIABLE]: 'clients' }, execArgv: ['--import', 'tsx'] });
  const messages: FromClients[] = [];
  const waiters: Array<() => void> = [];
  child.on('message', (m) => {
    messages.push(m as FromClients);
    for (const w of waiters.splice(0)) w();
  });
  const receive = async <T extends FromClients['type']>(type: T): Promise<Extract<FromClients, { type: T }>> => {
    for (;;) {
      const found = messages.find((m) => m.type === type);
      if (found) return found as Extract<FromClients, { type: T }>;
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  const send = (m: FromKernel) => child.send(m);
  // Listeners run in the order they subscribed: this one before the stream hub's (which subscribes
  // when the first client connects), the fan-out one below after it.
  let measuring = false;
  let firstPending: number | undefined;
  let publishedAt = 0;
  const publishLag: number[] = [];
  const fanOut: number[] = [];
  kernel.state.subscribe(() => {
    publishedAt = now();
    if (measuring && firstPending !== undefined) publishLag.push(publishedAt - firstPending);
    firstPending = undefined;
  });
  send({ type: 'connect', url, key, clients: CLIENTS });
  const ready = await receive('ready');
  say(`[stream] ${CLIENTS} clients connected and holding their snapshot in ${ready.ms.toFixed(0)} ms`);

  // The driver: RATE updates per second, paced by a 1 ms timer.
  const turnOf = new Map<string, number>();
  const running = new Map<string, string[]>();
  let callNo = 0;
  let issued = 0;
  const updateUs: number[] = [];
  kernel.state.subscribe(() => {
    if (measuring) fanOut.push(now() - publishedAt);
  });
  const oneUpdate = () => {
    const id = `t-a${String(Math.floor(next() * ACTIVE_TASKS)).padStart(7, '0')}`;
    const r = next();
    const turn = String(turnOf.get(id) ?? 1);
    const t0 = performance.now();
    firstPending ??= now();
    kernel.state.update((d) => {
      const task = d.tasks[id]!;
      if (r < 0.55) task.turns![turn]!.chunks.push(text(next, 20 + Math.floor(next() * 40)));
      else if (r < 0.7) {
        const n = Object.keys(task.steps).length + 1;
        task.steps[String(n)] = { n, component: 'coder', step: 'tool', detail: text(next, 80), ts: Date.now() };
      } else if (r < 0.8) {
        const callId = `c${++callNo}`;
        task.toolCalls[callId] = { id: callId, caller: 'coder', target: 'grep', method: 'call', input: text(next, 60), status: 'running', startedAt: Date.now() };
        running.set(id, [...(running.get(id) ?? []), callId]);
      } else if (r < 0.9) {
        const callId = running.get(id)?.shift();
        if (callId) Object.assign(task.toolCalls[callId]!, { status: 'ok', outcome: 'ok', output: text(next, 200), durationMs: 4 });
        else task.usage.completionTokens += 1;
      } else if (r < 0.95) {
        task.usage.promptTokens += 50;
        task.usage.completionTokens += 10;
      } else {
        task.turns![turn]!.status = 'done';
        const n = Number(turn) + 1;
        task.turns![String(n)] = { n, target: 'qwen@local', status: 'streaming', chunks: [], startedAt: Date.now() };
        turnOf.set(id, n);
      }
    });
    if (measuring) updateUs.push((performance.now() - t0) * 1000);
    issued++;
  };
  let driving = true;
  const driveStart = performance.now();
  const drive = () => {
    if (!driving) return;
    const due = Math.floor(((performance.now() - driveStart) / 1000) * RATE);
    while (issued < due) oneUpdate();
    setTimeout(drive, 1);
  };
  drive();

  await new Promise((resolve) => setTimeout(resolve, WARMUP_MS));
  kernel.state.flush();
  const startSeq = kernel.state.seq;
  const issuedAtStart = issued;
  const snapshotStart = Buffer.byteLength(kernel.state.snapshotJson().json);
  send({ type: 'measure', startSeq });
  measuring = true;
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const cpuStart = process.cpuUsage();
  const wallStart = performance.now();
  const rssStart = process.memoryUsage().rss;
  let rssMax = rssStart;
  const rssTimer = setInterval(() => (rssMax = Math.max(rssMax, process.memoryUsage().rss)), 200);
  say(`[stream] measuring ${SECONDS} s at ${RATE} updates/s`);
  await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000));
  driving = false;
  measuring = false;
  kernel.state.flush();
  const endSeq = kernel.state.seq;
  const wall = performance.now() - wallStart;
  const cpu = process.cpuUsage(cpuStart);
  loop.disable();
  clearInterval(rssTimer);
  const updates = issued - issuedAtStart;
  const snapshotEnd = Buffer.byteLength(kernel.state.snapshotJson().json);
  send({ type: 'stop', endSeq });
  const result = await receive('result');
  child.kill();
  await app.close();
  await kernel.close();
  rmSync(dataDir, { recursive: true, force: true });

  const snapshotBytes = (snapshotStart + snapshotEnd) / 2;
  const bytesPerUpdate = result.bytes / updates;
  const bytesRatio = bytesPerUpdate / snapshotBytes;
  const update = summarise(updateUs);
  const publish = summarise(publishLag);
  const fan = summarise(fanOut);
  const out = {
    bench: 'stream',
    node: process.version,
    cpus: cpus().length,
    clients: CLIENTS,
    updates_per_s: round(updates / (wall / 1000), 0),
    envelopes_per_s: round((endSeq - startSeq) / (wall / 1000), 0),
    p50_lag_ms: round(result.lag.p50),
    p99_lag_ms: round(result.lag.p99),
    max_lag_ms: round(result.lag.max),
    lag_samples: result.lag.n,
    update_to_publish_p50_ms: round(publish.median, 3),
    update_to_publish_p99_ms: round(publish.p99, 3),
    fanout_p50_ms: round(fan.median, 3),
    fanout_p99_ms: round(fan.p99, 3),
    bytes_per_update: round(bytesPerUpdate, 1),
    snapshot_bytes: round(snapshotBytes, 0),
    bytes_ratio: round(bytesRatio, 6),
    update_p50_us: round(update.median, 1),
    update_p99_us: round(update.p99, 1),
    full_compare_ms: round(fullCompare, 2),
    kernel_cpu_pct: round(((cpu.user + cpu.system) / 1000 / wall) * 100, 1),
    kernel_rss_start_mb: round(rssStart / 2 ** 20, 1),
    kernel_rss_max_mb: round(rssMax / 2 ** 20, 1),
    event_loop_delay_p99_ms: round(loop.percentile(99) / 1e6),
    envelopes_missing: result.missing,
    clients_cut_to_snapshot: result.cuts,
    complete: result.complete,
    iterations: { seconds: SECONDS, warmup_ms: WARMUP_MS, updates, envelopes: endSeq - startSeq, history_tasks: HISTORY, active_tasks: ACTIVE_TASKS },
    loadavg_start: round(loadStart),
    loadavg_end: round(loadavg()[0]!),
    goals: {
      p99_lag_ms: { goal: GOAL_P99_LAG_MS, value: round(result.lag.p99), met: result.lag.p99 <= GOAL_P99_LAG_MS },
      bytes_ratio: { goal: GOAL_BYTES_RATIO, value: round(bytesRatio, 6), met: bytesRatio <= GOAL_BYTES_RATIO },
    },
  };
  say(`\n  lag (publish → client)   p50 ${out.p50_lag_ms} ms  p99 ${out.p99_lag_ms} ms  max ${out.max_lag_ms} ms  (${out.lag_samples} deliveries)`);
  say(`  update → publish         p50 ${out.update_to_publish_p50_ms} ms  p99 ${out.update_to_publish_p99_ms} ms`);
  say(`  fan-out to ${CLIENTS} clients  p50 ${out.fanout_p50_ms} ms  p99 ${out.fanout_p99_ms} ms per envelope`);
  say(`  rate                     ${out.updates_per_s} updates/s in ${out.envelopes_per_s} envelopes/s to ${CLIENTS} clients`);
  say(`  update on a ${(snapshotBytes / 1024).toFixed(0)} KiB document  p50 ${out.update_p50_us} µs  p99 ${out.update_p99_us} µs  (a full compare: ${out.full_compare_ms} ms)`);
  say(`  bytes                    ${out.bytes_per_update} per update against a ${out.snapshot_bytes}-byte snapshot: ${(bytesRatio * 100).toFixed(4)}%`);
  say(`  kernel                   CPU ${out.kernel_cpu_pct}% of a core, RSS ${out.kernel_rss_start_mb} → max ${out.kernel_rss_max_mb} MB, event-loop delay p99 ${out.event_loop_delay_p99_ms} ms`);
  say(`  completeness             ${out.envelopes_missing} envelopes missing, ${out.clients_cut_to_snapshot} cuts to snapshot`);
  const met = (ok: boolean) => (ok ? 'met' : 'NOT met');
  say(`\np99 lag ${out.p99_lag_ms} ms (goal ≤ ${GOAL_P99_LAG_MS}: ${met(out.goals.p99_lag_ms.met)}), bytes per update ${(bytesRatio * 100).toFixed(4)}% of the snapshot (goal ≤ ${GOAL_BYTES_RATIO * 100}%: ${met(out.goals.bytes_ratio.met)})`);
  console.log(JSON.stringify(out));
}

// ---- the clients' process -----------------------------------------------------------------------

/** `"name":<integer>` in the first bytes of a message, without parsing the whole JSON. */
function integerField(data: Buffer, name: string): number | undefined {
  const head = data.toString('latin1', 0, Math.min(data.length, 64));
  const at = head.indexOf(`"${name}":`);
  if (at < 0) return undefined;
  return Number.parseInt(head.slice(at + name.length + 3), 10);
}

function runClients(): void {
  const histogram = new Uint32Array(BUCKETS + 1);
  let samples = 0;
  let maxLag = 0;
  let startSeq = Infinity;
  let endSeq = Infinity;
  let bytes = 0;
  let envelopes = 0;
  let missing = 0;
  let cuts = 0;
  const last: number[] = [];
  const sockets: WebSocket[] = [];
  let finish: (() => void) | undefined;

  const onMessage = (i: number, data: Buffer) => {
    const at = now();
    if (data[2] === 0x74 /* {"type":… */) {
      const seq = integerField(data, 'seq')!;
      if (last[i] !== undefined && seq > startSeq) cuts++;
      last[i] = seq;
      return;
    }
    const seq = integerField(data, 'seq')!;
    const ts = integerField(data, 'ts')!;
    if (last[i] !== undefined && seq !== last[i]! + 1) missing += seq - last[i]! - 1;
    last[i] = seq;
    if (seq <= startSeq || seq > endSeq) return;
    const lag = Math.max(0, at - ts);
    histogram[Math.min(BUCKETS, Math.floor(lag / BUCKET_MS))]!++;
    samples++;
    if (lag > maxLag) maxLag = lag;
    if (i === 0) {
      envelopes++;
      bytes += data.length + (data.length < 126 ? 2 : data.length < 65_536 ? 4 : 10);
    }
    if (seq === endSeq && finish && last.every((s) => s >= endSeq)) finish();
  };
  const quantileOf = (q: number) => {
    const rank = Math.ceil(q * samples);
    let seen = 0;
    for (let b = 0; b <= BUCKETS; b++) {
      seen += histogram[b]!;
      if (seen >= rank) return (b + 1) * BUCKET_MS;
    }
    return NaN;
  };

  process.on('message', async (message: FromKernel) => {
    if (message.type === 'connect') {
      const started = now();
      const batch = 20;
      for (let i = 0; i < message.clients; i += batch) {
        await Promise.all(
          Array.from({ length: Math.min(batch, message.clients - i) }, (_, k) => {
            const n = i + k;
            const socket = new WebSocket(message.url, { headers: { authorization: `Bearer ${message.key}` }, perMessageDeflate: false });
            sockets[n] = socket;
            return new Promise<void>((resolve, reject) => {
              socket.on('message', (data: Buffer) => {
                onMessage(n, data);
                if (last[n] !== undefined) resolve();
              });
              socket.once('error', reject);
            });
          }),
        );
      }
      process.send!({ type: 'ready', ms: now() - started } satisfies FromClients);
    } else if (message.type === 'measure') {
      startSeq = message.startSeq;
    } else if (message.type === 'stop') {
      endSeq = message.endSeq;
      const complete = await new Promise<boolean>((resolve) => {
        if (last.every((s) => s >= endSeq)) return resolve(true);
        finish = () => resolve(true);
        setTimeout(() => resolve(false), 30_000);
      });
      for (const socket of sockets) socket.terminate();
      process.send!({ type: 'result', lag: { p50: quantileOf(0.5), p99: quantileOf(0.99), max: maxLag, n: samples }, bytes, envelopes, missing, cuts, complete } satisfies FromClients, () => process.exit(0));
    }
  });
}

if (process.env[ROLE_VARIABLE] === 'clients') runClients();
else await runKernel();
