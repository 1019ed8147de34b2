/**
 * Path rules of the session filesystem: every path a guest names is relative to the session
 * root, `/`-separated, and never leaves the root.
 */
import { WardenError } from '../errors.js';

/**
 * Normalises `path` relative to the directory `from` (both relative to the session root;
 * `''` is the root). Returns the normalised relative path (`''` for the root).
 *
 * @throws WardenError `E_PATH_ESCAPE` for absolute paths, NUL bytes, or `..` that leaves the root.
 */
export function joinInside(from: string, path: string): string {
  if (path.includes('\0')) throw new WardenError('E_PATH_ESCAPE', `path contains a NUL byte: ${JSON.stringify(path)}`);
  if (path.startsWith('/') || /^[A-Za-z]:[\\/]/.test(path)) {
    throw new WardenError('E_PATH_ESCAPE', `absolute path refused: ${path} (paths are relative to the session root)`);
  }
  const parts = from === '' ? [] : from.split('/');
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      if (parts.length === 0) throw new WardenError('E_PATH_ESCAPE', `path leaves the session root: ${path}`);
      parts.pop();
      continue;
    }
    parts.push(segment);
  }
  return parts.join('/');
}

/** The segments of a `/`-separated relative path, without empty and `.` segments (`..` kept). */
export function segmentsOf(path: string): string[] {
  return path.split('/').filter((segment) => segment !== '' && segment !== '.');
}

/**
 * True when a symlink target read from the directory `dir` (a normalised relative path) leaves
 * the root as written: absolute, with a NUL byte, or with `..` segments that climb above the root.
 */
export function targetLeavesRoot(dir: string, target: string): boolean {
  try {
    joinInside(dir, target);
    return false;
  } catch {
    return true;
  }
}

/** Parent of a normalised relative path (`''` for top-level entries and the root). */
export function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

/** Last segment of a normalised relative path. */
export function baseName(rel: string): string {
  return rel.slice(rel.lastIndexOf('/') + 1);
}

/** The path and each of its ancestors, nearest first, excluding the root. */
export function selfAndAncestors(rel: string): string[] {
  const out: string[] = [];
  for (let p = rel; p !== ''; p = parentOf(p)) out.push(p);
  return out;
}
