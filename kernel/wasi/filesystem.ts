/**
 * The kernel's `wasi:filesystem` (types + preopens, WASI 0.2) over a session {@link Overlay}.
 * A guest sees only the preopened session root; paths never leave it (kernel/vfs/paths.ts).
 */
import { isWardenError } from '../errors.js';
import type { Overlay } from '../vfs/index.js';
import { InputStream, OutputStream } from './io.js';

/** WASI `error-code` values this implementation produces. */
export type FsErrorCode =
  | 'access' | 'bad-descriptor' | 'busy' | 'exist' | 'invalid' | 'io' | 'is-directory' | 'loop'
  | 'no-entry' | 'not-directory' | 'not-empty' | 'not-permitted' | 'read-only' | 'unsupported';

const ERRNO: Record<string, FsErrorCode> = {
  ENOENT: 'no-entry', EEXIST: 'exist', ENOTDIR: 'not-directory', EISDIR: 'is-directory', ENOTEMPTY: 'not-empty',
  EROFS: 'read-only', EACCES: 'access', EPERM: 'not-permitted', ELOOP: 'loop', EXDEV: 'not-permitted',
  EINVAL: 'invalid', EBUSY: 'busy',
};

/** Hook called on every refused access (for audit): operation, path, reason. */
export type DenialHook = (operation: string, path: string, reason: string) => void;

/** Run `fn`, turning kernel and Node errors into WASI error codes (thrown, as jco expects). */
function wasi<T>(fn: () => T, onDenied?: () => void): T {
  try {
    return fn();
  } catch (err) {
    if (isWardenError(err)) {
      if (err.code === 'E_PATH_ESCAPE') {
        onDenied?.();
        throw 'not-permitted' satisfies FsErrorCode;
      }
      const errno = err.detail?.['errno'];
      if (typeof errno === 'string') {
        if (errno === 'EROFS') onDenied?.();
        throw ERRNO[errno] ?? 'io';
      }
    }
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    if (typeof code === 'string' && ERRNO[code]) throw ERRNO[code];
    if (typeof err === 'string') throw err;
    throw 'io' satisfies FsErrorCode;
  }
}

type DescriptorType = 'directory' | 'regular-file' | 'symbolic-link' | 'unknown';

interface Timestamp {
  seconds: bigint;
  nanoseconds: number;
}

function timestamp(ms: number): Timestamp {
  return { seconds: BigInt(Math.floor(ms / 1000)), nanoseconds: Math.floor((ms % 1000) * 1e6) };
}

function descriptorType(type: 'file' | 'directory' | 'symlink'): DescriptorType {
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

/** Where a {@link Descriptor} points and what it may do. */
interface Binding {
  overlay: Overlay;
  rel: string;
  type: DescriptorType;
  flags: DescriptorFlags;
  denied: DenialHook;
}

/**
 * Builds the `wasi:filesystem/types` and `wasi:filesystem/preopens` import objects.
 *
 * @param preopens called at each `get-directories`: the overlays to expose with their guest paths
 *   (the current call's session, or `--dir` mounts); an empty list when no filesystem is granted.
 * @param denied audit hook for refused accesses
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

    private child(path: string, follow: boolean): string {
      const b = this.#b;
      if (b.type !== 'directory') throw 'not-directory' satisfies FsErrorCode;
      return wasi(
        () => b.overlay.resolve(b.rel, path, follow),
        () => b.denied('resolve', path, 'path leaves the session root'),
      );
    }

    private requireWrite(op: string, path: string): void {
      const b = this.#b;
      const ok = b.type === 'directory' ? b.flags.mutateDirectory : b.flags.write;
      if (!ok || b.overlay.mode !== 'rw') {
        b.denied(op, path, 'session granted read-only');
        throw 'read-only' satisfies FsErrorCode;
      }
    }

    readViaStream(offset: bigint): InputStream {
      const b = this.#b;
      if (!b.flags.read) throw 'bad-descriptor' satisfies FsErrorCode;
      let pos = Number(offset);
      return new InputStream((max) => {
        const chunk = wasi(() => b.overlay.read(b.rel, pos, Math.min(max, 1 << 20)));
        if (chunk.length === 0) return null;
        pos += chunk.length;
        return chunk;
      });
    }
    writeViaStream(offset: bigint): OutputStream {
      this.requireWrite('write', this.#b.rel);
      const b = this.#b;
      let pos = Number(offset);
      return new OutputStream((bytes) => {
        pos += wasi(() => b.overlay.write(b.rel, pos, bytes));
      });
    }
    appendViaStream(): OutputStream {
      this.requireWrite('append', this.#b.rel);
      const b = this.#b;
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
    setSize(size: bigint): void {
      this.requireWrite('truncate', this.#b.rel);
      wasi(() => this.#b.overlay.truncate(this.#b.rel, Number(size)));
    }
    setTimes(): void {}
    setTimesAt(): void {}
    read(length: bigint, offset: bigint): [Uint8Array, boolean] {
      const b = this.#b;
      if (!b.flags.read) throw 'bad-descriptor' satisfies FsErrorCode;
      if (b.type === 'directory') throw 'is-directory' satisfies FsErrorCode;
      const chunk = wasi(() => b.overlay.read(b.rel, Number(offset), Number(length)));
      return [chunk, chunk.length < Number(length)];
    }
    write(buffer: Uint8Array, offset: bigint): bigint {
      this.requireWrite('write', this.#b.rel);
      return BigInt(wasi(() => this.#b.overlay.write(this.#b.rel, Number(offset), buffer)));
    }
    readDirectory(): DirectoryEntryStream {
      const b = this.#b;
      if (b.type !== 'directory') throw 'not-directory' satisfies FsErrorCode;
      const entries = wasi(() => b.overlay.readdir(b.rel));
      return new DirectoryEntryStream(entries.map((e) => ({ type: descriptorType(e.type), name: e.name })));
    }
    createDirectoryAt(path: string): void {
      const rel = this.child(path, false);
      this.requireWrite('create-directory', rel);
      wasi(() => this.#b.overlay.mkdir(rel));
    }
    stat(): Record<string, unknown> {
      return this.statOf(this.#b.rel);
    }
    statAt(flags: PathFlags, path: string): Record<string, unknown> {
      return this.statOf(this.child(path, flags.symlinkFollow ?? false));
    }
    private statOf(rel: string): Record<string, unknown> {
      const st = wasi(() => this.#b.overlay.stat(rel));
      if (!st) throw 'no-entry' satisfies FsErrorCode;
      const t = timestamp(st.mtimeMs);
      return {
        type: descriptorType(st.type), linkCount: 1n, size: BigInt(st.size),
        dataAccessTimestamp: t, dataModificationTimestamp: t, statusChangeTimestamp: t,
      };
    }
    linkAt(): void {
      throw 'not-permitted' satisfies FsErrorCode;
    }
    openAt(pathFlags: PathFlags, path: string, openFlags: OpenFlags, flags: DescriptorFlags): Descriptor {
      const b = this.#b;
      const rel = this.child(path, pathFlags.symlinkFollow ?? true);
      const wantsWrite = flags.write || flags.mutateDirectory || openFlags.create || openFlags.truncate;
      if (wantsWrite && (b.overlay.mode !== 'rw' || !b.flags.mutateDirectory)) {
        b.denied('open-write', rel, 'session granted read-only');
        throw 'read-only' satisfies FsErrorCode;
      }
      if (openFlags.create) wasi(() => b.overlay.create(rel, openFlags.exclusive ?? false));
      const st = wasi(() => b.overlay.stat(rel));
      if (!st) throw 'no-entry' satisfies FsErrorCode;
      if (st.type === 'symlink') throw 'loop' satisfies FsErrorCode;
      if (openFlags.directory && st.type !== 'directory') throw 'not-directory' satisfies FsErrorCode;
      if (st.type === 'directory' && flags.write) throw 'is-directory' satisfies FsErrorCode;
      if (openFlags.truncate && st.type === 'file') wasi(() => b.overlay.truncate(rel, 0));
      const inherited: DescriptorFlags = {
        read: flags.read ?? false,
        write: (flags.write ?? false) && b.overlay.mode === 'rw',
        mutateDirectory: (flags.mutateDirectory ?? false) && b.overlay.mode === 'rw',
      };
      return new Descriptor({ ...b, rel, type: descriptorType(st.type), flags: inherited });
    }
    readlinkAt(path: string): string {
      const rel = this.child(path, false);
      return wasi(() => this.#b.overlay.readlink(rel));
    }
    removeDirectoryAt(path: string): void {
      const rel = this.child(path, false);
      this.requireWrite('remove-directory', rel);
      wasi(() => this.#b.overlay.rmdir(rel));
    }
    renameAt(oldPath: string, newDescriptor: Descriptor, newPath: string): void {
      const from = this.child(oldPath, false);
      const to = newDescriptor.child(newPath, false);
      this.requireWrite('rename', from);
      newDescriptor.requireWrite('rename', to);
      wasi(() => this.#b.overlay.rename(from, to));
    }
    symlinkAt(oldPath: string, newPath: string): void {
      const rel = this.child(newPath, false);
      this.requireWrite('symlink', rel);
      wasi(() => this.#b.overlay.symlink(oldPath, rel), () => this.#b.denied('symlink', oldPath, 'target leaves the session root'));
    }
    unlinkFileAt(path: string): void {
      const rel = this.child(path, false);
      this.requireWrite('unlink', rel);
      wasi(() => this.#b.overlay.unlink(rel));
    }
    isSameObject(other: Descriptor): boolean {
      return other.#b.overlay === this.#b.overlay && other.#b.rel === this.#b.rel;
    }
    metadataHash(): { upper: bigint; lower: bigint } {
      return hashOf(this.#b.overlay.dir, this.#b.rel);
    }
    metadataHashAt(flags: PathFlags, path: string): { upper: bigint; lower: bigint } {
      return hashOf(this.#b.overlay.dir, this.child(path, flags.symlinkFollow ?? false));
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
      filesystemErrorCode: () => undefined,
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

function hashOf(dir: string, rel: string): { upper: bigint; lower: bigint } {
  let h1 = 0xcbf29ce484222325n;
  for (const ch of `${dir}\0${rel}`) h1 = ((h1 ^ BigInt(ch.codePointAt(0)!)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return { upper: h1, lower: BigInt(rel.length) };
}
