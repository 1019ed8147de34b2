/**
 * The engine: reads a component, verifies its digest, transpiles it once (cached on disk by
 * content hash), caps the memory of its core modules and compiles each of them once. The
 * compiled `WebAssembly.Module`s are handed to workers; no component runs on the main thread.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import type { transpileBytes } from 'jco-transpile-glue';
import { WardenError, messageOf } from '../errors.js';
import { capMemory, importMemory, MEMORY_IMPORT, WASM_PAGE_BYTES, type MemoryLimits } from './memory.js';
import { KNOWN_INTERFACES } from './interfaces.js';

export { capMemory, importMemory, MEMORY_IMPORT, WASM_PAGE_BYTES, type MemoryLimits } from './memory.js';
export { KNOWN_INTERFACES, interfaceOf } from './interfaces.js';

/** QuickJS components use extended-const; Node 20 needs this flag in every compiling thread. */
export function enableWasmFeatures(): void {
  setFlagsFromString('--experimental-wasm-extended-const');
}

/**
 * The transpiler of the glue, and why it is not the current one. `jco-transpile-glue` is
 * `@bytecodealliance/jco-transpile@0.1.1` (npm alias), whose glue is jco 1.15.4's byte for byte.
 * From jco 1.17 on, every synchronous import goes through component-model-async machinery
 * (`_lowerImportBackwardsCompat`, `createSubtask`, a second `AsyncTask`, …) even when nothing
 * is async: measured on one thread with the kernel's own imports, an import call costs 4.0 µs
 * against 0.66 µs, a `mesh.call` import 9.1 against 4.4 µs, instantiation 9.8 against 2.9 ms,
 * and a component → component call over the mesh ~113 against ~77 µs (bench/README.md). The
 * kernel uses no async (p3) feature. The devkit and the type generation keep the current
 * `@bytecodealliance/jco-transpile`. Revisit when upstream lowers sync imports directly.
 * Differences the kernel relies on not mattering: the old glue does not poison an instance after
 * a trap (the kernel drops an instance that throws anything but a WIT error), and trap messages
 * are shorter ("unreachable").
 */
/** Bumped when the transpiler or its options change, so stale cache entries are not reused. */
const CACHE_FORMAT = 'jco-transpile-0.1.1-sync-v5';

/**
 * jco's glue wraps each export in `try { WebAssembly.promising(f) } catch { f }`. Node 20 has no
 * JSPI, so every probe throws, and V8 re-parses the 20 000-line enclosing function to build the
 * TypeError's message: ~10 ms per probe, ~50 ms per instantiation (bench/README.md). The engine
 * rewrites the probe to an existence check with the same result, making warm instantiation ~10× faster.
 */
function withoutJspiProbes(glue: string): string {
  return glue.replaceAll('WebAssembly.promising(', '(WebAssembly.promising ?? ((fn) => fn))(');
}

/**
 * jco's glue calls `_debugLog` at every step of every import and export call, and each call reads
 * `globalThis.process.env.JCO_DEBUG` (a property lookup through Node's env proxy, ~0.3 µs): 12–33%
 * of a caller worker's time in bench/mesh. The rewrite reads the flag once when the glue loads.
 */
const DEBUG_CHECK = 'if (!globalThis?.process?.env?.JCO_DEBUG) { return; }';
function withDebugFlagReadOnce(glue: string): string {
  if (!glue.includes(DEBUG_CHECK)) return glue;
  return `const __wardenJcoDebug = Boolean(globalThis?.process?.env?.JCO_DEBUG);\n${glue.replaceAll(DEBUG_CHECK, 'if (!__wardenJcoDebug) { return; }')}`;
}

/**
 * The glue defines its task bookkeeping (`AsyncTask`, `ComponentAsyncState`, `RepTable`, the
 * maps that hold them) inside `instantiate`, so every instance has classes of its own, and the
 * first export call of an instance creates its first `AsyncTask` and its `ComponentAsyncState`:
 * new hidden classes and inline-cache misses. Measured on one thread with bench/guests/echo.js,
 * a fresh instance's first `call` took ~235 µs against ~90 µs for a long-lived instance's first
 * call after the same pause; ~85 µs of the difference was this. A tool pool serves each fresh
 * instance exactly one call, so every call paid it. The rewrite does the work at the end of
 * instantiation, off the call's path: one task started and ended, and the async state created,
 * for each component index the glue's task calls use. No guest code runs, and the state is the
 * one the first call would create (only the internal task id counter moves on by one).
 */
const INIT_RETURN = /\n( {2}return \{[^\n]*\};\n\}\)\(\);\n)/g;
function withTaskStatePrimed(glue: string): string {
  if (!glue.includes('function startCurrentTask(') || !glue.includes('function endCurrentTask(') || !glue.includes('function getOrCreateAsyncState(')) return glue;
  const returns = [...glue.matchAll(INIT_RETURN)];
  const indexes = [...new Set([...glue.matchAll(/startCurrentTask\((\d+), /g)].map((m) => m[1]!))];
  if (returns.length !== 1 || indexes.length === 0) return glue;
  const prime = indexes.map((i) => `startCurrentTask(${i}, false, 'warden-prime'); endCurrentTask(${i}); getOrCreateAsyncState(${i});`).join(' ');
  const at = returns[0]!.index! + 1;
  return `${glue.slice(0, at)}  { ${prime} }\n${glue.slice(at)}`;
}

/** The engine's rewrites of jco's glue (same behaviour, less work per call). */
function rewriteGlue(glue: string): string {
  return withTaskStatePrimed(withDebugFlagReadOnce(withoutJspiProbes(glue)));
}

/** A component ready to instantiate in a worker. Cloneable with `postMessage`. */
export interface CompiledComponent {
  /** sha256 of the component bytes, hex. */
  sha256: string;
  /** Size of the component file in bytes. */
  size: number;
  /** `file:` URL of the transpiled glue module (exports `instantiate`). */
  glueUrl: string;
  /** Compiled core modules by the file name the glue asks for. */
  modules: Record<string, WebAssembly.Module>;
  /** Imported interfaces without version, e.g. `wasi:filesystem/types`. */
  imports: string[];
  /** Exported names as the glue returns them, e.g. `warden:kernel/tool@0.1.0`, `wasi:cli/run@0.2.12`. */
  exports: string[];
  /** Memory cap applied to every defined memory, in pages of 64 KiB. */
  maxPages: number;
  /**
   * Core modules (by file name) whose one linear memory the engine made an import
   * ({@link MEMORY_IMPORT}, see `importMemory`), with the limits in pages the supplied memory must
   * have: instantiate them through {@link instantiateCore}. A tool pool gives a new instance a
   * dropped instance's memory, zeroed, instead of a new one (kernel/mesh/worker.ts).
   */
  memories: Record<string, MemoryLimits>;
  /**
   * Whether a dropped instance's memory may be given to another instance: false when the glue
   * registers finalizers, which could run a dropped instance's code later, into a memory that
   * another instance holds by then.
   */
  recyclable: boolean;
}

const memoryLimitsByModule = new WeakMap<CompiledComponent, Map<WebAssembly.Module, MemoryLimits>>();

/**
 * The limits of the memory that core module `module` of `component` imports as
 * {@link MEMORY_IMPORT}; undefined when the module defines its own memory (or has none).
 */
export function importedMemoryOf(component: CompiledComponent, module: WebAssembly.Module): MemoryLimits | undefined {
  let byModule = memoryLimitsByModule.get(component);
  if (!byModule) {
    byModule = new Map(Object.entries(component.memories ?? {}).map(([file, limits]) => [component.modules[file]!, limits]));
    memoryLimitsByModule.set(component, byModule);
  }
  return byModule.get(module);
}

/**
 * Instantiate core module `module` of `component` with the imports the glue gives it (the glue's
 * `instantiateCore` hook), supplying its linear memory when the engine made that an import
 * ({@link CompiledComponent.memories}): `memory` when given (it must have the module's limits and
 * hold only zeros), else a new one.
 * @returns the instance and the memory it was given (null when the module defines its own)
 * @throws what `new WebAssembly.Instance` throws (`LinkError`, `RuntimeError` from a start function)
 */
export function instantiateCore(
  component: CompiledComponent,
  module: WebAssembly.Module,
  imports: WebAssembly.Imports,
  memory?: WebAssembly.Memory,
): { instance: WebAssembly.Instance; memory: WebAssembly.Memory | null } {
  const limits = importedMemoryOf(component, module);
  if (!limits) return { instance: new WebAssembly.Instance(module, imports), memory: null };
  const given = memory ?? new WebAssembly.Memory(limits);
  return { instance: new WebAssembly.Instance(module, { ...imports, [MEMORY_IMPORT.module]: { [MEMORY_IMPORT.name]: given } }), memory: given };
}

/** Options for {@link Engine.load}. */
export interface LoadOptions {
  /** Memory cap per core memory in MiB (default 256). */
  memoryMb?: number;
  /** When given, the component's sha256 must equal it (pinning). */
  expectSha256?: string;
}

/** sha256 of bytes as lower-case hex. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Loads and compiles components; one instance per kernel.
 *
 * Cache layout: `<cacheDir>/<sha256>/{glue.mjs, *.core*.wasm, meta.json}`.
 */
export class Engine {
  private readonly compiled = new Map<string, Promise<CompiledComponent>>();

  /** @param cacheDir directory for the transpile cache (created when missing). */
  constructor(private readonly cacheDir: string) {
    enableWasmFeatures();
  }

  /**
   * Load a component file (cached per path, digest and memory cap).
   *
   * @throws WardenError `E_NOT_FOUND` (no file), `E_DIGEST_MISMATCH` (pin), `E_COMPONENT_INVALID`
   *   (not a component / transpile failed), `E_UNKNOWN_IMPORT` (imports the kernel does not
   *   provide, listed), `E_LIMIT_MEMORY` (initial memory above the cap).
   */
  async load(path: string, options: LoadOptions = {}): Promise<CompiledComponent> {
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (cause) {
      throw new WardenError('E_NOT_FOUND', `cannot read component ${path}: ${messageOf(cause)}`, { cause });
    }
    const sha256 = sha256Hex(bytes);
    if (options.expectSha256 && options.expectSha256 !== sha256) {
      throw new WardenError(
        'E_DIGEST_MISMATCH',
        `component ${path} changed: sha256 ${sha256} but ${options.expectSha256} was pinned; re-add it to accept the new bytes`,
      );
    }
    const maxPages = Math.floor(((options.memoryMb ?? 256) * 2 ** 20) / WASM_PAGE_BYTES);
    const key = `${sha256}:${maxPages}`;
    let entry = this.compiled.get(key);
    if (!entry) {
      entry = this.compile(bytes, sha256, maxPages);
      this.compiled.set(key, entry);
      entry.catch(() => this.compiled.delete(key));
    }
    return entry;
  }

  private async compile(bytes: Buffer, sha256: string, maxPages: number): Promise<CompiledComponent> {
    const dir = join(this.cacheDir, sha256);
    const meta = await this.transpileCached(bytes, sha256, dir);
    const unknown = meta.imports.filter((name) => !KNOWN_INTERFACES.has(name));
    if (unknown.length > 0) {
      throw new WardenError(
        'E_UNKNOWN_IMPORT',
        `component imports interfaces the kernel does not provide: ${unknown.join(', ')}`,
        { detail: { unknown } },
      );
    }
    const modules: Record<string, WebAssembly.Module> = {};
    const memories: CompiledComponent['memories'] = {};
    const finalizers = (await readFile(join(dir, 'glue.mjs'), 'utf8')).includes('FinalizationRegistry');
    for (const file of meta.coreFiles) {
      const core = await readFile(join(dir, file));
      try {
        const capped = capMemory(core, maxPages);
        const importing = importMemory(capped);
        modules[file] = await WebAssembly.compile((importing?.bytes ?? capped) as Uint8Array<ArrayBuffer>);
        if (importing) memories[file] = importing.limits;
      } catch (cause) {
        if (cause instanceof WardenError) throw cause;
        throw new WardenError('E_COMPONENT_INVALID', `cannot compile core module ${file}: ${messageOf(cause)}`, { cause });
      }
    }
    return {
      sha256,
      size: bytes.length,
      glueUrl: pathToFileURL(join(dir, 'glue.mjs')).href,
      modules,
      imports: meta.imports,
      exports: meta.exports,
      maxPages,
      memories,
      recyclable: !finalizers,
    };
  }

  private async transpileCached(bytes: Buffer, sha256: string, dir: string): Promise<CacheMeta> {
    const metaPath = join(dir, 'meta.json');
    if (existsSync(metaPath)) {
      const meta = JSON.parse(await readFile(metaPath, 'utf8')) as CacheMeta;
      if (meta.format === CACHE_FORMAT) return meta;
    }
    // Loaded on a cache miss only: a kernel whose components are all cached starts without it.
    const { transpileBytes: transpile } = await import('jco-transpile-glue');
    let result: Awaited<ReturnType<typeof transpileBytes>>;
    try {
      result = await transpile(bytes, {
        name: 'glue',
        instantiation: 'sync',
        emitTypescriptDeclarations: false,
        base64Cutoff: Number.MAX_SAFE_INTEGER,
      });
    } catch (cause) {
      throw new WardenError('E_COMPONENT_INVALID', `not a valid WebAssembly component: ${messageOf(cause).split('\n')[0]}`, { cause });
    }
    // Write into a temporary directory and rename it into place: a crash never leaves half a cache entry.
    const tmp = `${dir}.tmp-${process.pid}-${randomUUID().slice(0, 8)}`;
    await mkdir(tmp, { recursive: true });
    const coreFiles: string[] = [];
    for (const [name, content] of Object.entries(result.files)) {
      const file = name.replace(/^.*\//, '');
      const target = file === 'glue.js' ? 'glue.mjs' : file;
      if (target.endsWith('.wasm')) coreFiles.push(target);
      await writeFile(join(tmp, target), target === 'glue.mjs' ? rewriteGlue(Buffer.from(content).toString('utf8')) : content);
    }
    const meta: CacheMeta = {
      format: CACHE_FORMAT,
      imports: result.imports.map((name) => name.replace(/@[^/]*$/, '')),
      exports: result.exports.map(([name]) => name),
      coreFiles,
    };
    await writeFile(join(tmp, 'meta.json'), JSON.stringify(meta));
    // Kernels of several processes may share a cache (tests, `warden/testing`): never remove a
    // complete entry another process may be reading. A rename onto an existing directory fails;
    // then an entry of this format is used as it is, and only one of an older format is replaced.
    try {
      await rename(tmp, dir);
    } catch (cause) {
      const existing = existsSync(metaPath) ? (JSON.parse(await readFile(metaPath, 'utf8')) as CacheMeta) : null;
      if (existing?.format === CACHE_FORMAT) {
        await rm(tmp, { recursive: true, force: true });
        return existing;
      }
      if (!existsSync(dir)) {
        await rm(tmp, { recursive: true, force: true });
        throw cause;
      }
      await rm(dir, { recursive: true, force: true });
      await rename(tmp, dir).catch(async (again) => {
        await rm(tmp, { recursive: true, force: true });
        if (!existsSync(metaPath)) throw again; // another process won the race: use its entry
      });
    }
    return meta;
  }

  /** Number of cache entries on disk (for `warden` status output). */
  async cacheEntries(): Promise<number> {
    if (!existsSync(this.cacheDir)) return 0;
    return (await readdir(this.cacheDir)).filter((name) => !name.includes('.tmp-')).length;
  }
}

interface CacheMeta {
  format: string;
  imports: string[];
  exports: string[];
  coreFiles: string[];
}
