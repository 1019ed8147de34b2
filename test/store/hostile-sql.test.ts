// Hostile SQL through a real component in a real kernel worker. Scope A (component `scope-a`)
// tries every route to scope B's data and to the kernel's own warden.db; a read-only grant on B
// tries to write; a scope fills its size cap; a query and a transaction run past the call's
// deadline. Each attack is asserted contained, and the kernel keeps serving after it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSqlKernel, type SqlKernel, type Step, type StepResult } from './sql-guest.js';

let k: SqlKernel;
const scopeFile = (scope: string) => join(k.dataDir, 'scopes', `${scope}.db`);

/** Rows of a scope file read by the test itself (read-only, outside any worker). */
function fileRows(scope: string, sql: string): unknown[] {
  const db = new Database(scopeFile(scope), { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).raw(true).all();
  } finally {
    db.close();
  }
}

function expectDenied(r: StepResult, why: RegExp, label: string): void {
  expect(r, label).toMatchObject({ ok: false, error: { tag: 'denied' } });
  expect(r.error!.val, label).toMatch(/^E_SQL_DENIED: /);
  expect(r.error!.val, label).toMatch(why);
}

function expectInvalid(r: StepResult, why: RegExp, label: string): void {
  expect(r, label).toMatchObject({ ok: false, error: { tag: 'invalid' } });
  expect(r.error!.val, label).toMatch(/^E_SQL_INVALID: /);
  expect(r.error!.val, label).toMatch(why);
}

/** Run `attacks` as scope A, one step each, and check each outcome. */
async function attack(attacks: Array<[Step, (r: StepResult, label: string) => void]>): Promise<StepResult[]> {
  const results = await k.steps('scope-a', attacks.map(([step]) => step));
  attacks.forEach(([step, check], i) => check(results[i]!, 'q' in step ? step.q : step.x));
  // Nothing of B, of the kernel's database or of the host's paths came back.
  const text = JSON.stringify(results);
  expect(text).not.toContain('B-SECRET');
  expect(text).not.toContain(k.dataDir);
  return results;
}

beforeAll(async () => {
  k = await startSqlKernel({
    'scope-a': { sql: { scope: 'alpha', mode: 'rw' }, pool: { min: 2, max: 2 } },
    'scope-b': { sql: { scope: 'beta', mode: 'rw' }, pool: { min: 1, max: 1 } },
    'reader-b': { sql: { scope: 'beta', mode: 'ro' }, pool: { min: 1, max: 1 } },
    filler: { sql: { scope: 'fill', mode: 'rw' }, pool: { min: 1, max: 1 } },
    slow: { sql: { scope: 'slow', mode: 'rw' }, pool: { min: 2, max: 2 } },
  });
  const seed = (secret: string): Step[] => [
    { x: 'CREATE TABLE secrets (k TEXT, v TEXT)' },
    { x: 'INSERT INTO secrets VALUES (?, ?)', params: [{ text: 'key' }, { text: secret }] },
  ];
  expect((await k.steps('scope-a', seed('A-SECRET'))).every((r) => r.ok)).toBe(true);
  expect((await k.steps('scope-b', seed('B-SECRET'))).every((r) => r.ok)).toBe(true);
});
afterAll(async () => k?.kernel.close());

describe('scope A cannot reach scope B or the kernel database', () => {
  it('reads its own rows, with column names and typed values', async () => {
    const [row] = await k.steps('scope-a', [{ q: 'SELECT k, v, 7 AS n, 2.5 AS r, NULL AS z, x\'00ff\' AS b FROM secrets' }]);
    expect(row).toEqual({ ok: true, columns: ['k', 'v', 'n', 'r', 'z', 'b'], rows: [['key', 'A-SECRET', { int: 7 }, { real: 2.5 }, null, { blob: [0, 255] }]] });
  });

  it('ATTACH and DETACH are refused however they are written; a second statement never runs', async () => {
    const beta = scopeFile('beta');
    const kernelDb = join(k.dataDir, 'warden.db');
    const attach = (r: StepResult, label: string) => expectDenied(r, /ATTACH is refused: a scope is one database file/, label);
    await attack([
      [{ x: `ATTACH DATABASE '${beta}' AS b` }, attach],
      [{ x: `ATTACH '${kernelDb}' AS k` }, attach],
      [{ x: `attach '${beta}' as b` }, attach],
      [{ x: `/* hi */ AtTaCh/**/'${beta}'/**/AS/**/b` }, attach],
      [{ x: `-- a comment\nATTACH '${beta}' AS b` }, attach],
      [{ x: `ATTACH ? AS b`, params: [{ text: beta }] }, attach],
      [{ x: `EXPLAIN ATTACH '${beta}' AS b` }, attach],
      [{ x: `EXPLAIN QUERY PLAN ATTACH '${beta}' AS b` }, attach],
      [{ x: `ATTACH '${beta}' AS b; SELECT 1` }, attach],
      [{ x: 'DETACH main' }, (r, l) => expectDenied(r, /DETACH is refused/, l)],
      [{ q: `SELECT 1; ATTACH '${beta}' AS b` }, (r, l) => expectInvalid(r, /more than one statement: one statement per call/, l)],
      [{ q: `SELECT 1 /* ; */; -- \n ATTACH '${beta}' AS b` }, (r, l) => expectInvalid(r, /more than one statement/, l)],
      // Look-alike keywords are identifiers to SQLite: a syntax error, never an ATTACH.
      [{ x: `ＡTTACH '${beta}' AS b` }, (r, l) => expectInvalid(r, /syntax error/, l)],
      [{ x: `\u200bATTACH '${beta}' AS b` }, (r, l) => expectInvalid(r, /syntax error/, l)],
      [{ q: `SELECT 1\u0000; ATTACH '${beta}' AS b` }, (r, l) => expectInvalid(r, /NUL character/, l)],
      // Whatever was tried above, there is no schema `b` or `k`.
      [{ q: 'SELECT * FROM b.secrets' }, (r, l) => expectInvalid(r, /no such table: b\.secrets/, l)],
      [{ q: 'SELECT * FROM k.audit' }, (r, l) => expectInvalid(r, /no such table: k\.audit/, l)],
    ]);
  });

  it('qualified names, sqlite_master, CTEs, views and triggers find nothing outside the scope', async () => {
    const ok = (rows: unknown[][]) => (r: StepResult, l: string) => expect(r, l).toMatchObject({ ok: true, rows });
    await attack([
      [{ q: 'SELECT v FROM main.secrets' }, ok([['A-SECRET']])],
      [{ q: 'SELECT v FROM "main"."secrets"' }, ok([['A-SECRET']])],
      [{ q: 'SELECT * FROM beta.secrets' }, (r, l) => expectInvalid(r, /no such table: beta\.secrets/, l)],
      [{ q: 'SELECT * FROM [beta].[secrets]' }, (r, l) => expectInvalid(r, /no such table: beta\.secrets/, l)],
      [{ q: 'SELECT sql FROM beta.sqlite_master' }, (r, l) => expectInvalid(r, /no such table: beta\.sqlite_master/, l)],
      [{ q: 'SELECT type, name FROM sqlite_master' }, ok([['table', 'secrets']])],
      [{ q: 'SELECT name FROM temp.sqlite_master' }, ok([])],
      [{ q: 'WITH x AS (SELECT * FROM beta.secrets) SELECT * FROM x' }, (r, l) => expectInvalid(r, /no such table: beta\.secrets/, l)],
      [{ q: 'WITH RECURSIVE x(n) AS (SELECT name FROM pragma_database_list UNION SELECT n FROM x) SELECT n FROM x' }, ok([['main'], ['temp']])],
      [{ x: 'CREATE VIEW peek AS SELECT * FROM beta.secrets' }, (r, l) => expectInvalid(r, /view peek cannot reference objects in database beta/, l)],
      [{ x: 'CREATE TEMP VIEW tpeek AS SELECT * FROM beta.secrets' }, (r, l) => expect(r.ok, l).toBe(true)],
      [{ q: 'SELECT * FROM tpeek' }, (r, l) => expectInvalid(r, /no such table: beta\.secrets/, l)],
      [{ x: 'CREATE TRIGGER spy AFTER INSERT ON secrets BEGIN INSERT INTO beta.secrets VALUES (new.k, new.v); END' },
        (r, l) => expectInvalid(r, /qualified table names are not allowed/, l)],
      [{ x: 'CREATE TEMP TRIGGER tspy AFTER INSERT ON main.secrets BEGIN SELECT * FROM beta.secrets; END' }, (r, l) => expect(r.ok, l).toBe(true)],
      [{ x: "INSERT INTO secrets VALUES ('k2', 'v2')" }, (r, l) => expectInvalid(r, /no such table: beta\.secrets/, l)],
      [{ x: 'DROP TRIGGER tspy' }, (r, l) => expect(r.ok, l).toBe(true)],
      [{ x: 'DROP VIEW tpeek' }, (r, l) => expect(r.ok, l).toBe(true)],
    ]);
  });

  it('pragmas: read-only reports about the scope itself only; pragma_database_list names no file', async () => {
    const pragma = (r: StepResult, l: string) => expectDenied(r, /^E_SQL_DENIED: PRAGMA .* is refused: a scope may run only read-only reports about itself/, l);
    const noFiles = (r: StepResult, l: string) => expect(r, l).toMatchObject({ ok: true, rows: [[{ int: 0 }, 'main', ''], [{ int: 1 }, 'temp', '']] });
    await attack([
      [{ q: 'PRAGMA database_list' }, pragma],
      [{ q: 'PRAGMA "database_list"' }, pragma],
      [{ q: 'PRAGMA main.database_list' }, pragma],
      [{ q: 'pragma/**/DATABASE_LIST' }, pragma],
      [{ x: 'PRAGMA max_page_count = 1000000000' }, pragma],
      [{ x: 'PRAGMA main.max_page_count(1000000000)' }, pragma],
      [{ x: 'PRAGMA writable_schema = ON' }, pragma],
      [{ x: 'EXPLAIN PRAGMA writable_schema = ON' }, pragma],
      [{ x: "PRAGMA temp_store_directory = '/tmp'" }, pragma],
      [{ x: 'PRAGMA query_only = OFF' }, pragma],
      [{ x: 'PRAGMA trusted_schema = ON' }, pragma],
      [{ x: 'PRAGMA foreign_keys = OFF' }, pragma],
      [{ x: 'PRAGMA journal_mode = DELETE' }, pragma],
      [{ x: 'PRAGMA table_info(secrets); ATTACH 1 AS b' }, pragma],
      [{ q: 'PRAGMA table_info(secrets)' }, (r, l) => expect(r, l).toMatchObject({ ok: true, columns: ['cid', 'name', 'type', 'notnull', 'dflt_value', 'pk'] })],
      [{ q: 'PRAGMA max_page_count' }, (r, l) => expect(r, l).toMatchObject({ ok: true, rows: [[{ int: 16384 }]] })],
      [{ x: 'PRAGMA user_version = 7' }, (r, l) => expect(r.ok, l).toBe(true)],
      [{ q: 'SELECT * FROM pragma_database_list' }, noFiles],
      [{ q: 'SELECT * FROM "PRAGMA_DATABASE_LIST" AS d' }, noFiles],
      [{ x: 'CREATE TEMP VIEW dl AS SELECT * FROM main.pragma_database_list' }, (r, l) => expect(r.ok, l).toBe(true)],
      [{ q: 'SELECT * FROM dl' }, noFiles],
      // A view in the scope file is schema a component wrote: SQLite runs only innocuous things in it.
      [{ x: 'CREATE VIEW mdl AS SELECT * FROM pragma_database_list' }, (r, l) => expect(r.ok, l).toBe(true)],
      [{ q: 'SELECT * FROM mdl' }, (r, l) => expectDenied(r, /unsafe use of virtual table "pragma_database_list"/, l)],
      [{ x: 'DROP VIEW mdl' }, (r, l) => expect(r.ok, l).toBe(true)],
    ]);
  });

  it('VACUUM INTO, load_extension, file or tokenizer functions and the guard\'s deadline function are refused', async () => {
    const stolen = join(k.dataDir, 'stolen.db');
    const elsewhere = join(tmpdir(), `warden-stolen-${process.pid}.db`);
    const ext = join(process.cwd(), 'node_modules/better-sqlite3/build/Release/better_sqlite3.node');
    const loadExt = (r: StepResult, l: string) => expectDenied(r, /load_extension\(\) is refused/, l);
    await attack([
      [{ x: `VACUUM INTO '${stolen}'` }, (r, l) => expectDenied(r, /VACUUM INTO is refused/, l)],
      [{ x: `vacuum main into '${elsewhere}'` }, (r, l) => expectDenied(r, /VACUUM INTO is refused/, l)],
      [{ x: 'VACUUM INTO ?', params: [{ text: stolen }] }, (r, l) => expectDenied(r, /VACUUM INTO is refused/, l)],
      [{ x: 'VACUUM' }, (r, l) => expect(r.ok, l).toBe(true)],
      [{ q: `SELECT load_extension('${ext}')` }, loadExt],
      [{ q: 'SELECT load_extension(?, ?)', params: [{ text: ext }, { text: 'sqlite3_extension_init' }] }, loadExt],
      [{ q: 'SELECT "load_extension"(\'x\')' }, loadExt],
      [{ x: "CREATE TEMP TRIGGER ext AFTER INSERT ON main.secrets BEGIN SELECT load_extension('x'); END" }, (r, l) => expect(r.ok, l).toBe(true)],
      [{ x: "INSERT INTO secrets VALUES ('k3', 'v3')" }, loadExt],
      [{ x: 'DROP TRIGGER ext' }, (r, l) => expect(r.ok, l).toBe(true)],
      [{ x: "CREATE TABLE d (x DEFAULT (load_extension('x')))" }, (r, l) => expect(r.ok, l).toBe(true)],
      [{ x: 'INSERT INTO d DEFAULT VALUES' }, (r, l) => expectDenied(r, /unsafe use of load_extension\(\)/, l)],
      [{ q: `SELECT readfile('${scopeFile('beta')}')` }, (r, l) => expectInvalid(r, /no such function: readfile/, l)],
      [{ q: `SELECT writefile('${stolen}', 'x')` }, (r, l) => expectInvalid(r, /no such function: writefile/, l)],
      [{ q: "SELECT fts3_tokenizer('simple')" }, (r, l) => expectDenied(r, /fts3_tokenizer\(\) is refused/, l)],
      [{ q: "SELECT fts3_tokenizer('evil', x'0000000000000000')" }, (r, l) => expectDenied(r, /fts3_tokenizer\(\) is refused/, l)],
      [{ q: "SELECT sqlite_attach('x', 'y', NULL)" }, (r, l) => expectInvalid(r, /no such function: sqlite_attach/, l)],
      // The guard's own function would lift the statement deadline (it also wants a token the guest never sees).
      [{ q: `SELECT warden_guard('${'0'.repeat(32)}', 'deadline', 0)` }, (r, l) => expectDenied(r, /warden_guard\(\) is refused/, l)],
      [{ q: 'SELECT "Warden_Guard"(?, ?, ?)', params: [{ text: '0'.repeat(32) }, { text: 'max_length' }, { int: 1e9 }] }, (r, l) => expectDenied(r, /warden_guard\(\) is refused/, l)],
      [{ x: "CREATE TEMP TRIGGER dl AFTER INSERT ON main.secrets BEGIN SELECT warden_guard('x', 'deadline', 0); END" }, (r, l) => expect(r.ok, l).toBe(true)],
      [{ x: "INSERT INTO secrets VALUES ('k4', 'v4')" }, (r, l) => expectDenied(r, /warden_guard\(\) is refused|unsafe use of warden_guard\(\)/, l)],
      [{ x: 'DROP TRIGGER dl' }, (r, l) => expect(r.ok, l).toBe(true)],
    ]);
    expect(existsSync(stolen)).toBe(false);
    expect(existsSync(elsewhere)).toBe(false);
  });

  it('after every attack: B is unchanged, nothing new exists in the data directory, each refusal is audited', async () => {
    expect(fileRows('beta', 'SELECT k, v FROM secrets')).toEqual([['key', 'B-SECRET']]);
    expect(fileRows('beta', "SELECT name FROM sqlite_master")).toEqual([['secrets']]);
    expect(fileRows('beta', 'PRAGMA user_version')).toEqual([[0]]);
    // Scope files are created by their first SQL call; only A and B have made one.
    expect(readdirSync(join(k.dataDir, 'scopes')).filter((f) => f.endsWith('.db')).sort()).toEqual(['alpha.db', 'beta.db']);
    expect(readdirSync(k.dataDir).filter((f) => f.endsWith('.db'))).toEqual(['warden.db']);
    const denials = k.kernel.store.auditEvents(500).filter((e) => e.kind === 'denied' && e.component === 'scope-a');
    expect(denials.length).toBeGreaterThanOrEqual(20);
    expect(denials.map((e) => e.detail).join('\n')).toContain('E_SQL_DENIED: ATTACH is refused');
    // The kernel still serves, B included.
    expect(await k.steps('scope-b', [{ q: 'SELECT v FROM secrets' }])).toEqual([{ ok: true, columns: ['v'], rows: [['B-SECRET']] }]);
  });
});

describe('a read-only grant', () => {
  it('reads its scope, and every write is refused by SQLite\'s verdict on the statement (TEMP included)', async () => {
    const writes = [
      "INSERT INTO secrets VALUES ('x', 'y')", "UPDATE secrets SET v = 'pwned'", 'DELETE FROM secrets', "REPLACE INTO secrets VALUES ('k', 'v')",
      'CREATE TABLE t (x)', 'CREATE INDEX i ON secrets (v)', 'DROP TABLE secrets', 'ALTER TABLE secrets ADD COLUMN c', 'CREATE TEMP TABLE tt (x)',
      'CREATE TEMP VIEW tv AS SELECT 1', 'PRAGMA user_version = 9', 'BEGIN IMMEDIATE', 'VACUUM', 'ANALYZE',
    ];
    const results = await k.steps('reader-b', [
      { q: 'SELECT v FROM secrets' },
      ...writes.map((x) => ({ x })),
      { q: "INSERT INTO secrets VALUES ('r', 's') RETURNING *" },
      { q: 'SELECT count(*) FROM secrets' },
    ]);
    expect(results[0]).toEqual({ ok: true, columns: ['v'], rows: [['B-SECRET']] });
    for (const [i, sql] of [...writes, 'INSERT … RETURNING'].entries()) {
      expectDenied(results[i + 1]!, /scope "beta" is granted read-only \(sql mode ro\) and this statement writes; writing needs a grant with mode rw/, sql);
    }
    expect(results.at(-1)).toMatchObject({ ok: true, rows: [[{ int: 1 }]] });
    expect(fileRows('beta', 'SELECT k, v FROM secrets')).toEqual([['key', 'B-SECRET']]);
    expect(fileRows('beta', "SELECT type, name FROM sqlite_master")).toEqual([['table', 'secrets']]);
    expect(fileRows('beta', 'PRAGMA user_version')).toEqual([[0]]);
  });
});

describe('limits', () => {
  it('a scope that fills its size cap gets a clean E_LIMIT_SQL_SIZE and stays usable', async () => {
    await k.steps('filler', [{ x: 'CREATE TABLE big (b BLOB)' }]);
    const result = await k.call<{ n: number; error: { tag: string; val: string }; after: StepResult[] }>('filler', {
      fill: { x: 'INSERT INTO big VALUES (randomblob(1048576))' },
      max: 200,
      after: [
        { x: 'DELETE FROM big WHERE rowid > 4' }, { x: 'VACUUM' }, { x: "INSERT INTO big VALUES (x'01')" },
        { q: 'SELECT count(*) FROM big' }, { q: 'PRAGMA integrity_check' }, { q: 'PRAGMA page_count' },
      ],
    });
    // 64 MiB of pages hold a little under 64 one-MiB blobs.
    expect(result.n).toBeGreaterThan(55);
    expect(result.n).toBeLessThan(64);
    expect(result.error.tag).toBe('limit');
    expect(result.error.val).toMatch(/^E_LIMIT_SQL_SIZE: scope "fill" is full: its cap is 64 MiB \(16384 pages of 4096 B, TEMP as much again\), or the disk is full; delete rows \(then VACUUM\) to make room$/);
    expect(result.after.slice(0, 3).every((r) => r.ok)).toBe(true);
    expect(result.after[3]).toMatchObject({ rows: [[{ int: 5 }]] });
    expect(result.after[4]).toMatchObject({ rows: [['ok']] });
    expect((result.after[5]!.rows![0]![0] as { int: number }).int).toBeLessThan(2000);
    expect(statSync(scopeFile('fill')).size).toBeLessThanOrEqual(16384 * 4096);
    const limits = k.kernel.store.auditEvents(500).filter((e) => e.kind === 'limit' && e.component === 'filler');
    expect(limits.map((e) => e.detail).join('\n')).toContain('E_LIMIT_SQL_SIZE');
  });

  it('a query past its deadline is interrupted inside SQLite: the guest gets E_LIMIT_TIME and answers, its worker serves on, the scope is intact', async () => {
    await k.steps('slow', [{ x: 'CREATE TABLE kept (x TEXT)' }, { x: "INSERT INTO kept VALUES ('before')" }]);
    const workerIds = () => k.kernel.mesh.pools().find((p) => p.name === 'slow')!.workers.map((w) => w.workerId).sort();
    const before = workerIds();
    // Unbounded: without an interrupt this statement never ends, and no JavaScript can stop it.
    const forever = 'WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c) SELECT count(*) FROM c';
    const started = Date.now();
    const results = await k.call<StepResult[]>('slow', {
      steps: [{ x: 'BEGIN' }, { x: "INSERT INTO kept VALUES ('doomed')" }, { q: forever }, { q: 'SELECT x FROM kept' }],
    }, 1500);
    const waited = Date.now() - started;
    expect(results.slice(0, 2).every((r) => r.ok)).toBe(true);
    expect(results[2]).toEqual({ ok: false, error: { tag: 'limit', val: expect.stringMatching(/^E_LIMIT_TIME: scope "slow": the statement was still running at the call's deadline and SQLite interrupted it/) } });
    expect(results[3]).toEqual({ ok: false, error: { tag: 'limit', val: expect.stringMatching(/^E_LIMIT_TIME: scope "slow": the call's deadline has passed/) } });
    // Interrupted a margin before the deadline (150 ms of 1500), so the guest answered in time.
    expect(waited).toBeGreaterThanOrEqual(1300);
    expect(waited).toBeLessThan(1500 + 1000);
    // No worker was stopped or replaced, and no thread is still running the statement: this
    // process (the kernel and its workers) is idle for the next second.
    expect(workerIds()).toEqual(before);
    const cpu = process.cpuUsage();
    await new Promise((r) => setTimeout(r, 1000));
    const used = process.cpuUsage(cpu);
    expect((used.user + used.system) / 1000).toBeLessThan(400);
    // The kernel serves others and the same component at once; the call's transaction is gone.
    expect(await k.steps('scope-b', [{ q: 'SELECT v FROM secrets' }])).toEqual([{ ok: true, columns: ['v'], rows: [['B-SECRET']] }]);
    expect(await k.steps('slow', [{ q: 'SELECT x FROM kept' }])).toEqual([{ ok: true, columns: ['x'], rows: [['before']] }]);
    expect(fileRows('slow', 'SELECT x FROM kept')).toEqual([['before']]);
    expect(fileRows('slow', 'PRAGMA integrity_check')).toEqual([['ok']]);
    const limits = k.kernel.store.auditEvents(500).filter((e) => e.kind === 'limit' && e.component === 'slow');
    expect(limits.map((e) => e.detail).join('\n')).toContain('SQLite interrupted it');
  });

  it('a worker stopped while inside SQLite is terminated only once its statement ended: the kernel process survives', async () => {
    // better-sqlite3 aborts the process when a statement fails while its thread is being
    // terminated; the mesh waits until the worker is out of SQLite (Board.native).
    const forever = 'WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c) SELECT count(*) FROM c';
    const call = k.call<StepResult[]>('slow', { steps: [{ q: forever }, { q: forever }] }, 2000).then((r) => ({ ok: true as const, r }), (e: Error) => ({ ok: false as const, e }));
    const serving = () => k.kernel.mesh.pools().find((p) => p.name === 'slow')!.workers.find((w) => w.load > 0);
    const deadline = Date.now() + 5000;
    while (!serving() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 300));
    const victim = serving()!;
    const started = Date.now();
    expect(await k.kernel.mesh.terminateWorker(victim.workerId)).toBe(true);
    // It waited for the statement's interrupt (at 2000 - 200 ms), not for the statement to end by itself.
    expect(Date.now() - started).toBeGreaterThan(800);
    expect(Date.now() - started).toBeLessThan(4000);
    const outcome = await call;
    // Either the guest answered with both statements refused in time, or its worker died first.
    if (outcome.ok) expect(outcome.r.map((r) => r.ok)).toEqual([false, false]);
    else expect(outcome.e.message).toMatch(/^E_(MESH_FAILED|LIMIT_TIME)/);
    expect(await k.steps('slow', [{ q: 'SELECT x FROM kept' }])).toEqual([{ ok: true, columns: ['x'], rows: [['before']] }]);
  });

  it('a transaction of a call stopped at its deadline is rolled back and its lock released', async () => {
    await expect(k.call('slow', {
      steps: [{ x: 'BEGIN' }, { x: "INSERT INTO kept VALUES ('doomed')" }],
      then: 'spin',
    }, 1500)).rejects.toThrow(/^E_LIMIT_TIME/);
    const started = Date.now();
    const after = await k.steps('slow', [{ x: "INSERT INTO kept VALUES ('after')" }, { q: 'SELECT x FROM kept ORDER BY rowid' }]);
    expect(after).toEqual([{ ok: true, changes: 1, lastInsertRowid: 2 }, { ok: true, columns: ['x'], rows: [['before'], ['after']] }]);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(fileRows('slow', 'SELECT x FROM kept ORDER BY rowid')).toEqual([['before'], ['after']]);
  });

  it('a transaction a call leaves open is rolled back when the call ends; other workers can write', async () => {
    const first = await k.steps('scope-a', [{ x: 'CREATE TABLE lot (x TEXT)' }, { x: 'BEGIN' }, { x: "INSERT INTO lot VALUES ('left open')" }]);
    expect(first.every((r) => r.ok)).toBe(true);
    // Whichever of scope-a's two workers takes the next calls, the write lock is free.
    for (const value of ['next 1', 'next 2', 'next 3']) {
      const started = Date.now();
      expect((await k.steps('scope-a', [{ x: 'INSERT INTO lot VALUES (?)', params: [{ text: value }] }]))[0]).toMatchObject({ ok: true, changes: 1 });
      expect(Date.now() - started).toBeLessThan(2000);
    }
    expect(fileRows('alpha', 'SELECT x FROM lot ORDER BY rowid')).toEqual([['next 1'], ['next 2'], ['next 3']]);
  });
});
