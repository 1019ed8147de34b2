/**
 * Where the kernel's own files are. Workers always run compiled JavaScript from `dist/`,
 * also when the caller is TypeScript run by vitest or tsx.
 */
import { dirname, join } from 'node:path';
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
