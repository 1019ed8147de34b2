/**
 * Where the kernel's own files are. Workers always run compiled JavaScript from `dist/`,
 * also when the caller is TypeScript run by vitest or tsx.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Root of the Warden package (the folder holding `package.json`). */
export const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), fileURLToPath(import.meta.url).includes('/dist/') ? '../..' : '..');

/** Absolute path of a compiled kernel module, e.g. `distFile('kernel/mesh/worker.js')`. */
export function distFile(relative: string): string {
  return join(PACKAGE_ROOT, 'dist', relative);
}

/** Directory of the built components (`build/components/<name>.wasm`). */
export const BUILT_COMPONENTS = join(PACKAGE_ROOT, 'build', 'components');

/** Directory of the component sources and manifests (`components/<name>/`). */
export const COMPONENT_SOURCES = join(PACKAGE_ROOT, 'components');

/**
 * Where a data directory's transpile cache lives: `$WARDEN_TRANSPILE_CACHE` when set (one cache
 * shared by several data directories — the test suite, or many kernels of one user; it holds
 * JavaScript the kernel runs, so it must be writable by its owner only), else `<dataDir>/cache`.
 * Entries are keyed by the component's sha256 and written race-free, so kernels may share it.
 */
export function transpileCacheDir(dataDir: string, env: NodeJS.ProcessEnv = process.env): string {
  const shared = env['WARDEN_TRANSPILE_CACHE'];
  return shared ? resolve(shared) : join(dataDir, 'cache');
}
