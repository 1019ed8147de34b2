// Grants: manifests validated field by field, effective = requested ∩ granted (∩ caller), with
// provenance; third-party components pinned and run with at most their effective grants.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT, BUILT_COMPONENTS } from '../../kernel/paths.js';
import { attenuate, hostAllowed, intersect, NO_GRANTS, parseManifest, type Grants } from '../../kernel/grants/index.js';
import { effectiveGrants } from '../../kernel/grants/effective.js';
import { tempDir, workspace } from '../support/fixtures.js';

function warden(args: string[], input = '') {
  const result = spawnSync(process.execPath, [join(PACKAGE_ROOT, 'bin/warden.js'), ...args], { input, encoding: 'utf8', timeout: 60_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

const grants = (fields: Partial<Grants>): Grants => ({ ...NO_GRANTS, ...fields });

describe('grant algebra', () => {
  it('outbound hosts: exact names use ports 80/443, host:port is exact, *.suffix covers subdomains only', () => {
    expect(hostAllowed(['api.example.com'], 'api.example.com', 443)).toBe(true);
    expect(hostAllowed(['api.example.com'], 'api.example.com', 8443)).toBe(false);
    expect(hostAllowed(['api.example.com:8443'], 'api.example.com', 8443)).toBe(true);
    expect(hostAllowed(['*.example.com'], 'a.b.example.com', 80)).toBe(true);
    expect(hostAllowed(['*.example.com'], 'example.com', 80)).toBe(false);
    expect(hostAllowed(['*.example.com'], 'evilexample.com', 80)).toBe(false);
    expect(hostAllowed([], 'example.com', 80)).toBe(false);
  });

  it('intersection keeps only what both sides allow, per capability', () => {
    const a = grants({ filesystem: 'session:rw', mesh: ['read-*', 'grep'], inference: ['*'], http: ['*.example.com', 'other.org'], env: { A: '1', B: '2' }, session: true });
    const b = grants({ filesystem: 'session:ro', mesh: ['read-file', 'write-file'], inference: ['qwen@local'], http: ['api.example.com', 'example.com'], env: { A: 'x' }, session: false });
    const both = intersect(a, b);
    expect(both.filesystem).toBe('session:ro');
    expect(both.mesh).toEqual(['read-file']);
    expect(both.inference).toEqual(['qwen@local']);
    expect(both.http).toEqual(['api.example.com']);
    expect(Object.keys(both.env)).toEqual(['A']);
    expect(both.session).toBe(false);
  });

  it('attenuation: a callee never holds more than its caller, whatever it was granted', () => {
    const tool = grants({ filesystem: 'session:rw', mesh: ['grep'], http: ['api.example.com'] });
    const caller = grants({ filesystem: 'session:ro', mesh: ['tool'], http: [] });
    const perCall = attenuate(tool, caller);
    expect(perCall.filesystem).toBe('session:ro');
    expect(perCall.mesh).toEqual([]);
    expect(perCall.http).toEqual([]);
  });

  it('effective grants say where each capability came from; a third-party manifest cannot raise its limits', () => {
    const manifest = parseManifest({
      name: 'fetcher', version: '1', kind: 'tool',
      requests: { filesystem: 'session:rw', http: ['api.example.com', 'evil.org'], env: ['TOKEN', 'HOME'] },
      limits: { timeoutMs: 60_000, memoryMb: 4096 },
    }, 'test');
    const configured = { filesystem: 'session:ro' as const, http: ['*.example.com'], env: { TOKEN: '$FETCH_TOKEN' } };
    const eff = effectiveGrants(manifest, configured, { builtin: false, defaults: { memoryMb: 128 }, env: { FETCH_TOKEN: 's3cret' } });
    expect(eff.grants.filesystem).toBe('session:ro');
    expect(eff.grants.http).toEqual(['api.example.com']);
    expect(eff.grants.env).toEqual({ TOKEN: 's3cret' });
    expect(eff.limits.memoryMb).toBe(128);
    const http = eff.explain.find((e) => e.capability === 'http')!;
    expect(http).toMatchObject({ requested: ['api.example.com', 'evil.org'], granted: ['*.example.com'], effective: ['api.example.com'], source: 'config grants.fetcher' });
    expect(eff.explain.find((e) => e.capability === 'limits.memoryMb')!.source).toMatch(/manifest asked for more/);
    const none = effectiveGrants(manifest, undefined, { builtin: false, defaults: {}, env: {} });
    expect(none.grants).toEqual(NO_GRANTS);
    expect(none.explain[0]!.source).toMatch(/not granted: add grants.fetcher/);
  });

  it('a bad manifest is refused with every wrong field named', () => {
    expect(() => parseManifest({ name: 'Bad Name', version: '', kind: 'daemon', requests: { http: ['https://x.com/path'], sockets: ['anywhere'], filesystem: 'all' } }, 'm.json')).toThrow(
      /m\.json: name: .*\n.*m\.json: version: .*\n.*kind.*\n.*requests\.filesystem.*\n.*requests\.http\.0: a host.*\n.*requests\.sockets\.0: an address/s,
    );
  });
});

describe('warden component add / grants / tool run NAME', () => {
  it('pins a third-party component, explains its grants, runs it with at most them, and refuses it once changed', () => {
    const dataDir = tempDir('data');
    const src = join(tempDir('third-party'), 'reader.wasm');
    copyFileSync(join(BUILT_COMPONENTS, 'read-file.wasm'), src);
    const manifestPath = join(tempDir('manifest'), 'manifest.json');
    writeFileSync(manifestPath, JSON.stringify({ name: 'ignored', version: '2.0.0', kind: 'tool', requests: { filesystem: 'session:rw', env: ['TOKEN'] } }));

    const added = warden(['component', 'add', src, '--name', 'reader', '--manifest', manifestPath, '--data-dir', dataDir]);
    expect(added.code).toBe(0);
    expect(added.stdout).toMatch(/^added reader: tool, \d+ bytes, sha256 [0-9a-f]{64}/);
    expect(added.stdout).toContain('effective grants: none');

    const ws = workspace({ 'a.txt': 'hello\n' });
    const denied = warden(['tool', 'run', 'reader', '--dir', `${ws}::/`, '--data-dir', dataDir, '{"path":"a.txt"}']);
    expect(denied.code).toBe(125);
    expect(denied.stderr).toMatch(/reader is granted filesystem none; --dir needs more \(set grants\.reader\.filesystem/);

    writeFileSync(join(dataDir, 'warden.config.json'), JSON.stringify({ grants: { reader: { filesystem: 'session:ro', env: { TOKEN: '$READER_TOKEN' } } } }));
    const explained = warden(['component', 'grants', 'reader', '--json', '--data-dir', dataDir]);
    const body = JSON.parse(explained.stdout) as { grants: { filesystem: string; env: string[] }; explain: Array<{ capability: string; source: string }> };
    expect(body.grants.filesystem).toBe('session:ro');
    expect(body.grants.env).toEqual(['TOKEN']);
    expect(body.explain.find((e) => e.capability === 'filesystem')!.source).toBe('config grants.reader');
    const table = warden(['component', 'grants', 'reader', '--data-dir', dataDir]).stdout;
    expect(table).toMatch(/filesystem\s+session:rw\s+session:ro\s+session:ro\s+config grants\.reader/);

    const ok = warden(['tool', 'run', 'reader', '--dir', `${ws}::/`, '--data-dir', dataDir, '{"path":"a.txt"}']);
    expect(ok.stdout.trim()).toBe('1\thello');
    expect(ok.code).toBe(0);
    const rw = warden(['tool', 'run', 'reader', '--dir-rw', `${ws}::/`, '--data-dir', dataDir, '{"path":"a.txt"}']);
    expect(rw.code).toBe(125);
    expect(rw.stderr).toMatch(/--dir-rw needs more/);
    const env = warden(['tool', 'run', 'reader', '--env', 'HOME', '--data-dir', dataDir, '{"path":"a.txt"}']);
    expect(env.stderr).toMatch(/not granted environment variable\(s\) HOME/);

    const list = JSON.parse(warden(['component', 'list', '--json', '--data-dir', dataDir]).stdout) as Array<{ name: string; problem: string | null; origin: string }>;
    expect(list.find((c) => c.name === 'reader')).toMatchObject({ origin: 'pinned', problem: null });

    const pinned = (JSON.parse(warden(['component', 'list', '--json', '--data-dir', dataDir]).stdout) as Array<{ name: string; file: string }>).find((c) => c.name === 'reader')!;
    chmodSync(pinned.file, 0o644);
    appendFileSync(pinned.file, 'tampered');
    const changed = warden(['tool', 'run', 'reader', '--dir', `${ws}::/`, '--data-dir', dataDir, '{"path":"a.txt"}']);
    expect(changed.code).toBe(125);
    expect(changed.stderr).toMatch(/reader changed after it was pinned/);
    expect(warden(['component', 'list', '--data-dir', dataDir]).stdout).toMatch(/reader .*E_DIGEST_MISMATCH/);

    const readded = warden(['component', 'add', src, '--name', 'reader', '--manifest', manifestPath, '--data-dir', dataDir]);
    expect(readded.code).toBe(0);
    expect(warden(['tool', 'run', 'reader', '--dir', `${ws}::/`, '--data-dir', dataDir, '{"path":"a.txt"}']).code).toBe(0);
  });

  it('refuses a name taken by a built-in, a file that is not a component, and a kind the exports contradict', () => {
    const dataDir = tempDir('data');
    expect(warden(['component', 'add', join(BUILT_COMPONENTS, 'grep.wasm'), '--name', 'grep', '--data-dir', dataDir]).stderr).toMatch(/a built-in component has that name/);
    expect(warden(['component', 'add', join(PACKAGE_ROOT, 'package.json'), '--name', 'junk', '--data-dir', dataDir]).stderr).toMatch(/not a valid WebAssembly component/);
    const manifest = join(tempDir('m'), 'manifest.json');
    writeFileSync(manifest, JSON.stringify({ name: 'x', version: '1', kind: 'agent' }));
    const wrongKind = warden(['component', 'add', join(BUILT_COMPONENTS, 'grep.wasm'), '--name', 'g2', '--manifest', manifest, '--data-dir', dataDir]);
    expect(wrongKind.code).toBe(1);
    expect(wrongKind.stderr).toMatch(/manifest says kind agent but the component exports .*\(kind tool\)/);
    expect(JSON.parse(warden(['component', 'list', '--json', '--data-dir', dataDir]).stdout).some((c: { name: string }) => c.name === 'g2' || c.name === 'junk')).toBe(false);
  });
});
