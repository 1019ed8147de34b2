/**
 * What the kernel does with sessions outside a task: finish commits a crash interrupted, and find
 * and discard orphaned sessions by policy (`sessions.orphanDays` in the config). Shared by the
 * kernel at start and the `warden session` commands.
 */
import type { Store } from './store/index.js';
import type { RecoveryAction, SessionFs, SessionMeta } from './vfs/index.js';

/** An open session no running task uses. */
export interface OrphanedSession extends SessionMeta {
  /** Bytes in the session's upper layer (its changes). */
  upperBytes: number;
  /** Age in days (fractional) since the session began. */
  ageDays: number;
  /** The task that began it, when known. */
  taskId: string | null;
  /** Why no task holds it: `no task`, `task succeeded`, `task interrupted`, `unknown to the store`, ... */
  reason: string;
}

const DAY_MS = 86_400_000;

/** Days after which an orphaned session is discarded when the config does not say (`sessions.orphanDays`). */
export const DEFAULT_ORPHAN_DAYS = 30;

/**
 * Complete or roll back commits interrupted by a crash ({@link SessionFs.recover}), record the
 * outcome in the store (a completed commit closes the session as `committed`) and audit each.
 */
export function recoverSessions(sessions: SessionFs, store: Store): RecoveryAction[] {
  const actions = sessions.recover();
  for (const action of actions) {
    if (action.action === 'completed' && store.session(action.session)?.status === 'open') {
      store.finishSession(action.session, 'committed');
    }
    if (action.action === 'removed' && store.session(action.session)?.status === 'open') {
      // A commit or discard had closed the area when the kernel stopped, before the store heard of it.
      store.finishSession(action.session, action.closed ?? 'discarded');
    }
    store.audit('session.recover', {
      session: action.session, action: action.action,
      ...(action.workspace ? { workspace: action.workspace } : {}), ...(action.closed ? { closed: action.closed } : {}),
    });
  }
  return actions;
}

/**
 * Open sessions that no queued or running task uses, oldest first.
 * @param now ms since the epoch
 */
export function findOrphans(sessions: SessionFs, store: Store, now = Date.now()): OrphanedSession[] {
  const out: OrphanedSession[] = [];
  for (const meta of sessions.list()) {
    const row = store.session(meta.id);
    const task = row?.task_id ? store.task(row.task_id) : undefined;
    let reason: string | null;
    if (!row) reason = 'unknown to the store';
    else if (!row.task_id) reason = 'no task';
    else if (!task) reason = `task ${row.task_id} is gone`;
    else if (task.status === 'queued' || task.status === 'running') reason = null;
    else reason = `task ${task.status}`;
    if (reason === null) continue;
    out.push({ ...meta, ageDays: (now - Date.parse(meta.createdAt)) / DAY_MS, taskId: row?.task_id ?? null, reason });
  }
  return out;
}

/**
 * Discard every orphaned session older than `olderThanDays` (audited as `session.discard` with
 * `reason: 'orphan policy'`).
 * @returns the sessions discarded (or that would be, with `dryRun`)
 */
export function discardOrphans(sessions: SessionFs, store: Store, olderThanDays: number, dryRun = false, now = Date.now()): OrphanedSession[] {
  const doomed = findOrphans(sessions, store, now).filter((o) => o.ageDays >= olderThanDays);
  if (dryRun) return doomed;
  for (const orphan of doomed) {
    sessions.rollback(orphan.id);
    if (store.session(orphan.id)) store.finishSession(orphan.id, 'discarded');
    store.audit('session.discard', { session: orphan.id, reason: 'orphan policy', ageDays: Math.round(orphan.ageDays * 10) / 10, upperBytes: orphan.upperBytes });
  }
  return doomed;
}
