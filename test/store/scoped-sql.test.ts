// ScopedSql on its own, without a kernel: what SQLite enforces from the connection alone, the
// statement gate, typed values and bound parameters, the size and result caps, transactions
// and the statement cache.
import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { classify, listScopes, openScope, scopeFile, ScopedSql, ScopedSqlError, sqlGuardBuilt, type SqlValue } from '../../kernel/store/scoped-sql.js';
import { tempDir } from '../support/fixtures.js';

const text = (val: string): SqlValue => ({ tag: 'text', val });
const int = (val: bigint): SqlValue => ({ tag: 'integer', val });

/** The error `fn` throws (fails the test when it throws nothing). */
function thrown(fn: () => unknown): ScopedSqlError {
  try {
    fn();
  } catch (err) {
    return err as ScopedSqlError;
  }
  throw new Error('expected an error');
}

/** A fresh `rw` scope `s` with `t(k, v)` holding one row. */
function scope(options: ConstructorParameters<typeof ScopedSql>[2] = {}): { sql: ScopedSql; file: string } {
  const file = join(tempDir('scope'), 's.db');
  const sql = new ScopedSql(file, 'rw', { name: 's', ...options });
  sql.execute('CREATE TABLE t (k TEXT, v TEXT)', []);
  sql.execute('INSERT INTO t VALUES (?, ?)', [text('key'), text('value')]);
  return { sql, file };
}

describe('the connection alone: what SQLite refuses whatever statement arrives', () => {
  it('load_extension() and the two-argument fts3_tokenizer() are disabled, pragma_database_list names no file', () => {
    const db = openScope(join(tempDir('scope'), 'a.db'), 'rw');
    expect(() => db.prepare("SELECT load_extension('/nonexistent.so')").get()).toThrow(/^not authorized$/);
    expect(() => db.prepare("SELECT fts3_tokenizer('evil', x'0000000000000000')").get()).toThrow(/fts3tokenize disabled/);
    expect(db.prepare('SELECT seq, name, file FROM pragma_database_list').raw(true).all()).toEqual([[0n, 'main', ''], [1n, 'temp', '']]);
    // A view in the scope file is untrusted schema: only innocuous functions and virtual tables run in it.
    db.exec('CREATE TABLE d (x DEFAULT (load_extension(\'x\')))');
    expect(() => db.prepare('INSERT INTO d DEFAULT VALUES').run()).toThrow(/unsafe use of load_extension\(\)/);
    expect(db.pragma('trusted_schema', { simple: true })).toBe(0n);
    db.close();
  });

  it('under ro the connection is read-only with query_only: no write reaches main or TEMP', () => {
    const file = join(tempDir('scope'), 'r.db');
    const rw = new Database(file);
    rw.exec("CREATE TABLE t (x); INSERT INTO t VALUES ('kept')");
    rw.close();
    const db = openScope(file, 'ro');
    expect(db.prepare('SELECT x FROM t').pluck().all()).toEqual(['kept']);
    for (const write of ["INSERT INTO t VALUES ('x')", 'DELETE FROM t', 'CREATE TABLE u (x)', 'CREATE TEMP TABLE tt (x)', 'PRAGMA user_version = 3', 'BEGIN IMMEDIATE']) {
      expect(() => db.prepare(write).run(), write).toThrow(/attempt to write a readonly database/);
    }
    db.close();
  });

  it('under rw main and TEMP are capped by max_page_count', () => {
    const db = openScope(join(tempDir('scope'), 'c.db'), 'rw', { maxPages: 40 });
    expect(db.pragma('main.max_page_count', { simple: true })).toBe(40n);
    expect(db.pragma('temp.max_page_count', { simple: true })).toBe(40n);
    db.exec('CREATE TABLE big (b); CREATE TEMP TABLE tbig (b)');
    expect(() => db.prepare('INSERT INTO big VALUES (randomblob(200000))').run()).toThrow(/database or disk is full/);
    expect(() => db.prepare('INSERT INTO tbig VALUES (randomblob(200000))').run()).toThrow(/database or disk is full/);
    db.close();
  });

  it('the guard extension is loaded, and its warden_guard() needs the connection\'s token', () => {
    expect(sqlGuardBuilt()).toBe(true);
    const db = openScope(join(tempDir('scope'), 'g.db'), 'rw');
    const token = 'k'.repeat(32);
    expect(db.prepare("SELECT warden_guard(?, 'deadline', 0)").pluck().get(token)).toBe(1n);
    // Whoever calls it later without the token that claimed the connection is refused.
    expect(() => db.prepare("SELECT warden_guard(?, 'deadline', 0)").get('x'.repeat(32))).toThrow(/^warden_guard: not authorized$/);
    expect(() => db.prepare("SELECT warden_guard('short', 'max_length', 1e9)").get()).toThrow(/^warden_guard: not authorized$/);
    expect(() => db.prepare("SELECT warden_guard(?, 'anything', 1)").get(token)).toThrow(/^warden_guard: unknown setting or value$/);
    // Not from a view, trigger or default: the schema is the component's.
    db.exec(`CREATE VIEW v AS SELECT warden_guard('${token}', 'deadline', 0) AS d`);
    expect(() => db.prepare('SELECT d FROM v').get()).toThrow(/unsafe use of warden_guard\(\)/);
    db.close();
    const bare = openScope(join(tempDir('scope'), 'h.db'), 'rw', { guard: false });
    expect(() => bare.prepare("SELECT warden_guard(?, 'deadline', 0)")).toThrow(/^no such function: warden_guard$/);
    bare.close();
  });

  it('a scope file that does not exist: ro sees an empty database, mustExist refuses to open it', () => {
    const dir = tempDir('scope');
    expect(new ScopedSql(join(dir, 'new.db'), 'ro').query('SELECT name FROM sqlite_master', []).values).toEqual([]);
    expect(() => openScope(join(dir, 'missing.db'), 'ro', { mustExist: true })).toThrow(/unable to open database file/);
  });
});

describe('the statement gate reads statements on SQLite\'s token rules', () => {
  it.each([
    ['SELECT 1', 'SELECT', null],
    ["  /* a */ -- b\n\tattach 'x' AS y", 'ATTACH', /^ATTACH is refused/],
    ["EXPLAIN ATTACH 'x' AS y", 'EXPLAIN', /^ATTACH is refused/],
    ['EXPLAIN QUERY PLAN DETACH y', 'EXPLAIN', /^DETACH is refused/],
    ['; /* */ ;PRAGMA max_page_count = 999999', 'PRAGMA', /^PRAGMA max_page_count = 999999 is refused/],
    ["/* unterminated ATTACH 'x' AS y", '', null],
    ["\"ATTACH\" 'x' AS y", '', null],
    ["ATTACHED 'x'", 'ATTACHED', null],
    ['PRAGMA table_info(t)', 'PRAGMA', null],
    ["PRAGMA main.[table_info]('t');", 'PRAGMA', null],
    ['PRAGMA `user_version` = 0x10', 'PRAGMA', null],
    ['PRAGMA user_version = -1', 'PRAGMA', null],
    ['PRAGMA user_version', 'PRAGMA', null],
    ['PRAGMA user_version = 1.5', 'PRAGMA', /^PRAGMA user_version = 1\.5 is refused/],
    ['PRAGMA user_version = ON', 'PRAGMA', /^PRAGMA user_version = ON is refused/],
    ['PRAGMA table_info', 'PRAGMA', /^PRAGMA table_info without its argument is refused/],
    ['PRAGMA table_info(t) x', 'PRAGMA', /^PRAGMA table_info followed by "x" is refused/],
    ["PRAGMA table_info('t", 'PRAGMA', /is refused/],
    ['PRAGMA other.table_info(t)', 'PRAGMA', /a scope has only the schemas main and temp/],
    ['PRAGMA', 'PRAGMA', /^PRAGMA \(no name\) is refused/],
    ['PRAGMA cache_size = 10', 'PRAGMA', /^PRAGMA cache_size is refused/],
    ['PRAGMA __proto__', 'PRAGMA', /^PRAGMA __proto__ is refused/],
    ['VACUUM', 'VACUUM', null],
    ['VACUUM "main";', 'VACUUM', null],
    ["VACUUM INTO '/tmp/x'", 'VACUUM', /^VACUUM INTO is refused/],
    ["vacuum/**/temp/**/into/**/'/tmp/x'", 'VACUUM', /^VACUUM INTO is refused/],
    ['CREATE TABLE x (y)', 'CREATE', null],
  ])('%j → keyword %j, refusal %s', (sql, keyword, refusal) => {
    const verdict = classify(sql);
    expect(verdict.keyword).toBe(keyword);
    if (refusal === null) expect(verdict.refusal).toBeNull();
    else expect(verdict.refusal).toMatch(refusal);
  });
});

describe('ScopedSql', () => {
  it('values cross typed; parameters are bound, never interpolated', () => {
    const { sql } = scope();
    sql.execute('CREATE TABLE v (a, b, c, d, e)', []);
    const hostile = "'); DROP TABLE t; --";
    const values: SqlValue[] = [{ tag: 'null' }, int(-(2n ** 63n)), { tag: 'real', val: 2 }, text(hostile), { tag: 'blob', val: Uint8Array.from([0, 1, 255]) }];
    expect(sql.execute('INSERT INTO v VALUES (?, ?, ?, ?, ?)', values)).toEqual({ changes: 1n, lastInsertRowid: 1n });
    expect(sql.execute('INSERT INTO v (b) VALUES (?)', [int(2n ** 63n - 1n)])).toEqual({ changes: 1n, lastInsertRowid: 2n });
    const rows = sql.query('SELECT a, b, c, d, e, typeof(c) FROM v ORDER BY rowid', []);
    expect(rows.columns).toEqual(['a', 'b', 'c', 'd', 'e', 'typeof(c)']);
    expect(rows.values[0]).toEqual([...values, text('real')]);
    expect(rows.values[1]![1]).toEqual(int(2n ** 63n - 1n));
    expect(sql.query('SELECT count(*) FROM t', []).values).toEqual([[int(1n)]]);
  });

  it('errors are WIT sql-errors with stable codes', () => {
    const { sql } = scope();
    const denied = thrown(() => sql.execute("ATTACH 'x' AS y", []));
    expect(denied).toBeInstanceOf(ScopedSqlError);
    expect(denied.code).toBe('E_SQL_DENIED');
    expect(denied.payload).toEqual({ tag: 'denied', val: denied.message });
    expect(thrown(() => sql.query('SELEC 1', [])).payload).toEqual({ tag: 'invalid', val: 'E_SQL_INVALID: near "SELEC": syntax error (SQLITE_ERROR)' });
    expect(thrown(() => sql.query('', [])).payload.val).toBe('E_SQL_INVALID: The supplied SQL string contains no statements');
    expect(thrown(() => sql.query('SELECT ?', [])).payload.val).toBe('E_SQL_INVALID: Too few parameter values were provided');
    expect(thrown(() => sql.query('CREATE TABLE u (x)', [])).payload.val).toBe('E_SQL_INVALID: query() runs statements that return rows; use execute() for this one');
    expect(thrown(() => sql.query('SELECT 1; SELECT 2', [])).payload.val).toMatch(/more than one statement: one statement per call$/);
    expect(thrown(() => sql.execute('CREATE TABLE t (x)', [])).payload.val).toBe('E_SQL_INVALID: table t already exists (SQLITE_ERROR)');
  });

  it('a full scope is a clean E_LIMIT_SQL_SIZE limit, TEMP too, and the scope stays usable', () => {
    const { sql } = scope({ maxPages: 64 });
    sql.execute('CREATE TABLE big (b BLOB)', []);
    const full = thrown(() => sql.execute('INSERT INTO big VALUES (randomblob(300000))', []));
    expect(full.payload).toEqual({ tag: 'limit', val: 'E_LIMIT_SQL_SIZE: scope "s" is full: its cap is 256 KiB (64 pages of 4096 B, TEMP as much again), or the disk is full; delete rows (then VACUUM) to make room' });
    sql.execute('CREATE TEMP TABLE tbig (b BLOB)', []);
    expect(thrown(() => sql.execute('INSERT INTO tbig VALUES (randomblob(300000))', [])).code).toBe('E_LIMIT_SQL_SIZE');
    expect(sql.execute('INSERT INTO big VALUES (?)', [{ tag: 'blob', val: new Uint8Array(1000) }]).changes).toBe(1n);
    expect(sql.query('PRAGMA integrity_check', []).values).toEqual([[text('ok')]]);
  });

  it('a result larger than maxResultBytes is E_LIMIT_OUTPUT', () => {
    const { sql } = scope({ maxResultBytes: 10_000 });
    expect(sql.query('SELECT zeroblob(5000)', []).values[0]![0]).toMatchObject({ tag: 'blob' });
    const big = thrown(() => sql.query('WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c LIMIT 100) SELECT i, zeroblob(500) FROM c', []));
    expect(big.payload).toEqual({ tag: 'limit', val: 'E_LIMIT_OUTPUT: the result holds more than 10000 bytes (the component\'s memory cap) after 20 of 100 rows; select fewer rows or columns (LIMIT … OFFSET …)' });
    // A single value past the cap is not even built inside SQLite (the guard's SQLITE_LIMIT_LENGTH).
    for (const huge of ['SELECT randomblob(20000)', "SELECT length(printf('%.*c', 20000, 'x'))", 'WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c LIMIT 100) SELECT length(group_concat(zeroblob(500))) FROM c']) {
      expect(thrown(() => sql.query(huge, [])).payload, huge).toEqual({ tag: 'limit', val: expect.stringMatching(/^E_LIMIT_SQL_SIZE: scope "s": a string, blob or row would exceed 10000 bytes \(the component's memory cap\), so SQLite refused to build it \(SQLITE_TOOBIG\); split the value$/) });
    }
    expect(thrown(() => sql.execute('INSERT INTO t VALUES (?, ?)', [text('k'), text('v'.repeat(20_000))])).code).toBe('E_LIMIT_SQL_SIZE');
    expect(sql.query('SELECT count(*) FROM t', []).values).toEqual([[int(1n)]]);
  });

  it('read-only: every writing statement is refused with what to do, reads work', () => {
    const { sql, file } = scope();
    sql.close();
    const ro = new ScopedSql(file, 'ro', { name: 's' });
    expect(ro.query('SELECT v FROM t', []).values).toEqual([[text('value')]]);
    for (const write of ["INSERT INTO t VALUES ('a', 'b')", 'CREATE TEMP TABLE x (y)', 'DROP TABLE t', 'PRAGMA user_version = 2', 'VACUUM']) {
      expect(thrown(() => ro.execute(write, [])).payload, write).toEqual({ tag: 'denied', val: 'E_SQL_DENIED: scope "s" is granted read-only (sql mode ro) and this statement writes; writing needs a grant with mode rw' });
    }
    expect(ro.execute('BEGIN', []).changes).toBe(0n);
    expect(ro.execute('COMMIT', []).changes).toBe(0n);
  });

  it('endCall rolls back a transaction left open', () => {
    const { sql } = scope();
    expect(sql.endCall()).toBe(false);
    sql.execute('BEGIN', []);
    sql.execute("INSERT INTO t VALUES ('uncommitted', '')", []);
    expect(sql.inTransaction).toBe(true);
    expect(sql.endCall()).toBe(true);
    expect(sql.inTransaction).toBe(false);
    expect(sql.query('SELECT k FROM t', []).values).toEqual([[text('key')]]);
  });

  it('a statement still running at the deadline is interrupted by SQLite; later ones are refused; a write transaction is rolled back', () => {
    const { sql } = scope();
    expect(sql.interruptible).toBe(true);
    // Unbounded: without an interrupt it never ends.
    const forever = 'WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c) SELECT count(*) FROM c';
    sql.execute('BEGIN', []);
    sql.execute("INSERT INTO t VALUES ('doomed', 'row')", []);
    const started = Date.now();
    sql.setDeadline(started + 300);
    const err = thrown(() => sql.query(forever, []));
    const took = Date.now() - started;
    expect(err.payload).toEqual({ tag: 'limit', val: expect.stringMatching(/^E_LIMIT_TIME: scope "s": the statement was still running at the call's deadline and SQLite interrupted it/) });
    expect(took).toBeGreaterThanOrEqual(295);
    expect(took).toBeLessThan(2000);
    expect(thrown(() => sql.query('SELECT 1', [])).message).toMatch(/^E_LIMIT_TIME: scope "s": the call's deadline has passed; no further statement runs in this call$/);
    // The next call (a new deadline) finds the connection usable, and the write of the interrupted transaction gone.
    sql.setDeadline(Date.now() + 60_000);
    sql.endCall();
    expect(sql.query('SELECT k FROM t', []).values).toEqual([[text('key')]]);
    // A deadline that passes while nothing runs interrupts nothing later.
    sql.setDeadline(Date.now() + 20);
    const until = Date.now() + 60;
    while (Date.now() < until);
    sql.setDeadline(null);
    expect(sql.query('SELECT count(*) FROM t', []).values).toEqual([[int(1n)]]);
    sql.close();
  });

  it('cached statements follow schema changes: column names after ALTER here or elsewhere', () => {
    const { sql, file } = scope();
    expect(sql.query('SELECT * FROM t', []).columns).toEqual(['k', 'v']);
    sql.execute('ALTER TABLE t RENAME COLUMN v TO value', []);
    expect(sql.query('SELECT * FROM t', []).columns).toEqual(['k', 'value']);
    const other = new Database(file);
    other.exec("ALTER TABLE t ADD COLUMN extra DEFAULT 'x'");
    other.close();
    expect(sql.query('SELECT * FROM t', [])).toEqual({ columns: ['k', 'value', 'extra'], values: [[text('key'), text('value'), text('x')]] });
  });

  it('scope names are checked and listed like grants name them', () => {
    const dir = tempDir('scopes');
    expect(scopeFile(dir, 'notes_1')).toBe(join(dir, 'notes_1.db'));
    for (const bad of ['../x', 'Notes', '1x', 'a/b', '']) expect(() => scopeFile(dir, bad), bad).toThrow(/is not a scope name/);
    for (const f of ['b.db', 'a.db', 'a.db-wal', 'Bad.db', 'notes.txt']) writeFileSync(join(dir, f), '');
    expect(listScopes(dir)).toEqual(['a', 'b']);
    expect(listScopes(join(dir, 'none'))).toEqual([]);
  });
});
