/**
 * `warden tool run`: run one component the way `wasmtime run` does — a standard
 * `wasi:cli/command` (args, stdin, stdout, stderr, exit code) or a Warden `tool` (input JSON) —
 * with nothing of the host visible but the directories and variables named on the command line.
 * `--dir` mounts read-only; `--dir-rw` mounts through a session committed only with `--commit`.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Engine } from '../engine/index.js';
import { WardenError, messageOf } from '../errors.js';
import { DEFAULT_LIMITS, NO_GRANTS, type Grants } from '../grants/index.js';
import { Mesh, type Notice } from '../mesh/index.js';
import { SessionFs, type FileChange } from '../vfs/index.js';

/** Options of one run. */
export interface ToolRunOptions {
  component: string;
  args: string[];
  dirs: string[];
  dirsRw: string[];
  commit: boolean;
  env: string[];
  timeoutMs: number;
  maxMemoryMb: number;
  /** Cap on stdout + stderr, bytes; excess is cut with a marker. */
  outputBytes?: number;
  dataDir: string;
  stdin: () => Uint8Array;
  stdout: (bytes: Uint8Array) => void;
  stderr: (bytes: Uint8Array) => void;
}

/** Outcome of a run. `exitCode`: the guest's; 124 wall-clock limit; 125 refused or stopped. */
export interface ToolRunResult {
  exitCode: number;
  /** For tools: the output text. */
  output?: string;
  /** One-line reason when the kernel refused or stopped the guest. */
  reason?: string;
  changes: Array<{ mount: string; committed: boolean; changes: FileChange[] }>;
}

function parseMount(spec: string): { host: string; guest: string } {
  const [host, guest] = spec.split('::');
  if (!host) throw new WardenError('E_BAD_INPUT', `--dir ${spec}: expected HOST[::GUEST]`);
  return { host: resolve(host), guest: guest ?? host };
}

function parseEnv(specs: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    if (eq === 0) throw new WardenError('E_BAD_INPUT', `--env ${spec}: expected NAME or NAME=VALUE`);
    if (eq < 0) env[spec] = process.env[spec] ?? '';
    else env[spec.slice(0, eq)] = spec.slice(eq + 1);
  }
  return env;
}

/** Run a component once. Never throws for guest failures: they become exit codes. */
export async function runTool(options: ToolRunOptions): Promise<ToolRunResult> {
  const scratch = mkdtempSync(join(tmpdir(), 'warden-tool-'));
  const sessions = new SessionFs(join(options.dataDir, 'sessions'));
  const mounts: Array<{ sessionId: string; guestPath: string; mode: 'ro' | 'rw'; host: string }> = [];
  const engine = new Engine(join(options.dataDir, 'cache'));
  let mesh: Mesh | null = null;
  try {
    for (const [spec, mode] of [...options.dirs.map((d) => [d, 'ro'] as const), ...options.dirsRw.map((d) => [d, 'rw'] as const)]) {
      const { host, guest } = parseMount(spec);
      const meta = sessions.begin(host);
      mounts.push({ sessionId: meta.id, guestPath: guest, mode, host });
    }
    const compiled = await engine.load(resolve(options.component), { memoryMb: options.maxMemoryMb });
    const kind = compiled.exports.some((e) => e.startsWith('wasi:cli/run'))
      ? 'command'
      : compiled.exports.some((e) => e.startsWith('warden:kernel/tool'))
        ? 'tool'
        : null;
    if (!kind) {
      throw new WardenError('E_COMPONENT_INVALID', `${options.component} exports neither wasi:cli/run nor warden:kernel/tool (exports: ${compiled.exports.join(', ')})`);
    }
    const grants: Grants = {
      ...NO_GRANTS,
      filesystem: mounts.some((m) => m.mode === 'rw') ? 'session:rw' : mounts.length ? 'session:ro' : 'none',
      env: parseEnv(options.env),
    };
    mesh = new Mesh(
      {
        request: async (op, body) => {
          if (op === 'session.meta') return { workspace: sessions.meta(String((body as { id: string }).id)).workspace };
          throw new WardenError('E_CAPABILITY_DENIED', `capability not granted: ${op}`);
        },
        notice: (notice: Notice) => {
          if (notice.op === 'stdout') options.stdout(notice.body as Uint8Array);
          else if (notice.op === 'stderr') options.stderr(notice.body as Uint8Array);
        },
      },
      { sessionsDir: sessions.sessionsDir, sqlDir: join(scratch, 'scopes') },
    );
    await mesh.add({
      name: 'guest',
      kind,
      compiled,
      grants,
      limits: { timeoutMs: options.timeoutMs, memoryMb: options.maxMemoryMb, outputBytes: options.outputBytes ?? DEFAULT_LIMITS.outputBytes },
      workers: 1,
      mounts: mounts.map(({ sessionId, guestPath, mode }) => ({ sessionId, guestPath, mode })),
    });
    const ctx = {
      taskId: '', sessionId: null, chain: [], deadline: Date.now() + options.timeoutMs, grants,
      args: [options.component.replace(/^.*\//, ''), ...options.args],
    };
    let result: ToolRunResult;
    if (kind === 'command') {
      const reply = await mesh.call('guest', 'run', { tag: 'json', val: 'null' }, { ...ctx, stdin: options.stdin() });
      if (reply.ok) result = { exitCode: reply.exitCode ?? 0, changes: [] };
      else if (reply.error.tag === 'timeout') result = { exitCode: 124, reason: `stopped: wall-clock limit of ${options.timeoutMs} ms`, changes: [] };
      else if (reply.exitCode !== undefined && reply.exitCode !== 125) result = { exitCode: reply.exitCode, changes: [] };
      else result = { exitCode: 125, reason: reply.error.message, changes: [] };
    } else {
      const input = options.args[0] ?? Buffer.from(options.stdin()).toString('utf8');
      const reply = await mesh.call('guest', 'call', { tag: 'json', val: input }, ctx);
      if (reply.ok) result = { exitCode: 0, output: (JSON.parse((reply.payload as { val: string }).val) as { output: string }).output, changes: [] };
      else if (reply.error.tag === 'timeout') result = { exitCode: 124, reason: `stopped: wall-clock limit of ${options.timeoutMs} ms`, changes: [] };
      else if (reply.trapped) result = { exitCode: 125, reason: reply.error.message, changes: [] };
      else result = { exitCode: 1, output: reply.error.message, changes: [] };
    }
    for (const mount of mounts) {
      if (mount.mode !== 'rw') continue;
      const changes = sessions.diff(mount.sessionId);
      const commit = options.commit && result.exitCode === 0;
      if (commit) sessions.commit(mount.sessionId);
      result.changes.push({ mount: mount.host, committed: commit, changes });
    }
    return result;
  } catch (err) {
    return { exitCode: 125, reason: messageOf(err).split('\n')[0]!, changes: [] };
  } finally {
    await mesh?.close();
    for (const mount of mounts) {
      try {
        sessions.rollback(mount.sessionId);
      } catch {
        /* committed: already gone */
      }
    }
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** Read all of standard input when it is not a terminal. */
export function readStdin(): Uint8Array {
  if (process.stdin.isTTY) return new Uint8Array();
  try {
    return readFileSync(0);
  } catch {
    return new Uint8Array();
  }
}
