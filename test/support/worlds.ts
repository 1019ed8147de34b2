/**
 * Builds test guests against worlds of their own: a WIT package `test:guest` whose world lists
 * the imports a hostile guest wants (kernel interfaces, WASI, or interfaces the kernel does not
 * know) and the export it serves. The kernel's package and WASI come in as dependencies.
 */
import { componentize } from 'componentize-qjs';
import { copyFileSync, mkdirSync, symlinkSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import { tempDir } from './fixtures.js';

/**
 * Componentize `source` (plain JS) as world `guest` made of `worldBody` (WIT lines such as
 * `import warden:kernel/mesh@0.1.0;` and `export warden:kernel/tool@0.1.0;`). `extraWit` may
 * define more interfaces in the `test:guest` package. @returns the `.wasm` path
 */
export async function buildWorld(name: string, source: string, worldBody: string, extraWit = ''): Promise<string> {
  const dir = tempDir(`world-${name}`);
  const wit = join(dir, 'wit');
  mkdirSync(join(wit, 'deps', 'kernel'), { recursive: true });
  copyFileSync(join(PACKAGE_ROOT, 'wit/kernel.wit'), join(wit, 'deps/kernel/kernel.wit'));
  for (const dep of readdirSync(join(PACKAGE_ROOT, 'wit/deps'))) symlinkSync(join(PACKAGE_ROOT, 'wit/deps', dep), join(wit, 'deps', dep));
  writeFileSync(join(wit, 'world.wit'), `package test:guest;\n${extraWit}\nworld guest {\n${worldBody}\n}\n`);
  const jsPath = join(dir, `${name}.js`);
  writeFileSync(jsPath, source);
  const { component } = await componentize({ witPath: wit, jsSource: source, jsPath, world: 'guest', sync: true });
  const wasm = join(dir, `${name}.wasm`);
  writeFileSync(wasm, component);
  return wasm;
}
