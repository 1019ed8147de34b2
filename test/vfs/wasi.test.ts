// The kernel's wasi:filesystem on real sessions, through the real kernel (runTool: engine, mesh,
// worker, overlay): a C program using stdio/POSIX through the preview1 adapter
// (guests/fsconf.c, prebuilt by `npm run build:c`), and a JavaScript guest calling
// `wasi:filesystem/types` directly. Each asserts every result and error code, then the session's
// diff and, after commit, the workspace on the host.
import { beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { runTool, type ToolRunOptions, type ToolRunResult } from '../../kernel/cli/tool-run.js';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import type { FileChange } from '../../kernel/vfs/index.js';
import { buildFsjs } from './guests/fsjs.js';
import { tempDir } from '../support/fixtures.js';

const FSCONF = join(PACKAGE_ROOT, 'test/vfs/guests/fsconf.wasm');

/** Run a component once; stdout and stderr are collected as text. */
async function run(component: string, overrides: Partial<ToolRunOptions>) {
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  const result = await runTool({
    component, args: [], dirs: [], dirsRw: [], commit: false, env: [], timeoutMs: 60_000, maxMemoryMb: 128,
    dataDir: tempDir('data'), stdin: () => new Uint8Array(),
    stdout: (b) => stdout.push(Buffer.from(b)), stderr: (b) => stderr.push(Buffer.from(b)),
    ...overrides,
  });
  return { ...result, stdout: Buffer.concat(stdout).toString(), stderr: Buffer.concat(stderr).toString() };
}

/** Write `files` under `dir` (path → content). */
function populate(dir: string, files: Record<string, string>): void {
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
}

/**
 * The workspace both guests work on, beside a directory `outside` that must stay unreachable:
 * files to read, overwrite, truncate, rename and delete, a 0755 script, an empty directory, and
 * planted symlinks (out of the root, a loop, a dangling one inside).
 */
function prepare(): { ws: string; outside: string } {
  const root = tempDir('fsconf');
  const ws = join(root, 'ws');
  const outside = join(root, 'outside');
  populate(outside, { 'secret.txt': 'TOP SECRET' });
  populate(ws, {
    'keep.txt': 'keep\n', 'gone.txt': 'gone\n', 'old.txt': 'old\n', 'target.txt': 'target\n',
    'trunc.txt': '0123456789', 'trunc2.txt': '0123456789', 'run.sh': '#!/bin/sh\necho hi\n',
    'dir/a.txt': 'a', 'dir/sub/b.txt': 'b', 'full/x.txt': 'x',
  });
  chmodSync(join(ws, 'run.sh'), 0o755);
  mkdirSync(join(ws, 'empty-in-base'));
  symlinkSync(join(outside, 'secret.txt'), join(ws, 'escape'));
  symlinkSync('loop2', join(ws, 'loop1'));
  symlinkSync('loop1', join(ws, 'loop2'));
  symlinkSync('nowhere.txt', join(ws, 'dangling'));
  return { ws, outside };
}

/** Every file under `dir` (symlinks as `-> target`), for "nothing changed" checks. */
function snapshot(dir: string, rel = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(join(dir, rel)).sort()) {
    const path = rel ? `${rel}/${name}` : name;
    const st = lstatSync(join(dir, path));
    if (st.isDirectory()) Object.assign(out, { [`${path}/`]: '' }, snapshot(dir, path));
    else out[path] = st.isSymbolicLink() ? `-> ${readlinkSync(join(dir, path))}` : readFileSync(join(dir, path), 'utf8');
  }
  return out;
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** fsconf.c's large file: xorshift32 from 0x9e3779b9, each state as 4 little-endian bytes. */
function largeContent(bytes: number): Buffer {
  const buf = Buffer.alloc(bytes);
  let x = 0x9e3779b9;
  for (let i = 0; i < bytes; i += 4) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    buf.writeUInt32LE(x, i);
  }
  return buf;
}

/** The paths a diff says left the workspace (deleted, or the old side of a rename) and arrived. */
function movement(changes: FileChange[]) {
  const from = (c: FileChange) => (c as FileChange & { from?: string }).from;
  return {
    gone: changes.flatMap((c) => (c.kind === 'deleted' ? [c.path] : from(c) ? [from(c)!] : [])).sort(),
    arrived: changes.filter((c) => c.kind === 'added' || from(c)).map((c) => c.path).sort(),
    modified: changes.filter((c) => c.kind === 'modified').map((c) => c.path).sort(),
  };
}

// What each fsconf.c check must report: '' for success, else the errno it must fail with.
const C_EXPECTED: Record<string, string> = {
  // files and stdio
  fopen_write: '', fopen_read: '', fseek_ftell_overwrite: '', fopen_append: '', o_append: '',
  o_creat_excl: '', o_creat_excl_exists: 'EEXIST', o_creat_excl_symlink: 'EEXIST', o_trunc: '', ftruncate: '',
  open_missing: 'ENOENT', create_in_missing_dir: 'ENOENT', open_through_file: 'ENOTDIR', open_dir_for_write: 'EISDIR',
  open_file_as_dir: 'ENOTDIR', write_on_readonly_fd: 'EBADF', ftruncate_on_readonly_fd: 'EBADF',
  read_on_writeonly_fd: 'EBADF', fds_left_file_alone: '',
  // the preview1 adapter answers this one itself (as Wasmtime's wasi:filesystem would: bad-descriptor)
  read_on_directory_fd: 'EBADF', binary_with_nul_bytes: '', append_to_base_script: '',
  // stat
  stat_file: '', stat_dir: '', stat_missing: 'ENOENT', stat_through_file: 'ENOTDIR', fstat: '',
  inode_stable: '', inode_distinct: '',
  // directories
  mkdir: '', mkdir_nested: '', mkdir_exists: 'EEXIST', mkdir_missing_parent: 'ENOENT', mkdir_under_file: 'ENOTDIR',
  rmdir_empty: '', rmdir_not_empty: 'ENOTEMPTY', rmdir_file: 'ENOTDIR', rmdir_missing: 'ENOENT',
  readdir: '', readdir_empty_dir: '', readdir_new_empty_dir: '', opendir_file: 'ENOTDIR', opendir_missing: 'ENOENT',
  dirfd_at_calls: '',
  // rename and unlink
  rename_file_over_existing: '', rename_dir: '', rename_dir_over_empty_dir: '', rename_dir_over_nonempty: 'ENOTEMPTY',
  rename_file_over_dir: 'EISDIR', rename_dir_over_file: 'ENOTDIR', rename_missing: 'ENOENT', rename_into_itself: 'EINVAL',
  rename_across_mounts: 'EXDEV', rename_left_sources: '', unlink: '', unlink_dir: 'EISDIR', unlink_missing: 'ENOENT',
  // symlinks, inside and out
  symlink: '', readlink: '', read_through_symlink: '', lstat_symlink: '', symlink_relative_up: '', symlink_to_dir: '',
  symlink_exists: 'EEXIST', open_nofollow_symlink: 'ELOOP', readlink_not_symlink: 'EINVAL', symlink_loop: 'ELOOP',
  hard_link_unsupported: 'EPERM', symlink_absolute_outside: 'EPERM', symlink_dotdot_outside: 'EPERM',
  open_planted_escape: 'EPERM', stat_planted_escape: 'EPERM', lstat_planted_escape: '', open_dotdot: 'EPERM',
  open_nested_dotdot: 'EPERM',
  // the read-only mount
  ro_read: '', ro_readdir: '', ro_open_write: 'EROFS', ro_fopen_write: 'EROFS', ro_create: 'EROFS', ro_trunc: 'EROFS',
  ro_mkdir: 'EROFS', ro_rmdir: 'EROFS', ro_unlink: 'EROFS', ro_rename: 'EROFS', ro_symlink: 'EROFS',
  ro_rename_into: 'EXDEV', ro_unchanged: '',
  // 8 MiB, streamed
  large_write: '', large_size: '', large_read: '', large_seek_read: '',
};

describe('wasi:filesystem from C (stdio and POSIX through the preview1 adapter)', () => {
  let ws: string;
  let outside: string;
  let ro: string;
  let other: string;
  let result: ToolRunResult & { stdout: string; stderr: string };
  let roBefore: Record<string, string>;
  let otherBefore: Record<string, string>;

  beforeAll(async () => {
    ({ ws, outside } = prepare());
    ro = tempDir('ro');
    populate(ro, { 'r.txt': 'read only\n', 'sub/s.txt': 's' });
    other = tempDir('other');
    populate(other, { 'o.txt': 'other\n' });
    roBefore = snapshot(ro);
    otherBefore = snapshot(other);
    result = await run(FSCONF, { dirs: [`${ro}::/ro`], dirsRw: [`${ws}::/`, `${other}::/other`], commit: true });
  });

  it('every check passes with the errno POSIX gives, on the read-write, the read-only and across mounts', () => {
    expect(result.stderr).not.toMatch(/TOP SECRET/);
    expect([result.exitCode, result.reason]).toEqual([0, undefined]);
    const report = JSON.parse(result.stdout) as { checks: Record<string, { ok: boolean; errno: string; detail?: string }> };
    const observed = Object.fromEntries(Object.entries(report.checks).map(([name, c]) => [name, c.ok ? c.errno : `FAILED (errno ${c.errno || 'none'}${c.detail !== undefined ? `, ${c.detail}` : ''})`]));
    expect(observed).toEqual(C_EXPECTED);
    expect(report.checks['readdir']!.detail).toBe('a.txt/f,sub/d');
    expect(result.stdout).not.toContain('TOP SECRET');
  });

  it('each escape and each change tried on the read-only mount is denied with an audit notice; a symlink loop is no escape', () => {
    const notices: Record<string, number> = {};
    for (const line of result.stderr.split('\n').filter(Boolean)) notices[line] = (notices[line] ?? 0) + 1;
    expect(notices).toEqual({
      // symlink_absolute_outside, symlink_dotdot_outside
      'warden: denied: target leaves the session root': 2,
      // open_planted_escape, stat_planted_escape, open_dotdot, open_nested_dotdot
      'warden: denied: path leaves the session root': 4,
      // ro_open_write, ro_fopen_write, ro_create, ro_trunc, ro_mkdir, ro_rmdir, ro_unlink, ro_rename, ro_symlink
      'warden: denied: session granted read-only': 9,
    });
  });

  it('the session diff lists the files written, renamed, replaced and deleted', () => {
    const mount = result.changes.find((c) => c.mount === ws)!;
    expect(mount.committed).toBe(true);
    expect(movement(mount.changes)).toEqual({
      gone: ['dir/a.txt', 'dir/sub/b.txt', 'gone.txt', 'old.txt'],
      arrived: ['bin.dat', 'excl.txt', 'large.bin', 'link', 'moved/a.txt', 'moved/sub/b.txt', 'moved/sub/made/g.txt', 'moved/up', 'new.txt', 'sublink'],
      modified: ['run.sh', 'target.txt', 'trunc.txt', 'trunc2.txt'],
    });
    expect(mount.changes.find((c) => c.path === 'large.bin')?.unified).toBeUndefined();
    expect(result.changes.find((c) => c.mount === other)).toEqual({ mount: other, committed: true, changes: [] });
  });

  it('after commit the workspace holds contents, the 0755 mode of a copied-up script, empty directories, symlinks inside, and the 8 MiB file intact', () => {
    const read = (p: string) => readFileSync(join(ws, p), 'utf8');
    expect([read('new.txt'), read('excl.txt'), read('trunc.txt'), read('trunc2.txt'), read('target.txt'), read('keep.txt')])
      .toEqual(['heLLo\nmore\nxy', 'e', 't', '012', 'old\n', 'keep\n']);
    expect(read('run.sh')).toBe('#!/bin/sh\necho hi\necho more\n');
    expect(statSync(join(ws, 'run.sh')).mode & 0o777).toBe(0o755);
    expect([...readFileSync(join(ws, 'bin.dat'))]).toEqual(Array.from({ length: 1024 }, (_, i) => (i * 7) & 0xff));
    for (const dir of ['empty', 'outer/inner', 'e2', 'empty-in-base']) {
      expect({ dir, entries: readdirSync(join(ws, dir)) }).toEqual({ dir, entries: [] });
    }
    expect(readdirSync(join(ws, 'outer'))).toEqual(['inner']);
    expect(['moved/a.txt', 'moved/sub/b.txt', 'moved/sub/made/g.txt'].map(read)).toEqual(['a', 'b', 'f']);
    expect(readdirSync(join(ws, 'moved/sub/made'))).toEqual(['g.txt']);
    for (const [link, target] of [['link', 'keep.txt'], ['moved/up', '../keep.txt'], ['sublink', 'moved/sub'], ['dangling', 'nowhere.txt']]) {
      expect({ link, isLink: lstatSync(join(ws, link!)).isSymbolicLink(), target: readlinkSync(join(ws, link!)) }).toEqual({ link, isLink: true, target });
    }
    expect(readlinkSync(join(ws, 'escape'))).toBe(join(outside, 'secret.txt'));
    for (const absent of ['old.txt', 'gone.txt', 'dir', 'e1', 'tmpdir', 'nowhere.txt', 'abs', 'hard', 'moved/out', 'made']) {
      expect({ absent, exists: existsSync(join(ws, absent)) }).toEqual({ absent, exists: false });
    }
    const large = readFileSync(join(ws, 'large.bin'));
    expect(large.length).toBe(8 << 20);
    expect(sha256(large)).toBe(sha256(largeContent(8 << 20)));
    expect(snapshot(outside)).toEqual({ 'secret.txt': 'TOP SECRET' });
    expect(snapshot(ro)).toEqual(roBefore);
    expect(snapshot(other)).toEqual(otherBefore);
    expect(readdirSync(join(ws, '..'))).toEqual(['outside', 'ws']);
  });
});


const ok = (value: unknown = null) => ({ ok: true, value });
const fails = (error: string) => ({ ok: false, error });

const JS_RW_EXPECTED = {
  create_exclusive: ok('regular-file'),
  create_exclusive_exists: fails('exist'),
  create_exclusive_on_dangling_symlink: fails('exist'),
  write_via_stream: ok('hello'),
  read_via_stream_at_offset: ok('llo'),
  read_via_stream_closed_at_end: ok('hello|closed'),
  read_zero_bytes_keeps_stream_open: ok([0, 'hello']),
  append_via_stream: ok('hello world'),
  // write 'J' at 0; read 100 (end), 3 (not end), exactly 11 (end), past the end (empty, end)
  positional_write_and_read: ok([1, 'Jello world', true, 'Jel', false, 11, true, 0, true]),
  truncate_flag: ok(0),
  set_size: ok([3, '\0\0\0']),
  open_missing: fails('no-entry'),
  open_directory_flag_on_file: fails('not-directory'),
  open_directory_with_create: fails('invalid'),
  open_directory_with_create_made_nothing: fails('no-entry'),
  open_dir_for_write: fails('is-directory'),
  open_through_file: fails('not-directory'),
  write_without_write_flag: fails('bad-descriptor'),
  write_stream_without_write_flag: fails('bad-descriptor'),
  append_stream_without_write_flag: fails('bad-descriptor'),
  set_size_without_write_flag: fails('bad-descriptor'),
  read_without_read_flag: fails('bad-descriptor'),
  read_stream_on_directory: fails('is-directory'),
  read_on_directory: fails('is-directory'),
  stat_file: ok(['regular-file', 5, 1, true]),
  stat_descriptor: ok(['regular-file', 5]),
  stat_dir: ok('directory'),
  stat_missing: fails('no-entry'),
  stat_escape_nofollow: ok('symbolic-link'),
  stat_escape_follow: fails('not-permitted'),
  stat_loop: fails('loop'),
  metadata_hash_same_object: ok(true),
  metadata_hash_differs: ok(true),
  metadata_hash_missing: fails('no-entry'),
  is_same_object: ok([true, false]),
  get_flags_root: ok('mutateDirectory,read'),
  get_flags_file: ok('read,write'),
  read_directory: ok('a.txt:regular-file,sub:directory'),
  read_directory_empty: ok(''),
  read_directory_on_file: fails('not-directory'),
  create_directory_at: ok('directory'),
  create_directory_at_exists: fails('exist'),
  create_directory_at_missing_parent: fails('no-entry'),
  create_directory_at_under_file: fails('not-directory'),
  remove_directory_at: fails('no-entry'),
  remove_directory_at_not_empty: fails('not-empty'),
  remove_directory_at_file: fails('not-directory'),
  remove_directory_at_missing: fails('no-entry'),
  symlink_at: ok('keep.txt'),
  read_through_symlink: ok('keep\n'),
  stat_symlink: ok(['symbolic-link', 'regular-file']),
  open_symlink_nofollow: fails('loop'),
  symlink_at_exists: fails('exist'),
  symlink_at_absolute: fails('not-permitted'),
  symlink_at_dotdot: fails('not-permitted'),
  readlink_at_not_symlink: fails('invalid'),
  readlink_at_missing: fails('no-entry'),
  open_dotdot: fails('not-permitted'),
  open_absolute: fails('not-permitted'),
  open_planted_escape: fails('not-permitted'),
  link_at: fails('not-permitted'),
  unlink_file_at: fails('no-entry'),
  unlink_file_at_directory: fails('is-directory'),
  unlink_file_at_missing: fails('no-entry'),
  rename_at_over_existing: ok('old\n'),
  rename_at_directory: ok('a.txt:regular-file,sub:directory'),
  rename_at_over_nonempty_dir: fails('not-empty'),
  rename_at_file_over_dir: fails('is-directory'),
  rename_at_dir_over_file: fails('not-directory'),
  rename_at_missing: fails('no-entry'),
  rename_at_into_itself: fails('invalid'),
  rename_at_root: fails('busy'),
  rename_at_across_preopens: fails('cross-device'),
  subdirectory_descriptor: ok(['mutateDirectory,read', 'f']),
  filesystem_error_code: ok('last-operation-failed:no-entry'),
  large_stream: ok([2 << 20, true, 2 << 20]),
  read_large_file_in_one_call: ok([2 << 20, true, (31 * 7) & 255]),
};

const JS_RO_EXPECTED = {
  ro_read: ok('keep\n'),
  ro_read_directory: ok('a.txt:regular-file,sub:directory'),
  ro_get_flags: ok('read'),
  ro_create: fails('read-only'),
  ro_open_write: fails('read-only'),
  ro_truncate: fails('read-only'),
  ro_create_directory_at: fails('read-only'),
  ro_remove_directory_at: fails('read-only'),
  ro_unlink_file_at: fails('read-only'),
  ro_rename_at: fails('read-only'),
  ro_symlink_at: fails('read-only'),
  ro_set_size: fails('bad-descriptor'),
  ro_write_stream: fails('bad-descriptor'),
  ro_subdirectory_cannot_mutate: fails('read-only'),
  ro_mutate_flag_refused: fails('read-only'),
};

describe('wasi:filesystem/types called directly (JavaScript guest)', () => {
  let wasm: string;
  beforeAll(async () => {
    wasm = await buildFsjs();
  });

  it('on a read-write session: open-at flags, streams, stat, directories, symlinks, rename, unlink, with the exact WASI error codes; then the diff and the committed workspace', async () => {
    const { ws, outside } = prepare();
    const other = tempDir('other');
    populate(other, { 'o.txt': 'other\n' });
    const result = await run(wasm, { args: ['{"mode": "rw"}'], dirsRw: [`${ws}::/`, `${other}::/other`], commit: true });
    expect([result.exitCode, result.reason]).toEqual([0, undefined]);
    expect(JSON.parse(result.output!)).toEqual(JS_RW_EXPECTED);

    const mount = result.changes.find((c) => c.mount === ws)!;
    expect(movement(mount.changes)).toEqual({
      gone: ['dir/a.txt', 'dir/sub/b.txt', 'gone.txt', 'old.txt'],
      arrived: ['big.bin', 'c.txt', 'inner-top/f.txt', 'ln', 'moved/a.txt', 'moved/sub/b.txt'],
      modified: ['target.txt'],
    });
    expect(readFileSync(join(ws, 'c.txt'))).toEqual(Buffer.alloc(3));
    expect(readFileSync(join(ws, 'target.txt'), 'utf8')).toBe('old\n');
    expect(readFileSync(join(ws, 'inner-top/f.txt'), 'utf8')).toBe('f');
    expect(readlinkSync(join(ws, 'ln'))).toBe('keep.txt');
    expect(readdirSync(join(ws, 'newdir'))).toEqual([]);
    const big = readFileSync(join(ws, 'big.bin'));
    const expected = Buffer.concat(Array.from({ length: 32 }, (_, i) => Buffer.alloc(65536, (i * 7) & 255)));
    expect(sha256(big)).toBe(sha256(expected));
    for (const absent of ['gone.txt', 'old.txt', 'dir', 'doomed.txt', 'newdir-x', 'nowhere.txt', 'abs', 'up', 'hard', 'tmpdir']) {
      expect({ absent, exists: existsSync(join(ws, absent)) }).toEqual({ absent, exists: false });
    }
    expect(readFileSync(join(ws, 'run.sh'), 'utf8')).toBe('#!/bin/sh\necho hi\n');
    expect(snapshot(outside)).toEqual({ 'secret.txt': 'TOP SECRET' });
    expect(snapshot(other)).toEqual({ 'o.txt': 'other\n' });
  });

  it('on a read-only session: reads work, every change fails with read-only (or bad-descriptor on a descriptor opened without write), nothing changes', async () => {
    const { ws } = prepare();
    const before = snapshot(ws);
    const result = await run(wasm, { args: ['{"mode": "ro"}'], dirs: [`${ws}::/`] });
    expect([result.exitCode, result.reason]).toEqual([0, undefined]);
    expect(JSON.parse(result.output!)).toEqual(JS_RO_EXPECTED);
    expect(snapshot(ws)).toEqual(before);
  });
});
