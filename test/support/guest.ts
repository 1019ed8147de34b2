/** Builds small hostile or special-purpose guest components for tests, with the real toolchain. */
import { componentize } from 'componentize-qjs';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import { tempDir } from './fixtures.js';

/** Componentize `source` (plain JS) against the kernel's `tool-component` world; returns the .wasm path. */
export async function buildTool(name: string, source: string): Promise<string> {
  const dir = tempDir(`guest-${name}`);
  const jsPath = join(dir, `${name}.js`);
  writeFileSync(jsPath, source);
  const { component } = await componentize({ witPath: join(PACKAGE_ROOT, 'wit'), jsSource: source, jsPath, world: 'tool-component', sync: true });
  const wasm = join(dir, `${name}.wasm`);
  writeFileSync(wasm, component);
  return wasm;
}

/** Componentize `source` as a standard `wasi:cli/command` (the world `wasmtime run` runs). */
export async function buildCommand(name: string, source: string): Promise<string> {
  const dir = tempDir(`command-${name}`);
  mkdirSync(join(dir, 'wit'));
  writeFileSync(join(dir, 'wit/world.wit'), 'package test:command;\nworld command {\n  include wasi:cli/command@0.2.12;\n}\n');
  symlinkSync(join(PACKAGE_ROOT, 'wit/deps'), join(dir, 'wit/deps'));
  const jsPath = join(dir, `${name}.js`);
  writeFileSync(jsPath, source);
  const { component } = await componentize({ witPath: join(dir, 'wit'), jsSource: source, jsPath, world: 'command', sync: true });
  const wasm = join(dir, `${name}.wasm`);
  writeFileSync(wasm, component);
  return wasm;
}
