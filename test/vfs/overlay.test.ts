// The session overlay: O(1) begin, reads fall through, writes stay in the session until commit,
// conflicts are detected only on paths the session depended on.
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SessionFs } from '../../kernel/vfs/index.js';
import { isWardenError } from '../../kernel/errors.js';
import { tempDir, workspace } from '../support/fixtures.js';

const text = (b: Uint8Array) => Buffer.from(b).toString();

describe('session overlay', () => {
  it('begins without copying, and reads fall through to the base', () => {
    const ws = workspace({ 'a.txt': 'A', 'dir/b.txt': 'B' });
    const fs = new SessionFs(tempDir('sessions'));
    const meta = fs.begin(ws);
    expect(readdirSync(join(fs.dirOf(meta.id), 'upper'))).toEqual([]);
    const o = fs.overlay(meta.id);
    expect(text(o.read('dir/b.txt', 0, 10))).toBe('B');
    expect(o.readdir('').map((e) => e.name)).toEqual(['a.txt', 'dir']);
  });

  it('keeps writes and deletions in the session until commit', () => {
    const ws = workspace({ 'a.txt': 'A', 'dir/b.txt': 'B' });
    const fs = new SessionFs(tempDir('sessions'));
    const { id } = fs.begin(ws);
    const o = fs.overlay(id);
    o.write('a.txt', 0, Buffer.from('Z'));
    o.unlink('dir/b.txt');
    o.create('new.txt', true);
    o.write('new.txt', 0, Buffer.from('N'));
    expect(readFileSync(join(ws, 'a.txt'), 'utf8')).toBe('A');
    expect(o.readdir('dir')).toEqual([]);
    expect(fs.diff(id).map((c) => `${c.kind} ${c.path}`)).toEqual(['modified a.txt', 'deleted dir/b.txt', 'added new.txt']);
    fs.commit(id);
    expect(readFileSync(join(ws, 'a.txt'), 'utf8')).toBe('Z');
    expect(existsSync(join(ws, 'dir/b.txt'))).toBe(false);
    expect(readFileSync(join(ws, 'new.txt'), 'utf8')).toBe('N');
    expect(readdirSync(ws).filter((n) => n.startsWith('.warden-commit'))).toEqual([]);
  });

  it('refuses a commit when the base changed under a path the session read, and applies nothing', () => {
    const ws = workspace({ 'a.txt': 'A', 'b.txt': 'B' });
    const fs = new SessionFs(tempDir('sessions'));
    const { id } = fs.begin(ws);
    const o = fs.overlay(id);
    o.read('a.txt', 0, 1);
    o.write('b.txt', 0, Buffer.from('X'));
    writeFileSync(join(ws, 'a.txt'), 'changed elsewhere');
    let error: unknown;
    try {
      fs.commit(id);
    } catch (err) {
      error = err;
    }
    expect(isWardenError(error, 'E_SESSION_CONFLICT')).toBe(true);
    expect((error as { detail: { paths: string[] } }).detail.paths).toEqual(['a.txt']);
    expect(readFileSync(join(ws, 'b.txt'), 'utf8')).toBe('B');
  });

  it('commits despite unrelated changes in the base', () => {
    const ws = workspace({ 'a.txt': 'A', 'other.txt': 'O' });
    const fs = new SessionFs(tempDir('sessions'));
    const { id } = fs.begin(ws);
    fs.overlay(id).write('a.txt', 0, Buffer.from('Z'));
    writeFileSync(join(ws, 'other.txt'), 'changed elsewhere');
    fs.commit(id);
    expect(readFileSync(join(ws, 'a.txt'), 'utf8')).toBe('Z');
  });

  it('a read-only overlay refuses every change', () => {
    const ws = workspace({ 'a.txt': 'A' });
    const fs = new SessionFs(tempDir('sessions'));
    const { id } = fs.begin(ws);
    const o = fs.overlay(id, 'ro');
    expect(() => o.write('a.txt', 0, Buffer.from('Z'))).toThrow(/read-only/);
    expect(() => o.unlink('a.txt')).toThrow(/read-only/);
    expect(fs.diff(id)).toEqual([]);
  });
});
