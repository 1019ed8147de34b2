/** Builds small hostile or special-purpose guest components for tests, with the real toolchain. */
import { componentize } from 'componentize-qjs';
import { cpSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
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

/**
 * A Warden tool that also imports `wasi:http/outgoing-handler` and `wasi:http/types` (WASI
 * 0.2.12): world `http-tool` = `warden:kernel/tool-component` + the outgoing handler.
 *
 * Built with ComponentizeJS (StarlingMonkey), not componentize-qjs: componentize-qjs 0.4.5 links
 * its Wizer snapshot with `define_unknown_imports_as_traps` before adding the real WASI, so any
 * non-WASI-p2 interface that uses `wasi:io` resources (here `wasi:http/types`, whose `io-error`,
 * `pollable`, `input-stream` and `output-stream` are wasi:io's) fails with "mismatched resource
 * types". ComponentizeJS snapshots the core module instead. It takes about a minute.
 * ComponentizeJS reads the WIT through preview2-shim, whose preopens are empty by default: the
 * build directory is preopened for it.
 */
export async function buildHttpTool(name: string, source: string): Promise<string> {
  const dir = tempDir(`http-tool-${name}`);
  mkdirSync(join(dir, 'wit/deps'), { recursive: true });
  writeFileSync(
    join(dir, 'wit/world.wit'),
    'package test:http-tool;\nworld http-tool {\n  include warden:kernel/tool-component@0.1.0;\n  import wasi:http/outgoing-handler@0.2.12;\n}\n',
  );
  cpSync(join(PACKAGE_ROOT, 'wit/deps'), join(dir, 'wit/deps'), { recursive: true });
  cpSync(join(PACKAGE_ROOT, 'wit/kernel.wit'), join(dir, 'wit/deps/warden-kernel.wit'));
  const jsPath = join(dir, `${name}.js`);
  writeFileSync(jsPath, source);
  // Loaded here: only this helper needs them, and the Node build of the shim (its types are the browser's).
  const { componentize: componentizeJs } = await import('@bytecodealliance/componentize-js');
  const shim = (await import('@bytecodealliance/preview2-shim/filesystem')) as unknown as { _addPreopen(guest: string, host: string): void };
  shim._addPreopen(dir, dir);
  const { component } = await componentizeJs({
    sourcePath: jsPath, witPath: join(dir, 'wit'), worldName: 'http-tool',
    // The guest uses the raw wasi:http resources, not StarlingMonkey's fetch().
    disableFeatures: ['http', 'fetch-event'],
  });
  const wasm = join(dir, `${name}.wasm`);
  writeFileSync(wasm, component);
  return wasm;
}
