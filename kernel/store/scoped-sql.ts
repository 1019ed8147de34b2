/**
 * The `sql` capability: one SQLite database file per scope, opened inside the component's
 * worker. A scope can never reach another database: `ATTACH`, `DETACH`, `VACUUM`,
 * `load_extension` and `PRAGMA` are refused, read-only grants are enforced by SQLite itself
 * (`stmt.readonly` and a read-only connection), and the size is capped with `max_page_count`.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

/** WIT `sql-value`. Integers cross as bigint (s64). */
export type SqlValue =
  | { tag: 'null' }
  | { tag: 'integer'; val: bigint }
  | { tag: 'real'; val: number }
  | { tag: 'text'; val: string }
  | { tag: 'blob'; val: Uint8Array };

/** WIT `sql-error`, thrown to the guest. */
export type SqlError = { tag: 'denied' | 'invalid' | 'limit'; val: string };

/** Default cap of a scope's size: 16384 pages of 4 KiB = 64 MiB. */
export const DEFAULT_MAX_PAGES = 16384;

const REFUSED = /\b(ATTACH|DETACH|VACUUM|PRAGMA|load_extension)\b/i;

/** Remove comments and quoted text, so keyword checks see only SQL tokens. */
function tokensOnly(sql: string): string {
  return sql.replace(/--[^\n]*|\/\*[\s\S]*?(\*\/|$)|'(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\]/g, ' ');
}

function toParam(value: SqlValue): unknown {
  switch (value.tag) {
    case 'null':
      return null;
    case 'blob':
      return Buffer.from(value.val);
    default:
      return value.val;
  }
}

function fromColumn(value: unknown): SqlValue {
  if (value === null || value === undefined) return { tag: 'null' };
  if (typeof value === 'bigint') return { tag: 'integer', val: value };
  if (typeof value === 'number') return Number.isInteger(value) ? { tag: 'integer', val: BigInt(value) } : { tag: 'real', val: value };
  if (typeof value === 'string') return { tag: 'text', val: value };
  if (value instanceof Uint8Array) return { tag: 'blob', val: new Uint8Array(value) };
  return { tag: 'text', val: String(value) };
}

/** A connection to one scope's database. */
export class ScopedSql {
  private readonly db: Database.Database;

  /**
   * @param file host path of the scope's database file (created when missing, for `rw`)
   * @param mode `ro` opens the database read-only
   * @param maxPages size cap in pages (4 KiB each)
   */
  constructor(file: string, private readonly mode: 'ro' | 'rw', maxPages = DEFAULT_MAX_PAGES) {
    mkdirSync(dirname(file), { recursive: true });
    if (mode === 'ro') {
      // A read-only grant on a scope nobody created yet sees an empty database.
      new Database(file).close();
    }
    this.db = new Database(file, { readonly: mode === 'ro', timeout: 5000 });
    if (mode === 'rw') {
      this.db.pragma('journal_mode = WAL');
      this.db.pragma(`max_page_count = ${maxPages}`);
    }
    this.db.defaultSafeIntegers(true);
  }

  private prepare(sql: string): Database.Statement {
    if (REFUSED.test(tokensOnly(sql))) {
      throw { tag: 'denied', val: 'E_SQL_DENIED: ATTACH, DETACH, VACUUM, PRAGMA and load_extension are not allowed in a scope' } satisfies SqlError;
    }
    let stmt: Database.Statement;
    try {
      stmt = this.db.prepare(sql);
    } catch (err) {
      throw { tag: 'invalid', val: (err as Error).message } satisfies SqlError;
    }
    if (this.mode === 'ro' && !stmt.readonly) {
      throw { tag: 'denied', val: 'E_SQL_DENIED: the scope is granted read-only; this statement writes' } satisfies SqlError;
    }
    return stmt;
  }

  private run<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err && typeof err === 'object' && 'tag' in err) throw err;
      const e = err as { code?: string; message: string };
      if (e.code === 'SQLITE_FULL') throw { tag: 'limit', val: `scope is full: ${e.message}` } satisfies SqlError;
      throw { tag: 'invalid', val: e.message } satisfies SqlError;
    }
  }

  /** Run a statement that returns rows. */
  query(sql: string, params: SqlValue[]): { columns: string[]; values: SqlValue[][] } {
    return this.run(() => {
      const stmt = this.prepare(sql);
      if (!stmt.reader) throw { tag: 'invalid', val: 'query expects a statement that returns rows; use execute' } satisfies SqlError;
      stmt.raw(true);
      const rows = stmt.all(...params.map(toParam)) as unknown[][];
      return { columns: stmt.columns().map((c) => c.name), values: rows.map((row) => row.map(fromColumn)) };
    });
  }

  /** Run a statement that changes data. Counts: changes (rows), last insert rowid. */
  execute(sql: string, params: SqlValue[]): { changes: bigint; lastInsertRowid: bigint } {
    return this.run(() => {
      const stmt = this.prepare(sql);
      const info = stmt.run(...params.map(toParam));
      return { changes: BigInt(info.changes), lastInsertRowid: BigInt(info.lastInsertRowid) };
    });
  }

  close(): void {
    this.db.close();
  }
}
