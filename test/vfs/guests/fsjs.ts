/**
 * A JavaScript test guest (componentize-qjs) that calls `wasi:filesystem/types` directly, for
 * test/vfs/wasi.test.ts. Its tool input is `{"mode": "rw" | "ro"}`:
 *
 * - `rw` (preopens `/`, a read-write session on the workspace of `prepare()` in the test, and
 *   `/other`, a second session): `open-at` flags, read/write/append streams, positional
 *   read/write, `set-size`, `stat`/`stat-at`, `metadata-hash`, `is-same-object`, `get-flags`,
 *   `read-directory`, `create-directory-at`, `remove-directory-at`, `symlink-at`/`readlink-at`,
 *   `link-at`, `unlink-file-at`, `rename-at` (also across preopens), a subdirectory descriptor,
 *   `filesystem-error-code` on a failed stream, and 2 MiB through streams;
 * - `ro` (preopen `/`, a read-only session): reads, and every kind of change.
 *
 * It returns one JSON object: check name → `{ok: true, value}` or `{ok: false, error}` (the WASI
 * `error-code`, or a stream error's tag). A returned resource shows as `"descriptor"`.
 */
import { buildWorld } from '../../support/worlds.js';

export const FSJS_SOURCE = `
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import { filesystemErrorCode } from 'wasi:filesystem/types@0.2.12';

const bytes = (s) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const text = (b) => { let s = ''; for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]); return s; };
const errorOf = (e) => { const p = e && e.payload !== undefined ? e.payload : e; return typeof p === 'string' ? p : p && p.tag ? p.tag : String(p); };
const FOLLOW = { symlinkFollow: true };
const NOFOLLOW = { symlinkFollow: false };
const R = { read: true };
const W = { write: true };
const RW = { read: true, write: true };
const open = (dir, path, oflags = {}, flags = R, pflags = FOLLOW) => dir.openAt(pflags, path, oflags, flags);
function readAll(fd, offset = 0) {
  const s = fd.readViaStream(offset);
  let out = '';
  for (;;) {
    try { out += text(s.blockingRead(65536)); } catch (e) { if (errorOf(e) === 'closed') return out; throw e; }
  }
}
function entries(dir) {
  const s = dir.readDirectory();
  const out = [];
  for (let e; (e = s.readDirectoryEntry());) out.push(e.name + ':' + e.type);
  return out.join(',');
}
const flagsOf = (f) => Object.keys(f).filter((k) => f[k]).sort().join(',');

function readWrite(root, other, t) {
  // files: open-at flags, streams, positional read/write
  t('create_exclusive', () => open(root, 'c.txt', { create: true, exclusive: true }, RW).getType());
  t('create_exclusive_exists', () => open(root, 'c.txt', { create: true, exclusive: true }, RW));
  t('create_exclusive_on_dangling_symlink', () => open(root, 'dangling', { create: true, exclusive: true }, RW));
  t('write_via_stream', () => { const fd = open(root, 'c.txt', {}, RW); fd.writeViaStream(0).blockingWriteAndFlush(bytes('hello')); return readAll(fd); });
  t('read_via_stream_at_offset', () => readAll(open(root, 'c.txt'), 2));
  t('read_via_stream_closed_at_end', () => { const s = open(root, 'c.txt').readViaStream(0); const first = text(s.blockingRead(100)); try { s.blockingRead(100); return first + '|open'; } catch (e) { return first + '|' + errorOf(e); } });
  t('read_zero_bytes_keeps_stream_open', () => { const s = open(root, 'c.txt').readViaStream(0); return [s.read(0).length, text(s.read(100))]; });
  t('append_via_stream', () => { const fd = open(root, 'c.txt', {}, RW); fd.appendViaStream().blockingWriteAndFlush(bytes(' world')); return readAll(fd); });
  t('positional_write_and_read', () => {
    const fd = open(root, 'c.txt', {}, RW);
    const n = fd.write(bytes('J'), 0);
    const [all, end1] = fd.read(100, 0);
    const [part, end2] = fd.read(3, 0);
    const [exact, end3] = fd.read(11, 0);
    const [past, end4] = fd.read(5, 50);
    return [Number(n), text(all), end1, text(part), end2, exact.length, end3, past.length, end4];
  });
  t('truncate_flag', () => { open(root, 'c.txt', { truncate: true }, W); return Number(root.statAt(NOFOLLOW, 'c.txt').size); });
  t('set_size', () => { const fd = open(root, 'c.txt', {}, RW); fd.setSize(3); return [Number(fd.stat().size), readAll(fd)]; });
  t('open_missing', () => open(root, 'missing.txt'));
  t('open_directory_flag_on_file', () => open(root, 'keep.txt', { directory: true }));
  t('open_directory_with_create', () => open(root, 'newdir-x', { directory: true, create: true }));
  t('open_directory_with_create_made_nothing', () => root.statAt(NOFOLLOW, 'newdir-x'));
  t('open_dir_for_write', () => open(root, 'dir', {}, W));
  t('open_through_file', () => open(root, 'keep.txt/x'));
  t('write_without_write_flag', () => open(root, 'keep.txt').write(bytes('x'), 0));
  t('write_stream_without_write_flag', () => open(root, 'keep.txt').writeViaStream(0));
  t('append_stream_without_write_flag', () => open(root, 'keep.txt').appendViaStream());
  t('set_size_without_write_flag', () => open(root, 'keep.txt').setSize(0));
  t('read_without_read_flag', () => open(root, 'keep.txt', {}, W).read(1, 0));
  t('read_stream_on_directory', () => open(root, 'dir').readViaStream(0));
  t('read_on_directory', () => open(root, 'dir').read(1, 0));

  // stat, metadata hash, identity (before anything is renamed or deleted)
  t('stat_file', () => { const s = root.statAt(NOFOLLOW, 'keep.txt'); return [s.type, Number(s.size), Number(s.linkCount), Number(s.dataModificationTimestamp.seconds) > 0]; });
  t('stat_descriptor', () => { const s = open(root, 'keep.txt').stat(); return [s.type, Number(s.size)]; });
  t('stat_dir', () => root.statAt(NOFOLLOW, 'dir').type);
  t('stat_missing', () => root.statAt(NOFOLLOW, 'missing.txt'));
  t('stat_escape_nofollow', () => root.statAt(NOFOLLOW, 'escape').type);
  t('stat_escape_follow', () => root.statAt(FOLLOW, 'escape'));
  t('stat_loop', () => root.statAt(FOLLOW, 'loop1'));
  t('metadata_hash_same_object', () => { const a = root.metadataHashAt(NOFOLLOW, 'keep.txt'); const b = open(root, 'keep.txt').metadataHash(); return a.lower === b.lower && a.upper === b.upper; });
  t('metadata_hash_differs', () => { const a = root.metadataHashAt(NOFOLLOW, 'keep.txt'); const b = root.metadataHashAt(NOFOLLOW, 'gone.txt'); return a.lower !== b.lower || a.upper !== b.upper; });
  t('metadata_hash_missing', () => root.metadataHashAt(NOFOLLOW, 'missing.txt'));
  t('is_same_object', () => [open(root, 'keep.txt').isSameObject(open(root, 'keep.txt')), open(root, 'keep.txt').isSameObject(open(root, 'gone.txt'))]);
  t('get_flags_root', () => flagsOf(root.getFlags()));
  t('get_flags_file', () => flagsOf(open(root, 'keep.txt', {}, RW).getFlags()));

  // directories
  t('read_directory', () => entries(open(root, 'dir', { directory: true })));
  t('read_directory_empty', () => entries(open(root, 'empty-in-base', { directory: true })));
  t('read_directory_on_file', () => open(root, 'keep.txt').readDirectory());
  t('create_directory_at', () => { root.createDirectoryAt('newdir'); return root.statAt(NOFOLLOW, 'newdir').type; });
  t('create_directory_at_exists', () => root.createDirectoryAt('newdir'));
  t('create_directory_at_missing_parent', () => root.createDirectoryAt('nope/x'));
  t('create_directory_at_under_file', () => root.createDirectoryAt('keep.txt/x'));
  t('remove_directory_at', () => { root.createDirectoryAt('tmpdir'); root.removeDirectoryAt('tmpdir'); return root.statAt(NOFOLLOW, 'tmpdir'); });
  t('remove_directory_at_not_empty', () => root.removeDirectoryAt('full'));
  t('remove_directory_at_file', () => root.removeDirectoryAt('keep.txt'));
  t('remove_directory_at_missing', () => root.removeDirectoryAt('missing'));

  // symlinks
  t('symlink_at', () => { root.symlinkAt('keep.txt', 'ln'); return root.readlinkAt('ln'); });
  t('read_through_symlink', () => readAll(open(root, 'ln')));
  t('stat_symlink', () => [root.statAt(NOFOLLOW, 'ln').type, root.statAt(FOLLOW, 'ln').type]);
  t('open_symlink_nofollow', () => open(root, 'ln', {}, R, NOFOLLOW));
  t('symlink_at_exists', () => root.symlinkAt('x', 'ln'));
  t('symlink_at_absolute', () => root.symlinkAt('/etc/passwd', 'abs'));
  t('symlink_at_dotdot', () => root.symlinkAt('../outside/secret.txt', 'up'));
  t('readlink_at_not_symlink', () => root.readlinkAt('keep.txt'));
  t('readlink_at_missing', () => root.readlinkAt('missing'));
  t('open_dotdot', () => open(root, '../outside/secret.txt'));
  t('open_absolute', () => open(root, '/etc/passwd'));
  t('open_planted_escape', () => open(root, 'escape'));
  t('link_at', () => root.linkAt(NOFOLLOW, 'keep.txt', root, 'hard'));

  // unlink and rename
  t('unlink_file_at', () => { root.unlinkFileAt('gone.txt'); return root.statAt(NOFOLLOW, 'gone.txt'); });
  t('unlink_file_at_directory', () => root.unlinkFileAt('dir'));
  t('unlink_file_at_missing', () => root.unlinkFileAt('missing'));
  t('rename_at_over_existing', () => { root.renameAt('old.txt', root, 'target.txt'); return readAll(open(root, 'target.txt')); });
  t('rename_at_directory', () => { root.renameAt('dir', root, 'moved'); return entries(open(root, 'moved', { directory: true })); });
  t('rename_at_over_nonempty_dir', () => root.renameAt('moved', root, 'full'));
  t('rename_at_file_over_dir', () => root.renameAt('keep.txt', root, 'full'));
  t('rename_at_dir_over_file', () => root.renameAt('moved', root, 'keep.txt'));
  t('rename_at_missing', () => root.renameAt('missing', root, 'x'));
  t('rename_at_into_itself', () => root.renameAt('moved', root, 'moved/sub/x'));
  t('rename_at_root', () => root.renameAt('.', root, 'x'));
  t('rename_at_across_preopens', () => root.renameAt('keep.txt', other, 'k.txt'));

  // a subdirectory descriptor opened without mutate-directory still changes a read-write session
  t('subdirectory_descriptor', () => {
    const sub = open(root, 'moved', { directory: true });
    sub.createDirectoryAt('inner');
    open(sub, 'inner/f.txt', { create: true }, W).write(bytes('f'), 0);
    sub.renameAt('inner', root, 'inner-top');
    return [flagsOf(sub.getFlags()), readAll(open(root, 'inner-top/f.txt'))];
  });

  // a stream whose file is gone fails; filesystem-error-code tells why
  t('filesystem_error_code', () => {
    open(root, 'doomed.txt', { create: true }, W).write(bytes('d'), 0);
    const s = open(root, 'doomed.txt').readViaStream(0);
    root.unlinkFileAt('doomed.txt');
    try { s.blockingRead(10); return 'read'; } catch (e) { const p = e.payload; return p.tag + ':' + filesystemErrorCode(p.val); }
  });

  // 2 MiB through streams, in chunks of check-write's budget at most
  t('large_stream', () => {
    const fd = open(root, 'big.bin', { create: true, exclusive: true }, RW);
    const out = fd.writeViaStream(0);
    const chunk = new Uint8Array(65536);
    for (let i = 0; i < 32; i++) {
      if (Number(out.checkWrite()) < chunk.length) throw new Error('check-write below 64 KiB');
      chunk.fill((i * 7) & 255);
      out.write(chunk);
    }
    out.blockingFlush();
    const s = fd.readViaStream(0);
    let total = 0, same = true;
    for (;;) {
      let c;
      try { c = s.blockingRead(65536); } catch (e) { if (errorOf(e) === 'closed') break; throw e; }
      for (let j = 0; j < c.length; j += 4099) if (c[j] !== ((((total + j) >> 16) * 7) & 255)) same = false;
      total += c.length;
    }
    return [total, same, Number(fd.stat().size)];
  });
  // one read serves all that is asked (the built-in tools read a whole file so)
  t('read_large_file_in_one_call', () => { const [b, end] = open(root, 'big.bin').read(3 << 20, 0); return [b.length, end, b[b.length - 1]]; });
}

function readOnly(root, t) {
  t('ro_read', () => readAll(open(root, 'keep.txt')));
  t('ro_read_directory', () => entries(open(root, 'dir', { directory: true })));
  t('ro_get_flags', () => flagsOf(root.getFlags()));
  t('ro_create', () => open(root, 'n.txt', { create: true }, W));
  t('ro_open_write', () => open(root, 'keep.txt', {}, W));
  t('ro_truncate', () => open(root, 'keep.txt', { truncate: true }));
  t('ro_create_directory_at', () => root.createDirectoryAt('d'));
  t('ro_remove_directory_at', () => root.removeDirectoryAt('empty-in-base'));
  t('ro_unlink_file_at', () => root.unlinkFileAt('keep.txt'));
  t('ro_rename_at', () => root.renameAt('keep.txt', root, 'k.txt'));
  t('ro_symlink_at', () => root.symlinkAt('keep.txt', 'l'));
  t('ro_set_size', () => open(root, 'keep.txt').setSize(0));
  t('ro_write_stream', () => open(root, 'keep.txt').writeViaStream(0));
  t('ro_subdirectory_cannot_mutate', () => open(root, 'dir', { directory: true }).createDirectoryAt('x'));
  t('ro_mutate_flag_refused', () => open(root, 'dir', { directory: true }, { read: true, mutateDirectory: true }));
}

export const tool = {
  describe() { return { name: 'fsjs', description: 'calls wasi:filesystem/types directly', inputSchema: '{}' }; },
  call(input) {
    const { mode } = JSON.parse(input);
    const results = {};
    const t = (name, f) => {
      try { const v = f(); results[name] = { ok: true, value: v === undefined ? null : typeof v === 'object' && !Array.isArray(v) ? 'descriptor' : v }; }
      catch (e) { results[name] = { ok: false, error: errorOf(e) }; }
    };
    const dirs = getDirectories();
    if (mode === 'rw') readWrite(dirs[0][0], dirs[1][0], t);
    else readOnly(dirs[0][0], t);
    return JSON.stringify(results);
  },
};`;

/** Build the guest (a few seconds). @returns the `.wasm` path */
export function buildFsjs(): Promise<string> {
  return buildWorld('fsjs', FSJS_SOURCE, 'import wasi:filesystem/types@0.2.12;\nimport wasi:filesystem/preopens@0.2.12;\nexport warden:kernel/tool@0.1.0;');
}
