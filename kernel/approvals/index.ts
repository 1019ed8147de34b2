/**
 * Approvals: what a policy `ask` turns into. An approval is recorded in the kernel store and in
 * the state document (`/approvals/<id>`); the asking call waits until it is approved or denied
 * (web UI, REST, CLI — the CLI from another process, through the store) or until the call's own
 * deadline, when it becomes `expired` and the call is denied. Approvals survive a restart: a
 * pending one stays pending and can be decided while the kernel is down; a resumed task that
 * repeats the same action (same task, subject and detail) reuses it — approved proceeds, denied
 * is denied, pending waits again. Every decision is audited (`approval.decide`).
 */
import { randomUUID } from 'node:crypto';
import { WardenError } from '../errors.js';
import { redactSecrets } from '../secrets/detect.js';
import type { RuntimeEvents } from '../runtime/events.js';
import type { Approval, StateDocument } from '../state/index.js';
import type { Store } from '../store/index.js';
import { approvalById, extendApproval, insertApproval, listApprovals, reusableApproval, settleApproval } from './store.js';

export { approvalById, listApprovals } from './store.js';

/** How a person decides: `approve` or `deny`. */
export type ApprovalDecision = 'approve' | 'deny';

/** Largest `detail` kept on an approval, characters. */
export const DETAIL_MAX = 4096;

/** How often the kernel looks in the store for decisions made by another process, ms. */
export const POLL_MS = 250;

/** An action for review as an approval shows it: secrets redacted, at most {@link DETAIL_MAX} characters. */
export function approvalDetail(text: string): string {
  const redacted = redactSecrets(text);
  return redacted.length > DETAIL_MAX ? `${redacted.slice(0, DETAIL_MAX - 1)}…` : redacted;
}

/**
 * Decide a pending approval in `store` and audit it (`approval.decide`): what the kernel does
 * for the UI and REST, and `warden approve` does with or without a kernel running.
 * @param by `ui`, `rest` or `cli`, with the API key id when there is one (`rest:k-1a2b`)
 * @param reason free text from the person deciding (secrets redacted)
 * @throws WardenError `E_NOT_FOUND` (no such approval), `E_APPROVAL_DECIDED` (already approved,
 *   denied or expired: a decision is never changed)
 */
export function decideInStore(store: Store, id: string, decision: ApprovalDecision, by: string, reason?: string, now = Date.now()): Approval {
  const status = decision === 'approve' ? 'approved' : 'denied';
  const why = reason === undefined ? undefined : redactSecrets(reason).slice(0, 1000);
  if (!settleApproval(store, id, status, by, why, now)) {
    const existing = approvalById(store, id);
    if (!existing) throw new WardenError('E_NOT_FOUND', `no approval ${id}; \`warden approvals\` lists the pending ones`);
    const when = existing.decidedAt ? ` at ${new Date(existing.decidedAt).toISOString()}` : '';
    throw new WardenError('E_APPROVAL_DECIDED', `approval ${id} is already ${existing.status}${existing.decidedBy ? ` by ${existing.decidedBy}` : ''}${when}; a decision is final (a repeated action asks again)`);
  }
  const approval = approvalById(store, id)!;
  auditDecision(store, approval);
  return approval;
}

function auditDecision(store: Store, a: Approval): void {
  store.audit(
    'approval.decide',
    { id: a.id, status: a.status, by: a.decidedBy, kind: a.kind, subject: a.subject, rule: a.rule, ...(a.reason ? { reason: a.reason } : {}) },
    a.component,
    a.taskId ?? undefined,
  );
}

/** What {@link Approvals.ask} takes. */
export interface AskRequest {
  taskId: string;
  /** The component whose action waits. */
  component: string;
  kind: Approval['kind'];
  subject: string;
  /** Already passed through {@link approvalDetail}. */
  detail: string;
  rule: string;
  /** The waiting call's deadline, ms since the epoch. */
  deadline: number;
}

/** What {@link Approvals.ask} answers at once: the approval asked on, and its decision to come. */
export interface Asked {
  /** The approval: new, or an earlier one of the same task, subject and detail (see `reused`). */
  approval: Approval;
  reused: boolean;
  /** Resolves with the approval once approved, denied or expired (at once for a reused decision). Never rejects. */
  decided: Promise<Approval>;
}

/** The kernel's approvals: in the store, mirrored in the state document, waited on by asking calls. */
export class Approvals {
  private readonly waiters = new Map<string, Array<(approval: Approval) => void>>();
  private readonly expiries = new Map<string, NodeJS.Timeout>();
  private poller: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly state: StateDocument,
    private readonly events: RuntimeEvents,
    private readonly options: { pollMs?: number } = {},
  ) {}

  /** Put every approval of the store in the state document (at start); pending ones stay pending. */
  restore(): void {
    const all = listApprovals(this.store, { all: true });
    if (all.length === 0) return;
    this.state.update((d) => {
      for (const a of all) d.approvals[a.id] = a;
    });
    this.watch();
  }

  /** Approvals in the state document, oldest first; only pending ones unless `all`. */
  list(options: { all?: boolean } = {}): Approval[] {
    return Object.values(this.state.current.approvals)
      .filter((a) => options.all || a.status === 'pending')
      .sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id));
  }

  /**
   * Ask for a decision: reuse the task's approval of the same subject and detail when there is
   * one (decided: its decision stands; pending: waited on again, until this deadline), else
   * record a new pending approval (audited as `approval.request`). The approval is expired at
   * `deadline` when nobody decided it by then.
   */
  ask(asked: AskRequest): Asked {
    // The subject holds the action's argument (a path, a pattern, a URL): no secret reaches the store, a patch or the audit log.
    const request = { ...asked, subject: redactSecrets(asked.subject) };
    const existing = reusableApproval(this.store, request.taskId, request.subject, request.detail);
    if (existing && existing.status !== 'pending') return { approval: existing, reused: true, decided: Promise.resolve(existing) };
    let approval: Approval;
    if (existing) {
      extendApproval(this.store, existing.id, request.deadline);
      approval = { ...existing, expiresAt: request.deadline };
    } else {
      approval = {
        id: `a-${randomUUID().slice(0, 8)}`, taskId: request.taskId, component: request.component, kind: request.kind,
        subject: request.subject, detail: request.detail, rule: request.rule, status: 'pending', createdAt: Date.now(), expiresAt: request.deadline,
      };
      insertApproval(this.store, approval);
      this.store.audit('approval.request', { id: approval.id, kind: approval.kind, subject: approval.subject, rule: approval.rule, expiresAt: approval.expiresAt }, approval.component, request.taskId);
    }
    this.state.update((d) => {
      d.approvals[approval.id] = approval;
    });
    const decided = new Promise<Approval>((resolve) => {
      const list = this.waiters.get(approval.id) ?? [];
      list.push(resolve);
      this.waiters.set(approval.id, list);
    });
    clearTimeout(this.expiries.get(approval.id));
    // setTimeout holds at most 2^31-1 ms; a later deadline is checked again then.
    const timer = setTimeout(() => this.expire(approval.id), Math.min(2 ** 31 - 1, Math.max(0, request.deadline - Date.now())));
    timer.unref();
    this.expiries.set(approval.id, timer);
    this.watch();
    return { approval, reused: existing !== undefined, decided };
  }

  /**
   * Approve or deny a pending approval (web UI, REST, or `warden run` at its prompt); the
   * waiting call goes on at once.
   * @throws WardenError `E_NOT_FOUND`, `E_APPROVAL_DECIDED`
   */
  decide(id: string, decision: ApprovalDecision, by: string, reason?: string): Approval {
    const approval = decideInStore(this.store, id, decision, by, reason);
    this.settled(approval);
    return approval;
  }

  /**
   * Deny every pending approval of a task the kernel stopped (a budget, a doom loop): its waiting
   * calls end at once instead of at their deadlines. Decided by `kernel`, with `reason`.
   * @returns the approvals denied
   */
  denyForTask(taskId: string, reason: string): Approval[] {
    const denied: Approval[] = [];
    for (const approval of Object.values(this.state.current.approvals)) {
      if (approval.taskId !== taskId || approval.status !== 'pending') continue;
      try {
        denied.push(this.decide(approval.id, 'deny', 'kernel', reason));
      } catch {
        // decided meanwhile (CLI, UI): nothing left to do
      }
    }
    return denied;
  }

  /** Stop timers and polling (the kernel is closing); pending approvals stay pending in the store. */
  close(): void {
    this.closed = true;
    for (const timer of this.expiries.values()) clearTimeout(timer);
    this.expiries.clear();
    this.waiters.clear();
    if (this.poller) clearInterval(this.poller);
    this.poller = null;
  }

  /** The deadline of a waiting call passed: expire the approval unless it was decided meanwhile. */
  private expire(id: string): void {
    this.expiries.delete(id);
    if (this.closed || !this.store.db.open) return;
    const shown = this.state.current.approvals[id];
    if (shown && shown.expiresAt > Date.now()) {
      const timer = setTimeout(() => this.expire(id), Math.min(2 ** 31 - 1, shown.expiresAt - Date.now()));
      timer.unref();
      this.expiries.set(id, timer);
      return;
    }
    if (settleApproval(this.store, id, 'expired', 'expired', 'the waiting call\'s deadline passed without a decision', Date.now())) {
      auditDecision(this.store, approvalById(this.store, id)!);
    }
    const now = approvalById(this.store, id);
    if (now && now.status !== 'pending') this.settled(now);
  }

  /** A decision reached the store: mirror it, wake the waiting calls, emit the `approval` event. */
  private settled(approval: Approval): void {
    const shown = this.state.current.approvals[approval.id];
    if (shown?.status === approval.status && shown.decidedAt === approval.decidedAt) return;
    this.state.update((d) => {
      d.approvals[approval.id] = approval;
    });
    clearTimeout(this.expiries.get(approval.id));
    this.expiries.delete(approval.id);
    const waiting = this.waiters.get(approval.id) ?? [];
    this.waiters.delete(approval.id);
    for (const wake of waiting) wake(approval);
    if (approval.taskId && approval.status !== 'pending' && this.state.current.tasks[approval.taskId]) {
      this.events.emit(approval.taskId, {
        type: 'approval', id: approval.id, status: approval.status,
        ...(approval.decidedBy ? { by: approval.decidedBy } : {}), ...(approval.reason ? { reason: approval.reason } : {}),
      });
    }
  }

  /** Poll the store while any approval is pending (decisions by `warden approve` in another process). */
  private watch(): void {
    if (this.poller || this.closed) return;
    this.poller = setInterval(() => this.poll(), this.options.pollMs ?? POLL_MS);
    this.poller.unref();
  }

  private poll(): void {
    if (this.closed || !this.store.db.open) return;
    const shownPending = Object.values(this.state.current.approvals).filter((a) => a.status === 'pending');
    if (shownPending.length === 0) {
      clearInterval(this.poller!);
      this.poller = null;
      return;
    }
    const stillPending = new Set(listApprovals(this.store).map((a) => a.id));
    for (const a of shownPending) {
      if (stillPending.has(a.id)) continue;
      const now = approvalById(this.store, a.id);
      if (now) this.settled(now);
    }
  }
}
