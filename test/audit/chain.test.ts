// The audit log's hash chain: appends from two processes at once stay one contiguous chain, and
// `verifyAudit` / `warden audit verify` name the first bad entry after each kind of tampering done
// through a separate SQLite connection (no audit key): edits, deletions, truncation with and
// without later appends, reordering, forgery with another key, the head anchor deleted or edited.
// Stores from before the chain (schema 5) are chained when opened.
import { beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { cpSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createHmac } from 'node:crypto';
import Database from 'better-sqlite3';
import { restoreStore, SCHEMA_VERSION, Store } from '../../kernel/store/index.js';
import { AUDIT_HEAD_FILE, AUDIT_KEY_FILE, canonicalJson, entryHash, GENESIS_HASH, verifyAudit, type AuditReport } from '../../kernel/audit/index.js';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import { tempDir } from '../support/fixtures.js';

const run = promisify(execFile);
const warden = join(PACKAGE_ROOT, 'bin/warden.js');
const KINDS = ['denied', 'limit', 'session.commit', 'key.create', 'component.load'];
const ENTRIES = 60;

function cli(args: string[]) {
  return run(process.execPath, [warden, ...args], { timeout: 60_000 }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

/** A data directory whose store holds `n` audit entries written through `Store.audit`, closed. */
function writtenLog(n: number): string {
  const dir = tempDir('audit');
  const store = new Store(join(dir, 'warden.db'));
  for (let i = 1; i <= n; i++) store.audit(KINDS[i % KINDS.length]!, { n: i, reason: `event ${i}` }, i % 3 ? `comp-${i % 4}` : undefined, i % 2 ? `t-${i}` : undefined);
  store.close();
  return dir;
}

/** Verify the data directory `dir` through a fresh connection. */
function verify(dir: string): AuditReport {
  const db = new Database(join(dir, 'warden.db'));
  try {
    return verifyAudit({ db, dataDir: dir });
  } finally {
    db.close();
  }
}

/** Tamper with a copy of `source` through a plain SQLite connection; returns the copy. */
function tampered(source: string, change: (db: Database.Database, dir: string) => void): string {
  const dir = tempDir('tampered');
  cpSync(source, dir, { recursive: true });
  const db = new Database(join(dir, 'warden.db'));
  try {
    change(db, dir);
  } finally {
    db.close();
  }
  return dir;
}

describe('the audit hash chain', () => {
  let log: string;
  beforeAll(() => {
    log = writtenLog(ENTRIES);
  });

  it('canonical JSON sorts members by UTF-16 code units and matches RFC 8785 number and string forms', () => {
    expect(canonicalJson({ b: 1, a: [true, null, 'x'], c: { z: -0, y: 1e21, x: 0.1 } })).toBe('{"a":[true,null,"x"],"b":1,"c":{"x":0.1,"y":1e+21,"z":0}}');
    // RFC 8785 §3.2.3's sorting example (by UTF-16 code units: the emoji's high surrogate sorts before U+FB33).
    const input = { '\u20ac': 1, '\r': 2, '\ufb33': 3, '1': 4, '\ud83d\ude00': 5, '\u0080': 6, '\u00f6': 7 };
    const order = ['\r', '1', '\u0080', '\u00f6', '\u20ac', '\ud83d\ude00', '\ufb33'];
    expect(canonicalJson(input)).toBe(`{${order.map((k) => `${JSON.stringify(k)}:${input[k as keyof typeof input]}`).join(',')}}`);
    expect(canonicalJson({ a: undefined, b: 'é\n"' })).toBe('{"b":"é\\n\\""}');
    expect(() => canonicalJson({ a: Number.NaN })).toThrow(TypeError);
  });

  it('each entry is HMAC-SHA256(key, prev_hash + "\\n" + canonical entry) under the 32-byte key in audit.key (mode 0600)', () => {
    const key = readFileSync(join(log, AUDIT_KEY_FILE));
    expect(key.length).toBe(32);
    expect(statSync(join(log, AUDIT_KEY_FILE)).mode & 0o777).toBe(0o600);
    const db = new Database(join(log, 'warden.db'), { readonly: true });
    const rows = db.prepare('SELECT * FROM audit ORDER BY seq').all() as Array<Record<string, string | number | null>>;
    db.close();
    expect(rows.map((r) => r['seq'])).toEqual(Array.from({ length: ENTRIES }, (_, i) => i + 1));
    expect(rows[0]!['prev_hash']).toBe(GENESIS_HASH);
    const second = rows[1]!;
    const text = `${String(rows[0]!['hash'])}\n{"component":${JSON.stringify(second['component'])},"detail":${JSON.stringify(second['detail'])},"kind":${JSON.stringify(second['kind'])},"seq":2,"task_id":${JSON.stringify(second['task_id'])},"ts":${JSON.stringify(second['ts'])}}`;
    expect(second['prev_hash']).toBe(rows[0]!['hash']);
    expect(second['hash']).toBe(createHmac('sha256', key).update(text).digest('hex'));
    const head = JSON.parse(readFileSync(join(log, AUDIT_HEAD_FILE), 'utf8')) as { seq: number; hash: string; mac: string };
    expect(head).toEqual({ seq: ENTRIES, hash: rows[ENTRIES - 1]!['hash'], mac: createHmac('sha256', key).update(`head\n${ENTRIES}\n${String(rows[ENTRIES - 1]!['hash'])}`).digest('hex') });
  });

  it('an untouched log verifies: every entry, last seq and head anchor', () => {
    expect(verify(log)).toEqual({ ok: true, entries: ENTRIES, lastSeq: ENTRIES, headSeq: ENTRIES });
  });

  it('an edited detail is named with its seq and kind', () => {
    const dir = tampered(log, (db) => db.prepare("UPDATE audit SET detail = '{\"n\":17,\"reason\":\"nothing happened\"}' WHERE seq = 17").run());
    const report = verify(dir);
    expect(report).toMatchObject({ ok: false, entries: 16, firstBad: { seq: 17, kind: KINDS[17 % KINDS.length], problem: 'edited' } });
    expect(report.firstBad!.message).toContain('entry 17');
  });

  it('an edited kind is named (with the kind as it now reads)', () => {
    const report = verify(tampered(log, (db) => db.prepare("UPDATE audit SET kind = 'harmless' WHERE seq = 5").run()));
    expect(report.firstBad).toMatchObject({ seq: 5, kind: 'harmless', problem: 'edited' });
  });

  it('an edited timestamp, component or task is named', () => {
    expect(verify(tampered(log, (db) => db.prepare("UPDATE audit SET ts = '2000-01-01T00:00:00.000Z' WHERE seq = 8").run())).firstBad).toMatchObject({ seq: 8, problem: 'edited' });
    expect(verify(tampered(log, (db) => db.prepare("UPDATE audit SET component = 'someone-else' WHERE seq = 9").run())).firstBad).toMatchObject({ seq: 9, problem: 'edited' });
    expect(verify(tampered(log, (db) => db.prepare('UPDATE audit SET task_id = NULL WHERE seq = 11').run())).firstBad).toMatchObject({ seq: 11, problem: 'edited' });
  });

  it('a deleted middle entry is named by its seq: "entry 41 missing (deleted)"', () => {
    const report = verify(tampered(log, (db) => db.prepare('DELETE FROM audit WHERE seq = 41').run()));
    expect(report.firstBad).toMatchObject({ seq: 41, kind: null, problem: 'deleted' });
    expect(report.firstBad!.message).toMatch(/^entry 41 missing \(deleted\)/);
    const range = verify(tampered(log, (db) => db.prepare('DELETE FROM audit WHERE seq BETWEEN 20 AND 22').run()));
    expect(range.firstBad!.message).toMatch(/^entries 20–22 missing \(deleted\)/);
  });

  it('a deleted first entry is named', () => {
    expect(verify(tampered(log, (db) => db.prepare('DELETE FROM audit WHERE seq = 1').run())).firstBad).toMatchObject({ seq: 1, problem: 'deleted' });
  });

  it('deleting the last entries is caught by the head anchor: truncated after entry N', () => {
    const report = verify(tampered(log, (db) => db.prepare('DELETE FROM audit WHERE seq > 57').run()));
    expect(report).toMatchObject({ ok: false, entries: 57, lastSeq: 57, headSeq: ENTRIES, firstBad: { seq: 58, problem: 'truncated' } });
    expect(report.firstBad!.message).toBe(`truncated after entry 57: the head anchor names entry ${ENTRIES}`);
    // Everything gone: still a truncation, not an empty log.
    expect(verify(tampered(log, (db) => db.prepare('DELETE FROM audit').run())).firstBad).toMatchObject({ seq: 1, problem: 'truncated' });
  });

  it('a truncation stays visible after the kernel appends again (the anchor does not follow a log that disagrees with it)', () => {
    // The sequence counter reset too, so new entries reuse the cut seqs and leave no gap.
    const dir = tampered(log, (db) => {
      db.prepare('DELETE FROM audit WHERE seq > 50').run();
      db.prepare("UPDATE sqlite_sequence SET seq = 50 WHERE name = 'audit'").run();
    });
    const store = new Store(join(dir, 'warden.db'));
    for (let i = 0; i < 3; i++) store.audit('denied', { after: i });
    store.close();
    const report = verify(dir);
    expect(report.firstBad).toMatchObject({ problem: 'truncated' });
    expect(report.firstBad!.message).toContain(`truncated after entry 53: the head anchor names entry ${ENTRIES}`);
    // Without resetting the counter, the new entries leave a gap instead.
    const gap = tampered(log, (db) => db.prepare('DELETE FROM audit WHERE seq > 50').run());
    const again = new Store(join(gap, 'warden.db'));
    again.audit('denied', {});
    again.close();
    expect(verify(gap).firstBad).toMatchObject({ seq: 51, problem: 'deleted' });
  });

  it('two entries with swapped details: the first of them is named', () => {
    const report = verify(tampered(log, (db) => {
      const [a, b] = [10, 11].map((seq) => (db.prepare('SELECT detail FROM audit WHERE seq = ?').get(seq) as { detail: string }).detail);
      db.prepare('UPDATE audit SET detail = ? WHERE seq = 10').run(b);
      db.prepare('UPDATE audit SET detail = ? WHERE seq = 11').run(a);
    }));
    expect(report.firstBad).toMatchObject({ seq: 10, problem: 'edited' });
  });

  it('two whole entries swapped in order are named as reordered', () => {
    const report = verify(tampered(log, (db) => {
      db.prepare('UPDATE audit SET seq = -1 WHERE seq = 20').run();
      db.prepare('UPDATE audit SET seq = 20 WHERE seq = 21').run();
      db.prepare('UPDATE audit SET seq = 21 WHERE seq = -1').run();
    }));
    expect(report.firstBad).toMatchObject({ seq: 20, problem: 'reordered' });
    expect(report.firstBad!.message).toContain('written as entry 21');
  });

  it('an entry forged without the key (edited, then it and every later hash recomputed under another key) is named', () => {
    const report = verify(tampered(log, (db) => {
      const wrongKey = Buffer.alloc(32, 7);
      db.prepare('UPDATE audit SET detail = \'{"forged":true}\' WHERE seq = 30').run();
      let prev = (db.prepare('SELECT hash FROM audit WHERE seq = 29').get() as { hash: string }).hash;
      for (const row of db.prepare('SELECT * FROM audit WHERE seq >= 30 ORDER BY seq').all() as Array<{ seq: number; ts: string; kind: string; component: string | null; task_id: string | null; detail: string }>) {
        const hash = entryHash(wrongKey, prev, row);
        db.prepare('UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?').run(prev, hash, row.seq);
        prev = hash;
      }
    }));
    expect(report.firstBad).toMatchObject({ seq: 30, problem: 'edited' });
  });

  it('a changed prev_hash is named as a broken chain', () => {
    const report = verify(tampered(log, (db) => db.prepare('UPDATE audit SET prev_hash = ? WHERE seq = 12').run('ab'.repeat(32))));
    expect(report.firstBad).toMatchObject({ seq: 12, problem: 'chain-broken' });
  });

  it('a row slipped in without a hash is not chained when the store is opened again, and is named', () => {
    const dir = tampered(log, (db) => db.prepare("INSERT INTO audit (ts, kind, detail) VALUES ('2030-01-01T00:00:00.000Z', 'key.create', '{}')").run());
    new Store(join(dir, 'warden.db')).close();
    expect(verify(dir).firstBad).toMatchObject({ seq: ENTRIES + 1, kind: 'key.create', problem: 'unchained' });
  });

  it('a deleted head anchor is reported, and is not recreated by later appends', () => {
    const dir = tampered(log, (_db, d) => rmSync(join(d, AUDIT_HEAD_FILE)));
    expect(verify(dir)).toMatchObject({ ok: false, headSeq: null, firstBad: { seq: ENTRIES, problem: 'anchor-missing' } });
    const store = new Store(join(dir, 'warden.db'));
    store.audit('denied', {});
    store.close();
    expect(existsSync(join(dir, AUDIT_HEAD_FILE))).toBe(false);
    expect(verify(dir).firstBad).toMatchObject({ problem: 'anchor-missing' });
  });

  it('a head anchor edited without the key (its MAC fails) is reported', () => {
    const dir = tampered(log, (_db, d) => {
      const file = join(d, AUDIT_HEAD_FILE);
      const head = JSON.parse(readFileSync(file, 'utf8')) as { seq: number; hash: string; mac: string };
      writeFileSync(file, JSON.stringify({ ...head, seq: 40 }));
    });
    expect(verify(dir).firstBad).toMatchObject({ problem: 'anchor-invalid' });
    expect(verify(tampered(log, (_db, d) => writeFileSync(join(d, AUDIT_HEAD_FILE), 'garbage'))).firstBad).toMatchObject({ problem: 'anchor-invalid' });
  });

  it('a missing audit key is reported: nothing can be checked', () => {
    expect(verify(tampered(log, (_db, d) => rmSync(join(d, AUDIT_KEY_FILE)))).firstBad).toMatchObject({ problem: 'key-missing' });
  });

  it('a replaced audit key fails the first entry', () => {
    const report = verify(tampered(log, (_db, d) => writeFileSync(join(d, AUDIT_KEY_FILE), Buffer.alloc(32, 1))));
    expect(report.firstBad).toMatchObject({ seq: 1, problem: 'edited' });
    expect(report.firstBad!.message).toContain('another audit key');
  });
});

describe('concurrent appenders', () => {
  it('two processes appending 200 entries each at once leave one contiguous, intact chain', async () => {
    const dir = tempDir('audit-concurrent');
    new Store(join(dir, 'warden.db')).close();
    const storeModule = join(PACKAGE_ROOT, 'dist/kernel/store/index.js');
    expect(existsSync(storeModule), 'build the kernel first: tsc -p tsconfig.build.json').toBe(true);
    // Both children open the store, say so, and wait for the go file: their appends overlap.
    const go = join(dir, 'go');
    const child = (name: string) =>
      run(process.execPath, ['--input-type=module', '-e', `
        import { existsSync, writeFileSync } from 'node:fs';
        import { Store } from ${JSON.stringify(storeModule)};
        const store = new Store(${JSON.stringify(join(dir, 'warden.db'))});
        writeFileSync(${JSON.stringify(join(dir, 'ready-'))} + ${JSON.stringify(name)}, '');
        while (!existsSync(${JSON.stringify(go)})) await new Promise((r) => setTimeout(r, 2));
        // Pauses between appends, as a kernel appends: a busy waiter gets the lock in between.
        for (let i = 0; i < 200; i++) {
          store.audit('denied', { writer: ${JSON.stringify(name)}, i }, ${JSON.stringify(name)});
          if (i % 2) await new Promise((r) => setTimeout(r, 1));
        }
        store.close();
      `], { timeout: 120_000 });
    const children = Promise.all([child('alpha'), child('beta')]);
    while (!['alpha', 'beta'].every((n) => existsSync(join(dir, `ready-${n}`)))) await new Promise((r) => setTimeout(r, 5));
    writeFileSync(go, '');
    await children;
    const report = verify(dir);
    expect(report).toEqual({ ok: true, entries: 400, lastSeq: 400, headSeq: 400 });
    const db = new Database(join(dir, 'warden.db'), { readonly: true });
    const rows = db.prepare('SELECT component, detail FROM audit ORDER BY seq').all() as Array<{ component: string; detail: string }>;
    db.close();
    for (const name of ['alpha', 'beta']) {
      // Each writer's entries are all there, in the order it wrote them.
      expect(rows.filter((r) => r.component === name).map((r) => (JSON.parse(r.detail) as { i: number }).i)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    }
    // They really interleaved (otherwise this test proves nothing about concurrency): more than two
    // switches means each writer appended between entries of the other at least once. A loaded
    // machine may deschedule one writer for long stretches, so no more is asked.
    const switches = rows.filter((r, i) => i > 0 && r.component !== rows[i - 1]!.component).length;
    expect(switches).toBeGreaterThan(2);
  });
});

describe('stores from before the chain', () => {
  it('a schema-5 store with unchained entries is chained in seq order when opened, and verifies', () => {
    const dir = tempDir('audit-v5');
    new Store(join(dir, 'warden.db')).close();
    rmSync(join(dir, AUDIT_KEY_FILE), { force: true });
    rmSync(join(dir, AUDIT_HEAD_FILE), { force: true });
    // Back to schema 5: migrations 6 to 8 undone, old-style entries written as the old kernel did.
    const db = new Database(join(dir, 'warden.db'));
    db.exec('ALTER TABLE tasks DROP COLUMN runtime; DROP TABLE approvals; ALTER TABLE tasks DROP COLUMN mode;');
    db.exec('ALTER TABLE audit DROP COLUMN prev_hash; ALTER TABLE audit DROP COLUMN hash; DROP TABLE meta;');
    db.pragma('user_version = 5');
    for (let i = 1; i <= 5; i++) db.prepare('INSERT INTO audit (ts, kind, component, task_id, detail) VALUES (?, ?, NULL, NULL, ?)').run(new Date(Date.UTC(2025, 0, i)).toISOString(), 'session.commit', JSON.stringify({ session: `s-${i}` }));
    db.close();
    const store = new Store(join(dir, 'warden.db'));
    expect(store.openedAtVersion).toBe(5);
    expect(store.schemaVersion).toBe(SCHEMA_VERSION);
    expect(verifyAudit(store)).toEqual({ ok: true, entries: 5, lastSeq: 5, headSeq: 5 });
    store.audit('denied', { after: 'migration' });
    expect(verifyAudit(store)).toEqual({ ok: true, entries: 6, lastSeq: 6, headSeq: 6 });
    store.close();
  });
});

describe('restore', () => {
  it('restoring an older backup rewinds the log on purpose: a store.restore entry names the previous anchor, and the log verifies', async () => {
    const dir = writtenLog(10);
    const store = new Store(join(dir, 'warden.db'));
    const backup = join(tempDir('backup'), 'old.db');
    await store.backup(backup);
    for (let i = 0; i < 5; i++) store.audit('denied', { after: 'backup' });
    store.close();
    expect(verify(dir)).toMatchObject({ ok: true, lastSeq: 15 });
    restoreStore(backup, dir);
    const report = verify(dir);
    expect(report).toEqual({ ok: true, entries: 11, lastSeq: 11, headSeq: 11 });
    const db = new Database(join(dir, 'warden.db'), { readonly: true });
    const last = db.prepare('SELECT kind, detail FROM audit WHERE seq = 11').get() as { kind: string; detail: string };
    db.close();
    expect(last.kind).toBe('store.restore');
    expect(JSON.parse(last.detail)).toEqual({ backup, restoredLastSeq: 10, previousHeadSeq: 15 });
  });
});

describe('warden audit', () => {
  it('verify exits 0 on an intact log and 1 naming the first bad entry (text and --json)', async () => {
    const dir = writtenLog(25);
    const intact = await cli(['audit', 'verify', '--data-dir', dir]);
    expect(intact).toMatchObject({ code: 0, stdout: 'audit log intact: 25 entries, last seq 25\n' });
    expect(JSON.parse((await cli(['audit', 'verify', '--json', '--data-dir', dir])).stdout)).toEqual({ ok: true, entries: 25, lastSeq: 25, headSeq: 25 });

    const bad = tampered(dir, (db) => db.prepare("UPDATE audit SET detail = '{}' WHERE seq = 13").run());
    const text = await cli(['audit', 'verify', '--data-dir', bad]);
    expect(text.code).toBe(1);
    expect(text.stderr).toMatch(/^warden: audit log tampered: first bad entry 13 \(edited\): entry 13 \(\S+\) was edited/);
    const json = await cli(['audit', 'verify', '--json', '--data-dir', bad]);
    expect(json.code).toBe(1);
    expect((JSON.parse(json.stdout) as AuditReport).firstBad).toMatchObject({ seq: 13, problem: 'edited' });

    const cut = tampered(dir, (db) => db.prepare('DELETE FROM audit WHERE seq > 20').run());
    const truncated = await cli(['audit', 'verify', '--data-dir', cut]);
    expect(truncated.code).toBe(1);
    expect(truncated.stderr).toContain('truncated after entry 20: the head anchor names entry 25');
  });

  it('verify exits 2 when there is no store to check', async () => {
    const result = await cli(['audit', 'verify', '--data-dir', tempDir('empty')]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('no kernel store');
  });

  it('list shows the newest entries oldest first, filtered by kind, as text or JSON', async () => {
    const dir = writtenLog(25);
    const json = await cli(['audit', 'list', '--kind', 'denied', '--limit', '3', '--json', '--data-dir', dir]);
    expect(json.code).toBe(0);
    const rows = JSON.parse(json.stdout) as Array<{ seq: number; kind: string; hash: string }>;
    // denied is KINDS[0]: seqs 5, 10, 15, 20, 25.
    expect(rows.map((r) => [r.seq, r.kind])).toEqual([[15, 'denied'], [20, 'denied'], [25, 'denied']]);
    expect(rows[0]!.hash).toMatch(/^[0-9a-f]{64}$/);
    const text = await cli(['audit', 'list', '--limit', '2', '--data-dir', dir]);
    expect(text.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/)[0])).toEqual(['24', '25']);
    expect((await cli(['audit', 'list', '--limit', '0', '--data-dir', dir])).code).not.toBe(0);
  });
});
