/**
 * `warden build`: one component directory (`index.ts` + `manifest.json`) to a `.wasm` — checked
 * against the guest types of its world, bundled by esbuild, componentized by componentize-qjs in
 * sync mode against this package's `wit/` (or the directory's own `wit/`). The bundling and the
 * componentizing are the ones `scripts/build.mjs` uses for the built-in components.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import * as esbuild from 'esbuild';
import { componentize } from 'componentize-qjs';
import { sha256Hex } from '../engine/index.js';
import { WardenError, messageOf } from '../errors.js';
import { readManifest, type Manifest } from '../grants/index.js';
import { BUILT_COMPONENTS, COMPONENT_SOURCES, PACKAGE_ROOT } from '../paths.js';
import { typecheckComponent, type BuildError } from './typecheck.js';
import { locateWitError } from './wit-errors.js';

/** What a successful build reports. */
export interface BuildResult {
  name: string;
  version: string;
  kind: Manifest['kind'];
  /** Absolute path of the written `.wasm`. */
  file: string;
  /** Size of the `.wasm`, bytes. */
  size: number;
  /** sha256 of the `.wasm`, lower-case hex (what `warden component add` pins). */
  sha256: string;
  /** Wall-clock time of the whole build, ms. */
  ms: number;
  /** Absolute paths of the source files the bundle was made from (what `--watch` watches). */
  inputs: string[];
}

/** The kernel's own WIT package, the default a component is built against. */
export const KERNEL_WIT = join(PACKAGE_ROOT, 'wit');

/**
 * Bundle a component's entry into one ES module for QuickJS, the host interfaces left as imports.
 * @returns the JavaScript and the absolute paths of its inputs
 * @throws esbuild's `BuildFailure` (its `errors` carry file, line and column)
 */
export async function bundleComponent(entry: string): Promise<{ js: string; inputs: string[] }> {
  const result = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    external: ['warden:*', 'wasi:*'],
    logLevel: 'silent',
    metafile: true,
    absWorkingDir: dirname(entry),
  });
  const inputs = Object.keys(result.metafile.inputs).map((p) => resolve(dirname(entry), p));
  return { js: result.outputFiles[0]!.text, inputs };
}

/**
 * Componentize a bundle (componentize-qjs, sync mode: no component-model async ABI, which the
 * kernel's synchronous imports need).
 * @param world `tool-component`, `agent-component` or `supervisor-component`
 * @returns the component's bytes
 */
export async function componentizeBundle(js: string, witPath: string, world: string): Promise<Uint8Array> {
  const { component } = await componentize({ witPath, jsSource: js, world, sync: true });
  return component;
}

/** Where a build writes: `build/components/NAME.wasm` for this repository's own components, else `DIR/dist/NAME.wasm`. */
export function outputFile(dir: string, name: string): string {
  return resolve(dirname(dir)) === resolve(COMPONENT_SOURCES) ? join(BUILT_COMPONENTS, `${name}.wasm`) : join(dir, 'dist', `${name}.wasm`);
}

/** A failed build: `E_COMPONENT_INVALID` with the problems in `detail.errors` ({@link BuildError}[]). */
export function buildFailed(errors: BuildError[]): WardenError {
  return new WardenError('E_COMPONENT_INVALID', `build failed: ${errors.length} error${errors.length === 1 ? '' : 's'}`, { detail: { errors } });
}

/** The build errors of a failure from {@link buildComponent}, or null for any other error. */
export function buildErrorsOf(err: unknown): BuildError[] | null {
  return err instanceof WardenError && Array.isArray(err.detail?.['errors']) ? (err.detail['errors'] as BuildError[]) : null;
}

function esbuildErrors(err: unknown, dir: string): BuildError[] | null {
  const messages = (err as { errors?: esbuild.Message[] }).errors;
  if (!Array.isArray(messages)) return null;
  return messages.map((m) => ({
    file: m.location ? relative(dir, resolve(dir, m.location.file)) : 'index.ts',
    line: m.location?.line ?? 1,
    column: (m.location?.column ?? 0) + 1,
    message: m.text,
  }));
}

/** The manifest of a component directory, with the kinds a component built from TypeScript may have. */
function componentManifest(dir: string): Manifest {
  for (const file of ['index.ts', 'manifest.json']) {
    if (!existsSync(join(dir, file))) {
      throw new WardenError('E_NOT_FOUND', `${dir} has no ${file}: a component directory holds index.ts and manifest.json (start one with \`warden new tool NAME\`)`);
    }
  }
  const path = join(dir, 'manifest.json');
  let manifest: Manifest;
  try {
    manifest = readManifest(path);
  } catch (err) {
    // One error per bad field, each already naming it (`requests.filesystem: …`).
    throw buildFailed(messageOf(err).split('\n').map((line) => ({ file: 'manifest.json', line: 1, column: 1, message: line.replace(`${path}: `, '') })));
  }
  if (manifest.kind === 'command') {
    throw buildFailed([{ file: 'manifest.json', line: 1, column: 1, message: 'kind: `warden build` builds tools, agents and supervisors; build a wasi:cli command with its own toolchain' }]);
  }
  return manifest;
}

/**
 * Build the component in `dir`.
 * @returns where it was written, its size, sha256 and the time taken
 * @throws WardenError `E_COMPONENT_INVALID` with `detail.errors` (type errors, a missing export,
 *   bundling or WIT errors, a bad manifest, each with file, line and column); `E_NOT_FOUND` (no
 *   index.ts or manifest.json)
 */
export async function buildComponent(dir: string): Promise<BuildResult> {
  const started = performance.now();
  const root = resolve(dir);
  const manifest = componentManifest(root);
  const typeErrors = typecheckComponent(root, manifest.kind);
  if (typeErrors.length) throw buildFailed(typeErrors);
  let bundle: { js: string; inputs: string[] };
  try {
    bundle = await bundleComponent(join(root, 'index.ts'));
  } catch (err) {
    throw buildFailed(esbuildErrors(err, root) ?? [{ file: 'index.ts', line: 1, column: 1, message: messageOf(err) }]);
  }
  // A directory with its own wit/ builds against it (a world that includes the kernel's and adds to it).
  const witDir = existsSync(join(root, 'wit')) ? join(root, 'wit') : KERNEL_WIT;
  let bytes: Uint8Array;
  try {
    bytes = await componentizeBundle(bundle.js, witDir, `${manifest.kind}-component`);
  } catch (err) {
    const message = messageOf(err).trim();
    if (/WIT|wit|world|package/.test(message) && !/JavaScript/.test(message)) throw buildFailed([await locateWitError(witDir, message, root)]);
    throw buildFailed([{ file: 'index.ts', line: 1, column: 1, message: `componentize-qjs: ${message.replace(/\s+/g, ' ')}` }]);
  }
  const file = outputFile(root, manifest.name);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, bytes);
  return {
    name: manifest.name, version: manifest.version, kind: manifest.kind, file, size: bytes.length, sha256: sha256Hex(bytes),
    ms: Math.round(performance.now() - started), inputs: bundle.inputs,
  };
}
