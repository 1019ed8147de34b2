/**
 * Benchmark `sql`: what the scoped `sql` capability costs against raw better-sqlite3.
 *
 *   npm run bench -- sql [--blocks N] [--rounds N] [--guest-calls N]
 *
 * One scope file, `<scratch>/scopes/bench.db` (WAL), holds `kv(id INTEGER PRIMARY KEY, name
 * TEXT, score REAL, updated INTEGER)` with 10,000 rows and an empty `ins(name, score, n)`.
 * Every series below runs on that file, in this process, in the same run.
 *
 * 1. In-worker work: `ScopedSql` (kernel/store/scoped-sql.ts, the object a component's worker
 *    calls for each `sql.query`/`sql.execute` import) against a raw better-sqlite3 connection
 *    to the same file, both on this thread. Each side gets its inputs prebuilt in its own
 *    shape, so only the database call is timed:
 *    - point query `SELECT id, name, score, updated FROM kv WHERE id = ?`: raw is a statement
 *      prepared once, `raw(true)`, `safeIntegers(true)`, `.all(id)` (positional rows with s64
 *      as bigint: the data the capability must deliver); scoped is `scoped.query(sql, [id])`
 *      (text → cached checked statement, WIT values with column names). Timed per block of 200
 *      queries; raw and scoped blocks alternate (`--blocks` each, default 300, after 30
 *      unrecorded), the figure is the median block's µs per query.
 *    - 1,000-row insert in one transaction: raw is `db.transaction(rows => rows.forEach(r =>
 *      insert.run(...r)))`; scoped is what a guest must send: `execute('BEGIN')`, 1,000 ×
 *      `execute('INSERT …', [text, real, integer])`, `execute('COMMIT')`. `DELETE FROM ins`
 *      after each round (not timed). `--rounds` each (default 40, after 4 unrecorded), alternating.
 *    `point_query_ratio` and `insert_1000_ratio` = median scoped / median raw. Goal ≤ 1.3 each.
 * 2. The guest call: a QuickJS tool (source below, componentized once and cached in
 *    $TMPDIR/warden-bench-sql-guests) granted `sql: {scope: 'bench', mode: 'rw'}`, run by the
 *    kernel's `Mesh` (worker from dist/kernel/mesh/worker.js, one long-lived instance). It times
 *    each point query inside the guest with `performance.now()`: guest → jco glue lowering →
 *    the worker's import → ScopedSql → lifting → guest. The guest's clock is itself an import,
 *    so after each query it times two back-to-back clock reads and every guest figure is the
 *    raw figure minus the median of those (as bench/mesh.ts does). `--guest-calls` queries
 *    (default 3000, after 2000 unrecorded) → `guest_point_query_us`; and 10 rounds of the
 *    1,000-row insert (after 2) → `guest_insert_1000_us`.
 *
 * Workers run dist/: after changing kernel/, run `npm run build` (a warning says when dist/ is
 * older). Profile with `node --cpu-prof --import tsx bench/sql.ts`.
 * The LAST line of output is one JSON object with every figure.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Engine } from '../kernel/engine/index.js';
import { DEFAULT_LIMITS, KERNEL_GRANTS, NO_GRANTS } from '../kernel/grants/index.js';
import { Mesh, type Notice } from '../kernel/mesh/index.js';
import { PACKAGE_ROOT } from '../kernel/paths.js';
import { ScopedSql, type SqlValue } from '../kernel/store/scoped-sql.js';
import { buildWorld } from '../test/support/worlds.js';
import { option, summarise, type Summary } from './lib/stats.js';

const GOAL_RATIO = 1.3;
const ROWS = 10_000;
const BLOCK = 200;
const WARMUP_BLOCKS = 30;
const BLOCKS = option('blocks', 300);
const WARMUP_ROUNDS = 4;
const ROUNDS = option('rounds', 40);
const GUEST_WARMUP = 2000;
const GUEST_CALLS = option('guest-calls', 3000);
const GUEST_BLOCK = 500;
const GUEST_ROUNDS = 10;

const POINT = 'SELECT id, name, score, updated FROM kv WHERE id = ?';
const INSERT = 'INSERT INTO ins (name, score, n) VALUES (?, ?, ?)';

const GUEST_SOURCE = `
import { execute, query } from 'warden:kernel/sql@0.1.0';
const POINT = ${JSON.stringify(POINT)};
const INSERT = ${JSON.stringify(INSERT)};
export const tool = {
  describe() { return { name: 'sql-bench', description: 'times scoped SQL calls from inside a component', inputSchema: '{}' }; },
  call(input) {
    const req = JSON.parse(input);
    const us = [], clockUs = [];
    let failures = 0, error = null;
    const timed = (f) => {
      const t0 = performance.now();
      try { f(); } catch (e) { failures++; error = e && e.payload !== undefined ? e.payload : String(e); }
      const t1 = performance.now();
      const c0 = performance.now();
      const c1 = performance.now();
      us.push(Math.round((t1 - t0) * 10000) / 10);
      clockUs.push(Math.round((c1 - c0) * 10000) / 10);
    };
    if (req.op === 'point') {
      for (let i = 0; i < req.n; i++) {
        const params = [{ tag: 'integer', val: 1 + ((req.from + i) * 7919) % req.rows }];
        timed(() => query(POINT, params));
      }
    } else {
      const rows = [];
      for (let i = 0; i < 1000; i++) rows.push([{ tag: 'text', val: 'row ' + i }, { tag: 'real', val: i * 1.5 }, { tag: 'integer', val: i }]);
      for (let r = 0; r < req.rounds; r++) {
        timed(() => { execute('BEGIN', []); for (const row of rows) execute(INSERT, row); execute('COMMIT', []); });
        execute('DELETE FROM ins', []);
      }
    }
    return JSON.stringify({ us, clockUs, failures, error });
  },
};`;
const GUEST_WORLD = 'import warden:kernel/sql@0.1.0;\nexport warden:kernel/tool@0.1.0;';

const round = (x: number, digits = 1): number => Number(x.toFixed(digits));
const idOf = (i: number): number => 1 + ((i * 7919) % ROWS);

/** Prepare the scope: `kv` with ROWS rows and an empty `ins`, through the capability itself. */
function fill(scoped: ScopedSql): void {
  scoped.execute('CREATE TABLE kv (id INTEGER PRIMARY KEY, name TEXT, score REAL, updated INTEGER)', []);
  scoped.execute('CREATE TABLE ins (name TEXT, score REAL, n INTEGER)', []);
  scoped.execute('BEGIN', []);
  for (let i = 1; i <= ROWS; i++) {
    scoped.execute('INSERT INTO kv (id, name, score, updated) VALUES (?, ?, ?, ?)', [
      { tag: 'integer', val: BigInt(i) }, { tag: 'text', val: `name ${i}` }, { tag: 'real', val: i * 0.25 }, { tag: 'integer', val: BigInt(1_700_000_000 + i) },
    ]);
  }
  scoped.execute('COMMIT', []);
}

/**
 * Run `raw` and `scoped` samples alternately, each going first every other time (so neither
 * always runs on the warmer cache); the first `warmup` pairs are not kept.
 */
function alternate(raw: () => number, scoped: () => number, warmup: number, n: number): { raw: number[]; scoped: number[] } {
  const out = { raw: [] as number[], scoped: [] as number[] };
  for (let i = 0; i < warmup + n; i++) {
    let r: number;
    let s: number;
    if (i % 2 === 0) {
      r = raw();
      s = scoped();
    } else {
      s = scoped();
      r = raw();
    }
    if (i < warmup) continue;
    out.raw.push(r);
    out.scoped.push(s);
  }
  return out;
}

/** Point queries, raw vs scoped in alternating blocks. @returns µs per query of each block */
function pointQueries(raw: Database.Database, scoped: ScopedSql): { raw: number[]; scoped: number[] } {
  const rawStmt = raw.prepare(POINT).raw(true).safeIntegers(true);
  const rawParams = Array.from({ length: BLOCK }, (_, i) => BigInt(idOf(i)));
  const scopedParams: SqlValue[][] = rawParams.map((id) => [{ tag: 'integer', val: id }]);
  let sink = 0;
  const rawBlock = (): number => {
    const t0 = performance.now();
    for (let i = 0; i < BLOCK; i++) sink += rawStmt.all(rawParams[i]).length;
    return ((performance.now() - t0) * 1000) / BLOCK;
  };
  const scopedBlock = (): number => {
    const t0 = performance.now();
    for (let i = 0; i < BLOCK; i++) sink += scoped.query(POINT, scopedParams[i]!).values.length;
    return ((performance.now() - t0) * 1000) / BLOCK;
  };
  const out = alternate(rawBlock, scopedBlock, WARMUP_BLOCKS, BLOCKS);
  if (sink !== (WARMUP_BLOCKS + BLOCKS) * BLOCK * 2) throw new Error(`point queries returned ${sink} rows`);
  return out;
}

/** 1,000-row inserts in one transaction, raw vs scoped, alternating. @returns µs per 1,000 rows of each round */
function inserts(raw: Database.Database, scoped: ScopedSql): { raw: number[]; scoped: number[] } {
  const rawInsert = raw.prepare(INSERT);
  const rawRows = Array.from({ length: 1000 }, (_, i) => [`row ${i}`, i * 1.5, BigInt(i)] as const);
  const scopedRows: SqlValue[][] = rawRows.map(([name, score, n]) => [{ tag: 'text', val: name }, { tag: 'real', val: score }, { tag: 'integer', val: n }]);
  const rawTx = raw.transaction((rows: typeof rawRows) => {
    for (const row of rows) rawInsert.run(...row);
  });
  const rawRound = (): number => {
    const t0 = performance.now();
    rawTx(rawRows);
    return (performance.now() - t0) * 1000;
  };
  const scopedRound = (): number => {
    const t0 = performance.now();
    scoped.execute('BEGIN', []);
    for (const row of scopedRows) scoped.execute(INSERT, row);
    scoped.execute('COMMIT', []);
    return (performance.now() - t0) * 1000;
  };
  // Each round starts from an empty `ins` (the DELETE is not timed).
  const thenClear = (timedRound: () => number) => (): number => {
    const us = timedRound();
    raw.exec('DELETE FROM ins');
    return us;
  };
  return alternate(thenClear(rawRound), thenClear(scopedRound), WARMUP_ROUNDS, ROUNDS);
}

/** What the guest answers. */
interface Timed {
  us: number[];
  clockUs: number[];
  failures: number;
  error: unknown;
}

/** Guest figures with the guest's clock cost (median of back-to-back reads) taken off. */
function corrected(runs: Timed[]): { summary: Summary; raw: Summary; clock: number } {
  const raw = summarise(runs.flatMap((r) => r.us));
  const clock = summarise(runs.flatMap((r) => r.clockUs)).median;
  return { summary: { median: raw.median - clock, p99: raw.p99 - clock, min: raw.min - clock, n: raw.n }, raw, clock };
}

const GUEST_CACHE = join(tmpdir(), 'warden-bench-sql-guests');

/** The guest componentized once per source, WIT and toolchain. @returns the `.wasm` path */
async function guestWasm(): Promise<string> {
  const toolchain = (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'node_modules/componentize-qjs/package.json'), 'utf8')) as { version: string }).version;
  const key = createHash('sha256').update([GUEST_SOURCE, GUEST_WORLD, readFileSync(join(PACKAGE_ROOT, 'wit/kernel.wit'), 'utf8'), toolchain].join('\0')).digest('hex').slice(0, 16);
  const wasm = join(GUEST_CACHE, `sql-${key}.wasm`);
  if (!existsSync(wasm)) {
    const built = await buildWorld('bench-sql', GUEST_SOURCE, GUEST_WORLD);
    mkdirSync(GUEST_CACHE, { recursive: true });
    copyFileSync(built, wasm);
    rmSync(dirname(built), { recursive: true, force: true });
  }
  return wasm;
}

/** Run the guest's point queries and inserts over the kernel's mesh. */
async function guestSeries(scratch: string, sqlDir: string): Promise<{ point: Timed[]; insert: Timed[] }> {
  const errors: string[] = [];
  const mesh = new Mesh(
    {
      request: async () => {
        throw new Error('no host services');
      },
      notice: (n: Notice) => {
        if (n.op === 'denied' || n.op === 'limit' || (n.op === 'log' && (n.body as { level?: string }).level === 'error')) errors.push(JSON.stringify(n.body));
      },
    },
    { sessionsDir: join(scratch, 'sessions'), sqlDir },
  );
  try {
    const limits = { ...DEFAULT_LIMITS, timeoutMs: 120_000 };
    const compiled = await new Engine(join(tmpdir(), 'warden-bench-transpile-cache')).load(await guestWasm(), { memoryMb: limits.memoryMb });
    await mesh.add({
      name: 'sql-guest', kind: 'tool', compiled, limits, fresh: false, pool: { min: 1, max: 1, spares: 0 },
      grants: { ...NO_GRANTS, sql: { scope: 'bench', mode: 'rw' } },
    });
    const run = async (input: object): Promise<Timed> => {
      const reply = await mesh.call('sql-guest', 'call', { tag: 'json', val: JSON.stringify(input) }, {
        taskId: '', sessionId: null, chain: [], deadline: Date.now() + limits.timeoutMs, grants: KERNEL_GRANTS,
      });
      if (!reply.ok) throw new Error(`sql-guest: ${reply.error.message}`);
      const timed = JSON.parse((JSON.parse((reply.payload as { val: string }).val) as { output: string }).output) as Timed;
      if (timed.failures > 0) throw new Error(`sql-guest: ${timed.failures} SQL calls failed, e.g. ${JSON.stringify(timed.error)}; notices: ${errors.slice(0, 3).join('; ')}`);
      return timed;
    };
    const point: Timed[] = [];
    for (let done = 0; done < GUEST_WARMUP + GUEST_CALLS; done += GUEST_BLOCK) {
      const timed = await run({ op: 'point', n: GUEST_BLOCK, rows: ROWS, from: done });
      if (done >= GUEST_WARMUP) point.push(timed);
    }
    await run({ op: 'insert', rounds: 2 });
    const insert = [await run({ op: 'insert', rounds: GUEST_ROUNDS })];
    return { point, insert };
  } finally {
    await mesh.close();
  }
}

/** Warn when the workers' compiled code is older than the kernel's sources. */
function checkDist(): void {
  const built = statSync(join(PACKAGE_ROOT, 'dist/kernel/mesh/worker.js')).mtimeMs;
  const kernel = join(PACKAGE_ROOT, 'kernel');
  const stale = (readdirSync(kernel, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts') && statSync(join(kernel, f)).mtimeMs > built);
  if (stale.length > 0) console.error(`warning: dist/ is older than kernel/ (${stale.slice(0, 3).join(', ')}${stale.length > 3 ? ', …' : ''}); the guest's worker runs dist/: run \`npm run build\``);
}

async function main(): Promise<void> {
  const say = (line: string) => console.log(line);
  checkDist();
  const scratch = mkdtempSync(join(tmpdir(), 'warden-bench-sql-'));
  const sqlDir = join(scratch, 'scopes');
  const file = join(sqlDir, 'bench.db');
  const loadStart = loadavg()[0]!;
  const scoped = new ScopedSql(file, 'rw', { name: 'bench' });
  const raw = new Database(file);
  try {
    say(`sql benchmark — node ${process.version}, ${cpus().length} CPUs, load ${loadStart.toFixed(2)}; ${BLOCKS} blocks of ${BLOCK} point queries and ${ROUNDS} rounds of 1,000 inserts per side`);
    fill(scoped);
    raw.pragma('journal_mode = WAL');

    say('\nin-worker work: ScopedSql vs raw better-sqlite3 on the same file (µs)');
    const point = pointQueries(raw, scoped);
    const pRaw = summarise(point.raw);
    const pScoped = summarise(point.scoped);
    const pointRatio = pScoped.median / pRaw.median;
    say(`  point query        raw median ${pRaw.median.toFixed(2).padStart(8)} p99 ${pRaw.p99.toFixed(2).padStart(8)}  |  scoped median ${pScoped.median.toFixed(2).padStart(8)} p99 ${pScoped.p99.toFixed(2).padStart(8)}  |  ratio ${pointRatio.toFixed(3)}`);
    const ins = inserts(raw, scoped);
    const iRaw = summarise(ins.raw);
    const iScoped = summarise(ins.scoped);
    const insertRatio = iScoped.median / iRaw.median;
    say(`  1,000-row insert   raw median ${iRaw.median.toFixed(0).padStart(8)} p99 ${iRaw.p99.toFixed(0).padStart(8)}  |  scoped median ${iScoped.median.toFixed(0).padStart(8)} p99 ${iScoped.p99.toFixed(0).padStart(8)}  |  ratio ${insertRatio.toFixed(3)}`);

    say('\nthe full guest call (QuickJS tool over the kernel mesh, timed in the guest, clock cost taken off; µs)');
    const guest = await guestSeries(scratch, sqlDir);
    const gPoint = corrected(guest.point);
    const gInsert = corrected(guest.insert);
    say(`  point query        median ${gPoint.summary.median.toFixed(1).padStart(8)} p99 ${gPoint.summary.p99.toFixed(1).padStart(8)}  (raw ${gPoint.raw.median.toFixed(1)} / ${gPoint.raw.p99.toFixed(1)}, clock pair ${gPoint.clock.toFixed(1)})`);
    say(`  1,000-row insert   median ${gInsert.summary.median.toFixed(0).padStart(8)}  (${(gInsert.summary.median / 1000).toFixed(1)} µs per row)`);

    const result = {
      bench: 'sql',
      node: process.version,
      cpus: cpus().length,
      point_query_ratio: round(pointRatio, 3),
      insert_1000_ratio: round(insertRatio, 3),
      guest_point_query_us: round(gPoint.summary.median),
      raw_point_query_us: round(pRaw.median, 2), raw_point_query_p99_us: round(pRaw.p99, 2),
      scoped_point_query_us: round(pScoped.median, 2), scoped_point_query_p99_us: round(pScoped.p99, 2),
      raw_insert_1000_us: round(iRaw.median, 0), raw_insert_1000_p99_us: round(iRaw.p99, 0),
      scoped_insert_1000_us: round(iScoped.median, 0), scoped_insert_1000_p99_us: round(iScoped.p99, 0),
      guest_point_query_p99_us: round(gPoint.summary.p99),
      guest_point_query_raw_us: round(gPoint.raw.median),
      guest_over_scoped_point_us: round(gPoint.summary.median - pScoped.median),
      guest_insert_1000_us: round(gInsert.summary.median, 0),
      guest_clock_read_us: round(gPoint.clock),
      iterations: { point_blocks: BLOCKS, block: BLOCK, insert_rounds: ROUNDS, guest_point_queries: GUEST_CALLS, guest_insert_rounds: GUEST_ROUNDS, rows: ROWS },
      loadavg_start: round(loadStart, 2),
      loadavg_end: round(loadavg()[0]!, 2),
      goals: {
        point_query_ratio: { goal: GOAL_RATIO, value: round(pointRatio, 3), met: pointRatio <= GOAL_RATIO },
        insert_1000_ratio: { goal: GOAL_RATIO, value: round(insertRatio, 3), met: insertRatio <= GOAL_RATIO },
      },
    };
    const met = (ok: boolean) => (ok ? 'met' : 'NOT met');
    say(`\npoint query ${pointRatio.toFixed(2)}× raw (goal ≤ ${GOAL_RATIO}: ${met(result.goals.point_query_ratio.met)}), 1,000-row insert ${insertRatio.toFixed(2)}× raw (goal ≤ ${GOAL_RATIO}: ${met(result.goals.insert_1000_ratio.met)})`);
    console.log(JSON.stringify(result));
  } finally {
    scoped.close();
    raw.close();
    rmSync(scratch, { recursive: true, force: true });
  }
}

await main();
