/**
 * The session filesystem: copy-on-write overlays over workspaces, their diffs and commits.
 * The kernel's `wasi:filesystem` (kernel/wasi) sits on {@link Overlay}.
 */
import {
  existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, realpathSync, renameSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { randomUUID } from 'node:crypto';
import { WardenError } from '../errors.js';
import { Overlay, RESERVED_PREFIX, type SessionMode } from './overlay.js';
import { commitOverlay, sessionDiff, type FileChange } from './changes.js';
import { applyPlan, closeSession, JOURNAL_FILE, readClosed, readJournal, releaseStaleLock, type CommitHooks } from './journal.js';

export { Overlay, isReserved, RESERVED_PREFIX, type SessionMode, type EntryStat, type EntryType } from './overlay.js';
export type { CommitHooks, CommitPlan } from './journal.js';
export { joinInside } from './paths.js';
export { sessionDiff, sessionConflicts, commitOverlay, type FileChange, type ChangeKind } from './changes.js';

/** What the kernel remembers of a session on disk (`<sessionsDir>/<id>/meta.json`). */
export interface SessionMeta {
  id: string;
  /** Absolute, real host path of the workspace. */
  workspace: string;
  createdAt: string;
}

/**
 * Creates and finishes sessions under one directory (`<data-dir>/sessions`).
 */
export class SessionFs {
  constructor(readonly sessionsDir: string) {
    mkdirSync(sessionsDir, { recursive: true });
  }

  /**
   * Begin a session on `workspace`: O(1), nothing is copied.
   * @throws WardenError `E_NOT_FOUND` when the workspace is not a directory
   */
  begin(workspace: string): SessionMeta {
    const absolute = resolve(workspace);
    if (!existsSync(absolute) || !statSync(absolute).isDirectory()) {
      throw new WardenError('E_NOT_FOUND', `workspace ${absolute} is not a directory; pass an existing directory with --workspace`);
    }
    const id = `s-${randomUUID().slice(0, 8)}`;
    const meta: SessionMeta = { id, workspace: realpathSync(absolute), createdAt: new Date().toISOString() };
    const dir = this.dirOf(id);
    Overlay.create(meta.workspace, dir);
    // meta.json makes the area an open session: written last, atomically.
    writeFileSync(join(dir, 'meta.json.tmp'), JSON.stringify(meta));
    renameSync(join(dir, 'meta.json.tmp'), join(dir, 'meta.json'));
    return meta;
  }

  /** Host directory of a session's own area. */
  dirOf(id: string): string {
    if (!SESSION_ID.test(id)) throw new WardenError('E_BAD_INPUT', `not a session id: ${JSON.stringify(id)}`);
    return join(this.sessionsDir, id);
  }

  /** @throws WardenError `E_NOT_FOUND` for unknown or finished sessions */
  meta(id: string): SessionMeta {
    const path = join(this.dirOf(id), 'meta.json');
    if (!existsSync(path)) throw new WardenError('E_NOT_FOUND', `no open session ${id}; see \`warden session list\``);
    return JSON.parse(readFileSync(path, 'utf8')) as SessionMeta;
  }

  /** The overlay of an open session. */
  overlay(id: string, mode: SessionMode = 'rw'): Overlay {
    return new Overlay(this.meta(id).workspace, this.dirOf(id), mode);
  }

  /** Per-file changes with unified diffs. */
  diff(id: string): FileChange[] {
    return sessionDiff(this.overlay(id, 'ro'));
  }

  /**
   * Commit into the workspace, crash-safe (journal.ts), and close the session.
   * @param hooks test-only points between the commit's filesystem changes
   * @throws WardenError `E_SESSION_CONFLICT` (the session stays open), `E_SESSION_BUSY`, `E_NOT_FOUND`
   */
  commit(id: string, hooks?: CommitHooks): FileChange[] {
    return commitOverlay(this.overlay(id, 'rw'), id, hooks);
  }

  /**
   * Discard the session's changes. Its `meta.json` goes first, so a crash half-way leaves an
   * area that is no longer an open session (recovery removes it), never a half-emptied one.
   * @throws WardenError `E_NOT_FOUND`
   */
  rollback(id: string): void {
    const dir = this.dirOf(id);
    closeSession(dir, 'discarded', this.meta(id).workspace);
    rmSync(dir, { recursive: true, force: true });
  }

  /**
   * Every open session on disk, oldest first, with the size of its upper layer.
   * Areas that are not open sessions (left by a crash) are not listed; {@link recover} removes them.
   */
  list(): Array<SessionMeta & { upperBytes: number }> {
    const out: Array<SessionMeta & { upperBytes: number }> = [];
    for (const name of readdirSync(this.sessionsDir)) {
      if (!SESSION_ID.test(name)) continue;
      const metaPath = join(this.sessionsDir, name, 'meta.json');
      if (!existsSync(metaPath)) continue;
      const meta = JSON.parse(readFileSync(metaPath, 'utf8')) as SessionMeta;
      out.push({ ...meta, upperBytes: treeBytes(join(this.sessionsDir, name, 'upper')) });
    }
    return out.sort((a, b) => (a.createdAt < b.createdAt ? -1 : 1));
  }

  /**
   * Finish what a crash interrupted; run at kernel start before any session is used.
   * - a committed journal: the commit is applied again and completed (roll forward);
   * - a staging directory without a committed journal: removed, the session stays open with its
   *   changes and the workspace keeps its old state (roll back);
   * - an area without `meta.json` (a commit or discard that had closed the session): removed.
   * @returns what was done, per session
   */
  recover(): RecoveryAction[] {
    const actions: RecoveryAction[] = [];
    for (const name of readdirSync(this.sessionsDir)) {
      if (!SESSION_ID.test(name)) continue;
      const dir = join(this.sessionsDir, name);
      try {
        const action = this.recoverOne(name, dir);
        if (action) actions.push(action);
      } catch (err) {
        actions.push({ session: name, action: 'failed', error: (err as Error).message });
      }
    }
    return actions;
  }

  /** Recovery of one session's area; null when there was nothing to do. */
  private recoverOne(name: string, dir: string): RecoveryAction | null {
    const plan = readJournal(dir);
    if (plan) {
      applyPlan(plan, dir, () => releaseStaleLock(plan.workspace));
      return { session: name, action: 'completed', workspace: plan.workspace };
    }
    rmSync(join(dir, `${JOURNAL_FILE}.tmp`), { force: true });
    rmSync(join(dir, JOURNAL_FILE), { force: true });
    const metaPath = join(dir, 'meta.json');
    if (!existsSync(metaPath)) {
      const closed = readClosed(dir);
      if (closed) {
        // A commit stopped while removing its staging directory or before releasing its lock: the
        // area (with its record) goes last, so a crash in this recovery leaves the record for the next.
        rmSync(join(closed.workspace, `${RESERVED_PREFIX}${name}`), { recursive: true, force: true });
        releaseStaleLock(closed.workspace);
      }
      rmSync(dir, { recursive: true, force: true });
      if (!closed) return { session: name, action: 'removed' };
      return { session: name, action: 'removed', closed: closed.how, workspace: closed.workspace };
    }
    const { workspace } = JSON.parse(readFileSync(metaPath, 'utf8')) as SessionMeta;
    releaseStaleLock(workspace);
    const stage = join(workspace, `${RESERVED_PREFIX}${name}`);
    if (!existsSync(stage)) return null;
    rmSync(stage, { recursive: true, force: true });
    return { session: name, action: 'rolled-back', workspace };
  }
}

/** What {@link SessionFs.recover} did for one session. */
export interface RecoveryAction {
  session: string;
  /**
   * `completed`: an interrupted commit was finished (the workspace has the new state);
   * `rolled-back`: a commit interrupted before its journal was committed was undone (the
   * workspace has the old state, the session is open); `removed`: the area of a closed session;
   * `failed`: recovery could not finish (e.g. the workspace is gone), `error` says why; the
   * journal is kept, so a later start tries again.
   */
  action: 'completed' | 'rolled-back' | 'removed' | 'failed';
  workspace?: string;
  error?: string;
  /** For `removed`: how the session had been closed, when that was recorded. */
  closed?: 'committed' | 'discarded';
}

const SESSION_ID = /^s-[0-9a-f]{8}$/;

/** Bytes of the regular files under `dir` (0 when absent). */
function treeBytes(dir: string): number {
  let total = 0;
  if (!existsSync(dir)) return 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += treeBytes(path);
    else if (entry.isFile()) total += lstatSync(path).size;
  }
  return total;
}
