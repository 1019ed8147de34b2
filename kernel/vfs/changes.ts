/**
 * Changes of a session against its base: the per-file diff shown to people, and the commit that
 * applies the changes to the workspace after conflict detection.
 */
import {
  copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, symlinkSync,
} from 'node:fs';
import { join } from 'node:path';
import { createTwoFilesPatch } from 'diff';
import { WardenError } from '../errors.js';
import { baseStateOf, hashFile, type Overlay } from './overlay.js';

/** What happened to one path. */
export type ChangeKind = 'added' | 'modified' | 'deleted';

/** One changed file of a session. */
export interface FileChange {
  /** Path relative to the workspace root. */
  path: string;
  kind: ChangeKind;
  /** Unified diff (text files up to {@link MAX_DIFF_BYTES}); absent for binary or large files. */
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
    change.kind === 'added' ? '/dev/null' : `a/${change.path}`,
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
 * The per-file changes of the session, sorted by path. Files written back unchanged are omitted.
 */
export function sessionDiff(overlay: Overlay, withUnified = true): FileChange[] {
  const changes = new Map<string, FileChange>();
  const deleted = new Set<string>();
  for (const rel of overlay.whiteoutPaths()) {
    const basePath = join(overlay.base, rel);
    if (!existsSync(basePath) && !isLink(basePath)) continue;
    if (lstatSync(basePath).isDirectory()) {
      const files: string[] = [];
      walkFiles(overlay.base, rel, files);
      files.forEach((f) => deleted.add(f));
    } else {
      deleted.add(rel);
    }
  }
  const upperFiles: string[] = [];
  walkFiles(overlay.upper, '', upperFiles);
  for (const rel of upperFiles) {
    const upperPath = join(overlay.upper, rel);
    const basePath = join(overlay.base, rel);
    const inBase = (existsSync(basePath) || isLink(basePath)) && !lstatSync(basePath).isDirectory();
    deleted.delete(rel);
    if (!inBase) changes.set(rel, { path: rel, kind: 'added' });
    else if (!sameFile(upperPath, basePath)) changes.set(rel, { path: rel, kind: 'modified' });
  }
  for (const rel of deleted) changes.set(rel, { path: rel, kind: 'deleted' });
  return [...changes.values()]
    .sort((a, b) => (a.path < b.path ? -1 : 1))
    .map((change) => {
      if (!withUnified) return change;
      const basePath = change.kind === 'added' ? null : join(overlay.base, change.path);
      const upperPath = change.kind === 'deleted' ? null : join(overlay.upper, change.path);
      return unifiedFor(change, basePath, upperPath);
    });
}

function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/**
 * Paths whose base state changed since the session first depended on them.
 */
export function sessionConflicts(overlay: Overlay): string[] {
  return overlay
    .touches()
    .filter((record) => baseStateOf(join(overlay.base, record.path)) !== record.base)
    .map((record) => record.path)
    .sort();
}

/**
 * Apply the session's changes to the workspace. New contents are first staged on the same
 * filesystem as the workspace, then moved into place with `rename` (atomic per file).
 *
 * @returns the changes applied
 * @throws WardenError `E_SESSION_CONFLICT` (with `detail.paths`) when the base changed under a
 *   path the session depended on; nothing is applied then.
 */
export function commitOverlay(overlay: Overlay, sessionId: string): FileChange[] {
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
  const stage = join(overlay.base, `.warden-stage-${sessionId}`);
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage);
  try {
    const upperFiles: string[] = [];
    walkFiles(overlay.upper, '', upperFiles);
    upperFiles.forEach((rel, i) => {
      const source = join(overlay.upper, rel);
      const staged = join(stage, String(i));
      if (lstatSync(source).isSymbolicLink()) symlinkSync(readlinkSync(source), staged);
      else copyFileSync(source, staged);
    });
    for (const rel of overlay.whiteoutPaths()) rmSync(join(overlay.base, rel), { recursive: true, force: true });
    createDirectories(overlay.upper, overlay.base, '');
    upperFiles.forEach((rel, i) => {
      const target = join(overlay.base, rel);
      if (existsSync(target) && lstatSync(target).isDirectory()) rmSync(target, { recursive: true });
      renameSync(join(stage, String(i)), target);
    });
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
  return changes;
}

function createDirectories(upper: string, base: string, rel: string): void {
  for (const name of readdirSync(join(upper, rel))) {
    const child = rel === '' ? name : `${rel}/${name}`;
    if (lstatSync(join(upper, child)).isDirectory()) {
      const target = join(base, child);
      if (existsSync(target) && !lstatSync(target).isDirectory()) rmSync(target);
      mkdirSync(target, { recursive: true });
      createDirectories(upper, base, child);
    }
  }
}
