// Hot reload of a pinned component in a running kernel, with real workers and real processes:
// `warden component add` / `remove` from a child process change the pin while the kernel serves
// calls from the main thread and from a guest caller in another worker. New calls go to the new
// version, calls in flight finish on the old one, none fails; a broken new version leaves the old
// one serving; removal ends with `E_MESH_UNKNOWN_TARGET`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { Kernel } from '../../kernel/kernel.js';
import { parseManifest } from '../../kernel/grants/index.js';
import { sha256Hex } from '../../kernel/engine/index.js';
import { Store } from '../../kernel/store/index.js';
import type { Envelope } from '../../kernel/state/index.js';
import type { CallReply } from '../../kernel/mesh/index.js';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import { openDataDir } from '../../kernel/cli/component.js';
import { tempDir } from '../support/fixtures.js';
import { buildWorld } from '../support/worlds.js';
import { json, kernelCtx, outputOf } from '../mesh/harness.js';

const run = promisify(execFile);
const warden = join(PACKAGE_ROOT, 'bin/warden.js');

/** `warden …` as a child process (another process than the kernel's, as an operator runs it). */
async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [warden, ...args], { timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/**
 * A tool that answers `version`. `{sleepMs}` makes it block on the monotonic clock first;
 * `{hold: KEY}` keeps it in the call until the test inserts KEY into `releases` in its SQL scope
 * (so a call stays in flight across a swap however slow the machine is).
 */
function flipSource(version: string): string {
  return `
import { subscribeDuration } from 'wasi:clocks/monotonic-clock@0.2.12';
import { query } from 'warden:kernel/sql@0.1.0';
const sleep = (ms) => subscribeDuration(ms * 1000000).block();
export const tool = {
  describe() { return { name: 'flip', description: 'answers which version it is', inputSchema: '{}' }; },
  call(input) {
    const req = JSON.parse(input || '{}');
    if (req.sleepMs) sleep(req.sleepMs);
    while (req.hold && Number(query('SELECT count(*) FROM releases WHERE k = ?', [{ tag: 'text', val: req.hold }]).values[0][0].val) === 0) sleep(20);
    return '${version}';
  },
};`;
}
const FLIP_WORLD = 'import wasi:clocks/monotonic-clock@0.2.12;\nimport warden:kernel/sql@0.1.0;\nexport warden:kernel/tool@0.1.0;';

/**
 * A guest caller: calls `target` with `input` over and over (its board and ports cached after
 * the first call) until it has seen the answer `until` and then `after` more calls, or `max`
 * calls in all. Returns every answer in order (`{error}` for a failed call).
 */
const CALLER_SOURCE = `
import { call } from 'warden:kernel/mesh@0.1.0';
export const tool = {
  describe() { return { name: 'caller', description: 'calls a tool in a loop', inputSchema: '{}' }; },
  call(input) {
    const req = JSON.parse(input);
    const seen = [];
    let left = -1;
    for (let i = 0; i < req.max && left !== 0; i++) {
      try {
        const out = JSON.parse(call(req.target, 'call', { tag: 'json', val: JSON.stringify(req.input) }).val).output;
        seen.push(out);
        if (out === req.until && left < 0) left = req.after + 1;
      } catch (e) {
        seen.push({ error: e && e.payload !== undefined ? e.payload : String(e) });
      }
      if (left > 0) left--;
    }
    return JSON.stringify(seen);
  },
};`;
const CALLER_WORLD = 'import warden:kernel/mesh@0.1.0;\nexport warden:kernel/tool@0.1.0;';

let kernel: Kernel;
let dataDir: string;
const wasm: Record<'v1' | 'v2', string> = { v1: '', v2: '' };
const manifest: Record<'v1' | 'v2', string> = { v1: '', v2: '' };
const envelopes: Envelope[] = [];

beforeAll(async () => {
  dataDir = tempDir('reload');
  const [v1, v2, caller] = await Promise.all([
    buildWorld('flip-v1', flipSource('v1'), FLIP_WORLD), buildWorld('flip-v2', flipSource('v2'), FLIP_WORLD), buildWorld('caller', CALLER_SOURCE, CALLER_WORLD),
  ]);
  Object.assign(wasm, { v1, v2 });
  for (const v of ['v1', 'v2'] as const) {
    manifest[v] = join(dataDir, `flip-${v}.json`);
    writeFileSync(manifest[v], JSON.stringify({
      name: 'flip', version: v === 'v1' ? '1.0.0' : '2.0.0', kind: 'tool', description: `flip ${v}`, requests: { sql: { scope: 'flip', mode: 'ro' } },
    }));
  }
  // The guest caller may call `flip`; `flip` may read its scope, where the test releases held calls.
  writeFileSync(join(dataDir, 'warden.config.json'), JSON.stringify({ grants: { caller: { mesh: ['flip'] }, flip: { sql: { scope: 'flip', mode: 'ro' } } } }));
  mkdirSync(join(dataDir, 'scopes'));
  const scope = new Database(join(dataDir, 'scopes', 'flip.db'));
  scope.exec('CREATE TABLE releases (k TEXT)');
  scope.close();
  // Pinned the way `warden component add` pins, before the kernel starts.
  const data = openDataDir(dataDir);
  try {
    await data.registry.add(wasm.v1, { name: 'flip', manifestPath: manifest.v1 });
  } finally {
    data.close();
  }
  kernel = await Kernel.start({ dataDir, quiet: true });
  kernel.state.subscribe((e) => envelopes.push(e));
  await kernel.loadComponent({
    name: 'caller', builtin: false, file: caller,
    manifest: parseManifest({ name: 'caller', version: '0.0.1', kind: 'tool', requests: { mesh: ['flip'] }, limits: { timeoutMs: 120_000 } }, 'test:caller'),
  });
}, 180_000);

afterAll(async () => {
  await kernel?.close();
});

/** The kernel calls `flip`; its answer, or the error. */
async function flip(input: object = {}, ms = 20_000): Promise<CallReply> {
  return kernel.mesh.call('flip', 'call', json(input), kernelCtx(ms));
}

/** Let the held calls with `key` finish. */
function release(key: string): void {
  const scope = new Database(join(dataDir, 'scopes', 'flip.db'), { timeout: 5000 });
  scope.prepare('INSERT INTO releases (k) VALUES (?)').run(key);
  scope.close();
}

/** A call to `flip` held until {@link release}; whether it has settled yet, and when. */
function held(key: string) {
  const call = { settled: false, at: 0, reply: undefined as unknown as Promise<CallReply> };
  call.reply = flip({ hold: key }, 60_000).then((reply) => {
    Object.assign(call, { settled: true, at: Date.now() });
    return reply;
  });
  return call;
}

/** Calls `flip`'s workers have served so far (the version in service). */
function served(): number {
  return kernel.mesh.pools().find((p) => p.name === 'flip')?.workers.reduce((n, w) => n + w.served, 0) ?? 0;
}

/** Poll until `check` holds (within `ms`); how long it took. */
async function until(what: string, check: () => boolean | Promise<boolean>, ms = 15_000): Promise<number> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return Date.now() - start;
}

/** The kernel calls `flip` back to back until `stop` resolves; every reply in order. */
async function hammer(stop: Promise<unknown>): Promise<CallReply[]> {
  let done = false;
  void stop.then(() => (done = true));
  const replies: CallReply[] = [];
  while (!done) {
    replies.push(await flip({ sleepMs: 5 }));
    await new Promise((r) => setTimeout(r, 5));
  }
  return replies;
}

/** Answers switch from `from` to `to` exactly once and never back. */
function switchedOnce(answers: string[], from: string, to: string): void {
  const firstNew = answers.indexOf(to);
  expect(firstNew).toBeGreaterThan(0);
  expect(answers.slice(0, firstNew).every((a) => a === from)).toBe(true);
  expect(answers.slice(firstNew).every((a) => a === to)).toBe(true);
}

function auditDetails(kind: string): Array<Record<string, unknown>> {
  return kernel.store.auditEvents(200, { kind }).map((row) => JSON.parse(String(row.detail)) as Record<string, unknown>);
}

function flipEntry() {
  return kernel.state.current.components['flip'];
}

describe('hot reload of a pinned component', () => {
  it('`warden component add` from another process replaces v1 by v2 while the kernel runs: calls answer v2, the state document shows version, sha256 and generation 2', async () => {
    expect(outputOf(await flip())).toBe('v1');
    expect(flipEntry()).toMatchObject({ version: '1.0.0', sha256: sha256Hex(readFileSync(wasm.v1)), generation: 1, status: 'loaded' });
    const seqBefore = kernel.state.seq;

    const added = await cli('component', 'add', wasm.v2, '--name', 'flip', '--manifest', manifest.v2, '--data-dir', dataDir);
    expect(added.code, added.stderr).toBe(0);
    const pinnedAt = Date.now();
    let answer = '';
    await until('flip to answer v2', async () => (answer = outputOf(await flip())) === 'v2');
    const v2sha = sha256Hex(readFileSync(wasm.v2));
    const entry = flipEntry()!;
    expect(entry).toMatchObject({ version: '2.0.0', sha256: v2sha, generation: 2, status: 'loaded', origin: 'pinned' });
    expect(entry.reloadedAt).toBeGreaterThanOrEqual(pinnedAt - 1000);
    expect(entry.reloadError).toBeUndefined();
    // The change was streamed as patches on /components/flip.
    kernel.state.flush();
    const ops = envelopes.filter((e) => e.seq > seqBefore).flatMap((e) => e.ops).filter((op) => op.path.startsWith('/components/flip'));
    expect(ops.some((op) => JSON.stringify(op).includes(v2sha))).toBe(true);
    expect(ops.some((op) => (op.path === '/components/flip/generation' && 'value' in op && op.value === 2) || JSON.stringify(op).includes('"generation":2'))).toBe(true);
    expect(auditDetails('component.reload')[0]).toMatchObject({ name: 'flip', from: sha256Hex(readFileSync(wasm.v1)), to: v2sha, version: '2.0.0', outcome: 'ok' });
    // Recorded for the next start too.
    expect(kernel.store.components().find((c) => c.name === 'flip')?.sha256).toBe(v2sha);
    console.log(`reload: pin written → first v2 answer in ${Date.now() - pinnedAt} ms`);
  }, 60_000);

  it('a call in flight on the old version finishes there with its answer; calls after the swap get the new version; none fails', async () => {
    // A call held on v2, then v1's bytes pinned again, while the kernel calls non-stop.
    const slow = held('in-flight');
    await until('the held call to be running', () => kernel.mesh.pools().find((p) => p.name === 'flip')!.workers.some((w) => w.load > 0), 5000);
    let pinned!: () => void;
    const swapped = new Promise<void>((resolve) => (pinned = resolve));
    const stream = hammer(swapped.then(() => until('v1 to serve', () => flipEntry()?.sha256 === sha256Hex(readFileSync(wasm.v1)))).then(() => new Promise((r) => setTimeout(r, 300))));
    const added = await cli('component', 'add', wasm.v1, '--name', 'flip', '--manifest', manifest.v1, '--data-dir', dataDir);
    expect(added.code, added.stderr).toBe(0);
    pinned();
    const replies = await stream;
    // v1 serves; the held call is still in flight on v2, whose worker is kept for it.
    expect(slow.settled).toBe(false);
    expect(kernel.mesh.retiring()).toEqual([{ name: 'flip', workers: expect.any(Number) }]);
    release('in-flight');
    expect(outputOf(await slow.reply)).toBe('v2');
    expect(replies.filter((r) => !r.ok).map((r) => !r.ok && r.error.message)).toEqual([]);
    switchedOnce(replies.map(outputOf), 'v2', 'v1');
    expect(flipEntry()).toMatchObject({ version: '1.0.0', generation: 3 });
    // The old workers stopped once idle.
    await until('the old workers to stop', () => kernel.mesh.retiring().length === 0);
  }, 60_000);

  it('a guest caller in another worker calling in a loop across the swap: every call succeeds, answers switch once and never back', async () => {
    // The guest caches flip's board and ports at its first call, then loops until it has seen v2 and 50 calls more.
    const before = served();
    const loop = kernel.mesh.call('caller', 'call', json({ target: 'flip', input: { sleepMs: 5 }, until: 'v2', after: 50, max: 2000 }), kernelCtx(120_000));
    await until('the guest loop to be calling', () => served() >= before + 5);
    const added = await cli('component', 'add', wasm.v2, '--name', 'flip', '--manifest', manifest.v2, '--data-dir', dataDir);
    expect(added.code, added.stderr).toBe(0);
    const answers = JSON.parse(outputOf(await loop)) as Array<string | { error: unknown }>;
    expect(answers.filter((a) => typeof a !== 'string')).toEqual([]);
    switchedOnce(answers as string[], 'v1', 'v2');
    expect(answers.filter((a) => a === 'v2')).toHaveLength(51);
    expect(flipEntry()).toMatchObject({ version: '2.0.0', generation: 4 });
  }, 90_000);

  it('a broken new version (bytes that are not a component) keeps v2 serving, sets reloadError and audits the failure', async () => {
    const garbage = join(dataDir, 'components', 'flip', 'broken.wasm');
    const bytes = Buffer.from('\0asm this is not a component at all');
    writeFileSync(garbage, bytes);
    const sha256 = sha256Hex(bytes);
    // Pinned by another connection to the store, as a careless tool (or a damaged copy) would.
    const store = new Store(join(dataDir, 'warden.db'));
    try {
      const pin = store.pin('flip')!;
      store.upsertPin({ ...pin, sha256, file: garbage, size: bytes.length, version: '3.0.0', added_at: new Date().toISOString() });
    } finally {
      store.close();
    }
    await until('reloadError', () => flipEntry()?.reloadError !== undefined);
    expect(flipEntry()).toMatchObject({ version: '2.0.0', generation: 4, status: 'loaded', sha256: sha256Hex(readFileSync(wasm.v2)) });
    expect(flipEntry()!.reloadError).toMatch(new RegExp(`^sha256 ${sha256}: E_COMPONENT_INVALID: `));
    expect(outputOf(await flip())).toBe('v2');
    expect(auditDetails('component.reload')[0]).toMatchObject({ name: 'flip', from: sha256Hex(readFileSync(wasm.v2)), to: sha256, outcome: 'failed' });
    // A good version added after the failure loads, and clears the error.
    const added = await cli('component', 'add', wasm.v1, '--name', 'flip', '--manifest', manifest.v1, '--data-dir', dataDir);
    expect(added.code, added.stderr).toBe(0);
    await until('v1 to serve again', async () => outputOf(await flip()) === 'v1');
    expect(flipEntry()).toMatchObject({ version: '1.0.0', generation: 5 });
    expect(flipEntry()!.reloadError).toBeUndefined();
  }, 60_000);

  it('`warden component remove`: a call in flight finishes, new calls from the kernel and from guests get E_MESH_UNKNOWN_TARGET, the entry leaves the state document', async () => {
    // The guest caller holds a cached board of flip (from the case before): it must learn of the removal too.
    const slow = held('removal');
    await until('the held call to be running', () => kernel.mesh.pools().find((p) => p.name === 'flip')!.workers.some((w) => w.load > 0), 5000);
    const removed = await cli('component', 'remove', 'flip', '--data-dir', dataDir);
    expect(removed.code, removed.stderr).toBe(0);
    await until('flip to be unknown', async () => {
      const reply = await flip();
      return !reply.ok && reply.error.tag === 'unknown-target';
    });
    const reply = await flip();
    expect(!reply.ok && reply.error.message).toMatch(/^E_MESH_UNKNOWN_TARGET: /);
    expect(flipEntry()).toBeUndefined();
    const guest = JSON.parse(outputOf(await kernel.mesh.call('caller', 'call', json({ target: 'flip', input: {}, until: 'never', after: 0, max: 1 }), kernelCtx(10_000)))) as Array<{ error: { tag: string; val: string } }>;
    expect(guest).toHaveLength(1);
    expect(guest[0]!.error).toMatchObject({ tag: 'unknown-target' });
    expect(guest[0]!.error.val).toMatch(/^E_MESH_UNKNOWN_TARGET: /);
    // The call admitted before the removal is still running, on a worker kept for it.
    expect(slow.settled).toBe(false);
    expect(kernel.mesh.retiring()).toEqual([{ name: 'flip', workers: expect.any(Number) }]);
    release('removal');
    expect(outputOf(await slow.reply)).toBe('v1');
    expect(auditDetails('component.unload')[0]).toMatchObject({ name: 'flip' });
    await until('the removed workers to stop', () => kernel.mesh.retiring().length === 0);
    expect(kernel.mesh.pools().some((p) => p.name === 'flip')).toBe(false);
  }, 60_000);
});
