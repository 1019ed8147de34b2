/**
 * `warden tool run`: run one component the way `wasmtime run` does — a standard
 * `wasi:cli/command` (args, stdin, stdout, stderr, exit code) or a Warden `tool` (input JSON) —
 * with nothing of the host visible but the directories and variables named on the command line.
 * `--dir` mounts read-only; `--dir-rw` mounts through a session committed only with `--commit`.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Engine } from '../engine/index.js';
import { transpileCacheDir } from '../paths.js';
import { WardenError, messageOf } from '../errors.js';
import { DEFAULT_LIMITS, grantFields, intersect, NO_GRANTS, type Grants, type Limits } from '../grants/index.js';
import { effectiveOf, openDataDir } from './component.js';
import { Mesh, type Notice } from '../mesh/index.js';
import { fetchGranted } from '../http/outbound.js';
import type { OutboundRequest } from '../wasi/http.js';
import { SessionFs, type FileChange } from '../vfs/index.js';

/** Options of one run. */
export interface ToolRunOptions {
  component: string;
  args: string[];
  dirs: string[];
  dirsRw: string[];
  commit: boolean;
  env: string[];
  /** Wall-clock limit, ms (default 300000; for a registered component: its limit, lowered by this). */
  timeoutMs?: number;
  /** Memory cap per core memory, MiB (default 256; for a registered component: its limit, lowered by this). */
  maxMemoryMb?: number;
  /** Outbound HTTP hosts to grant (see `Grants.http`). */
  allowHttp?: string[];
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

/** Validate `--allow-http` values. @throws WardenError `E_BAD_INPUT` naming the bad one */
function parseHosts(hosts: string[]): string[] {
  for (const host of hosts) {
    if (!grantFields.http.element.safeParse(host).success) {
      throw new WardenError('E_BAD_INPUT', `--allow-http ${host}: expected HOST, HOST:PORT, *.SUFFIX or *.SUFFIX:PORT (no scheme, no path)`);
    }
  }
  return hosts;
}

/** What to run and the most it may be given. */
interface RunPlan {
  file: string;
  sha256?: string;
  limits: Limits;
  /** For a registered component: its effective grants (the command line may only narrow them). */
  granted?: Grants;
}

/**
 * A path to a `.wasm` runs with exactly what the command line grants. A name runs the built-in
 * or pinned component of that name (checked against its sha256) with at most its effective
 * grants and limits from the data directory's config.
 */
function resolveComponent(options: ToolRunOptions): RunPlan {
  const cliLimits = (base: Limits): Limits => ({
    timeoutMs: Math.min(base.timeoutMs, options.timeoutMs ?? Infinity),
    memoryMb: Math.min(base.memoryMb, options.maxMemoryMb ?? Infinity),
    outputBytes: Math.min(base.outputBytes, options.outputBytes ?? Infinity),
  });
  const isName = /^[a-z][a-z0-9-]*$/.test(options.component) && !existsSync(options.component);
  if (!isName) {
    // A file runs with exactly what the command line says (defaults where it says nothing).
    return {
      file: resolve(options.component),
      limits: {
        timeoutMs: options.timeoutMs ?? 300_000,
        memoryMb: options.maxMemoryMb ?? DEFAULT_LIMITS.memoryMb,
        outputBytes: options.outputBytes ?? DEFAULT_LIMITS.outputBytes,
      },
    };
  }
  const data = openDataDir(options.dataDir);
  try {
    const component = data.registry.get(options.component);
    const problem = data.registry.verify(component);
    if (problem) throw new WardenError(problem.startsWith('E_NOT_FOUND') ? 'E_NOT_FOUND' : 'E_DIGEST_MISMATCH', problem.replace(/^E_[A-Z_]+: /, ''));
    const effective = effectiveOf(data, component);
    return { file: component.file, ...(component.sha256 ? { sha256: component.sha256 } : {}), limits: cliLimits(effective.limits), granted: effective.grants };
  } finally {
    data.close();
  }
}

/** @throws WardenError `E_CAPABILITY_DENIED` when the command line asks for more than `granted`. */
function checkWithin(name: string, asked: Grants, granted: Grants): void {
  const order = ['none', 'session:ro', 'session:rw'];
  if (order.indexOf(asked.filesystem) > order.indexOf(granted.filesystem)) {
    throw new WardenError('E_CAPABILITY_DENIED', `${name} is granted filesystem ${granted.filesystem}; ${asked.filesystem === 'session:rw' ? '--dir-rw' : '--dir'} needs more (set grants.${name}.filesystem in warden.config.json)`);
  }
  const extraEnv = Object.keys(asked.env).filter((key) => !(key in granted.env));
  if (extraEnv.length) throw new WardenError('E_CAPABILITY_DENIED', `${name} is not granted environment variable(s) ${extraEnv.join(', ')} (grants.${name}.env)`);
  const extraHttp = asked.http.filter((host) => intersect({ ...NO_GRANTS, http: [host] }, { ...NO_GRANTS, http: granted.http }).http.length === 0);
  if (extraHttp.length) throw new WardenError('E_CAPABILITY_DENIED', `${name} is not granted outbound HTTP to ${extraHttp.join(', ')} (grants.${name}.http)`);
  // Granted env values the command line does not override are passed as configured.
  for (const [key, value] of Object.entries(granted.env)) if (!(key in asked.env)) asked.env[key] = value;
  if (asked.http.length === 0) asked.http = granted.http;
}

/** Run a component once. Never throws for guest failures: they become exit codes. */
export async function runTool(options: ToolRunOptions): Promise<ToolRunResult> {
  const scratch = mkdtempSync(join(tmpdir(), 'warden-tool-'));
  const sessions = new SessionFs(join(options.dataDir, 'sessions'));
  const mounts: Array<{ sessionId: string; guestPath: string; mode: 'ro' | 'rw'; host: string }> = [];
  const engine = new Engine(transpileCacheDir(options.dataDir));
  let mesh: Mesh | null = null;
  try {
    for (const [spec, mode] of [...options.dirs.map((d) => [d, 'ro'] as const), ...options.dirsRw.map((d) => [d, 'rw'] as const)]) {
      const { host, guest } = parseMount(spec);
      const meta = sessions.begin(host);
      mounts.push({ sessionId: meta.id, guestPath: guest, mode, host });
    }
    const plan = resolveComponent(options);
    const compiled = await engine.load(plan.file, { memoryMb: plan.limits.memoryMb, ...(plan.sha256 ? { expectSha256: plan.sha256 } : {}) });
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
      http: parseHosts(options.allowHttp ?? []),
    };
    if (plan.granted) checkWithin(options.component, grants, plan.granted);
    mesh = new Mesh(
      {
        request: async (op, body, ctx) => {
          if (op === 'session.meta') return { workspace: sessions.meta(String((body as { id: string }).id)).workspace };
          if (op === 'http.fetch') {
            // The worker refuses (and reports) ungranted requests before asking; this re-check is the last line.
            return fetchGranted(body as OutboundRequest, ctx.grants.http, { maxBodyBytes: plan.limits.outputBytes, deadline: ctx.deadline, onDenied: () => undefined });
          }
          throw new WardenError('E_CAPABILITY_DENIED', `capability not granted: ${op}`);
        },
        notice: (notice: Notice) => {
          if (notice.op === 'stdout') options.stdout(notice.body as Uint8Array);
          else if (notice.op === 'stderr') options.stderr(notice.body as Uint8Array);
          else if (notice.op === 'denied' || (notice.op === 'limit' && (notice.body as { limit?: string }).limit === 'outputBytes')) {
            // The operator sees why: one line per denial or cut output (time and memory end the run: its reason says so).
            const reason = String((notice.body as { reason?: unknown }).reason ?? notice.op);
            options.stderr(new Uint8Array(Buffer.from(`warden: ${notice.op}: ${reason}\n`)));
          }
        },
      },
      { sessionsDir: sessions.sessionsDir, sqlDir: join(scratch, 'scopes') },
    );
    await mesh.add({
      name: 'guest',
      kind,
      compiled,
      grants,
      limits: plan.limits,
      pool: { min: 1, max: 1, spares: 0 },
      // One call per run: instantiate inside it, so a guest's initialisation sees its grants.
      prewarm: false,
      mounts: mounts.map(({ sessionId, guestPath, mode }) => ({ sessionId, guestPath, mode })),
    });
    const ctx = {
      taskId: '', sessionId: null, chain: [], deadline: Date.now() + plan.limits.timeoutMs, grants,
      args: [options.component.replace(/^.*\//, ''), ...options.args],
    };
    let result: ToolRunResult;
    if (kind === 'command') {
      const reply = await mesh.call('guest', 'run', { tag: 'json', val: 'null' }, { ...ctx, stdin: options.stdin() });
      if (reply.ok) result = { exitCode: reply.exitCode ?? 0, changes: [] };
      else if (reply.error.tag === 'timeout') result = { exitCode: 124, reason: `stopped: wall-clock limit of ${plan.limits.timeoutMs} ms`, changes: [] };
      else if (reply.exitCode !== undefined && reply.exitCode !== 125) result = { exitCode: reply.exitCode, changes: [] };
      else result = { exitCode: 125, reason: reply.error.message, changes: [] };
    } else {
      const input = options.args[0] ?? Buffer.from(options.stdin()).toString('utf8');
      const reply = await mesh.call('guest', 'call', { tag: 'json', val: input }, ctx);
      if (reply.ok) result = { exitCode: 0, output: (JSON.parse((reply.payload as { val: string }).val) as { output: string }).output, changes: [] };
      else if (reply.error.tag === 'timeout') result = { exitCode: 124, reason: `stopped: wall-clock limit of ${plan.limits.timeoutMs} ms`, changes: [] };
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
