/**
 * The kernel's `wasi:filesystem` (types + preopens, WASI 0.2.12: `wit/deps/filesystem`) over a
 * session {@link Overlay}. A guest sees only its preopened session roots; paths never leave them
 * (kernel/vfs/paths.ts), and symlinks that would lead out are refused.
 *
 * Semantics follow the WASI 0.2 specification, and POSIX where it defers to it ("similar to
 * `openat` in POSIX"), since the preview1 adapter turns each `error-code` into the errno a C or
 * Rust program sees. Where the specification leaves a choice, Wasmtime's `wasmtime-wasi` is the
 * reference: descriptor permissions are inherited from the directory a descriptor was opened from,
 * reading or writing without the `read`/`write` flag is `bad-descriptor`, and `open-at` with
 * `directory` plus `create`, `exclusive` or `truncate` is `invalid`.
 *
 * Descriptors name a path in the session, not an open host file: a file renamed or unlinked after
 * it was opened is no longer reachable through its descriptor (`no-entry`).
 */
import { createHash } from 'node:crypto';
import { isWardenError } from '../errors.js';
import type { EntryStat, Overlay } from '../vfs/index.js';
import { InputStream, IoError, OutputStream } from './io.js';

/** WASI `error-code` values this implementation produces. */
export type FsErrorCode =
  | 'access' | 'bad-descriptor' | 'busy' | 'cross-device' | 'exist' | 'file-too-large' | 'insufficient-space' | 'invalid'
  | 'io' | 'is-directory' | 'loop' | 'name-too-long' | 'no-entry' | 'not-directory' | 'not-empty' | 'not-permitted'
  | 'read-only' | 'unsupported';

/** POSIX errno names (from the overlay's `detail.errno`, or Node's `code`) → WASI error codes. */
const ERRNO: Record<string, FsErrorCode> = {
  ENOENT: 'no-entry', EEXIST: 'exist', ENOTDIR: 'not-directory', EISDIR: 'is-directory', ENOTEMPTY: 'not-empty',
  EROFS: 'read-only', EACCES: 'access', EPERM: 'not-permitted', ELOOP: 'loop', EINVAL: 'invalid', EBUSY: 'busy',
  ENOSPC: 'insufficient-space', EDQUOT: 'insufficient-space', EFBIG: 'file-too-large', ENAMETOOLONG: 'name-too-long',
};

/**
 * Largest chunk one `read` of a stream from `read-via-stream` returns, in bytes: a stream may
 * return fewer bytes than asked, so a large file is never held whole by the host.
 */
const STREAM_CHUNK = 1 << 20;

/** Hook called on every refused access (for audit): operation, path, reason. */
export type DenialHook = (operation: string, path: string, reason: string) => void;

/**
 * The WASI error code for `err`, thrown by the overlay, Node, or this module (a string already).
 * Escapes (a path or symlink leading out of the root, `E_PATH_ESCAPE`/`EXDEV`) are
 * `not-permitted` and call `onEscape`; a symlink loop is `loop`, not an escape.
 */
function errorCode(err: unknown, onEscape?: () => void): FsErrorCode {
  if (typeof err === 'string') return err as FsErrorCode;
  if (isWardenError(err)) {
    const errno = err.detail?.['errno'];
    if (errno === 'ELOOP') return 'loop';
    if (err.code === 'E_PATH_ESCAPE' || errno === 'EXDEV') {
      onEscape?.();
      return 'not-permitted';
    }
    if (typeof errno === 'string') return ERRNO[errno] ?? 'io';
  }
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return (typeof code === 'string' && ERRNO[code]) || 'io';
}

/** Run `fn`, turning kernel and Node errors into WASI error codes (thrown, as jco expects). */
function wasi<T>(fn: () => T, onEscape?: () => void): T {
  try {
    return fn();
  } catch (err) {
    throw errorCode(err, onEscape);
  }
}

type DescriptorType = 'directory' | 'regular-file' | 'symbolic-link' | 'unknown';

/** `wasi:clocks/wall-clock.datetime`. */
interface Timestamp {
  seconds: bigint;
  nanoseconds: number;
}

function timestamp(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  return { seconds: BigInt(seconds), nanoseconds: Math.floor((ms - seconds * 1000) * 1e6) };
}

function descriptorType(type: EntryStat['type']): DescriptorType {
  return type === 'file' ? 'regular-file' : type === 'directory' ? 'directory' : 'symbolic-link';
}

interface PathFlags {
  symlinkFollow?: boolean;
}
interface OpenFlags {
  create?: boolean;
  directory?: boolean;
  exclusive?: boolean;
  truncate?: boolean;
}
interface DescriptorFlags {
  read?: boolean;
  write?: boolean;
  mutateDirectory?: boolean;
}

/** `metadata-hash-value`: two u64 halves of a 128-bit value. */
interface MetadataHash {
  upper: bigint;
  lower: bigint;
}

/** Where a {@link Descriptor} points and what it may do. */
interface Binding {
  overlay: Overlay;
  rel: string;
  type: DescriptorType;
  /** For a directory, `mutateDirectory` is the right to change its children (false on a read-only session). */
  flags: DescriptorFlags;
  denied: DenialHook;
}

/**
 * Builds the `wasi:filesystem/types` and `wasi:filesystem/preopens` import objects. Every method
 * of `descriptor` throws a WASI `error-code` string on failure (the `result`'s error case).
 *
 * @param preopens called at each `get-directories`: the overlays to expose with their guest paths
 *   (the current call's session, or `--dir` mounts); an empty list when no filesystem is granted.
 * @param denied audit hook for refused accesses: paths leaving the root, changes to a read-only session
 */
export function filesystemImports(
  preopens: () => Array<{ overlay: Overlay; guestPath: string }>,
  denied: DenialHook,
): { types: Record<string, unknown>; preopens: Record<string, unknown> } {
  class Descriptor {
    #b: Binding;
    constructor(binding: Binding) {
      this.#b = binding;
    }

    /** Resolve `path` against this directory (intermediate symlinks followed; the final one when `follow`). */
    private child(path: string, follow: boolean): string {
      const b = this.#b;
      if (b.type !== 'directory') throw 'not-directory' satisfies FsErrorCode;
      return wasi(
        () => b.overlay.resolve(b.rel, path, follow),
        () => b.denied('resolve', path, 'path leaves the session root'),
      );
    }

    /** Throw the error for an absent `rel`: `not-directory` when an ancestor is a file (as POSIX), else `no-entry`. */
    private missing(rel: string): never {
      const overlay = this.#b.overlay;
      for (let i = rel.lastIndexOf('/'); i > 0; i = rel.lastIndexOf('/', i - 1)) {
        const st = wasi(() => overlay.stat(rel.slice(0, i)));
        if (st) throw (st.type === 'directory' ? 'no-entry' : 'not-directory') satisfies FsErrorCode;
      }
      throw 'no-entry' satisfies FsErrorCode;
    }

    private existing(rel: string): EntryStat {
      return wasi(() => this.#b.overlay.stat(rel)) ?? this.missing(rel);
    }

    /** Run a change to the overlay at `rel`, reporting an absent path as {@link missing} does. */
    private change(rel: string, fn: () => void, onEscape?: () => void): void {
      try {
        fn();
      } catch (err) {
        const code = errorCode(err, onEscape);
        if (code === 'no-entry') this.missing(rel);
        throw code;
      }
    }

    /** A change of this directory's children needs a read-write session (`read-only`, audited). */
    private requireMutable(operation: string, rel: string): void {
      const b = this.#b;
      if (!b.flags.mutateDirectory || b.overlay.mode !== 'rw') {
        b.denied(operation, rel, 'session granted read-only');
        throw 'read-only' satisfies FsErrorCode;
      }
    }

    private requireFile(flag: 'read' | 'write'): Binding {
      const b = this.#b;
      if (b.type === 'directory') throw 'is-directory' satisfies FsErrorCode;
      if (!b.flags[flag]) throw 'bad-descriptor' satisfies FsErrorCode;
      return b;
    }

    /**
     * `read-via-stream`: the file's bytes from `offset`, read from the session as the guest asks
     * (at most {@link STREAM_CHUNK} per stream read), never loaded whole. The stream is `closed`
     * at the end of the file. @throws `is-directory`, `bad-descriptor` (no `read` flag)
     */
    readViaStream(offset: bigint): InputStream {
      const b = this.requireFile('read');
      let pos = Number(offset);
      return new InputStream((max) => {
        const chunk = wasi(() => b.overlay.read(b.rel, pos, Math.min(max, STREAM_CHUNK)));
        if (chunk.length === 0) return null;
        pos += chunk.length;
        return chunk;
      });
    }
    /**
     * `write-via-stream`: writes from `offset` on, each straight to the session's copy of the file.
     * @throws `bad-descriptor` (no `write` flag)
     */
    writeViaStream(offset: bigint): OutputStream {
      const b = this.requireFile('write');
      let pos = Number(offset);
      return new OutputStream((bytes) => {
        pos += wasi(() => b.overlay.write(b.rel, pos, bytes));
      });
    }
    /** `append-via-stream`: each write lands at the file's end at that moment. @throws `bad-descriptor` (no `write` flag) */
    appendViaStream(): OutputStream {
      const b = this.requireFile('write');
      return new OutputStream((bytes) => {
        wasi(() => b.overlay.write(b.rel, b.overlay.size(b.rel), bytes));
      });
    }
    advise(): void {}
    syncData(): void {}
    sync(): void {}
    getFlags(): DescriptorFlags {
      return { ...this.#b.flags };
    }
    getType(): DescriptorType {
      return this.#b.type;
    }
    /** `set-size` (ftruncate), `size` in bytes. @throws `bad-descriptor` (no `write` flag) */
    setSize(size: bigint): void {
      const b = this.requireFile('write');
      wasi(() => b.overlay.truncate(b.rel, Number(size)));
    }
    /**
     * `set-times`: accepted on a read-write session and not stored: the overlay keeps no
     * timestamps of its own (a committed file gets the time of the commit).
     */
    setTimes(): void {
      const b = this.#b;
      this.existing(b.rel);
      if (b.overlay.mode !== 'rw') {
        b.denied('set-times', b.rel, 'session granted read-only');
        throw 'read-only' satisfies FsErrorCode;
      }
    }
    /** `set-times-at`: as {@link setTimes}, for a path. */
    setTimesAt(flags: PathFlags, path: string): void {
      const rel = this.child(path, flags.symlinkFollow === true);
      this.existing(rel);
      this.requireMutable('set-times', rel);
    }
    /**
     * `read` (pread): up to `length` bytes at `offset`; the flag is true when the read reached the
     * end of the file. All that is asked is served (a short read is allowed, but the built-in
     * tools' `readBytes` reads a whole file in one call), so the host holds at most what remains
     * of the file after `offset`. @throws `is-directory`, `bad-descriptor` (no `read` flag)
     */
    read(length: bigint, offset: bigint): [Uint8Array, boolean] {
      const b = this.requireFile('read');
      const at = Number(offset);
      const chunk = wasi(() => b.overlay.read(b.rel, at, Number(length)));
      return [chunk, at + chunk.length >= this.existing(b.rel).size];
    }
    /** `write` (pwrite) of `buffer` at `offset`; returns the bytes written. @throws `bad-descriptor` (no `write` flag) */
    write(buffer: Uint8Array, offset: bigint): bigint {
      const b = this.requireFile('write');
      return BigInt(wasi(() => b.overlay.write(b.rel, Number(offset), buffer)));
    }
    /** `read-directory`: the entries of the merged view, sorted by name, without `.` and `..`. */
    readDirectory(): DirectoryEntryStream {
      const b = this.#b;
      if (b.type !== 'directory') throw 'not-directory' satisfies FsErrorCode;
      const entries = wasi(() => b.overlay.readdir(b.rel));
      return new DirectoryEntryStream(entries.map((e) => ({ type: descriptorType(e.type), name: e.name })));
    }
    createDirectoryAt(path: string): void {
      const rel = this.child(path, false);
      this.requireMutable('create-directory', rel);
      this.change(rel, () => this.#b.overlay.mkdir(rel));
    }
    /** `stat`: type, size in bytes, link count 1, and the modification time for all three timestamps. */
    stat(): Record<string, unknown> {
      return this.statOf(this.#b.rel);
    }
    statAt(flags: PathFlags, path: string): Record<string, unknown> {
      return this.statOf(this.child(path, flags.symlinkFollow === true));
    }
    private statOf(rel: string): Record<string, unknown> {
      const st = this.existing(rel);
      const t = timestamp(st.mtimeMs);
      return {
        type: descriptorType(st.type), linkCount: 1n, size: BigInt(st.size),
        dataAccessTimestamp: t, dataModificationTimestamp: t, statusChangeTimestamp: t,
      };
    }
    /** `link-at`: the overlay has no hard links; POSIX's answer for such a filesystem is EPERM. */
    linkAt(oldFlags: PathFlags, oldPath: string, newDescriptor: Descriptor, newPath: string): void {
      this.child(oldPath, oldFlags.symlinkFollow === true);
      const to = newDescriptor.child(newPath, false);
      newDescriptor.requireMutable('link', to);
      throw 'not-permitted' satisfies FsErrorCode;
    }
    /**
     * `open-at`. `create` makes a regular file (`exclusive`: `exist` when the name is taken, even
     * by a symlink, which is then not followed); `truncate` empties a file; `directory` requires a
     * directory (with `create`, `exclusive` or `truncate`: `invalid`). A final symlink is followed
     * only with `symlink-follow` (else `loop`). The new descriptor inherits this directory's
     * right to change the session; `write` and `read` are as asked.
     *
     * @throws `read-only` for any change on a read-only session; `no-entry`, `not-directory`,
     *   `is-directory` (a directory opened for writing), `exist`, `loop`, `not-permitted` (escapes)
     */
    openAt(pathFlags: PathFlags, path: string, openFlags: OpenFlags, flags: DescriptorFlags): Descriptor {
      const b = this.#b;
      if (openFlags.directory && (openFlags.create || openFlags.exclusive || openFlags.truncate)) {
        throw 'invalid' satisfies FsErrorCode;
      }
      const exclusive = openFlags.create === true && openFlags.exclusive === true;
      const rel = this.child(path, pathFlags.symlinkFollow === true && !exclusive);
      if (flags.write || flags.mutateDirectory || openFlags.create || openFlags.truncate) this.requireMutable('open-write', rel);
      if (openFlags.create) this.change(rel, () => b.overlay.create(rel, exclusive));
      const st = this.existing(rel);
      if (st.type === 'symlink') throw 'loop' satisfies FsErrorCode;
      if ((openFlags.directory || path.endsWith('/')) && st.type !== 'directory') throw 'not-directory' satisfies FsErrorCode;
      if (st.type === 'directory' && (flags.write || openFlags.truncate)) throw 'is-directory' satisfies FsErrorCode;
      if (openFlags.truncate) wasi(() => b.overlay.truncate(rel, 0));
      const type = descriptorType(st.type);
      return new Descriptor({
        ...b, rel, type,
        flags: type === 'directory'
          ? { read: flags.read === true, write: false, mutateDirectory: b.flags.mutateDirectory === true }
          : { read: flags.read === true, write: flags.write === true, mutateDirectory: false },
      });
    }
    /** `readlink-at`: the symlink's target as written. @throws `invalid` when `path` is not a symlink */
    readlinkAt(path: string): string {
      const rel = this.child(path, false);
      if (this.existing(rel).type !== 'symlink') throw 'invalid' satisfies FsErrorCode;
      return wasi(() => this.#b.overlay.readlink(rel));
    }
    /** `remove-directory-at` (rmdir). @throws `not-empty`, `not-directory`, `busy` (the root) */
    removeDirectoryAt(path: string): void {
      const rel = this.child(path, false);
      this.requireMutable('remove-directory', rel);
      this.change(rel, () => this.#b.overlay.rmdir(rel));
    }
    /**
     * `rename-at`: files, symlinks and directories; replaces an existing file, or an empty
     * directory with a directory.
     * @throws `cross-device` between two preopens (two sessions), `busy` for the root, `invalid`
     *   for a directory into itself, `not-empty`, `is-directory`, `not-directory`, `no-entry`
     */
    renameAt(oldPath: string, newDescriptor: Descriptor, newPath: string): void {
      const from = this.child(oldPath, false);
      const to = newDescriptor.child(newPath, false);
      if (newDescriptor.#b.overlay.dir !== this.#b.overlay.dir) throw 'cross-device' satisfies FsErrorCode;
      this.requireMutable('rename', from);
      newDescriptor.requireMutable('rename', to);
      if (from === '' || to === '') throw 'busy' satisfies FsErrorCode;
      this.change(from, () => this.#b.overlay.rename(from, to));
    }
    /** `symlink-at`: `oldPath` is the target as written; one leading out of the root is refused (`not-permitted`, audited). */
    symlinkAt(oldPath: string, newPath: string): void {
      const rel = this.child(newPath, false);
      this.requireMutable('symlink', rel);
      this.change(rel, () => this.#b.overlay.symlink(oldPath, rel), () => this.#b.denied('symlink', oldPath, 'target leaves the session root'));
    }
    /** `unlink-file-at`: a file or symlink. @throws `is-directory` */
    unlinkFileAt(path: string): void {
      const rel = this.child(path, false);
      this.requireMutable('unlink', rel);
      this.change(rel, () => this.#b.overlay.unlink(rel));
    }
    isSameObject(other: Descriptor): boolean {
      return other.#b.overlay.dir === this.#b.overlay.dir && other.#b.rel === this.#b.rel;
    }
    /** `metadata-hash`: see {@link identityHash}. @throws `no-entry` when the entry is gone */
    metadataHash(): MetadataHash {
      this.existing(this.#b.rel);
      return identityHash(this.#b.overlay, this.#b.rel);
    }
    metadataHashAt(flags: PathFlags, path: string): MetadataHash {
      const rel = this.child(path, flags.symlinkFollow === true);
      this.existing(rel);
      return identityHash(this.#b.overlay, rel);
    }
  }

  class DirectoryEntryStream {
    #entries: Array<{ type: DescriptorType; name: string }>;
    constructor(entries: Array<{ type: DescriptorType; name: string }>) {
      this.#entries = entries;
    }
    readDirectoryEntry(): { type: DescriptorType; name: string } | undefined {
      return this.#entries.shift();
    }
  }

  return {
    types: {
      Descriptor,
      DirectoryEntryStream,
      // The code a failed filesystem stream carried (see IoError.code); none for other streams.
      filesystemErrorCode: (err: IoError): FsErrorCode | undefined =>
        err instanceof IoError ? (err.code as FsErrorCode | undefined) : undefined,
    },
    preopens: {
      getDirectories: () =>
        preopens().map(({ overlay, guestPath }) => [
          new Descriptor({
            overlay, rel: '', type: 'directory', denied,
            flags: { read: true, write: false, mutateDirectory: overlay.mode === 'rw' },
          }),
          guestPath,
        ]),
    },
  };
}

/**
 * The `metadata-hash` of an entry: 128 bits of sha256 over the session and the entry's path in
 * it. An overlay entry's identity is its path (copy-up and rename change the host inode), as
 * Wasmtime hashes (device, inode): stable while the entry stays where it is, distinct for
 * distinct entries, and revealing neither. The preview1 adapter uses its `lower` half as `st_ino`.
 */
function identityHash(overlay: Overlay, rel: string): MetadataHash {
  const digest = createHash('sha256').update(`${overlay.dir}\0${rel}`).digest();
  return { upper: digest.readBigUInt64BE(0), lower: digest.readBigUInt64BE(8) };
}
