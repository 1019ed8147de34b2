/** Builds small hostile or special-purpose guest components for tests, with the real toolchain. */
import { componentize } from 'componentize-qjs';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import { tempDir } from './fixtures.js';

/** Componentize `source` (plain JS) against `world` of the WIT at `witPath`; returns the .wasm path. */
async function build(dir: string, name: string, source: string, witPath: string, world: string): Promise<string> {
  const jsPath = join(dir, `${name}.js`);
  writeFileSync(jsPath, source);
  const { component } = await componentize({ witPath, jsSource: source, jsPath, world, sync: true });
  const wasm = join(dir, `${name}.wasm`);
  writeFileSync(wasm, component);
  return wasm;
}

/** A Warden tool built against the kernel's `tool-component` world. */
export async function buildTool(name: string, source: string): Promise<string> {
  return build(tempDir(`guest-${name}`), name, source, join(PACKAGE_ROOT, 'wit'), 'tool-component');
}

/** A standard `wasi:cli/command` (the world `wasmtime run` runs). */
export async function buildCommand(name: string, source: string): Promise<string> {
  const dir = tempDir(`command-${name}`);
  mkdirSync(join(dir, 'wit'));
  writeFileSync(join(dir, 'wit/world.wit'), 'package test:command;\nworld command {\n  include wasi:cli/command@0.2.12;\n}\n');
  symlinkSync(join(PACKAGE_ROOT, 'wit/deps'), join(dir, 'wit/deps'));
  return build(dir, name, source, join(dir, 'wit'), 'command');
}
