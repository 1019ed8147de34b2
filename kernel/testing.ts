/**
 * `warden/testing`: one component in a real kernel, for its author's tests (`node --test` or
 * vitest) and for `warden test-component`. The component is pinned in a data directory the way
 * `warden component add` pins it, granted what its manifest requests (a `warden.config.json`
 * written there, unless the directory has a config already), and a kernel starts on it; calls go
 * through the mesh like any caller's, with a session on a workspace mounted for them. Temporary
 * data directories share one transpile cache (`build/transpile-cache`), so a second run starts
 * in a fraction of the first one's time.
 *
 * @example
 * const tool = await startKernelWith({ wasm: 'dist/hello.wasm', manifest: 'manifest.json', workspace: { 'README.md': '# Demo\n' } });
 * const result = await tool.call('call', { path: 'README.md' }); // { ok: true, output: '…', ms: 12 }
 * await tool.close();
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDataDir } from './cli/component.js';
import { configFile } from './config/index.js';
import { WardenError } from './errors.js';
import { KERNEL_GRANTS, parseManifest, readManifest, type Manifest } from './grants/index.js';
import { Kernel } from './kernel.js';
import type { Payload } from './mesh/index.js';
import { BUILT_COMPONENTS } from './paths.js';
import { builtinManifests } from './registry/index.js';

export { startScriptedServer as startScriptedModel, type ScriptedServer as ScriptedModel, type ScriptedTurn } from './devkit/scripted-model.js';

/** What {@link startKernelWith} takes. */
export interface StartOptions {
  /** The component: a path (relative to the working directory) or a `file:` URL. */
  wasm: string | URL;
  /** Its manifest: a path or `file:` URL of `manifest.json`, or the manifest itself. */
  manifest: string | URL | Record<string, unknown>;
  /** Data directory of the kernel; default: a temporary one, removed by `close()`. */
  dataDir?: string;
  /**
   * What the component's session shows: a directory (never written: calls work in a session
   * discarded at `close()`), or files as `{path: content}`; default: an empty directory.
   */
  workspace?: string | Record<string, string>;
  /** Base URL of the default OpenAI-compatible backend (an agent's model), e.g. a scripted model's. */
  baseURL?: string;
  /** Environment the kernel reads `$NAME` grants and backend keys from; default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /**
   * Load every registered component, not only this one and those its `mesh` requests name
   * (the default, which starts the kernel several times faster). Default false.
   */
  allComponents?: boolean;
}

/** The outcome of one call; `ms` is its wall-clock time as the caller saw it. */
export type CallResult =
  | { ok: true; output: unknown; ms: number }
  | { ok: false; error: { tag: string; message: string }; ms: number };

/** What a tool's `describe()` answers (`inputSchema` is JSON text). */
export interface ToolInfo {
  name: string;
  description: string;
  inputSchema: string;
}

/** A component loaded in a running kernel. */
export interface ComponentUnderTest {
  /** The component's name (its manifest's). */
  readonly name: string;
  readonly kernel: Kernel;
  /** Host path of the workspace the session is on. */
  readonly workspace: string;
  /** The session every call works in. */
  readonly sessionId: string;
  /** A tool's `describe()`. @throws WardenError `E_MESH_FAILED` when it fails */
  describe(): Promise<ToolInfo>;
  /**
   * Call a method: `call` (tools; `output` is the tool's text), `describe` (tools), `run`
   * (agents; `input` is merged over a task on the workspace and session, `output` the outcome),
   * `handle-task` (supervisors, likewise). An object input is sent as JSON, a string as it is.
   * Never rejects for a failure of the component: it comes back as `ok: false`.
   * @param options.timeoutMs the call's deadline; default: the component's effective time limit
   */
  call(method: string, input?: unknown, options?: { timeoutMs?: number }): Promise<CallResult>;
  /** Discard the session, stop the kernel, remove what was made temporary. */
  close(): Promise<void>;
}

/**
 * The transpile cache temporary data directories share, in this checkout's `build/` (not the
 * system temp dir: the cache holds JavaScript the kernel runs, so only its owner may write it).
 */
const SHARED_TRANSPILE_CACHE = join(BUILT_COMPONENTS, '..', 'transpile-cache');

/**
 * Point `dataDir`'s transpile cache at the one temporary data directories share, so the
 * built-ins are not transpiled again on every run (entries are by content hash, written
 * atomically; see Engine). A read-only installation only makes the run slower.
 */
export function shareTranspileCache(dataDir: string): void {
  try {
    mkdirSync(SHARED_TRANSPILE_CACHE, { recursive: true });
    symlinkSync(SHARED_TRANSPILE_CACHE, join(dataDir, 'cache'), 'dir');
  } catch {
    // The kernel makes its own cache in the data directory.
  }
}

function pathOf(value: string | URL): string {
  return value instanceof URL || value.startsWith('file:') ? fileURLToPath(value) : resolve(value);
}

/** The manifest and a file holding it (the registry pins from a file). */
function manifestOf(value: StartOptions['manifest'], dataDir: string): { manifest: Manifest; path: string } {
  if (typeof value === 'string' || value instanceof URL) {
    const path = pathOf(value);
    return { manifest: readManifest(path), path };
  }
  const manifest = parseManifest(value, 'startKernelWith manifest');
  const path = join(dataDir, `${manifest.name}.manifest.json`);
  writeFileSync(path, JSON.stringify(value));
  return { manifest, path };
}

/** The operator's grant of exactly what the manifest requests (env values read from the kernel's environment). */
function grantAsRequested(dataDir: string, manifest: Manifest): void {
  if (configFile(dataDir)) return;
  const { env, ...requests } = manifest.requests;
  const grant = { ...requests, env: Object.fromEntries(env.map((name) => [name, `$${name}`])) };
  writeFileSync(join(dataDir, 'warden.config.json'), `${JSON.stringify({ grants: { [manifest.name]: grant } }, null, 2)}\n`);
}

function workspaceOf(value: StartOptions['workspace']): { dir: string; temporary: boolean } {
  if (typeof value === 'string') return { dir: resolve(value), temporary: false };
  const dir = mkdtempSync(join(tmpdir(), 'warden-workspace-'));
  for (const [path, content] of Object.entries(value ?? {})) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  return { dir, temporary: true };
}

/** A call's payload: JSON text of the input (a string input is sent as it is). */
function payloadOf(input: unknown): Payload {
  return { tag: 'json', val: typeof input === 'string' ? input : JSON.stringify(input ?? null) };
}

/**
 * Start a kernel with one component loaded (and those its `mesh` requests name; every other
 * registered one too with `allComponents`) and a session open on a workspace. A built-in of
 * this repository (`build/components/NAME.wasm`) is loaded by the kernel itself, as requested;
 * any other component is pinned and granted what it requests.
 * @throws WardenError from the registry (`E_COMPONENT_INVALID`, `E_UNKNOWN_IMPORT`, a bad manifest)
 *   and from {@link Kernel.start}; `E_COMPONENT_INVALID` when the kernel refuses to load it
 */
export async function startKernelWith(options: StartOptions): Promise<ComponentUnderTest> {
  const dataDir = options.dataDir ? resolve(options.dataDir) : mkdtempSync(join(tmpdir(), 'warden-test-'));
  mkdirSync(dataDir, { recursive: true });
  if (!options.dataDir) shareTranspileCache(dataDir);
  const temporaries: string[] = options.dataDir ? [] : [dataDir];
  const cleanUp = () => {
    for (const dir of temporaries) rmSync(dir, { recursive: true, force: true });
  };
  let kernel: Kernel | undefined;
  try {
    const wasm = pathOf(options.wasm);
    const { manifest, path: manifestPath } = manifestOf(options.manifest, dataDir);
    const name = manifest.name;
    const builtin = builtinManifests().some((m) => m.name === name) && wasm === join(BUILT_COMPONENTS, `${name}.wasm`);
    if (!builtin) {
      grantAsRequested(dataDir, manifest);
      const data = openDataDir(dataDir);
      try {
        await data.registry.add(wasm, { name, manifestPath });
      } finally {
        data.close();
      }
    }
    const started = await Kernel.start({
      dataDir, quiet: true, ...(options.baseURL ? { baseURL: options.baseURL } : {}), ...(options.env ? { env: options.env } : {}),
      ...(options.allComponents ? {} : { components: [name] }),
    });
    kernel = started;
    const shown = started.state.current.components[name];
    if (shown?.status !== 'loaded') throw new WardenError('E_COMPONENT_INVALID', `the kernel did not load ${name}: ${shown?.reason ?? 'it is not registered'}`);
    const workspace = workspaceOf(options.workspace);
    if (workspace.temporary) temporaries.push(workspace.dir);
    const sessionId = started.sessions.begin(workspace.dir).id;
    const timeLimit = () => started.mesh.component(name)?.limits.timeoutMs ?? 30_000;

    const call = async (method: string, input?: unknown, callOptions: { timeoutMs?: number } = {}): Promise<CallResult> => {
      const task = { id: 'test-task', prompt: '', workspace: workspace.dir, model: 'scripted', sessionId, maxTurns: 10, history: null };
      const payload = method === 'run' || method === 'handle-task'
        ? payloadOf(typeof input === 'object' && input !== null ? { ...task, ...input } : input ?? task)
        : payloadOf(method === 'describe' ? null : input);
      const t = performance.now();
      const reply = await started.mesh.call(name, method, payload, {
        taskId: '', sessionId, chain: [], deadline: Date.now() + (callOptions.timeoutMs ?? timeLimit()), grants: KERNEL_GRANTS,
      });
      const ms = Math.round(performance.now() - t);
      if (!reply.ok) return { ok: false, error: { tag: reply.error.tag, message: reply.error.message }, ms };
      const value = reply.payload.tag === 'json' ? JSON.parse(reply.payload.val) : reply.payload.val;
      return { ok: true, output: method === 'call' ? (value as { output: string }).output : value, ms };
    };

    return {
      name, kernel: started, workspace: workspace.dir, sessionId,
      call,
      async describe() {
        const result = await call('describe');
        if (!result.ok) throw new WardenError('E_MESH_FAILED', `${name}.describe failed: ${result.error.message}`);
        return result.output as ToolInfo;
      },
      async close() {
        try {
          started.sessions.rollback(sessionId);
        } catch {
          // Already discarded (the component committed or rolled it back itself).
        }
        await started.close();
        cleanUp();
      },
    };
  } catch (err) {
    await kernel?.close();
    cleanUp();
    throw err;
  }
}
