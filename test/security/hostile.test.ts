// Components written to attack the kernel (JavaScript guests; the C ones are in c-guests.test.ts).
// Each attack is asserted contained, and the kernel keeps serving after it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, symlinkSync, writeFileSync, chmodSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kernel } from '../../kernel/kernel.js';
import { KERNEL_GRANTS, parseManifest, type Manifest } from '../../kernel/grants/index.js';
import { runTool, type ToolRunOptions } from '../../kernel/cli/tool-run.js';
import { buildCommand, buildTool } from '../support/guest.js';
import { buildWorld } from '../support/worlds.js';
import { tempDir, workspace } from '../support/fixtures.js';

const quiet = { stdin: () => new Uint8Array(), stdout: () => undefined, stderr: () => undefined };

function runOnce(component: string, overrides: Partial<ToolRunOptions> = {}) {
  return runTool({
    component, args: ['{}'], dirs: [], dirsRw: [], commit: false, env: [], timeoutMs: 20_000, maxMemoryMb: 64,
    dataDir: tempDir('data'), ...quiet, ...overrides,
  });
}

const SNOOP = `
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import { getEnvironment, getArguments, initialCwd } from 'wasi:cli/environment@0.2.12';
const text = (bytes) => String.fromCharCode(...bytes);
const attempt = (f) => {
  try { return { ok: true, value: String(f()).slice(0, 400) }; }
  catch (e) { return { ok: false, error: String(e && e.payload !== undefined ? e.payload : e) }; }
};
export const tool = {
  describe() { return { name: 'snoop', description: 'tries to leave its sandbox', inputSchema: '{}' }; },
  call(input) {
    const { outside } = JSON.parse(input);
    const root = getDirectories()[0][0];
    const read = (path) => { const fd = root.openAt({ symlinkFollow: true }, path, {}, { read: true }); return text(fd.read(1 << 16, 0)[0]); };
    const list = (path) => { const d = root.openAt({ symlinkFollow: true }, path, { directory: true }, { read: true }); const s = d.readDirectory(); const out = []; for (let e; (e = s.readDirectoryEntry());) out.push(e.name); return out.join(','); };
    return JSON.stringify({
      etcPasswd: attempt(() => read('/etc/passwd')),
      parent: attempt(() => read('../secret.txt')),
      deepParent: attempt(() => read('sub/../../secret.txt')),
      absoluteOutside: attempt(() => read(outside + '/secret.txt')),
      symlinkFile: attempt(() => read('escape')),
      symlinkDir: attempt(() => read('sub/link/secret.txt')),
      listSymlinkDir: attempt(() => list('sub/link')),
      listParent: attempt(() => list('..')),
      statOutside: attempt(() => root.statAt({ symlinkFollow: true }, 'escape').size),
      write: attempt(() => root.openAt({}, 'a.txt', {}, { write: true }).write(Uint8Array.from([79, 87, 78]), 0)),
      create: attempt(() => root.openAt({}, 'new.txt', { create: true }, { write: true })),
      unlink: attempt(() => root.unlinkFileAt('a.txt')),
      mkdir: attempt(() => root.createDirectoryAt('made')),
      rename: attempt(() => root.renameAt('a.txt', root, 'b.txt')),
      env: getEnvironment(),
      args: getArguments(),
      cwd: initialCwd() ?? null,
      preopens: getDirectories().map(([, path]) => path),
    });
  },
};`;

describe('filesystem and environment attacks (JavaScript)', () => {
  it('a tool that tries every way out of a read-only session gets nothing and changes nothing', async () => {
    const outside = tempDir('outside');
    writeFileSync(join(outside, 'secret.txt'), 'TOP SECRET');
    const ws = workspace({ 'a.txt': 'hello\n', 'sub/ok.txt': 'fine' });
    writeFileSync(join(ws, '..', 'secret.txt'), 'TOP SECRET');
    symlinkSync(join(outside, 'secret.txt'), join(ws, 'escape'));
    symlinkSync(outside, join(ws, 'sub/link'));
    process.env['WARDEN_TEST_SECRET'] = 'hunter2';
    const wasm = await buildTool('snoop', SNOOP);
    const result = await runOnce(wasm, { args: [JSON.stringify({ outside })], dirs: [`${ws}::/`] });
    delete process.env['WARDEN_TEST_SECRET'];
    expect(result.exitCode).toBe(0);
    const report = JSON.parse(result.output!) as Record<string, { ok: boolean; error?: string }> & { env: unknown; preopens: string[]; cwd: unknown };
    for (const attack of ['etcPasswd', 'parent', 'deepParent', 'absoluteOutside', 'symlinkFile', 'symlinkDir', 'listSymlinkDir', 'listParent', 'statOutside', 'write', 'create', 'unlink', 'mkdir', 'rename']) {
      expect(report[attack], attack).toMatchObject({ ok: false });
      expect(report[attack]!.error, attack).toMatch(/^(not-permitted|no-entry|read-only|access)$/);
    }
    expect(report['write']!.error).toBe('read-only');
    expect(report.env).toEqual([]);
    expect(report.cwd).toBeNull();
    expect(report.preopens).toEqual(['/']);
    expect(result.output).not.toContain('TOP SECRET');
    expect(result.output).not.toContain('root:');
    expect(result.output).not.toContain('hunter2');
    expect(readFileSync(join(ws, 'a.txt'), 'utf8')).toBe('hello\n');
  });

  it('a command calling exit() ends only its own run; the host process carries on', async () => {
    const wasm = await buildCommand('quit', `
      import { exit } from 'wasi:cli/exit@0.2.12';
      export const run = { run() { exit({ tag: 'err' }); } };`);
    const first = await runOnce(wasm);
    expect(first.exitCode).toBe(1);
    const second = await runOnce(wasm);
    expect(second.exitCode).toBe(1);
    expect(process.exitCode ?? 0).toBe(0);
  });
});

describe('resource attacks (JavaScript)', () => {
  it('a memory bomb stops at the cap with E_LIMIT_MEMORY (exit 125) and the host RSS stays bounded', async () => {
    const wasm = await buildTool('bomb', `
      export const tool = {
        describe() { return { name: 'bomb', description: '', inputSchema: '{}' }; },
        call(input) { const keep = []; for (;;) keep.push(new Float64Array(1 << 20)); },
      };`);
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    const result = await runOnce(wasm, { maxMemoryMb: 64 });
    clearInterval(sampler);
    expect(result.exitCode).toBe(125);
    expect(result.reason).toMatch(/^E_LIMIT_MEMORY: guest ran out of memory at its cap of 64 MiB \(\d+ MiB in use/);
    // Without the cap a wasm32 guest could take 4 GiB; with it, one 64 MiB memory plus the runtime.
    expect(peak - before).toBeLessThan(512 * 2 ** 20);
  });

  it('deep recursion is contained and the next run of the same component works', async () => {
    const wasm = await buildTool('deep', `
      function down(n) { return down(n + 1) + 1; }
      export const tool = {
        describe() { return { name: 'deep', description: '', inputSchema: '{}' }; },
        call(input) { return input === '"ok"' ? 'fine' : String(down(0)); },
      };`);
    const result = await runOnce(wasm);
    expect([1, 125]).toContain(result.exitCode);
    // QuickJS reports its own stack limit, or the guest overruns its shadow stack and traps: either way contained.
    expect(`${result.output ?? ''}${result.reason ?? ''}`).toMatch(/stack|recursion|trapped/i);
    expect((await runOnce(wasm, { args: ['"ok"'] })).output).toBe('fine');
  });

  it('huge output is cut at the output limit with a marker, and the guest still finishes', async () => {
    const wasm = await buildCommand('flood', `
      import { getStdout } from 'wasi:cli/stdout@0.2.12';
      export const run = { run() {
        const out = getStdout(); const chunk = new Uint8Array(4096).fill(120);
        for (let i = 0; i < 2560; i++) out.blockingWriteAndFlush(chunk);
        out.blockingWriteAndFlush(Uint8Array.from([10, 68, 79, 78, 69]));
      } };`);
    const chunks: Buffer[] = [];
    const result = await runOnce(wasm, { outputBytes: 65_536, stdout: (b) => chunks.push(Buffer.from(b)) });
    expect(result.exitCode).toBe(0);
    const out = Buffer.concat(chunks).toString();
    expect(out.length).toBeLessThan(65_536 + 200);
    // (booleans, not string matchers: a failure must not print 10 MiB)
    expect(out.startsWith('x'.repeat(65_536))).toBe(true);
    expect(out.slice(65_536)).toBe('\n[warden: output truncated at 65536 bytes]\n');

    const big = await buildTool('big', `
      export const tool = {
        describe() { return { name: 'big', description: '', inputSchema: '{}' }; },
        call(input) { return 'y'.repeat(5000000); },
      };`);
    const tool = await runOnce(big, { outputBytes: 10_000 });
    expect(tool.exitCode).toBe(0);
    expect(tool.output!.startsWith('y'.repeat(10_000))).toBe(true);
    expect(tool.output!.slice(10_000)).toBe('\n[warden: output truncated at 10000 bytes]\n');
  });
});

// A tool that probes the mesh and SQL on request: { op: 'mesh', target, payload } | { op: 'sql', sql }.
const PROBER = `
import { call as meshCall } from 'warden:kernel/mesh@0.1.0';
import { query } from 'warden:kernel/sql@0.1.0';
const caught = (f) => { try { return { ok: true, value: f() }; } catch (e) { return { ok: false, error: e && e.payload !== undefined ? e.payload : String(e) }; } };
export const tool = {
  describe() { return { name: 'prober', description: 'probes the mesh and SQL', inputSchema: '{}' }; },
  call(input) {
    const req = JSON.parse(input);
    if (req.op === 'mesh') return JSON.stringify(caught(() => meshCall(req.target, 'call', { tag: 'json', val: JSON.stringify(req.payload ?? {}) })));
    if (req.op === 'sql') return JSON.stringify(caught(() => query(req.sql, [])));
    return 'idle';
  },
};`;
const PROBER_WORLD = 'import warden:kernel/mesh@0.1.0;\nimport warden:kernel/sql@0.1.0;\nexport warden:kernel/tool@0.1.0;';

describe('mesh, SQL and unknown-import attacks inside a running kernel', () => {
  let kernel: Kernel;
  let dataDir: string;
  const ctx = () => ({ taskId: '', sessionId: null, chain: [], deadline: Date.now() + 20_000, grants: KERNEL_GRANTS });
  const manifest = (name: string, requests: object): Manifest => parseManifest({ name, version: '1', kind: 'tool', requests }, name);
  async function probe(target: string, request: object): Promise<{ ok: boolean; value?: unknown; error?: unknown }> {
    const reply = await kernel.mesh.call(target, 'call', { tag: 'json', val: JSON.stringify(request) }, ctx());
    if (!reply.ok) throw new Error(reply.error.message);
    return JSON.parse((JSON.parse((reply.payload as { val: string }).val) as { output: string }).output);
  }

  beforeAll(async () => {
    dataDir = tempDir('data');
    writeFileSync(join(dataDir, 'warden.config.json'), JSON.stringify({
      grants: {
        ping: { mesh: ['pong'] },
        pong: { mesh: ['ping', 'read-file'] },
        lonely: { mesh: ['read-file'], sql: { scope: 'alpha', mode: 'rw' } },
        keeper: { sql: { scope: 'beta', mode: 'rw' } },
      },
    }));
    kernel = await Kernel.start({ dataDir, quiet: true });
    const prober = await buildWorld('prober', PROBER, PROBER_WORLD);
    const all = { mesh: ['*'], sql: null };
    for (const [name, requests] of [
      ['ping', all], ['pong', all], ['nosy', all],
      ['lonely', { mesh: ['*'], sql: { scope: 'alpha', mode: 'rw' } }],
      ['keeper', { sql: { scope: 'beta', mode: 'rw' } }],
    ] as const) {
      await kernel.loadComponent({ name, manifest: manifest(name, requests), file: prober, builtin: false });
    }
  });
  afterAll(async () => kernel?.close());

  it('a call to an ungranted mesh target is denied and audited', async () => {
    const result = await probe('lonely', { op: 'mesh', target: 'write-file', payload: { path: 'x', content: 'y' } });
    expect(result).toMatchObject({ ok: false, error: { tag: 'denied' } });
    expect(JSON.stringify(result.error)).toContain('mesh target write-file');
    const audit = kernel.store.auditEvents(20).filter((e) => e.kind === 'denied' && e.component === 'lonely');
    expect(audit.map((e) => e.detail).join('\n')).toContain('write-file');
  });

  it('a component granted nothing gets stubs that fail every call, with an audit record', async () => {
    const mesh = await probe('nosy', { op: 'mesh', target: 'read-file' });
    expect(mesh).toEqual({ ok: false, error: { tag: 'denied', val: 'capability not granted: warden:kernel/mesh' } });
    const sql = await probe('nosy', { op: 'sql', sql: 'SELECT 1' });
    expect(sql).toEqual({ ok: false, error: { tag: 'denied', val: 'capability not granted: warden:kernel/sql' } });
    const audit = kernel.store.auditEvents(50).filter((e) => e.kind === 'denied' && e.component === 'nosy');
    expect(audit.length).toBeGreaterThanOrEqual(2);
  });

  it('a re-entrant cycle ping → pong → ping fails at once with E_MESH_CYCLE', async () => {
    const started = Date.now();
    const result = await probe('ping', { op: 'mesh', target: 'pong', payload: { op: 'mesh', target: 'ping', payload: {} } });
    expect(result.ok).toBe(true);
    const inner = JSON.parse((JSON.parse((result.value as { val: string }).val) as { output: string }).output);
    expect(inner).toMatchObject({ ok: false, error: { tag: 'cycle' } });
    expect(JSON.stringify(inner.error)).toContain('E_MESH_CYCLE: ping → pong → ping');
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('attenuation: a callee cannot use a grant its caller does not hold', async () => {
    // pong may call read-file, but called by ping (which may call only pong) it holds only what ping holds.
    const result = await probe('ping', { op: 'mesh', target: 'pong', payload: { op: 'mesh', target: 'read-file', payload: { path: 'x' } } });
    const inner = JSON.parse((JSON.parse((result.value as { val: string }).val) as { output: string }).output);
    expect(inner).toMatchObject({ ok: false, error: { tag: 'denied' } });
    // Called by the kernel directly, pong does reach read-file (which answers for itself: no session).
    const direct = await probe('pong', { op: 'mesh', target: 'read-file', payload: { path: 'x' } });
    expect(JSON.stringify(direct)).not.toContain('denied');
  });

  it('SQL cannot leave its scope: ATTACH of another scope and pragmas are refused', async () => {
    const keeperDb = join(dataDir, 'scopes', 'beta.db');
    expect((await probe('keeper', { op: 'sql', sql: "SELECT 'ok'" })).ok).toBe(true);
    for (const sql of [
      `ATTACH DATABASE '${keeperDb}' AS b`,
      `/* hi */ attach '${keeperDb}' as b`,
      'PRAGMA database_list',
      "SELECT load_extension('x')",
      `VACUUM INTO '${join(dataDir, 'copy.db')}'`,
    ]) {
      const result = await probe('lonely', { op: 'sql', sql });
      expect(result.ok, sql).toBe(false);
      expect(JSON.stringify(result.error), sql).toMatch(/denied|E_SQL_DENIED/);
    }
    const master = await probe('lonely', { op: 'sql', sql: 'SELECT name, file FROM pragma_database_list' });
    expect(JSON.stringify(master)).not.toContain('beta.db');
  });

  it('a component importing an interface the kernel does not provide is refused with the list', async () => {
    const wasm = await buildWorld('shell', `
      import { run } from 'test:guest/shell';
      export const tool = {
        describe() { return { name: 'x', description: '', inputSchema: '{}' }; },
        call(input) { return run(input); },
      };`, 'import shell;\nexport warden:kernel/tool@0.1.0;', 'interface shell { run: func(cmd: string) -> string; }');
    await expect(kernel.loadComponent({ name: 'shell', manifest: manifest('shell', {}), file: wasm, builtin: false })).rejects.toThrow(
      /imports interfaces the kernel does not provide: test:guest\/shell/,
    );
    const result = await runOnce(wasm);
    expect(result.exitCode).toBe(125);
    expect(result.reason).toMatch(/test:guest\/shell/);
    // The kernel still serves.
    expect((await probe('keeper', { op: 'sql', sql: "SELECT 'ok'" })).ok).toBe(true);
  });
});

describe('pinning', () => {
  it('a component whose bytes change after `component add` is refused until re-added', async () => {
    const dataDir = tempDir('data');
    const wasm = await buildTool('pinned', `
      export const tool = {
        describe() { return { name: 'pinned', description: '', inputSchema: '{}' }; },
        call(input) { return 'pinned ok'; },
      };`);
    let kernel = await Kernel.start({ dataDir, quiet: true });
    const added = await kernel.registry.add(wasm, { name: 'pinned' });
    await kernel.close();
    kernel = await Kernel.start({ dataDir, quiet: true });
    expect(kernel.state.current.components['pinned']).toMatchObject({ status: 'loaded', origin: 'pinned', sha256: added.component.sha256 });
    await kernel.close();

    chmodSync(added.component.file, 0o644);
    appendFileSync(added.component.file, Buffer.from([0]));
    kernel = await Kernel.start({ dataDir, quiet: true });
    try {
      const shown = kernel.state.current.components['pinned']!;
      expect(shown.status).toBe('refused');
      expect(shown.reason).toMatch(/E_DIGEST_MISMATCH: component .* changed/);
      const reply = await kernel.mesh.call('pinned', 'call', { tag: 'json', val: '{}' }, { taskId: '', sessionId: null, chain: [], deadline: Date.now() + 5000, grants: KERNEL_GRANTS });
      expect(reply.ok).toBe(false);
      expect(kernel.store.auditEvents(20).some((e) => e.kind === 'component.refused' && e.component === 'pinned')).toBe(true);
      // The kernel still serves its built-ins.
      expect(kernel.state.current.components['read-file']?.status).toBe('loaded');
      // Re-adding accepts the bytes as they are now.
      const again = await kernel.registry.add(wasm, { name: 'pinned' });
      expect(again.replacedSha256).toBeUndefined();
      expect(again.component.sha256).toBe(added.component.sha256);
    } finally {
      await kernel.close();
    }
  });
});
