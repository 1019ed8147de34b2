// File access for tools through the kernel's wasi:filesystem: the session is the preopened root.
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import type { Descriptor, DescriptorType } from 'wasi:filesystem/types@0.2.12';
import { decodeUtf8, encodeUtf8 } from './text.js';

/** A tool failure, as the WIT `tool-error` variant. */
export function failed(message: string): { tag: 'failed'; val: string } {
  return { tag: 'failed', val: message };
}
export function invalid(message: string): { tag: 'invalid-input'; val: string } {
  return { tag: 'invalid-input', val: message };
}

// QuickJS guests pass u64 values as plain numbers.
const u64 = (n: number): bigint => n as unknown as bigint;

function root(): Descriptor {
  const dirs = getDirectories();
  if (dirs.length === 0) throw failed('no session is mounted: this tool needs a filesystem grant');
  return dirs[0]![0];
}

function explain(path: string, err: unknown): { tag: 'failed'; val: string } {
  const code = typeof err === 'string' ? err : String((err as { payload?: unknown })?.payload ?? err);
  const meaning: Record<string, string> = {
    'no-entry': 'no such file or directory',
    'read-only': 'the session is read-only for this tool',
    'not-permitted': 'outside the session root',
    'is-directory': 'is a directory',
    'not-directory': 'not a directory',
    exist: 'already exists',
    access: 'access denied',
  };
  return failed(`${path}: ${meaning[code] ?? code}`);
}

/** Run `fn`, turning WASI error codes into a tool error naming `path`. */
export function at<T>(path: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err && typeof err === 'object' && 'tag' in err) throw err;
    throw explain(path, err);
  }
}

/** Normalise a user path relative to the session root ('' is the root). */
export function clean(path: string | undefined): string {
  const p = (path ?? '').replace(/^\.\/+/, '').replace(/\/+$/, '');
  return p === '.' ? '' : p;
}

/** Read a whole file as bytes. */
export function readBytes(path: string): Uint8Array {
  return at(path, () => {
    const fd = root().openAt({ symlinkFollow: true }, path, {}, { read: true });
    const size = Number(fd.stat().size);
    const [bytes] = fd.read(u64(size + 1), u64(0));
    return bytes;
  });
}

/** Read a whole file as UTF-8 text. */
export function readText(path: string): string {
  return decodeUtf8(readBytes(path));
}

/** Replace the file's content (creating it and its parent directories). */
export function writeText(path: string, content: string): number {
  const parts = path.split('/');
  for (let i = 1; i < parts.length; i++) {
    const dir = parts.slice(0, i).join('/');
    at(dir, () => {
      try {
        root().createDirectoryAt(dir);
      } catch (err) {
        if (err !== 'exist' && (err as { payload?: unknown })?.payload !== 'exist') throw err;
      }
    });
  }
  return at(path, () => {
    const fd = root().openAt({ symlinkFollow: true }, path, { create: true, truncate: true }, { write: true });
    const bytes = encodeUtf8(content);
    let written = 0;
    while (written < bytes.length) written += Number(fd.write(bytes.subarray(written), u64(written)));
    return bytes.length;
  });
}

/** One directory entry. */
export interface Entry {
  name: string;
  type: DescriptorType;
}

/** Entries of a directory, sorted by name. */
export function listDir(path: string): Entry[] {
  return at(path || '.', () => {
    const r = root();
    const fd = path === '' ? r : r.openAt({ symlinkFollow: true }, path, { directory: true }, { read: true });
    const stream = fd.readDirectory();
    const out: Entry[] = [];
    for (let e = stream.readDirectoryEntry(); e; e = stream.readDirectoryEntry()) out.push({ name: e.name, type: e.type });
    return out.sort((a, b) => (a.name < b.name ? -1 : 1));
  });
}

/** Type of the entry at `path` (following symlinks), or null when absent. */
export function typeOf(path: string): DescriptorType | null {
  if (path === '') return 'directory';
  try {
    return root().statAt({ symlinkFollow: true }, path).type;
  } catch (err) {
    if (err === 'no-entry' || (err as { payload?: unknown })?.payload === 'no-entry') return null;
    throw explain(path, err);
  }
}

/** Directories never descended into by recursive listings and searches. */
export const SKIPPED_DIRS = new Set(['.git', 'node_modules']);

/** Walk files under `path` depth-first, sorted; stops after `limit` files. */
export function walkFiles(path: string, limit: number, visit: (file: string) => void): boolean {
  let count = 0;
  const walk = (dir: string): boolean => {
    for (const entry of listDir(dir)) {
      const child = dir === '' ? entry.name : `${dir}/${entry.name}`;
      if (entry.type === 'directory') {
        if (SKIPPED_DIRS.has(entry.name)) continue;
        if (!walk(child)) return false;
      } else if (entry.type === 'regular-file') {
        if (++count > limit) return false;
        visit(child);
      }
    }
    return true;
  };
  return walk(path);
}
