/**
 * The session filesystem: copy-on-write overlays over workspaces, their diffs and commits.
 * The kernel's `wasi:filesystem` (kernel/wasi) sits on {@link Overlay}.
 */
import { existsSync, mkdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomUUID } from 'node:crypto';
import { WardenError } from '../errors.js';
import { Overlay, type SessionMode } from './overlay.js';
import { commitOverlay, sessionDiff, type FileChange } from './changes.js';

export { Overlay, type SessionMode, type EntryStat, type EntryType } from './overlay.js';
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
    writeFileSync(join(dir, 'meta.json'), JSON.stringify(meta));
    return meta;
  }

  /** Host directory of a session's own area. */
  dirOf(id: string): string {
    if (!/^s-[0-9a-f]{8}$/.test(id)) throw new WardenError('E_BAD_INPUT', `not a session id: ${JSON.stringify(id)}`);
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

  /** Commit into the workspace and remove the session's area. @throws `E_SESSION_CONFLICT` */
  commit(id: string): FileChange[] {
    const changes = commitOverlay(this.overlay(id, 'rw'), id);
    rmSync(this.dirOf(id), { recursive: true, force: true });
    return changes;
  }

  /** Discard the session's changes. */
  rollback(id: string): void {
    this.meta(id);
    rmSync(this.dirOf(id), { recursive: true, force: true });
  }
}
