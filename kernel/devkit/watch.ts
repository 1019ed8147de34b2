/**
 * `warden build --watch`: rebuild a component when its sources change, and re-pin each good
 * build in a data directory so that a kernel running on it reloads the component. Re-pinning is
 * the registry's `add` (what `warden component add` does); the kernel watches its pins.
 */
import { existsSync, mkdirSync, watch, type FSWatcher } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { openDataDir } from '../cli/component.js';
import { readManifest } from '../grants/index.js';
import { buildComponent, type BuildResult } from './build.js';

/** What a re-pin did. */
export interface PinReport {
  name: string;
  sha256: string;
  /** Absolute path of the data directory. */
  dataDir: string;
  /** The sha256 pinned before, when the name was pinned to other bytes. */
  replaced?: string;
  /** True when the pin already named these bytes and this manifest (nothing was written). */
  unchanged: boolean;
}

/**
 * Pin a build in `dataDir` when the component is pinned there already, or always with `add`
 * (creating the data directory's store if needed).
 * @returns what was pinned, or null when the component is not pinned there and `add` is false
 * @throws WardenError from the registry's `add` (a built-in's name, unknown imports, a bad manifest)
 */
export async function repin(build: BuildResult, manifestPath: string, dataDir: string, add: boolean): Promise<PinReport | null> {
  const dir = resolve(dataDir);
  if (!add && !existsSync(join(dir, 'warden.db'))) return null;
  mkdirSync(dir, { recursive: true });
  const data = openDataDir(dir);
  try {
    const pinned = data.store.pin(build.name);
    if (!pinned && !add) return null;
    // The registry pins the manifest as it stores it: parsed, under the pinned name.
    const manifest = JSON.stringify({ ...readManifest(manifestPath), name: build.name });
    if (pinned?.sha256 === build.sha256 && pinned.manifest === manifest) return { name: build.name, sha256: build.sha256, dataDir: dir, unchanged: true };
    const added = await data.registry.add(build.file, { name: build.name, manifestPath });
    return { name: build.name, sha256: build.sha256, dataDir: dir, unchanged: false, ...(added.replacedSha256 ? { replaced: added.replacedSha256 } : {}) };
  } finally {
    data.close();
  }
}

/** What {@link watchComponent} reports, one call per event. */
export interface WatchListener {
  built(result: BuildResult): void;
  /** A build or a re-pin failed; watching goes on. */
  failed(err: unknown): void;
  pinned(report: PinReport): void;
}

/** Options of {@link watchComponent}. */
export interface WatchOptions {
  dataDir: string;
  /** Pin every good build even when the component is not pinned yet. */
  add: boolean;
  /** Quiet time after the last change before a build starts, ms (editors write a file in steps). */
  debounceMs?: number;
}

/** A source change worth a rebuild: TypeScript, WIT or the manifest, not the build's own output. */
function relevant(file: string | null): boolean {
  return file === null || /\.(ts|mts|wit)$/.test(file) || file.endsWith('manifest.json');
}

/**
 * Build `dir` now and again after every change of its sources (the directory, its `wit/`, and
 * every directory a source of the last good build came from), re-pinning each good build.
 * @returns stop: closes the watchers (a build under way finishes)
 */
export function watchComponent(dir: string, options: WatchOptions, listener: WatchListener): () => void {
  const root = resolve(dir);
  const watchers = new Map<string, FSWatcher>();
  let timer: NodeJS.Timeout | undefined;
  let building = false;
  let pending = false;
  let stopped = false;

  const watchDir = (path: string) => {
    if (watchers.has(path) || !existsSync(path) || path.includes('/node_modules/')) return;
    const watcher = watch(path, (_event, file) => {
      if (relevant(file)) schedule();
    });
    watcher.on('error', () => watchers.delete(path));
    watchers.set(path, watcher);
  };

  const schedule = () => {
    if (stopped) return;
    clearTimeout(timer);
    timer = setTimeout(() => void rebuild(), options.debounceMs ?? 100);
  };

  const rebuild = async () => {
    if (building) {
      pending = true;
      return;
    }
    building = true;
    try {
      const result = await buildComponent(root);
      listener.built(result);
      for (const input of result.inputs) watchDir(dirname(input));
      const pin = await repin(result, join(root, 'manifest.json'), options.dataDir, options.add);
      if (pin) listener.pinned(pin);
    } catch (err) {
      listener.failed(err);
    } finally {
      building = false;
      if (pending && !stopped) {
        pending = false;
        schedule();
      }
    }
  };

  watchDir(root);
  watchDir(join(root, 'wit'));
  void rebuild();
  return () => {
    stopped = true;
    clearTimeout(timer);
    for (const watcher of watchers.values()) watcher.close();
    watchers.clear();
  };
}
