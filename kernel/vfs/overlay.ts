/**
 * The copy-on-write overlay behind a session. Begin costs nothing: reads fall through to the
 * base (the workspace); writes, creations and deletions land in the session's upper layer
 * (`upper/`), deletions as whiteouts (`whiteouts/`). Every path the session depends on is
 * recorded with the base's state at first touch (`touched.jsonl`) for conflict detection at
 * commit.
 *
 * All state is on disk, so the overlay can be opened in any worker thread: the tool that writes
 * and the kernel that commits see the same session without the main thread on the path.
 * Layout follows the overlayfs model (upper layer, whiteouts, opaque directories).
 */
import {
  appendFileSync, chmodSync, closeSync, copyFileSync, existsSync, fstatSync, lstatSync, mkdirSync, openSync, readFileSync,
  readSync, readdirSync, readlinkSync, realpathSync, rmSync, symlinkSync, writeFileSync, writeSync, ftruncateSync, type Stats,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { WardenError } from '../errors.js';
import { joinInside, parentOf, segmentsOf, selfAndAncestors, targetLeavesRoot } from './paths.js';

/** Access a session grants: read-only or read-write. */
export type SessionMode = 'ro' | 'rw';

/** The kind of an entry in the merged view. */
export type EntryType = 'file' | 'directory' | 'symlink';

/** Result of {@link Overlay.stat}. Sizes in bytes, times in ms since the epoch. */
export interface EntryStat {
  type: EntryType;
  size: number;
  mtimeMs: number;
  mode: number;
}

/** Base state of a path at first touch: sha256 of a file, `dir`, `link:<target>`, or null when absent. */
export type BaseState = string | null;

/** One line of `touched.jsonl`. */
export interface TouchRecord {
  path: string;
  base: BaseState;
}

/** One line of `renames.jsonl`: a rename the session made, in order. */
export interface RenameRecord {
  from: string;
  to: string;
}

/**
 * Prefix of the names the kernel reserves at a workspace's root: a commit's staging directory
 * (`.warden-commit-<session>`) lives there while the commit runs. Sessions never see such
 * entries and cannot create them.
 */
export const RESERVED_PREFIX = '.warden-commit-';

/** True when `rel` is, or is inside, a reserved entry at the workspace root. */
export function isReserved(rel: string): boolean {
  return rel.startsWith(RESERVED_PREFIX);
}

/** Maximum symlink hops while resolving one path (as Linux's MAXSYMLINKS). */
const MAX_SYMLINK_HOPS = 40;

interface Located {
  layer: 'upper' | 'base';
  host: string;
  stat: Stats;
}

/** The read buffer of {@link hashFile}: one per thread, reused (hashing is synchronous). */
const HASH_CHUNK = Buffer.allocUnsafe(1 << 20);

/** sha256 of a host file, streamed in 1 MiB chunks so large files are not loaded whole. */
export function hashFile(path: string): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const chunk = HASH_CHUNK;
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      hash.update(chunk.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/**
 * The state of a workspace entry as recorded for conflict detection. `hostPath` is the workspace's
 * real path (see {@link Overlay}'s `base`) joined with a normalised relative path. A path below a
 * symlink of the workspace is not an entry of it: its state is null, never read through the
 * symlink (which may lead anywhere, `/dev/zero` included). Entries that are not regular files,
 * directories or symlinks (FIFOs, devices) are recorded by type only, never opened.
 */
export function baseStateOf(hostPath: string): BaseState {
  let st: Stats;
  try {
    const parent = dirname(hostPath);
    if (realpathSync.native(parent) !== parent) return null;
    st = lstatSync(hostPath);
  } catch {
    return null;
  }
  if (st.isDirectory()) return 'dir';
  if (!st.isFile() && !st.isSymbolicLink()) return `special:${st.mode.toString(8)}`;
  if (st.isSymbolicLink()) return `link:${readlinkSync(hostPath)}`;
  return hashFile(hostPath);
}

function typeOf(st: Stats): EntryType {
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  return 'file';
}

/**
 * A session's merged view of base + upper layer. Paths are relative to the session root.
 * Errors are `WardenError`s with `detail.errno` set to the POSIX-style code (`ENOENT`, ...),
 * which the WASI layer maps to `wasi:filesystem` error codes.
 */
export class Overlay {
  /** Real host path of the workspace (symlinks resolved), the read-only base layer. */
  readonly base: string;
  readonly upper: string;
  private readonly whiteouts: string;
  private readonly touchLog: string;
  private readonly renameLog: string;
  private readonly touched = new Set<string>();

  /**
   * @param base host path of the workspace (read-only to the overlay)
   * @param dir host path of the session's own area
   * @param mode `ro` refuses every change with `EROFS`
   */
  constructor(base: string, readonly dir: string, readonly mode: SessionMode) {
    this.base = realPath(base);
    this.upper = join(dir, 'upper');
    this.whiteouts = join(dir, 'whiteouts');
    this.touchLog = join(dir, 'touched.jsonl');
    this.renameLog = join(dir, 'renames.jsonl');
  }

  /** Create the session's area on disk (O(1): no copy of the base). */
  static create(base: string, dir: string): void {
    mkdirSync(join(dir, 'upper'), { recursive: true });
    mkdirSync(join(dir, 'whiteouts'), { recursive: true });
    writeFileSync(join(dir, 'touched.jsonl'), '');
  }

  // ---- layers -------------------------------------------------------------------------------

  private whiteoutFile(rel: string): string {
    return join(this.whiteouts, Buffer.from(rel).toString('base64url'));
  }

  private isWhitedOut(rel: string): boolean {
    return selfAndAncestors(rel).some((p) => existsSync(this.whiteoutFile(p)));
  }

  /** Locate `rel` without following a final symlink (intermediate segments must be resolved). */
  private locate(rel: string): Located | null {
    if (isReserved(rel)) return null;
    // The root is the workspace itself (the upper layer's own directory is the session's).
    if (rel === '') {
      const root = lstatOrNull(this.base);
      return root ? { layer: 'base', host: this.base, stat: root } : null;
    }
    const upperPath = join(this.upper, rel);
    const upper = lstatOrNull(upperPath);
    if (upper) return { layer: 'upper', host: upperPath, stat: upper };
    if (this.isWhitedOut(rel)) return null;
    // A directory created in the upper layer over a whiteout is opaque: base children stay hidden.
    const basePath = join(this.base, rel);
    const base = lstatOrNull(basePath);
    return base ? { layer: 'base', host: basePath, stat: base } : null;
  }

  private fail(errno: string, message: string): never {
    throw new WardenError(errno === 'EXDEV' || errno === 'ELOOP' ? 'E_PATH_ESCAPE' : 'E_BAD_INPUT', message, { detail: { errno } });
  }

  /**
   * Resolve `path` (relative to the directory `from`, itself resolved) to a normalised path with
   * every symlink inside it followed, the final one only when `followFinal`. As in POSIX, `..`
   * goes to the parent of the directory actually reached (after symlinks), and a missing or
   * non-directory intermediate segment fails. The kernel's own rules come first: a path whose
   * `..` segments climb above the root as written, an absolute path, a NUL byte, and a symlink
   * that leads outside the root (absolute target, or `..` above the root) are refused.
   *
   * @throws WardenError `E_PATH_ESCAPE` for escapes (`detail.errno` `EXDEV`, or `ELOOP` after 40
   *   symlinks, as Linux); `ENOENT` / `ENOTDIR` (in `detail.errno`) for a missing
   *   or non-directory intermediate segment
   */
  resolve(from: string, path: string, followFinal = true): string {
    joinInside(from, path); // refuses NUL bytes, absolute paths, and `..` above the root as written
    const pending = segmentsOf(path);
    const done = from === '' ? [] : from.split('/');
    let hops = 0;
    while (pending.length > 0) {
      const segment = pending.shift()!;
      if (segment === '..') {
        // Only reachable through a symlink's target: the path itself was checked above.
        if (done.length === 0) this.fail('EXDEV', `${path} leads outside the session root through a symlink`);
        done.pop();
        continue;
      }
      const candidate = [...done, segment].join('/');
      const found = this.locate(candidate);
      const last = pending.length === 0;
      if (found && found.stat.isSymbolicLink() && (!last || followFinal)) {
        if (++hops > MAX_SYMLINK_HOPS) this.fail('ELOOP', `too many levels of symbolic links at ${candidate}`);
        const target = readlinkSync(found.host);
        if (targetLeavesRoot(done.join('/'), target)) this.fail('EXDEV', `symlink ${candidate} points outside the session root (${target})`);
        pending.unshift(...segmentsOf(target));
        continue;
      }
      if (!last && !found) this.fail('ENOENT', `no such directory: ${candidate}`);
      if (!last && !found!.stat.isDirectory()) this.fail('ENOTDIR', `not a directory: ${candidate}`);
      done.push(segment);
    }
    return done.join('/');
  }

  // ---- conflict bookkeeping ------------------------------------------------------------------

  /** Record the base state of `rel` the first time the session depends on it. */
  touch(rel: string): void {
    if (this.touched.has(rel)) return;
    this.touched.add(rel);
    const record: TouchRecord = { path: rel, base: baseStateOf(join(this.base, rel)) };
    appendFileSync(this.touchLog, `${JSON.stringify(record)}\n`);
  }

  /** Every touch record, first touch of each path only. */
  touches(): TouchRecord[] {
    const seen = new Map<string, TouchRecord>();
    for (const line of readFileSync(this.touchLog, 'utf8').split('\n')) {
      if (!line) continue;
      const record = JSON.parse(line) as TouchRecord;
      if (!seen.has(record.path)) seen.set(record.path, record);
    }
    return [...seen.values()];
  }

  // ---- reads ---------------------------------------------------------------------------------

  /** Stat of a resolved path, or null when absent. Does not follow a final symlink. */
  stat(rel: string): EntryStat | null {
    const found = this.locate(rel);
    if (!found) return null;
    if (rel !== '') this.touch(rel);
    return { type: typeOf(found.stat), size: found.stat.size, mtimeMs: found.stat.mtimeMs, mode: found.stat.mode };
  }

  /** Read up to `length` bytes at `offset` of the file `rel`; fewer at end of file. */
  read(rel: string, offset: number, length: number): Uint8Array {
    const found = this.requireFile(rel);
    this.touch(rel);
    const fd = openSync(found.host, 'r');
    try {
      const buf = Buffer.allocUnsafe(Math.min(length, Math.max(0, found.stat.size - offset)));
      const n = buf.length === 0 ? 0 : readSync(fd, buf, 0, buf.length, offset);
      return buf.subarray(0, n);
    } finally {
      closeSync(fd);
    }
  }

  /** Target of the symlink `rel`. */
  readlink(rel: string): string {
    const found = this.locate(rel);
    if (!found) this.fail('ENOENT', `no such file: ${rel}`);
    if (!found.stat.isSymbolicLink()) this.fail('EINVAL', `not a symlink: ${rel}`);
    this.touch(rel);
    return readlinkSync(found.host);
  }

  /** Entries of the directory `rel` in the merged view, sorted by name. */
  readdir(rel: string): Array<{ name: string; type: EntryType }> {
    const found = this.locate(rel);
    if (!found) this.fail('ENOENT', `no such directory: ${rel || '.'}`);
    if (!found.stat.isDirectory()) this.fail('ENOTDIR', `not a directory: ${rel}`);
    this.touch(rel);
    const names = new Set<string>();
    const upperDir = join(this.upper, rel);
    if (existsSync(upperDir)) for (const name of readdirSync(upperDir)) names.add(name);
    const baseDir = join(this.base, rel);
    if (!this.isWhitedOut(rel) && existsSync(baseDir) && lstatSync(baseDir).isDirectory()) {
      for (const name of readdirSync(baseDir)) names.add(name);
    }
    const out: Array<{ name: string; type: EntryType }> = [];
    for (const name of [...names].sort()) {
      const child = rel === '' ? name : `${rel}/${name}`;
      const entry = this.locate(child);
      if (entry) out.push({ name, type: typeOf(entry.stat) });
    }
    return out;
  }

  private requireFile(rel: string): Located {
    const found = this.locate(rel);
    if (!found) this.fail('ENOENT', `no such file: ${rel}`);
    if (found.stat.isDirectory()) this.fail('EISDIR', `is a directory: ${rel}`);
    return found;
  }

  // ---- writes --------------------------------------------------------------------------------

  private requireWritable(rel: string): void {
    if (this.mode !== 'rw') this.fail('EROFS', `session is read-only: cannot change ${rel || '.'}`);
  }

  /**
   * Make the parent of `rel` exist in the upper layer. The session now depends on that parent
   * being a directory: it is touched, so a base that replaces or removes it conflicts at commit.
   */
  private ensureUpperParent(rel: string): void {
    if (isReserved(rel)) this.fail('EACCES', `${rel}: names starting with ${RESERVED_PREFIX} are reserved for the kernel's commits`);
    const parent = parentOf(rel);
    const found = this.locate(parent);
    if (!found) this.fail('ENOENT', `no such directory: ${parent}`);
    if (!found.stat.isDirectory()) this.fail('ENOTDIR', `not a directory: ${parent}`);
    if (parent !== '') this.touch(parent);
    this.copyUpDirectory(parent);
  }

  /** Make the directory `rel` of the merged view exist in the upper layer, with its permission bits. */
  private copyUpDirectory(rel: string): void {
    if (rel === '' || lstatOrNull(join(this.upper, rel))) return;
    this.copyUpDirectory(parentOf(rel));
    const mode = this.locate(rel)!.stat.mode & 0o7777;
    mkdirSync(join(this.upper, rel));
    chmodSync(join(this.upper, rel), mode);
  }

  /** Make sure `rel` (a file) is in the upper layer, copying it up from the base if needed. */
  private copyUp(rel: string): string {
    const found = this.requireFile(rel);
    if (found.layer === 'upper') return found.host;
    this.ensureUpperParent(rel);
    const target = join(this.upper, rel);
    copyFileSync(found.host, target);
    return target;
  }

  /**
   * Create the file `rel` if absent (`exclusive`: fail with EEXIST when present).
   * @returns true when the file was created
   */
  create(rel: string, exclusive: boolean): boolean {
    this.requireWritable(rel);
    this.touch(rel);
    const found = this.locate(rel);
    if (found) {
      if (exclusive) this.fail('EEXIST', `already exists: ${rel}`);
      if (found.stat.isDirectory()) this.fail('EISDIR', `is a directory: ${rel}`);
      return false;
    }
    this.ensureUpperParent(rel);
    // A whiteout of `rel` stays: the base entry it hides is still replaced, not restored.
    writeFileSync(join(this.upper, rel), '');
    return true;
  }

  /** Write `data` at byte `offset` of the file `rel` (copied up first). @returns bytes written */
  write(rel: string, offset: number, data: Uint8Array): number {
    this.requireWritable(rel);
    this.touch(rel);
    const host = this.copyUp(rel);
    const fd = openSync(host, 'r+');
    try {
      return writeSync(fd, data, 0, data.length, offset);
    } finally {
      closeSync(fd);
    }
  }

  /** Set the size of the file `rel` in bytes. */
  truncate(rel: string, size: number): void {
    this.requireWritable(rel);
    this.touch(rel);
    const fd = openSync(this.copyUp(rel), 'r+');
    try {
      ftruncateSync(fd, size);
    } finally {
      closeSync(fd);
    }
  }

  /** Size in bytes of the file `rel`. */
  size(rel: string): number {
    const found = this.requireFile(rel);
    const fd = openSync(found.host, 'r');
    try {
      return fstatSync(fd).size;
    } finally {
      closeSync(fd);
    }
  }

  /** Create the directory `rel`. */
  mkdir(rel: string): void {
    this.requireWritable(rel);
    this.touch(rel);
    if (this.locate(rel)) this.fail('EEXIST', `already exists: ${rel}`);
    this.ensureUpperParent(rel);
    mkdirSync(join(this.upper, rel));
  }

  /** Create a symlink `rel` → `target`; the target must stay inside the root. */
  symlink(target: string, rel: string): void {
    this.requireWritable(rel);
    if (target === '') this.fail('ENOENT', `symlink ${rel}: the target is empty`);
    if (targetLeavesRoot(parentOf(rel), target)) this.fail('EXDEV', `symlink target outside the session root: ${target}`);
    this.touch(rel);
    if (this.locate(rel)) this.fail('EEXIST', `already exists: ${rel}`);
    this.ensureUpperParent(rel);
    symlinkSync(target, join(this.upper, rel));
  }

  /** Delete the file or symlink `rel`. */
  unlink(rel: string): void {
    this.requireWritable(rel);
    this.touch(rel);
    const found = this.locate(rel);
    if (!found) this.fail('ENOENT', `no such file: ${rel}`);
    if (found.stat.isDirectory()) this.fail('EISDIR', `is a directory: ${rel}`);
    this.removeEntry(rel);
  }

  /** Delete the empty directory `rel`. */
  rmdir(rel: string): void {
    this.requireWritable(rel);
    if (rel === '') this.fail('EBUSY', 'cannot remove the session root');
    this.touch(rel);
    const found = this.locate(rel);
    if (!found) this.fail('ENOENT', `no such directory: ${rel}`);
    if (!found.stat.isDirectory()) this.fail('ENOTDIR', `not a directory: ${rel}`);
    if (this.readdir(rel).length > 0) this.fail('ENOTEMPTY', `directory not empty: ${rel}`);
    this.removeEntry(rel);
  }

  private removeEntry(rel: string): void {
    rmSync(join(this.upper, rel), { recursive: true, force: true });
    if (lstatOrNull(join(this.base, rel))) writeFileSync(this.whiteoutFile(rel), rel);
  }

  /**
   * Rename `from` to `to`: files, symlinks and directories. As POSIX `rename(2)`: an existing
   * file or symlink at `to` is replaced when `from` is not a directory, an empty directory when
   * it is one; renaming an entry onto itself does nothing. A move that would leave a symlink
   * (`from` itself or one below it) leading outside the root from its new place is refused.
   *
   * @throws WardenError `E_PATH_ESCAPE` (`EXDEV`) for such a move; else `detail.errno` `ENOENT`,
   *   `EINVAL` (into itself), `ENOTEMPTY`, `EISDIR`, `ENOTDIR`, `EBUSY` (the root), `EACCES` (reserved)
   */
  rename(from: string, to: string): void {
    this.requireWritable(from);
    if (from === '' || to === '') this.fail('EBUSY', 'cannot rename the session root');
    this.touch(from);
    this.touch(to);
    const source = this.locate(from);
    if (!source) this.fail('ENOENT', `no such file: ${from}`);
    this.refuseEscapingMove(from, to);
    if (to.startsWith(`${from}/`)) this.fail('EINVAL', `cannot move ${from} into itself`);
    // `to` is an ancestor of `from`, so a directory that is not empty.
    if (from.startsWith(`${to}/`)) this.fail('ENOTEMPTY', `directory not empty: ${to}`);
    if (to === from) return;
    const dest = this.locate(to);
    if (dest) {
      if (dest.stat.isDirectory() !== source.stat.isDirectory()) {
        this.fail(dest.stat.isDirectory() ? 'EISDIR' : 'ENOTDIR', `cannot replace ${to} with ${from}`);
      }
      if (dest.stat.isDirectory() && this.readdir(to).length > 0) this.fail('ENOTEMPTY', `directory not empty: ${to}`);
    }
    this.ensureUpperParent(to);
    if (dest) this.removeEntry(to);
    this.copyTree(from, to);
    this.removeEntry(from);
    appendFileSync(this.renameLog, `${JSON.stringify({ from, to } satisfies RenameRecord)}\n`);
  }

  /** Refuse a move of `from` to `to` that would leave a symlink at or below it leading outside the root. */
  private refuseEscapingMove(from: string, to: string): void {
    const found = this.locate(from)!;
    if (found.stat.isSymbolicLink()) {
      const target = readlinkSync(found.host);
      if (targetLeavesRoot(parentOf(to), target)) this.fail('EXDEV', `moving ${from} to ${to} would make its target ${target} lead outside the session root`);
    } else if (found.stat.isDirectory()) {
      for (const entry of this.readdir(from)) this.refuseEscapingMove(`${from}/${entry.name}`, `${to}/${entry.name}`);
    }
  }

  /** Every rename the session made, oldest first (for the diff's `renamed` entries). */
  renames(): RenameRecord[] {
    if (!existsSync(this.renameLog)) return [];
    return readFileSync(this.renameLog, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as RenameRecord);
  }

  /** Copy the merged view's `from` to the upper layer's `to` (absent there), keeping permission bits. */
  private copyTree(from: string, to: string): void {
    // The moved copy depends on what it was copied from: a later change there is a conflict.
    this.touch(from);
    const found = this.locate(from)!;
    const target = join(this.upper, to);
    if (found.stat.isSymbolicLink()) {
      symlinkSync(readlinkSync(found.host), target);
    } else if (found.stat.isDirectory()) {
      mkdirSync(target);
      // The new directory is opaque over any base entry of the same name.
      if (lstatOrNull(join(this.base, to))) writeFileSync(this.whiteoutFile(to), to);
      for (const entry of this.readdir(from)) this.copyTree(`${from}/${entry.name}`, `${to}/${entry.name}`);
      chmodSync(target, found.stat.mode & 0o7777);
    } else {
      copyFileSync(found.host, target);
    }
  }

  /** Paths of every whiteout (deleted base entries). */
  whiteoutPaths(): string[] {
    return readdirSync(this.whiteouts).map((name) => Buffer.from(name, 'base64url').toString());
  }
}

/**
 * The real path of `path` (symlinks resolved), so that a symlink inside the workspace is told apart
 * from the path leading to the workspace; `path` itself when it cannot be resolved (a workspace
 * that is gone: every lookup then finds nothing).
 */
function realPath(path: string): string {
  try {
    return realpathSync.native(path);
  } catch {
    return path;
  }
}

/**
 * lstat of `path`, or null when it cannot be stat'ed (absent, a file in the way, no access).
 * Absent paths are the common case on every lookup: `throwIfNoEntry: false` answers them without
 * building an exception (~10× cheaper); other errors still throw and also mean "not there".
 */
function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path, { throwIfNoEntry: false }) ?? null;
  } catch {
    return null;
  }
}
