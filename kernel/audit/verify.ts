/**
 * `warden audit verify`: walk the chain in seq order and check the head anchor; report the first
 * entry that is not as the kernel wrote it. Read-only, so it runs while the kernel appends (it
 * reads one snapshot of the table, and an anchor that lags that snapshot is accepted).
 */
import type Database from 'better-sqlite3';
import { dirname, join } from 'node:path';
import { GENESIS_HASH, entryHash, type AuditRow } from './chain.js';
import { AUDIT_HEAD_FILE, AUDIT_KEY_FILE, headMac, loadAuditKey, readHead, sameDigest, type HeadRead } from './files.js';

/** What is wrong with the first bad entry. */
export type AuditProblem =
  /** Its content (or its hash) was changed: the hash does not recompute. */
  | 'edited'
  /** Entries are missing from the sequence. */
  | 'deleted'
  /** The entry is intact but sits at another seq than the one it was written at. */
  | 'reordered'
  /** Its `prev_hash` does not name the previous entry's hash. */
  | 'chain-broken'
  /** Entries after the last one were cut off: the head anchor names a later or another entry. */
  | 'truncated'
  /** A row without a hash: inserted behind the kernel's back. */
  | 'unchained'
  /** `audit.head` is absent while the log has entries. */
  | 'anchor-missing'
  /** `audit.head` is unreadable or its MAC does not match. */
  | 'anchor-invalid'
  /** `audit.key` is absent while the log has entries. */
  | 'key-missing';

/** The first bad entry: its seq and kind (null when it is gone), the problem, a sentence for people. */
export interface AuditFinding {
  seq: number | null;
  kind: string | null;
  problem: AuditProblem;
  message: string;
}

/** Result of {@link verifyAudit}. */
export interface AuditReport {
  /** True when every entry and the anchor check out. */
  ok: boolean;
  /** Entries checked before the first bad one (all of them when `ok`). */
  entries: number;
  /** Seq of the last entry in the table, or null when it is empty. */
  lastSeq: number | null;
  /** Seq the head anchor names, or null when it is absent or unreadable. */
  headSeq: number | null;
  firstBad?: AuditFinding;
}

/** What {@link verifyAudit} reads: a store (`db` and `file`), or a connection and its data directory. */
export type AuditSource = { db: Database.Database; file: string } | { db: Database.Database; dataDir: string };

/** How far from its seq a failing entry is looked for at other seqs (to tell a reorder from an edit). */
const REORDER_WINDOW = 4096;

/**
 * Verify the audit chain of a store: seqs contiguous from 1, each `prev_hash` the previous
 * entry's hash (64 zeros for the first), each hash recomputing under the data directory's key,
 * and the head anchor's MAC valid and naming an entry that is present with its hash.
 * @throws WardenError `E_STORE` when `audit.key` exists but cannot be read
 */
export function verifyAudit(source: AuditSource): AuditReport {
  const { db } = source;
  const dataDir = 'dataDir' in source ? source.dataDir : dirname(source.file);
  // The anchor is read under the write lock (appenders write it under that lock, so it is never
  // seen half-written), released at once; the walk then reads one snapshot, at least as new as
  // the anchor, so an anchor that lags the snapshot is expected and accepted.
  let head: HeadRead;
  try {
    head = db.transaction(() => readHead(dataDir)).immediate();
  } catch {
    head = readHead(dataDir);
  }
  return db.transaction(() => walk(db, dataDir, head)).deferred();
}

function walk(db: Database.Database, dataDir: string, head: HeadRead): AuditReport {
  const key = loadAuditKey(dataDir, false);
  const headSeq = head.state === 'present' ? head.seq : null;
  const bad = (entries: number, lastSeq: number | null, firstBad: AuditFinding): AuditReport => ({ ok: false, entries, lastSeq, headSeq, firstBad });
  const tableLast = db.prepare('SELECT seq, kind FROM audit ORDER BY seq DESC LIMIT 1').get() as { seq: number; kind: string } | undefined;
  if (tableLast && !key) {
    return bad(0, tableLast.seq, { seq: null, kind: null, problem: 'key-missing', message: `the audit key ${join(dataDir, AUDIT_KEY_FILE)} is missing: no entry can be checked` });
  }
  let expected = 1;
  let prev = GENESIS_HASH;
  let last: AuditRow | undefined;
  for (const row of db.prepare('SELECT seq, ts, kind, component, task_id, detail, prev_hash, hash FROM audit ORDER BY seq').iterate() as IterableIterator<AuditRow>) {
    const entries = expected - 1;
    if (row.seq !== expected) {
      const gap = row.seq - 1 === expected ? `entry ${expected} missing` : `entries ${expected}–${row.seq - 1} missing`;
      return bad(entries, tableLast!.seq, { seq: expected, kind: null, problem: 'deleted', message: `${gap} (deleted): entry ${row.seq} follows entry ${expected - 1}` });
    }
    const finding = checkRow(db, key!, row, prev);
    if (finding) return bad(entries, tableLast!.seq, finding);
    prev = row.hash!;
    last = row;
    expected++;
  }
  const entries = expected - 1;
  const lastSeq = last?.seq ?? null;
  const anchor = checkAnchor(db, dataDir, key, head, last);
  return anchor ? bad(entries, lastSeq, anchor) : { ok: true, entries, lastSeq, headSeq };
}

/** The problem with `row` given the previous entry's hash `prev`, or null when it is intact. */
function checkRow(db: Database.Database, key: Buffer, row: AuditRow, prev: string): AuditFinding | null {
  const name = `entry ${row.seq} (${String(row.kind)})`;
  const at = (problem: AuditProblem, message: string): AuditFinding => ({ seq: row.seq, kind: typeof row.kind === 'string' ? row.kind : null, problem, message });
  if (row.hash === null) return at('unchained', `${name} has no hash: it was inserted behind the kernel's back`);
  const wellTyped =
    typeof row.ts === 'string' && typeof row.kind === 'string' && typeof row.detail === 'string' && typeof row.hash === 'string' &&
    (row.component === null || typeof row.component === 'string') && (row.task_id === null || typeof row.task_id === 'string') &&
    (row.prev_hash === null || typeof row.prev_hash === 'string');
  if (!wellTyped) return at('edited', `${name} was edited: a column holds a value of the wrong type`);
  const recomputes = (prevHash: string, seq: number) => sameDigest(entryHash(key, prevHash, { ...row, seq }), row.hash!);
  if (row.prev_hash === prev) {
    if (recomputes(prev, row.seq)) return null;
    const hint = row.seq === 1 ? ' (or the log was chained under another audit key)' : '';
    return at('edited', `${name} was edited: its hash does not match its content${hint}`);
  }
  if (recomputes(prev, row.seq)) return at('chain-broken', `${name}: its prev_hash was changed and no longer names entry ${row.seq - 1}'s hash`);
  if (row.prev_hash !== null) {
    const written = writtenAt(db, key, row);
    if (written !== null) return at('reordered', `${name} holds the entry written as entry ${written}: entries were reordered`);
    if (recomputes(row.prev_hash, row.seq)) return at('chain-broken', `${name} is intact but follows an entry that is not entry ${row.seq - 1}: an entry before it was replaced`);
  }
  return at('edited', `${name} was edited: neither its hash nor its prev_hash match`);
}

/** The seq, other than its own, at which `row` (with its own prev_hash) recomputes, or null. */
function writtenAt(db: Database.Database, key: Buffer, row: AuditRow): number | null {
  const max = (db.prepare('SELECT max(seq) AS m FROM audit').get() as { m: number }).m;
  for (let d = 1; d <= REORDER_WINDOW; d++) {
    for (const seq of [row.seq - d, row.seq + d]) {
      if (seq >= 1 && seq <= max && sameDigest(entryHash(key, row.prev_hash!, { ...row, seq }), row.hash!)) return seq;
    }
  }
  return null;
}

/** The problem with the head anchor given the last (intact) entry, or null when it agrees. */
function checkAnchor(db: Database.Database, dataDir: string, key: Buffer | null, head: HeadRead, last: AuditRow | undefined): AuditFinding | null {
  const file = join(dataDir, AUDIT_HEAD_FILE);
  const lastSeq = last?.seq ?? 0;
  const atLast = { seq: last?.seq ?? null, kind: last?.kind ?? null };
  if (head.state === 'missing') {
    return last ? { ...atLast, problem: 'anchor-missing', message: `the head anchor ${file} is missing: entries after entry ${lastSeq} may have been cut off` } : null;
  }
  if (head.state === 'unreadable') return { ...atLast, problem: 'anchor-invalid', message: `the head anchor ${file} is unreadable (${head.reason})` };
  if (!key || !sameDigest(head.mac, headMac(key, head.seq, head.hash))) {
    return { ...atLast, problem: 'anchor-invalid', message: `the head anchor ${file} does not carry a valid MAC: it was edited or written without the audit key` };
  }
  if (head.seq > lastSeq) {
    return { seq: lastSeq + 1, kind: null, problem: 'truncated', message: `truncated after entry ${lastSeq}: the head anchor names entry ${head.seq}` };
  }
  const named = db.prepare('SELECT kind, hash FROM audit WHERE seq = ?').get(head.seq) as { kind: string; hash: string } | undefined;
  if (!named || !sameDigest(named.hash, head.hash)) {
    return { seq: head.seq, kind: named?.kind ?? null, problem: 'truncated', message: `entry ${head.seq} is not the entry the head anchor names: the log was cut at or before it and written again` };
  }
  return null;
}
