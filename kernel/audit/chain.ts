/**
 * Appending to the hash-chained audit table. Each row carries
 * `hash = HMAC-SHA256(key, prev_hash + "\n" + canonicalJson({seq, ts, kind, component, task_id, detail}))`
 * where `prev_hash` is the previous row's hash (64 zeros for the first row) and `detail` is the
 * stored JSON text. Several processes (the kernel, `warden session gc`, `warden key create` …)
 * append to one store, so every append is one IMMEDIATE transaction: read the last row, insert,
 * hash.
 */
import type Database from 'better-sqlite3';
import { canonicalJson } from './canonical.js';
import { hmacHex, headMac, loadAuditKey, readHead, sameDigest, syncHead, writeHead } from './files.js';

/** `prev_hash` of the first entry. */
export const GENESIS_HASH = '0'.repeat(64);

/** The fields of an entry that its hash covers. `ts` is ISO 8601; `detail` is JSON text. */
export interface AuditEntry {
  seq: number;
  ts: string;
  kind: string;
  component: string | null;
  task_id: string | null;
  detail: string;
}

/** A row of the `audit` table. `prev_hash` and `hash` are null only on rows not chained yet. */
export interface AuditRow extends AuditEntry {
  prev_hash: string | null;
  hash: string | null;
}

/** The hash of `entry` following `prevHash`, hex. */
export function entryHash(key: Buffer, prevHash: string, entry: AuditEntry): string {
  const { seq, ts, kind, component, task_id, detail } = entry;
  return hmacHex(key, `${prevHash}\n${canonicalJson({ seq, ts, kind, component, task_id, detail })}`);
}

/** Options of {@link AuditChain}. */
export interface AuditChainOptions {
  /**
   * Keep `audit.head` up to date (default true). False for a store that is not the data
   * directory's own, such as a backup being checked before a restore.
   */
  anchor?: boolean;
}

/** The audit chain of one store connection. Its key is read (or created) at the first append. */
export class AuditChain {
  private key: Buffer | null = null;
  /** Whether this connection moved the head anchor (it is synced at {@link close}). */
  private moved = false;
  private readonly anchor: boolean;

  constructor(
    private readonly db: Database.Database,
    /** The data directory: the store's directory, where `audit.key` and `audit.head` live. */
    readonly dataDir: string,
    options: AuditChainOptions = {},
  ) {
    this.anchor = options.anchor ?? true;
  }

  private keyOf(): Buffer {
    return (this.key ??= loadAuditKey(this.dataDir, true)!);
  }

  /**
   * Append one entry, then move the head anchor to it — only when the anchor agreed with the log
   * before the append (it names an entry that is there with its hash, or is absent and the log
   * was empty): a log that was cut short or lost its anchor stays detectably so instead of being
   * re-anchored by its next append. The anchor moves in a second, empty IMMEDIATE transaction
   * after the commit, so every anchor read and write happens under the store's write lock, and a
   * process killed between the two leaves an anchor one entry behind (accepted), never ahead
   * (which would read as a truncation). Inside a caller's own transaction the anchor is not
   * moved (that transaction may still roll back); the next append moves it.
   * @param detail JSON text; callers pass names, never secret values
   * @returns the new entry's seq
   * @throws WardenError `E_STORE` when the audit key cannot be read or created; SQLite errors
   *   (`SQLITE_BUSY` after the connection's busy timeout)
   */
  append(kind: string, detail: string, component: string | null, taskId: string | null): number {
    const key = this.keyOf();
    const nested = this.db.inTransaction;
    const { seq, hash, anchored } = this.db
      .transaction(() => {
        const last = this.db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: string | null } | undefined;
        const anchored = this.anchorAgrees(key, last);
        const ts = new Date().toISOString();
        const seq = Number(this.db.prepare('INSERT INTO audit (ts, kind, component, task_id, detail) VALUES (?, ?, ?, ?, ?)').run(ts, kind, component, taskId, detail).lastInsertRowid);
        const prevHash = last?.hash ?? GENESIS_HASH;
        const hash = entryHash(key, prevHash, { seq, ts, kind, component, task_id: taskId, detail });
        this.db.prepare('UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?').run(prevHash, hash, seq);
        return { seq, hash, anchored };
      })
      .immediate();
    if (anchored && !nested) this.anchorAt(key, seq, hash, false);
    return seq;
  }

  /**
   * Chain the rows that have no hash yet (written before migration 6), in seq order, and anchor
   * the head at the last row. Called at open only when the store was just migrated past version 6
   * or no audit key exists yet: later, an unchained row was inserted behind the kernel's back and
   * must stay visible to `warden audit verify` instead of being blessed.
   * @returns how many rows were chained
   */
  chainUnchained(): number {
    const pending = this.db.prepare('SELECT count(*) AS n FROM audit WHERE hash IS NULL').get() as { n: number };
    if (pending.n === 0) return 0;
    const key = this.keyOf();
    const result = this.db
      .transaction(() => {
        const rows = this.db.prepare('SELECT seq, ts, kind, component, task_id, detail, hash FROM audit ORDER BY seq').all() as AuditRow[];
        const update = this.db.prepare('UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?');
        let prev = GENESIS_HASH;
        let chained = 0;
        for (const row of rows) {
          if (row.hash === null) {
            row.hash = entryHash(key, prev, row);
            update.run(prev, row.hash, row.seq);
            chained++;
          }
          prev = row.hash;
        }
        const last = rows[rows.length - 1]!;
        return { chained, seq: last.seq, hash: last.hash! };
      })
      .immediate();
    if (result.chained > 0) this.anchorAt(key, result.seq, result.hash, true);
    return result.chained;
  }

  /**
   * Append an entry and anchor the head at it whatever the anchor said before: for an operator's
   * deliberate rewind of the log (`warden restore`), which the entry itself records.
   */
  appendAndReanchor(kind: string, detail: string): number {
    const seq = this.append(kind, detail, null, null);
    const { hash } = this.db.prepare('SELECT hash FROM audit WHERE seq = ?').get(seq) as { hash: string };
    this.anchorAt(this.keyOf(), seq, hash, true);
    return seq;
  }

  /**
   * Whether the head anchor agrees with the log as it stands before an append whose previous
   * last row is `last`. A lagging anchor (a process stopped between its commit and its anchor
   * write) agrees as long as the entry it names is intact.
   */
  private anchorAgrees(key: Buffer, last: { seq: number } | undefined): boolean {
    if (!this.anchor) return false;
    const head = readHead(this.dataDir);
    if (head.state === 'missing') return last === undefined;
    if (head.state !== 'present' || !sameDigest(head.mac, headMac(key, head.seq, head.hash))) return false;
    if (last === undefined || head.seq > last.seq) return false;
    const named = this.db.prepare('SELECT hash FROM audit WHERE seq = ?').get(head.seq) as { hash: string | null } | undefined;
    return named?.hash != null && sameDigest(named.hash, head.hash);
  }

  /**
   * Point the anchor at entry `seq` under the store's write lock; unless `force`, only forward
   * (another process may have anchored a later entry since this one committed).
   */
  private anchorAt(key: Buffer, seq: number, hash: string, force: boolean): void {
    if (!this.anchor) return;
    this.db
      .transaction(() => {
        const head = readHead(this.dataDir);
        if (!force && head.state === 'present' && head.seq >= seq) return;
        writeHead(this.dataDir, key, seq, hash);
        this.moved = true;
      })
      .immediate();
  }

  /**
   * HMAC-SHA256 of `text` under the audit key, hex: a digest of something that may hold a secret
   * (a configuration with a literal value), which cannot be reversed by guessing without the key.
   */
  mac(text: string): string {
    return hmacHex(this.keyOf(), text);
  }

  /** Make the anchor durable (fsync) if this connection moved it; call after the store is closed. */
  close(): void {
    if (this.moved) syncHead(this.dataDir);
    this.moved = false;
  }
}
