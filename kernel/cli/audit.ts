/**
 * `warden audit verify|list`: check and read the tamper-evident audit log of a data directory.
 * Both only read (a plain connection, no migration, nothing chained or anchored), so they work
 * while a kernel runs and never change the evidence they look at.
 */
import Database from 'better-sqlite3';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { verifyAudit, type AuditRow } from '../audit/index.js';
import { messageOf } from '../errors.js';

/** Exit status when the log could not be checked at all (no store, unreadable key). */
const EXIT_CANNOT_CHECK = 2;

function fail(err: unknown, code: number): never {
  process.stderr.write(`warden: ${messageOf(err)}\n`);
  process.exit(code);
}

/** Open the data directory's store for reading, or exit naming what is missing. */
function openLog(dataDir: string): { db: Database.Database; dataDir: string } {
  const dir = resolve(dataDir);
  const file = join(dir, 'warden.db');
  if (!existsSync(file)) fail(`no kernel store at ${file}; pass --data-dir`, EXIT_CANNOT_CHECK);
  let db: Database.Database;
  try {
    db = new Database(file, { fileMustExist: true, timeout: 5000 });
  } catch (err) {
    fail(`cannot open ${file}: ${messageOf(err)}`, EXIT_CANNOT_CHECK);
  }
  const columns = (db.prepare("SELECT name FROM pragma_table_info('audit')").all() as Array<{ name: string }>).map((c) => c.name);
  if (!columns.includes('hash')) {
    const version = String(db.pragma('user_version', { simple: true }));
    db.close();
    fail(`${file} predates the audit chain (schema version ${version}); run \`warden migrate\` first`, EXIT_CANNOT_CHECK);
  }
  return { db, dataDir: dir };
}

function positiveInteger(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('a whole number of at least 1');
  return n;
}

/** One entry as a line: `seq  ts  kind  [component]  [task]  detail`. */
function formatEntry(e: AuditRow): string {
  return [String(e.seq).padStart(6), e.ts, e.kind.padEnd(18), e.component ? `component=${e.component}` : '', e.task_id ? `task=${e.task_id}` : '', e.detail]
    .filter(Boolean)
    .join('  ');
}

/** Add the `audit` commands to `program`. */
export function registerAuditCommands(program: Command): void {
  const dataDirOption = () => new Option('--data-dir <dir>', 'data directory: database, sessions, caches').default('.warden');
  const audit = program.command('audit').description('the tamper-evident audit log: verify its hash chain, list its entries');
  audit
    .command('verify')
    .description('check the hash chain and the head anchor; exit 0 when intact, 1 naming the first bad entry, 2 when it cannot be checked')
    .option('--json', 'print {ok, entries, lastSeq, headSeq, firstBad?: {seq, kind, problem, message}}')
    .addOption(dataDirOption())
    .action((opts: { json?: boolean; dataDir: string }) => {
      const log = openLog(opts.dataDir);
      let report;
      try {
        report = verifyAudit(log);
      } catch (err) {
        fail(err, EXIT_CANNOT_CHECK);
      } finally {
        log.db.close();
      }
      if (opts.json) process.stdout.write(`${JSON.stringify(report)}\n`);
      else if (report.ok) process.stdout.write(`audit log intact: ${report.entries} entries, last seq ${report.lastSeq ?? 0}\n`);
      else {
        const bad = report.firstBad!;
        process.stderr.write(`warden: audit log tampered: first bad entry ${bad.seq ?? '-'} (${bad.problem}): ${bad.message}\n`);
      }
      process.exit(report.ok ? 0 : 1);
    });
  audit
    .command('list')
    .description('audit entries, oldest first among the newest N')
    .option('--limit <n>', 'how many entries', positiveInteger, 50)
    .option('--kind <kind>', 'only entries of this kind (denied, limit, session.commit, key.create, config.change, …)')
    .option('--json', 'print the entries as JSON, with prev_hash and hash')
    .addOption(dataDirOption())
    .action((opts: { limit: number; kind?: string; json?: boolean; dataDir: string }) => {
      const { db } = openLog(opts.dataDir);
      let rows: AuditRow[];
      try {
        rows = (db.prepare('SELECT * FROM audit WHERE (@kind IS NULL OR kind = @kind) ORDER BY seq DESC LIMIT @limit').all({ kind: opts.kind ?? null, limit: opts.limit }) as AuditRow[]).reverse();
      } catch (err) {
        fail(err, 1);
      } finally {
        db.close();
      }
      if (opts.json) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      else if (rows.length === 0) process.stdout.write(opts.kind ? `no audit entries of kind ${opts.kind}\n` : 'no audit entries\n');
      else process.stdout.write(`${rows.map(formatEntry).join('\n')}\n`);
    });
}
