/**
 * Approvals in the kernel store (table `approvals`, see the store's migrations): the one source
 * of truth shared by the kernel and `warden approve` in another process. Every change of status
 * is a conditional UPDATE on `status = 'pending'`, so of two deciders (the UI and the CLI, or a
 * decision and the expiry) exactly one wins.
 */
import type { Store } from '../store/index.js';
import type { Approval } from '../state/index.js';

interface ApprovalRow {
  id: string;
  task_id: string | null;
  component: string;
  kind: Approval['kind'];
  subject: string;
  detail: string;
  rule: string;
  status: Approval['status'];
  created_at: number;
  expires_at: number;
  decided_at: number | null;
  decided_by: string | null;
  reason: string | null;
}

function fromRow(row: ApprovalRow): Approval {
  return {
    id: row.id, taskId: row.task_id, component: row.component, kind: row.kind, subject: row.subject, detail: row.detail,
    rule: row.rule, status: row.status, createdAt: row.created_at, expiresAt: row.expires_at,
    ...(row.decided_at !== null ? { decidedAt: row.decided_at } : {}),
    ...(row.decided_by !== null ? { decidedBy: row.decided_by } : {}),
    ...(row.reason !== null ? { reason: row.reason } : {}),
  };
}

/** Record a new (pending) approval. */
export function insertApproval(store: Store, a: Approval): void {
  store.db
    .prepare(`INSERT INTO approvals (id, task_id, component, kind, subject, detail, rule, status, created_at, expires_at)
              VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
    .run(a.id, a.taskId, a.component, a.kind, a.subject, a.detail, a.rule, a.status, a.createdAt, a.expiresAt);
}

/** One approval, or undefined. */
export function approvalById(store: Store, id: string): Approval | undefined {
  const row = store.db.prepare('SELECT * FROM approvals WHERE id = ?').get(id) as ApprovalRow | undefined;
  return row ? fromRow(row) : undefined;
}

/** Approvals, oldest first; only pending ones unless `all`. */
export function listApprovals(store: Store, options: { all?: boolean } = {}): Approval[] {
  const rows = (options.all
    ? store.db.prepare('SELECT * FROM approvals ORDER BY created_at, id').all()
    : store.db.prepare("SELECT * FROM approvals WHERE status = 'pending' ORDER BY created_at, id").all()) as ApprovalRow[];
  return rows.map(fromRow);
}

/**
 * The latest approval of `taskId` for the same `subject` and `detail` that is pending or was
 * decided (an expired one is no decision and is not reused).
 */
export function reusableApproval(store: Store, taskId: string, subject: string, detail: string): Approval | undefined {
  const row = store.db
    .prepare(`SELECT * FROM approvals WHERE task_id = ? AND subject = ? AND detail = ? AND status IN ('pending', 'approved', 'denied')
              ORDER BY created_at DESC, id DESC LIMIT 1`)
    .get(taskId, subject, detail) as ApprovalRow | undefined;
  return row ? fromRow(row) : undefined;
}

/** Move a pending approval's deadline (a resumed task waits on it again). */
export function extendApproval(store: Store, id: string, expiresAt: number): void {
  store.db.prepare("UPDATE approvals SET expires_at = ? WHERE id = ? AND status = 'pending'").run(expiresAt, id);
}

/**
 * Decide a pending approval: `approved`, `denied` or `expired`.
 * @returns whether this call decided it (false: it was not pending any more, or does not exist)
 */
export function settleApproval(store: Store, id: string, status: 'approved' | 'denied' | 'expired', by: string, reason: string | undefined, at: number): boolean {
  return store.db
    .prepare("UPDATE approvals SET status = ?, decided_at = ?, decided_by = ?, reason = ? WHERE id = ? AND status = 'pending'")
    .run(status, at, by, reason ?? null, id).changes === 1;
}
