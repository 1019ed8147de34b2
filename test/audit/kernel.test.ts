// What a real kernel appends to the audit log: its start and stop, the configuration it loaded
// (and which fields changed since the previous start, never a value), every component loaded
// with its effective grants (environment variables by name), denials. A granted secret reaches
// its component and never the log. `warden audit verify` passes while the kernel appends.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { Kernel } from '../../kernel/kernel.js';
import { KERNEL_GRANTS, parseManifest } from '../../kernel/grants/index.js';
import { AUDIT_HEAD_FILE, verifyAudit, type AuditRow } from '../../kernel/audit/index.js';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import { buildWorld } from '../support/worlds.js';
import { tempDir } from '../support/fixtures.js';

const run = promisify(execFile);
const SECRET = `canary${randomBytes(16).toString('hex')}`;
const env = { ...process.env, AUDIT_CANARY: SECRET };

// Reads its environment and calls a mesh target it is not granted.
const ENVY = `
import { call as meshCall } from 'warden:kernel/mesh@0.1.0';
import { getEnvironment } from 'wasi:cli/environment@0.2.12';
export const tool = {
  describe() { return { name: 'envy', description: 'reads its environment, calls an ungranted target', inputSchema: '{}' }; },
  call(input) {
    let denied = null;
    try { meshCall('write-file', 'call', { tag: 'json', val: '{}' }); } catch (e) { denied = e && e.payload !== undefined ? e.payload : String(e); }
    return JSON.stringify({ env: getEnvironment(), denied });
  },
};`;

function config(maxTurns: number, greeting: string) {
  return JSON.stringify({ maxTurns, grants: { envy: { env: { API_TOKEN: '$AUDIT_CANARY', GREETING: greeting }, mesh: ['read-file'] } } });
}

/** Every audit row, oldest first. */
const entries = (kernel: Kernel): AuditRow[] => kernel.store.auditEvents(100_000).reverse();
const detail = (row: AuditRow | undefined) => JSON.parse(row!.detail) as Record<string, unknown>;

describe('the kernel audit trail', () => {
  let dataDir: string;
  let kernel: Kernel;

  beforeAll(async () => {
    dataDir = tempDir('audit-kernel');
    writeFileSync(join(dataDir, 'warden.config.json'), config(30, 'hello'));
    kernel = await Kernel.start({ dataDir, quiet: true, env });
    const wasm = await buildWorld('envy', ENVY, 'import warden:kernel/mesh@0.1.0;\nimport wasi:cli/environment@0.2.12;\nexport warden:kernel/tool@0.1.0;');
    const manifest = parseManifest({ name: 'envy', version: '1', kind: 'tool', requests: { env: ['API_TOKEN', 'GREETING'], mesh: ['*'] } }, 'envy');
    await kernel.loadComponent({ name: 'envy', manifest, file: wasm, builtin: false });
  });
  afterAll(async () => kernel?.close());

  it('a start records kernel.start, config.load, then one component.load per component with its effective grants', () => {
    const rows = entries(kernel);
    expect(rows[0]).toMatchObject({ seq: 1, kind: 'kernel.start' });
    expect(detail(rows[0])).toMatchObject({ pid: process.pid });
    expect(rows[1]!.kind).toBe('config.load');
    expect(detail(rows[1])['fields']).toEqual(expect.arrayContaining(['grants', 'maxTurns', 'server']));
    const loads = rows.filter((r) => r.kind === 'component.load');
    expect(loads.map((r) => r.component).sort()).toEqual(Object.keys(kernel.state.current.components).sort());
    const envy = detail(loads.find((r) => r.component === 'envy'));
    // Effective = requested ∩ granted: mesh narrowed to read-file; env by name only.
    expect(envy).toMatchObject({ name: 'envy', origin: 'pinned', grants: { mesh: ['read-file'], env: ['API_TOKEN', 'GREETING'] } });
    expect(detail(loads.find((r) => r.component === 'read-file'))).toMatchObject({ origin: 'builtin', grants: { filesystem: 'session:ro' } });
  });

  it('a granted secret reaches its component but never the audit log, the head anchor or meta (after a load and a denial)', async () => {
    const ctx = { taskId: '', sessionId: null, chain: [], deadline: Date.now() + 20_000, grants: KERNEL_GRANTS };
    const reply = await kernel.mesh.call('envy', 'call', { tag: 'json', val: '{}' }, ctx);
    if (!reply.ok) throw new Error(reply.error.message);
    const result = JSON.parse((JSON.parse((reply.payload as { val: string }).val) as { output: string }).output) as { env: string[][]; denied: unknown };
    // The grant works: the component sees the value (so the check below is not vacuous).
    expect(result.env).toContainEqual(['API_TOKEN', SECRET]);
    expect(result.denied).toMatchObject({ tag: 'denied' });
    const denials = entries(kernel).filter((r) => r.kind === 'denied' && r.component === 'envy');
    expect(denials.length).toBeGreaterThan(0);
    expect(denials.map((r) => r.detail).join('\n')).toContain('write-file');

    const db = new Database(join(dataDir, 'warden.db'), { readonly: true });
    const everything = JSON.stringify([db.prepare('SELECT * FROM audit').all(), db.prepare('SELECT * FROM meta').all()]);
    db.close();
    expect(everything.includes(SECRET)).toBe(false);
    expect(everything.includes('hello')).toBe(false);
    expect(readFileSync(join(dataDir, AUDIT_HEAD_FILE), 'utf8').includes(SECRET)).toBe(false);
  });

  it('`warden audit verify` passes while the kernel runs and appends', async () => {
    const before = kernel.store.auditEvents(1)[0]!.seq;
    const verify = run(process.execPath, [join(PACKAGE_ROOT, 'bin/warden.js'), 'audit', 'verify', '--json', '--data-dir', dataDir], { timeout: 60_000 });
    // Append for as long as the command runs, so its read overlaps appends and anchor moves.
    let done = false;
    void verify.finally(() => (done = true)).catch(() => undefined);
    let appended = 0;
    while (!done) {
      kernel.store.audit('limit', { probe: appended++ }, 'envy');
      await new Promise((r) => setTimeout(r, 2));
    }
    const report = JSON.parse((await verify).stdout) as { ok: boolean; entries: number };
    expect(report.ok).toBe(true);
    expect(report.entries).toBeGreaterThan(before);
    expect(appended).toBeGreaterThan(20);
    expect(verifyAudit(kernel.store)).toMatchObject({ ok: true, entries: before + appended });
  });

  it('a restart records kernel.stop, kernel.start and config.change naming the changed fields, no values; the same config again records nothing', async () => {
    await kernel.close();
    writeFileSync(join(dataDir, 'warden.config.json'), config(12, 'hola'));
    kernel = await Kernel.start({ dataDir, quiet: true, env });
    let rows = entries(kernel);
    const stop = rows.findIndex((r) => r.kind === 'kernel.stop');
    expect(stop).toBeGreaterThan(0);
    expect(rows.slice(stop + 1, stop + 3).map((r) => r.kind)).toEqual(['kernel.start', 'config.change']);
    const change = detail(rows[stop + 2]);
    expect(change['changed']).toEqual(['grants', 'maxTurns']);
    expect(change['digest']).not.toBe(change['previous']);
    expect(JSON.stringify(rows).includes('hola')).toBe(false);

    await kernel.close();
    kernel = await Kernel.start({ dataDir, quiet: true, env });
    rows = entries(kernel);
    expect(rows.filter((r) => r.kind === 'config.change')).toHaveLength(1);
    expect(rows.filter((r) => r.kind === 'kernel.start')).toHaveLength(3);
    expect(verifyAudit(kernel.store)).toMatchObject({ ok: true });
  });
});
