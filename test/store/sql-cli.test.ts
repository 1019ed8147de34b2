// `warden sql SCOPE STATEMENT` as an operator runs it: a child process on a data directory whose
// scope was written through the capability, with the same refusals a component gets.
import { beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import { ScopedSql } from '../../kernel/store/scoped-sql.js';
import { tempDir } from '../support/fixtures.js';

const run = promisify(execFile);
const warden = join(PACKAGE_ROOT, 'bin/warden.js');
let dataDir: string;

function sql(...args: string[]) {
  return run(process.execPath, [warden, 'sql', ...args, '--data-dir', dataDir], { timeout: 30_000 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

/** The rows of `notes` as the operator sees them (JSON). */
async function notes(): Promise<unknown> {
  return JSON.parse((await sql('notes', 'SELECT id, body FROM notes ORDER BY id', '--json')).stdout);
}

beforeAll(() => {
  dataDir = tempDir('data');
  const scope = new ScopedSql(join(dataDir, 'scopes', 'notes.db'), 'rw', { name: 'notes' });
  scope.execute('CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, score REAL, data BLOB)', []);
  scope.execute("INSERT INTO notes (body, score, data) VALUES ('hello', 1.5, x'00ff'), ('two\nlines', NULL, NULL)", []);
  scope.close();
  new ScopedSql(join(dataDir, 'scopes', 'other.db'), 'rw').close();
});

describe('warden sql', () => {
  it('prints a scope\'s rows as a table, or as JSON rows by column name', async () => {
    const table = await sql('notes', 'SELECT id, body, score, data FROM notes');
    expect(table).toEqual({
      code: 0,
      stderr: '',
      stdout: ['id | body       | score | data', '---+------------+-------+--------', "1  | hello      | 1.5   | x'00ff'", '2  | two\\nlines | NULL  | NULL', '(2 rows)', ''].join('\n'),
    });
    const json = await sql('notes', 'SELECT id, body, score, data, 9007199254740993 AS big FROM notes WHERE id = 1', '--json');
    expect(JSON.parse(json.stdout)).toEqual({
      columns: ['id', 'body', 'score', 'data', 'big'],
      rows: [{ id: 1, body: 'hello', score: 1.5, data: { base64: 'AP8=' }, big: '9007199254740993' }],
    });
  });

  it('opens the scope read-only unless --rw; writes with --rw', async () => {
    const refused = await sql('notes', "INSERT INTO notes (body) VALUES ('sneaky')");
    expect(refused).toMatchObject({ code: 1, stdout: '' });
    expect(refused.stderr).toBe('warden: E_SQL_DENIED: scope "notes" is granted read-only (sql mode ro) and this statement writes; run it with --rw\n');
    expect(await sql('notes', "INSERT INTO notes (body) VALUES ('added')", '--rw')).toMatchObject({ code: 0, stdout: '1 row(s) changed\n' });
    expect(JSON.parse((await sql('notes', 'DELETE FROM notes WHERE id = 3', '--rw', '--json')).stdout)).toEqual({ changes: 1, lastInsertRowid: 0 });
    expect(await notes()).toEqual({ columns: ['id', 'body'], rows: [{ id: 1, body: 'hello' }, { id: 2, body: 'two\nlines' }] });
  });

  it('refuses what a component is refused, with --rw too', async () => {
    const other = join(dataDir, 'scopes', 'other.db');
    for (const [statement, error] of [
      [`ATTACH '${other}' AS o`, /^warden: E_SQL_DENIED: ATTACH is refused/],
      ['PRAGMA database_list', /^warden: E_SQL_DENIED: PRAGMA database_list is refused/],
      [`VACUUM INTO '${join(dataDir, 'copy.db')}'`, /^warden: E_SQL_DENIED: VACUUM INTO is refused/],
      ['SELECT 1; DROP TABLE notes', /^warden: E_SQL_INVALID: The supplied SQL string contains more than one statement/],
    ] as const) {
      const result = await sql('notes', statement, '--rw');
      expect(result.code, statement).toBe(1);
      expect(result.stderr, statement).toMatch(error);
    }
    expect(JSON.parse((await sql('notes', 'SELECT file FROM pragma_database_list', '--json')).stdout)).toEqual({ columns: ['file'], rows: [{ file: '' }, { file: '' }] });
    expect(await notes()).toMatchObject({ rows: [{ id: 1 }, { id: 2 }] });
  });

  it('says which scopes exist, and what is wrong with a bad name or bad SQL', async () => {
    expect(await sql('nope', 'SELECT 1')).toEqual({ code: 1, stdout: '', stderr: `warden: no scope "nope" in ${join(dataDir, 'scopes')} (scopes: notes, other)\n` });
    expect((await sql('../warden', 'SELECT 1')).stderr).toBe('warden: E_SQL_INVALID: "../warden" is not a scope name: lower-case letters, digits, _ and -, starting with a letter\n');
    expect((await sql('notes', 'SELEC 1')).stderr).toBe('warden: E_SQL_INVALID: near "SELEC": syntax error (SQLITE_ERROR)\n');
    expect((await sql('notes', 'SELECT * FROM missing')).stderr).toBe('warden: E_SQL_INVALID: no such table: missing (SQLITE_ERROR)\n');
  });
});
