/**
 * Changes of a session against its base: the per-file diff shown to people, and the commit that
 * applies the changes to the workspace after conflict detection.
 */
import { existsSync, lstatSync, readFileSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { createTwoFilesPatch } from 'diff';
import { WardenError } from '../errors.js';
import { baseStateOf, hashFile, type Overlay } from './overlay.js';
import { applyPlan, discardStage, lockWorkspace, stageAndJournal, type CommitHooks } from './journal.js';

/** What happened to one path. */
export type ChangeKind = 'added' | 'modified' | 'deleted' | 'renamed';

/** One changed file of a session. */
export interface FileChange {
  /** Path relative to the workspace root (the new path of a renamed file). */
  path: string;
  kind: ChangeKind;
  /** Old path of a renamed file. */
  from?: string;
  /**
   * Unified diff (text files up to {@link MAX_DIFF_BYTES}); absent for binary or large files
   * and for a file renamed without a change.
   */
  unified?: string;
  /** Lines added and removed (text files only). */
  added?: number;
  removed?: number;
}

/** Files larger than this (bytes) get no unified diff. */
export const MAX_DIFF_BYTES = 1 << 20;

function isBinary(buf: Buffer): boolean {
  return buf.subarray(0, 8000).includes(0);
}

function readText(path: string | null): Buffer | null {
  if (!path || !existsSync(path)) return null;
  const st = lstatSync(path);
  if (!st.isFile() || st.size > MAX_DIFF_BYTES) return null;
  return readFileSync(path);
}

function unifiedFor(change: FileChange, basePath: string | null, upperPath: string | null): FileChange {
  const before = readText(basePath);
  const after = readText(upperPath);
  if ((before && isBinary(before)) || (after && isBinary(after))) return change;
  if (basePath && existsSync(basePath) && !before && lstatSync(basePath).isFile()) return change;
  if (upperPath && existsSync(upperPath) && !after && lstatSync(upperPath).isFile()) return change;
  const a = before?.toString('utf8') ?? '';
  const b = after?.toString('utf8') ?? '';
  const unified = createTwoFilesPatch(
    change.kind === 'added' ? '/dev/null' : `a/${change.from ?? change.path}`,
    change.kind === 'deleted' ? '/dev/null' : `b/${change.path}`,
    a,
    b,
    undefined,
    undefined,
    { context: 3 },
  );
  let added = 0;
  let removed = 0;
  for (const line of unified.split('\n').slice(4)) {
    if (line.startsWith('+')) added++;
    else if (line.startsWith('-')) removed++;
  }
  return { ...change, unified, added, removed };
}

function sameFile(a: string, b: string): boolean {
  const sa = lstatSync(a);
  const sb = lstatSync(b);
  if (sa.isSymbolicLink() || sb.isSymbolicLink()) {
    return sa.isSymbolicLink() && sb.isSymbolicLink() && readlinkSync(a) === readlinkSync(b);
  }
  if (!sa.isFile() || !sb.isFile()) return false;
  return sa.size === sb.size && (sa.mode & 0o777) === (sb.mode & 0o777) && hashFile(a) === hashFile(b);
}

/**
 * lstat of the workspace entry `rel`, or null when it is absent or lies below something that is
 * not a directory of the workspace (a symlink, which may lead outside it, or a file). Lookups by
 * host path would follow such symlinks; a session's diff must never read through them.
 */
function baseEntry(base: string, rel: string): Stats | null {
  const segments = rel.split('/');
  let path = base;
  for (let i = 0; i < segments.length; i++) {
    path = join(path, segments[i]!);
    const st = lstatSync(path, { throwIfNoEntry: false });
    if (!st) return null;
    if (i === segments.length - 1) return st;
    if (!st.isDirectory()) return null;
  }
  return null;
}

/** Every entry (files, symlinks, directories) below the base directory `rel`. */
function walkEntries(root: string, rel: string, out: string[]): void {
  for (const name of readdirSync(join(root, rel))) {
    const child = `${rel}/${name}`;
    out.push(child);
    if (lstatSync(join(root, child)).isDirectory()) walkEntries(root, child, out);
  }
}

function walkFiles(root: string, rel: string, out: string[]): void {
  const dir = join(root, rel);
  for (const name of readdirSync(dir)) {
    const child = rel === '' ? name : `${rel}/${name}`;
    const st = lstatSync(join(root, child));
    if (st.isDirectory()) walkFiles(root, child, out);
    else out.push(child);
  }
}

/**
 * Where `path` came from through the session's renames (itself when it was never moved).
 * Later renames are undone first: `a → b` then `b → c` gives `c`'s origin `a`.
 */
function originOf(path: string, renames: ReadonlyArray<{ from: string; to: string }>): string {
  let p = path;
  for (let i = renames.length - 1; i >= 0; i--) {
    const { from, to } = renames[i]!;
    if (p === to) p = from;
    else if (p.startsWith(`${to}/`)) p = from + p.slice(to.length);
  }
  return p;
}

/**
 * Pair added files with deleted ones as renames: first by the session's recorded renames (the
 * file moved, perhaps changed after), then by identical content (a tool that wrote the new file
 * and deleted the old one).
 */
function pairRenames(overlay: Overlay, added: Set<string>, deleted: Set<string>): Map<string, string> {
  const pairs = new Map<string, string>();
  const renames = overlay.renames();
  if (renames.length > 0) {
    for (const path of [...added].sort()) {
      const origin = originOf(path, renames);
      if (origin !== path && deleted.has(origin)) {
        pairs.set(path, origin);
        added.delete(path);
        deleted.delete(origin);
      }
    }
  }
  if (added.size === 0 || deleted.size === 0) return pairs;
  const bySize = new Map<number, string[]>();
  for (const rel of [...deleted].sort()) {
    const st = lstatSync(join(overlay.base, rel));
    if (!st.isFile()) continue;
    const list = bySize.get(st.size) ?? [];
    list.push(rel);
    bySize.set(st.size, list);
  }
  for (const path of [...added].sort()) {
    const upperPath = join(overlay.upper, path);
    const st = lstatSync(upperPath);
    const candidates = st.isFile() ? bySize.get(st.size) : undefined;
    if (!candidates || candidates.length === 0) continue;
    const hash = hashFile(upperPath);
    const i = candidates.findIndex((rel) => deleted.has(rel) && hashFile(join(overlay.base, rel)) === hash);
    if (i < 0) continue;
    const origin = candidates.splice(i, 1)[0]!;
    pairs.set(path, origin);
    added.delete(path);
    deleted.delete(origin);
  }
  return pairs;
}

/**
 * The per-file changes of the session, sorted by path: added, modified, deleted, and renamed
 * (with `from`). Files written back unchanged are omitted.
 */
export function sessionDiff(overlay: Overlay, withUnified = true): FileChange[] {
  const deleted = new Set<string>();
  for (const rel of overlay.whiteoutPaths()) {
    const st = baseEntry(overlay.base, rel);
    if (!st) continue;
    if (st.isDirectory()) {
      const files: string[] = [];
      walkFiles(overlay.base, rel, files);
      files.forEach((f) => deleted.add(f));
    } else {
      deleted.add(rel);
    }
  }
  const upperFiles: string[] = [];
  walkFiles(overlay.upper, '', upperFiles);
  const added = new Set<string>();
  const modified = new Set<string>();
  for (const rel of upperFiles) {
    const upperPath = join(overlay.upper, rel);
    const st = baseEntry(overlay.base, rel);
    const inBase = st !== null && !st.isDirectory();
    deleted.delete(rel);
    if (!inBase) added.add(rel);
    else if (!sameFile(upperPath, join(overlay.base, rel))) modified.add(rel);
  }
  const renamed = pairRenames(overlay, added, deleted);
  const changes: FileChange[] = [
    ...[...added].map((path): FileChange => ({ path, kind: 'added' })),
    ...[...modified].map((path): FileChange => ({ path, kind: 'modified' })),
    ...[...deleted].map((path): FileChange => ({ path, kind: 'deleted' })),
    ...[...renamed].map(([path, from]): FileChange => ({ path, kind: 'renamed', from })),
  ];
  return changes
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
    .map((change) => {
      if (!withUnified) return change;
      const basePath = change.kind === 'added' ? null : join(overlay.base, change.from ?? change.path);
      const upperPath = change.kind === 'deleted' ? null : join(overlay.upper, change.path);
      if (change.kind === 'renamed' && sameFile(basePath!, upperPath!)) return change;
      return unifiedFor(change, basePath, upperPath);
    });
}

/**
 * Paths whose base state changed since the session first depended on them.
 */
export function sessionConflicts(overlay: Overlay): string[] {
  const touches = overlay.touches();
  const conflicts = new Set(touches.filter((record) => baseStateOf(join(overlay.base, record.path)) !== record.base).map((record) => record.path));
  // A directory the session deleted (or moved) is removed with all it holds at commit: an entry
  // that appeared in it since the session looked would be lost, so it is a conflict too.
  const seen = new Set(touches.map((record) => record.path));
  for (const rel of overlay.whiteoutPaths()) {
    if (!baseEntry(overlay.base, rel)?.isDirectory()) continue;
    const entries: string[] = [];
    walkEntries(overlay.base, rel, entries);
    for (const entry of entries) if (!seen.has(entry)) conflicts.add(entry);
  }
  return [...conflicts].sort();
}

/**
 * Commit the session into the workspace, crash-safe (see journal.ts): under the workspace's
 * commit lock, check conflicts, stage and journal the new contents, apply them, and close the
 * session (its area is removed).
 *
 * @param hooks test-only points between the commit's filesystem changes
 * @returns the changes applied
 * @throws WardenError `E_SESSION_CONFLICT` (with `detail.paths`) when the base changed under a
 *   path the session depended on; nothing is applied then and the session stays open.
 *   `E_SESSION_BUSY` when another process is committing to the same workspace.
 */
export function commitOverlay(overlay: Overlay, sessionId: string, hooks: CommitHooks = {}): FileChange[] {
  const unlock = lockWorkspace(overlay.base);
  try {
    const conflicts = sessionConflicts(overlay);
    if (conflicts.length > 0) {
      throw new WardenError(
        'E_SESSION_CONFLICT',
        `the workspace changed under ${conflicts.length} path(s) this session depends on: ${conflicts.slice(0, 5).join(', ')}` +
          `${conflicts.length > 5 ? ', …' : ''}; discard the session and run the task again`,
        { detail: { paths: conflicts } },
      );
    }
    const changes = sessionDiff(overlay, false);
    let plan;
    try {
      plan = stageAndJournal(overlay, sessionId, hooks);
    } catch (err) {
      // Before the commit point: nothing reached the workspace; the session stays open.
      discardStage(overlay, sessionId);
      throw new WardenError('E_SESSION_STATE', `commit of ${sessionId} failed before anything was applied (${(err as Error).message}); the session is still open`, { cause: err });
    }
    try {
      applyPlan(plan, overlay.dir, unlock, hooks);
    } catch (err) {
      throw new WardenError('E_SESSION_STATE', `commit of ${sessionId} was interrupted after its journal was written (${(err as Error).message}); the next kernel start or \`warden session list\` completes it`, { cause: err });
    }
    return changes;
  } finally {
    unlock();
  }
}
