/**
 * The `sql` capability: one SQLite database file per scope, opened inside the component's
 * worker (better-sqlite3). A statement sees its own scope and nothing else: not another scope,
 * not the kernel's `warden.db`, not the host's files.
 *
 * better-sqlite3 12 exposes no authorizer, no `sqlite3_limit` and no interrupt, and is built
 * with `SQLITE_OMIT_PROGRESS_CALLBACK`; the kernel adds a small SQLite extension of its own
 * (`kernel/store/native/sql-guard.c`, built into {@link SQL_GUARD_FILE}) for time.
 * So the defences are, in order:
 *
 * 1. The connection ({@link openScope}), enforced by SQLite: defensive mode
 *    (`SQLITE_DBCONFIG_DEFENSIVE`: no `writable_schema`, no shadow-table writes); the
 *    `load_extension()` SQL function disabled (better-sqlite3 enables the C API only) and the
 *    two-argument `fts3_tokenizer()` disabled; URI file names off (`SQLITE_USE_URI=0`);
 *    `trusted_schema = OFF` (views, triggers, defaults and generated columns written by a
 *    component may only use innocuous functions and virtual tables); `pragma_database_list`
 *    replaced by a table that names no file (it would name the host path of the scope). `ro`
 *    opens the file `SQLITE_OPEN_READONLY` with `query_only = ON` (no write, not even to TEMP);
 *    `rw` sets `max_page_count` on `main` and on `temp`.
 * 2. The statement gate ({@link classify}), ours, before SQLite prepares anything (some
 *    PRAGMAs act while they are prepared): the leading keyword, read on SQLite's own token
 *    rules (comments, quoting, identifier characters), refuses `ATTACH` and `DETACH`; a
 *    `PRAGMA` must be on an allow-list in a read-only form ({@link ALLOWED_PRAGMAS}); `VACUUM`
 *    may compact the scope but not write `INTO` a file.
 * 3. SQLite's parse: one statement per call (better-sqlite3 refuses a second one), then the
 *    compiled program (`EXPLAIN`, trigger programs included) is checked once per distinct
 *    statement for `sqlite_attach`, `sqlite_detach`, `load_extension`, `fts3_tokenizer` and
 *    `VACUUM INTO`; `stmt.readonly` (`sqlite3_stmt_readonly`) refuses writes under `ro`.
 *
 * Time ({@link ScopedSql.setDeadline}): the worker arms the guard with the call's deadline, less
 * a margin for the guest to answer. At that moment the guard's watchdog thread calls
 * `sqlite3_interrupt()`: the running statement fails with `E_LIMIT_TIME` (SQLite rolls back an
 * explicit transaction it wrote in), and later statements of the call are refused before they
 * start. The mesh still stops a worker that overruns the deadline itself. Without the guard
 * (no C compiler at build time; the kernel warns at start) a statement running inside SQLite is
 * not stopped: its thread ends when the statement does.
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { messageOf } from '../errors.js';
import { PACKAGE_ROOT } from '../paths.js';

/**
 * The SQLite extension that interrupts a statement at its call's deadline
 * (`kernel/store/native/sql-guard.c`), compiled by `npm run build` with the system C compiler.
 */
export const SQL_GUARD_FILE = join(PACKAGE_ROOT, 'build', 'native', 'sql-guard.so');

/** Whether {@link SQL_GUARD_FILE} was built on this machine (the kernel warns at start when not). */
export function sqlGuardBuilt(): boolean {
  return existsSync(SQL_GUARD_FILE);
}

/** A grant's mode: `ro` reads, `rw` reads and writes. */
export type SqlMode = 'ro' | 'rw';

/** WIT `sql-value`. Integers are s64 and cross as bigint; reals as f64 numbers. */
export type SqlValue =
  | { tag: 'null' }
  | { tag: 'integer'; val: bigint }
  | { tag: 'real'; val: number }
  | { tag: 'text'; val: string }
  | { tag: 'blob'; val: Uint8Array };

/** WIT `rows`: column names and one list of values per row, in column order. */
export interface SqlRows {
  columns: string[];
  values: SqlValue[][];
}

/** WIT `exec-result`: rows changed, and the rowid of the last insert on this connection. */
export interface SqlExecResult {
  changes: bigint;
  lastInsertRowid: bigint;
}

/** WIT `sql-error`, what the guest receives. `val` starts with the error code. */
export type SqlError = { tag: 'denied' | 'invalid' | 'limit'; val: string };

/** The codes a scope's errors carry (first word of the message). */
export type SqlErrorCode = 'E_SQL_DENIED' | 'E_SQL_INVALID' | 'E_LIMIT_SQL_SIZE' | 'E_LIMIT_OUTPUT' | 'E_LIMIT_TIME';

const TAG_OF: Record<SqlErrorCode, SqlError['tag']> = {
  E_SQL_DENIED: 'denied', E_SQL_INVALID: 'invalid', E_LIMIT_SQL_SIZE: 'limit', E_LIMIT_OUTPUT: 'limit', E_LIMIT_TIME: 'limit',
};

/**
 * An error of a scope. `payload` is the WIT `sql-error` (the jco glue hands an own `payload`
 * property to the guest as the `err` case); `message` is the same text.
 */
export class ScopedSqlError extends Error {
  readonly code: SqlErrorCode;
  readonly payload: SqlError;

  constructor(code: SqlErrorCode, message: string, cause?: unknown) {
    super(`${code}: ${message}`, cause === undefined ? undefined : { cause });
    this.name = 'ScopedSqlError';
    this.code = code;
    this.payload = { tag: TAG_OF[code], val: this.message };
  }
}

/** Default cap of a scope's size: 16384 pages of 4 KiB = 64 MiB (and as much again for TEMP). */
export const DEFAULT_MAX_PAGES = 16384;
/** How long a statement waits for another connection's lock on the scope (SQLite busy timeout), ms. */
export const BUSY_TIMEOUT_MS = 5000;
/** Distinct statements kept prepared per connection. */
const CACHE_SIZE = 256;

/** Scope names, as grants accept them (kernel/grants `grantFields.sql`). */
const SCOPE_NAME = /^[a-z][a-z0-9_-]*$/;

/**
 * The database file of `scope` under `sqlDir` (`<data-dir>/scopes`).
 * @throws ScopedSqlError `E_SQL_INVALID` when the name is not a scope name (lower-case letters, digits, `_`, `-`)
 */
export function scopeFile(sqlDir: string, scope: string): string {
  if (!SCOPE_NAME.test(scope)) throw new ScopedSqlError('E_SQL_INVALID', `"${scope}" is not a scope name: lower-case letters, digits, _ and -, starting with a letter`);
  return join(sqlDir, `${scope}.db`);
}

/** Names of the scopes that have a database file under `sqlDir`, sorted. */
export function listScopes(sqlDir: string): string[] {
  if (!existsSync(sqlDir)) return [];
  return readdirSync(sqlDir).filter((f) => f.endsWith('.db') && SCOPE_NAME.test(f.slice(0, -3))).map((f) => f.slice(0, -3)).sort();
}

/** Options of a scope connection. */
export interface ScopeOptions {
  /** Size cap in pages (4 KiB each), for `main` and for `temp`. Default {@link DEFAULT_MAX_PAGES}. */
  maxPages?: number;
  /** Fail when the file does not exist instead of creating it (the operator's CLI). */
  mustExist?: boolean;
  /** Load the guard extension when it is built (default true); false only to show what SQLite does without it. */
  guard?: boolean;
}

/**
 * Open a scope's database with the connection-level defences (see the module comment): the
 * part SQLite enforces on its own, whatever statement arrives. Tests use it to show that.
 * @param file host path of the scope's database
 * @param mode `ro`: read-only connection and `query_only`; `rw`: WAL, page caps on main and temp
 * @throws SqliteError when the file cannot be opened (e.g. `SQLITE_CANTOPEN` with `mustExist`),
 *   or the guard extension cannot be loaded
 */
export function openScope(file: string, mode: SqlMode, options: ScopeOptions = {}): Database.Database {
  if (!options.mustExist) {
    mkdirSync(dirname(file), { recursive: true });
    // A read-only grant on a scope nobody created yet sees an empty database.
    if (mode === 'ro' && !existsSync(file)) new Database(file).close();
  }
  const db = new Database(file, { readonly: mode === 'ro', fileMustExist: options.mustExist ?? false, timeout: BUSY_TIMEOUT_MS });
  try {
    if (options.guard !== false && sqlGuardBuilt()) db.loadExtension(SQL_GUARD_FILE); // entry point sqlite3_sqlguard_init, from the file name
    db.unsafeMode(false);
    db.pragma('trusted_schema = OFF');
    // The real pragma_database_list names the scope's host path. A module of the same name
    // wins SQLite's name lookup on every route (alias, view, trigger, `main.` prefix).
    db.table('pragma_database_list', {
      columns: ['seq', 'name', 'file'],
      *rows() {
        yield [0n, 'main', ''];
        yield [1n, 'temp', ''];
      },
    });
    if (mode === 'ro') db.pragma('query_only = ON');
    else {
      const pages = options.maxPages ?? DEFAULT_MAX_PAGES;
      db.pragma('journal_mode = WAL');
      db.pragma(`main.max_page_count = ${pages}`);
      db.pragma(`temp.max_page_count = ${pages}`);
    }
    db.defaultSafeIntegers(true);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

// ---- the statement gate: SQLite's token rules, before anything is prepared -----------------------

/** One token: a bare word, a quoted name (unquoted), a string, a number, an operator, the end, or something else. */
interface Token {
  kind: 'word' | 'name' | 'string' | 'number' | 'op' | 'end' | 'other';
  text: string;
  end: number;
}

/** Identifier characters in SQLite's tokenizer: ASCII letters and digits, `_`, `$`, and every non-ASCII character. */
function isIdChar(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === 36 || c >= 0x80;
}

/** Skip whitespace (SQLite's, plus \v, which SQLite rejects) and comments (`--` to the line end, `/* … *\/` or to the end). */
function skipSpace(sql: string, i: number): number {
  for (;;) {
    const c = sql.charCodeAt(i);
    if (c === 32 || (c >= 9 && c <= 13)) i++;
    else if (c === 45 && sql.charCodeAt(i + 1) === 45) {
      const nl = sql.indexOf('\n', i + 2);
      i = nl < 0 ? sql.length : nl + 1;
    } else if (c === 47 && sql.charCodeAt(i + 1) === 42) {
      const close = sql.indexOf('*/', i + 2);
      i = close < 0 ? sql.length : close + 2;
    } else return i;
  }
}

/** The end of a quoted run opened at `i` by `open` and closed by `close` (doubled to escape, except `]`). */
function quoted(sql: string, i: number, close: string): number {
  for (let j = i + 1; j < sql.length; j++) {
    if (sql[j] !== close) continue;
    if (close !== ']' && sql[j + 1] === close) j++;
    else return j + 1;
  }
  return -1;
}

function lex(sql: string, from: number): Token {
  const i = skipSpace(sql, from);
  if (i >= sql.length) return { kind: 'end', text: '', end: i };
  const c = sql.charCodeAt(i);
  const ch = sql[i]!;
  if (ch === '"' || ch === '`' || ch === '[' || ch === "'") {
    const end = quoted(sql, i, ch === '[' ? ']' : ch);
    if (end < 0) return { kind: 'other', text: ch, end: sql.length };
    const inner = sql.slice(i + 1, end - 1);
    return { kind: ch === "'" ? 'string' : 'name', text: ch === '[' ? inner : inner.split(ch + ch).join(ch), end };
  }
  if (isIdChar(c) && !(c >= 48 && c <= 57) && c !== 36) {
    let j = i + 1;
    while (j < sql.length && isIdChar(sql.charCodeAt(j))) j++;
    return { kind: 'word', text: sql.slice(i, j), end: j };
  }
  const number = /^(0x[0-9a-f]+|\d+(\.\d*)?(e[+-]?\d+)?|\.\d+(e[+-]?\d+)?)/i.exec(sql.slice(i, i + 64));
  if (number && !isIdChar(sql.charCodeAt(i + number[0].length))) return { kind: 'number', text: number[0], end: i + number[0].length };
  if ('.=();+-'.includes(ch)) return { kind: 'op', text: ch, end: i + 1 };
  return { kind: 'other', text: ch, end: i + 1 };
}

/** The keyword a token is (upper case), or '' when it is not a bare ASCII word. */
function keyword(t: Token): string {
  return t.kind === 'word' && /^[A-Za-z]+$/.test(t.text) ? t.text.toUpperCase() : '';
}

/** A PRAGMA a scope may run: read without argument, with a name argument, or set to an integer (under `rw`). */
interface PragmaRule {
  read?: true;
  arg?: 'name' | 'integer';
}

/**
 * The PRAGMAs a scope may run, in the forms listed: reports about the scope's own schema and
 * state, plus `user_version` and `application_id`, which are stored in the scope's own header.
 * Every other PRAGMA, and every other form (such as `max_page_count = N`), is refused.
 * Source: https://sqlite.org/pragma.html
 */
export const ALLOWED_PRAGMAS: Readonly<Record<string, PragmaRule>> = {
  table_info: { arg: 'name' }, table_xinfo: { arg: 'name' }, index_list: { arg: 'name' }, index_info: { arg: 'name' },
  index_xinfo: { arg: 'name' }, foreign_key_list: { arg: 'name' },
  table_list: { read: true, arg: 'name' }, foreign_key_check: { read: true, arg: 'name' },
  integrity_check: { read: true, arg: 'name' }, quick_check: { read: true, arg: 'name' },
  user_version: { read: true, arg: 'integer' }, application_id: { read: true, arg: 'integer' },
  foreign_keys: { read: true }, schema_version: { read: true }, data_version: { read: true }, page_count: { read: true },
  page_size: { read: true }, max_page_count: { read: true }, freelist_count: { read: true }, encoding: { read: true },
  journal_mode: { read: true }, collation_list: { read: true }, function_list: { read: true }, module_list: { read: true },
  pragma_list: { read: true }, compile_options: { read: true },
};

const PRAGMA_HELP = 'a scope may run only read-only reports about itself (table_info(T), index_list(T), table_list, integrity_check, foreign_keys, page_count, max_page_count, …) and set user_version or application_id';

function pragmaRefusal(sql: string, from: number): string | null {
  const denied = (what: string) => `PRAGMA ${what} is refused: ${PRAGMA_HELP}`;
  let t = lex(sql, from);
  if (t.kind !== 'word' && t.kind !== 'name') return denied(t.text || '(no name)');
  let name = t.text;
  let next = lex(sql, t.end);
  if (next.kind === 'op' && next.text === '.') {
    if (!['main', 'temp'].includes(name.toLowerCase())) return denied(`${name}.…: a scope has only the schemas main and temp`);
    t = lex(sql, next.end);
    if (t.kind !== 'word' && t.kind !== 'name') return denied(`${name}.${t.text}`);
    name = t.text;
    next = lex(sql, t.end);
  }
  const rule = Object.hasOwn(ALLOWED_PRAGMAS, name.toLowerCase()) ? ALLOWED_PRAGMAS[name.toLowerCase()]! : null;
  if (!rule) return denied(name);
  let arg: Token | null = null;
  if (next.kind === 'op' && (next.text === '=' || next.text === '(')) {
    const paren = next.text === '(';
    let v = lex(sql, next.end);
    const sign = v.kind === 'op' && (v.text === '-' || v.text === '+');
    if (sign) v = lex(sql, v.end);
    arg = sign && v.kind !== 'number' ? { ...v, kind: 'other' } : v;
    next = lex(sql, v.end);
    if (paren) {
      if (next.kind !== 'op' || next.text !== ')') return denied(`${name}(…`);
      next = lex(sql, next.end);
    }
  }
  while (next.kind === 'op' && next.text === ';') next = lex(sql, next.end);
  if (next.kind !== 'end') return denied(`${name} followed by "${next.text}"`);
  if (!arg) return rule.read ? null : denied(`${name} without its argument`);
  const ok = rule.arg === 'name' ? ['word', 'name', 'string', 'number'].includes(arg.kind) : rule.arg === 'integer' && arg.kind === 'number' && /^(0x[0-9a-f]+|\d+)$/i.test(arg.text);
  return ok ? null : denied(`${name} = ${arg.text}`);
}

const VACUUM_INTO = 'VACUUM INTO is refused: it writes a copy of the scope to a file outside it; VACUUM alone compacts the scope in place';

/** `VACUUM` or `VACUUM main` compacts the scope; anything more (`INTO 'file'`) is refused. */
function vacuumRefusal(sql: string, from: number): string | null {
  let t = lex(sql, from);
  if ((t.kind === 'word' && keyword(t) !== 'INTO') || t.kind === 'name') t = lex(sql, t.end);
  while (t.kind === 'op' && t.text === ';') t = lex(sql, t.end);
  return t.kind === 'end' ? null : VACUUM_INTO;
}

/** Statements after which cached statements may compile differently (schema changes, undone ones too). */
const SCHEMA_KEYWORDS = new Set(['CREATE', 'DROP', 'ALTER', 'ROLLBACK']);

/**
 * The statement gate. Reads the leading keyword of `sql` (after comments, empty statements and
 * `EXPLAIN [QUERY PLAN]`) on SQLite's token rules and applies the rules on ATTACH, DETACH,
 * PRAGMA and VACUUM. Runs before SQLite prepares the statement.
 * @returns the leading keyword (upper case, '' when none) and the reason it is refused, or null
 */
export function classify(sql: string): { keyword: string; refusal: string | null } {
  let t = lex(sql, 0);
  // Empty statements before it (SQLite's grammar has them; its prepare rejects them today).
  while (t.kind === 'op' && t.text === ';') t = lex(sql, t.end);
  let kw = keyword(t);
  const explained = kw === 'EXPLAIN';
  if (explained) {
    t = lex(sql, t.end);
    kw = keyword(t);
    if (kw === 'QUERY') {
      t = lex(sql, t.end);
      if (keyword(t) === 'PLAN') t = lex(sql, t.end);
      kw = keyword(t);
    }
  }
  let refusal: string | null = null;
  if (kw === 'ATTACH' || kw === 'DETACH') {
    refusal = `${kw} is refused: a scope is one database file and cannot reach another (another scope's data is its owner's: ask that component over the mesh)`;
  } else if (kw === 'PRAGMA') refusal = pragmaRefusal(sql, t.end);
  else if (kw === 'VACUUM') refusal = vacuumRefusal(sql, t.end);
  return { keyword: explained ? 'EXPLAIN' : kw, refusal };
}

// ---- values ------------------------------------------------------------------------------------

function toParam(value: SqlValue): unknown {
  switch (value.tag) {
    case 'null':
      return null;
    case 'blob':
      return Buffer.from(value.val.buffer, value.val.byteOffset, value.val.byteLength);
    case 'integer':
    case 'real':
    case 'text':
      return value.val;
    default:
      throw new ScopedSqlError('E_SQL_INVALID', `unknown sql-value ${JSON.stringify((value as { tag?: unknown }).tag)}`);
  }
}

/** Functions whose presence in a compiled program refuses the statement. */
const DENIED_FUNCTIONS: Readonly<Record<string, string>> = {
  sqlite_attach: 'ATTACH is refused: a scope is one database file and cannot reach another',
  sqlite_detach: 'DETACH is refused: a scope is one database file',
  load_extension: 'load_extension() is refused: extensions are native code running in the kernel',
  fts3_tokenizer: 'fts3_tokenizer() is refused: it exposes and registers native tokenizer pointers',
  warden_guard: 'warden_guard() is refused: it sets the kernel\'s own limits on the scope (the call\'s deadline, the largest value)',
};

/** A statement prepared and checked once, kept for later calls with the same text. */
interface Prepared {
  stmt: Database.Statement;
  reader: boolean;
  /** Column names (read from SQLite once; `columns()` costs several µs). */
  columns: string[];
  changesSchema: boolean;
}

/** A connection to one scope's database, with the defences of this module. One per worker. */
export class ScopedSql {
  private readonly db: Database.Database;
  private readonly cache = new Map<string, Prepared>();
  private readonly label: string;
  private readonly maxResultBytes: number;
  private readonly writeHint: string;
  /** `SELECT warden_guard(token, setting, value)` when the guard is loaded, else null. */
  private readonly guard: Database.Statement | null = null;
  /** The connection's guard token: only this worker's JavaScript knows it. */
  private readonly token = randomBytes(16).toString('hex');
  /** The deadline armed (epoch ms), or null. */
  private deadline: number | null = null;

  /**
   * @param file host path of the scope's database (created when missing unless `mustExist`)
   * @param mode `ro` or `rw` (the grant's mode)
   * @param options `maxPages` (size cap, 4 KiB pages), `maxResultBytes` (cap on a result's
   *   values, bytes: the guest's memory cap; also the largest string, blob or row SQLite may
   *   build, with the guard; default unbounded), `mustExist`, `name` (for
   *   messages), `writeHint` (what a refused write under `ro` should do instead)
   * @throws SqliteError when the file cannot be opened
   */
  constructor(file: string, private readonly mode: SqlMode, options: ScopeOptions & { maxResultBytes?: number; name?: string; writeHint?: string } = {}) {
    this.db = openScope(file, mode, options);
    this.label = `scope "${options.name ?? file}"`;
    this.maxResultBytes = options.maxResultBytes ?? Infinity;
    this.writeHint = options.writeHint ?? 'writing needs a grant with mode rw';
    if (options.guard !== false && sqlGuardBuilt()) {
      this.guard = this.db.prepare('SELECT warden_guard(?, ?, ?)').pluck();
      // The first call claims the connection's token; any later one must present it.
      this.guard.get(this.token, 'deadline', 0);
      // No string or blob larger than the guest could hold is built inside SQLite either.
      if (Number.isFinite(this.maxResultBytes)) this.guard.get(this.token, 'max_length', Math.max(1, Math.min(this.maxResultBytes, 2 ** 31 - 1)));
    }
  }

  /** Whether the deadline set by {@link setDeadline} has passed. */
  get expired(): boolean {
    return this.deadline !== null && Date.now() >= this.deadline;
  }

  /** Whether a statement still running at the deadline is interrupted (the guard extension is loaded). */
  get interruptible(): boolean {
    return this.guard !== null;
  }

  /**
   * Bound every statement by `deadline` (epoch ms, `Date.now()`'s clock), or by nothing (null).
   * A statement still running then is interrupted by SQLite's `sqlite3_interrupt()` from the
   * guard's watchdog thread (when {@link interruptible}); one started later is refused before
   * it runs. Both fail with `E_LIMIT_TIME`. Costs one statement when the deadline changes.
   */
  setDeadline(deadline: number | null): void {
    if (deadline === this.deadline) return;
    this.deadline = deadline;
    if (!this.guard) return;
    // A deadline already past arms at once (1 ms): the next statement is refused anyway.
    const ms = deadline === null ? 0 : Math.max(1, deadline - Date.now());
    // The guard repeats the interrupt of an expired deadline for a while: it may hit this statement.
    for (let attempt = 1; ; attempt++) {
      try {
        this.guard.get(this.token, 'deadline', ms);
        return;
      } catch (err) {
        if ((err as { code?: unknown }).code !== 'SQLITE_INTERRUPT' || attempt === 5) throw this.failure(err);
      }
    }
  }

  /**
   * Run a statement that returns rows (SELECT, VALUES, an allowed PRAGMA, … RETURNING) with
   * `params` bound to its `?` placeholders.
   * @throws ScopedSqlError `E_SQL_DENIED` (refused), `E_SQL_INVALID` (SQLite rejected it, or
   *   it returns no rows), `E_LIMIT_SQL_SIZE`, `E_LIMIT_OUTPUT` (values past `maxResultBytes`),
   *   `E_LIMIT_TIME` (locked by another connection, or past the deadline: {@link setDeadline})
   */
  query(sql: string, params: SqlValue[]): SqlRows {
    if (this.deadline !== null && Date.now() >= this.deadline) throw this.late();
    const p = this.prepared(sql, params);
    if (!p.reader) throw new ScopedSqlError('E_SQL_INVALID', 'query() runs statements that return rows; use execute() for this one');
    let rows: unknown[][];
    try {
      rows = (params.length === 1 ? p.stmt.all(toParam(params[0]!)) : p.stmt.all(...params.map(toParam))) as unknown[][];
    } catch (err) {
      throw this.failure(err);
    }
    if (p.changesSchema) this.cache.clear();
    // A statement SQLite re-prepared after another connection changed the schema may have other columns.
    if (rows.length > 0 && rows[0]!.length !== p.columns.length) p.columns = p.stmt.columns().map((c) => c.name);
    return { columns: p.columns, values: this.values(rows) };
  }

  /**
   * Run a statement for its effect (INSERT, UPDATE, DELETE, DDL, BEGIN/COMMIT, …).
   * @returns rows changed and the last inserted rowid
   * @throws ScopedSqlError as {@link query}
   */
  execute(sql: string, params: SqlValue[]): SqlExecResult {
    if (this.deadline !== null && Date.now() >= this.deadline) throw this.late();
    const p = this.prepared(sql, params);
    let info: Database.RunResult;
    try {
      info = p.stmt.run(...params.map(toParam));
    } catch (err) {
      throw this.failure(err);
    }
    if (p.changesSchema) this.cache.clear();
    return { changes: BigInt(info.changes), lastInsertRowid: BigInt(info.lastInsertRowid) };
  }

  /**
   * Whether `sql` returns rows (use {@link query}) or not ({@link execute}); checks it as they do.
   * @throws ScopedSqlError `E_SQL_DENIED`, `E_SQL_INVALID`
   */
  returnsRows(sql: string): boolean {
    return this.prepared(sql, []).reader;
  }

  /** Whether a transaction is open on this connection. */
  get inTransaction(): boolean {
    return this.db.inTransaction;
  }

  /**
   * End of a call: roll back a transaction it left open, so a transaction never outlives the
   * call that began it (a tool's next call runs on a fresh instance). @returns whether one was open
   */
  endCall(): boolean {
    if (!this.db.inTransaction) return false;
    // Not interrupted itself: the deadline was the call's.
    this.setDeadline(null);
    this.db.exec('ROLLBACK');
    this.cache.clear();
    return true;
  }

  /** Close the connection (an open transaction is rolled back). */
  close(): void {
    this.cache.clear();
    this.db.close();
  }

  /** The checked statement for `sql` (`params`: the call's, bound to the EXPLAIN that checks it). */
  private prepared(sql: string, params: SqlValue[]): Prepared {
    const hit = this.cache.get(sql);
    if (hit) return hit;
    if (sql.includes('\0')) throw new ScopedSqlError('E_SQL_INVALID', 'the statement contains a NUL character');
    const { keyword: kw, refusal } = classify(sql);
    if (refusal) throw new ScopedSqlError('E_SQL_DENIED', refusal);
    let stmt: Database.Statement;
    try {
      stmt = this.db.prepare(sql);
    } catch (err) {
      throw this.failure(err);
    }
    // An EXPLAIN statement only lists its program; any other is checked as SQLite compiled it.
    let why: string | null = null;
    try {
      if (kw !== 'EXPLAIN') why = this.vet(sql, params);
    } catch (err) {
      throw this.failure(err);
    }
    if (why) throw new ScopedSqlError('E_SQL_DENIED', why);
    if (this.mode === 'ro' && !stmt.readonly) throw this.readOnly();
    if (stmt.reader) stmt.raw(true);
    const entry: Prepared = { stmt, reader: stmt.reader, columns: stmt.reader ? stmt.columns().map((c) => c.name) : [], changesSchema: SCHEMA_KEYWORDS.has(kw) };
    if (this.cache.size >= CACHE_SIZE) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(sql, entry);
    return entry;
  }

  /**
   * Check the program SQLite compiled for `sql` (trigger programs included). better-sqlite3
   * runs a statement only with all its `?` bound, so the EXPLAIN gets the call's parameters.
   * @returns why it is refused, or null
   */
  private vet(sql: string, params: SqlValue[]): string | null {
    const program = this.db.prepare(`EXPLAIN ${sql}`).raw(true).all(...params.map(toParam)) as unknown[][];
    for (const [, opcode, , p2, , p4] of program) {
      if (opcode === 'Vacuum' && Number(p2) !== 0) return VACUUM_INTO;
      const fn = typeof p4 === 'string' ? /^(\w+)\(-?\d+\)$/.exec(p4)?.[1]?.toLowerCase() : undefined;
      if (fn && Object.hasOwn(DENIED_FUNCTIONS, fn)) return DENIED_FUNCTIONS[fn]!;
    }
    return null;
  }

  /** Rows as WIT values; stops at `maxResultBytes` (a result the guest could not hold anyway). */
  private values(rows: unknown[][]): SqlValue[][] {
    let bytes = 0;
    const out: SqlValue[][] = new Array(rows.length);
    for (let r = 0; r < rows.length; r++) {
      const row = rows[r]!;
      const values: SqlValue[] = new Array(row.length);
      for (let c = 0; c < row.length; c++) {
        const v = row[c];
        if (v === null) {
          values[c] = { tag: 'null' };
          bytes += 1;
        } else if (typeof v === 'bigint') {
          values[c] = { tag: 'integer', val: v };
          bytes += 8;
        } else if (typeof v === 'number') {
          values[c] = { tag: 'real', val: v };
          bytes += 8;
        } else if (typeof v === 'string') {
          values[c] = { tag: 'text', val: v };
          bytes += v.length;
        } else {
          const b = v as Buffer;
          values[c] = { tag: 'blob', val: new Uint8Array(b.buffer, b.byteOffset, b.byteLength) };
          bytes += b.byteLength;
        }
      }
      out[r] = values;
      if (bytes > this.maxResultBytes) {
        throw new ScopedSqlError('E_LIMIT_OUTPUT', `the result holds more than ${this.maxResultBytes} bytes (the component's memory cap) after ${r + 1} of ${rows.length} rows; select fewer rows or columns (LIMIT … OFFSET …)`);
      }
    }
    return out;
  }

  private late(): ScopedSqlError {
    return new ScopedSqlError('E_LIMIT_TIME', `${this.label}: the call's deadline has passed; no further statement runs in this call`);
  }

  private readOnly(): ScopedSqlError {
    return new ScopedSqlError('E_SQL_DENIED', `${this.label} is granted read-only (sql mode ro) and this statement writes; ${this.writeHint}`);
  }

  /** A better-sqlite3 or SQLite failure as a scope error. */
  private failure(err: unknown): ScopedSqlError {
    if (err instanceof ScopedSqlError) return err;
    const code = (err as { code?: unknown }).code;
    const sqlite = typeof code === 'string' ? code : '';
    const message = messageOf(err);
    if (sqlite.startsWith('SQLITE_FULL')) {
      const pages = Number(this.db.pragma('main.max_page_count', { simple: true }));
      const pageSize = Number(this.db.pragma('page_size', { simple: true }));
      const cap = pages * pageSize >= 2 ** 20 ? `${Math.round((pages * pageSize) / 2 ** 20)} MiB` : `${Math.round((pages * pageSize) / 1024)} KiB`;
      return new ScopedSqlError('E_LIMIT_SQL_SIZE', `${this.label} is full: its cap is ${cap} (${pages} pages of ${pageSize} B, TEMP as much again), or the disk is full; delete rows (then VACUUM) to make room`, err);
    }
    // A bound parameter past the cap fails in better-sqlite3's binder, as a RangeError with no code.
    const tooBig = sqlite === 'SQLITE_TOOBIG' || (err instanceof RangeError && /^The bound string, buffer, or bigint is too big$/.test(message));
    if (tooBig && this.guard && Number.isFinite(this.maxResultBytes)) {
      return new ScopedSqlError('E_LIMIT_SQL_SIZE', `${this.label}: a string, blob or row would exceed ${this.maxResultBytes} bytes (the component's memory cap), so SQLite refused to build it (SQLITE_TOOBIG); split the value`, err);
    }
    if (sqlite === 'SQLITE_TOOBIG' || sqlite.startsWith('SQLITE_NOMEM')) return new ScopedSqlError('E_LIMIT_SQL_SIZE', `${message} (${sqlite})`, err);
    if (sqlite === 'SQLITE_INTERRUPT') {
      return new ScopedSqlError('E_LIMIT_TIME', `${this.label}: the statement was still running at the call's deadline and SQLite interrupted it; make it cheaper (an index, a LIMIT) or give the call more time`, err);
    }
    if (sqlite.startsWith('SQLITE_BUSY')) return new ScopedSqlError('E_LIMIT_TIME', `${this.label} stayed locked by another connection for ${BUSY_TIMEOUT_MS} ms; try again`, err);
    if (sqlite.startsWith('SQLITE_READONLY')) return this.readOnly();
    if (/^(not authorized|unsafe use of)/.test(message)) return new ScopedSqlError('E_SQL_DENIED', `${message}: SQLite refuses it in a scope (trusted_schema is off, load_extension is disabled)`, err);
    if (/more than one statement/.test(message)) return new ScopedSqlError('E_SQL_INVALID', `${message}: one statement per call`, err);
    return new ScopedSqlError('E_SQL_INVALID', sqlite ? `${message} (${sqlite})` : message, err);
  }
}
