/**
 * The component registry: the built-in components of this repository (`components/<name>/`)
 * and third-party components added with `warden component add`, each copied into the data
 * directory and pinned by sha256 with its manifest. A pinned component whose bytes changed on
 * disk is refused until it is added again.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Engine, CompiledComponent } from '../engine/index.js';
import { sha256Hex } from '../engine/index.js';
import { WardenError, messageOf } from '../errors.js';
import { parseManifest, readManifest, type Manifest } from '../grants/index.js';
import type { PinRow, Store } from '../store/index.js';
import { BUILT_COMPONENTS, COMPONENT_SOURCES } from '../paths.js';

/** A component the kernel can load: where its bytes are, its manifest and, for third-party ones, its pin. */
export interface RegisteredComponent {
  name: string;
  manifest: Manifest;
  /** Absolute path of the `.wasm`. */
  file: string;
  /** Shipped with this repository (granted what it requests unless the config says otherwise). */
  builtin: boolean;
  /** sha256 pinned at `component add` (third-party only). */
  sha256?: string;
  addedAt?: string;
}

/** Options of {@link ComponentRegistry.add}. */
export interface AddOptions {
  name: string;
  /** Path of a manifest file; when absent a manifest requesting nothing is made. */
  manifestPath?: string;
}

/** What {@link ComponentRegistry.add} reports. */
export interface AddResult {
  component: RegisteredComponent;
  /** Imported interfaces, without version. */
  imports: string[];
  exports: string[];
  size: number;
  /** Set when the name was already pinned to other bytes. */
  replacedSha256?: string;
}

/** Manifests of the built-in components, by name. @throws WardenError `E_BAD_INPUT` for a bad manifest */
export function builtinManifests(): Manifest[] {
  if (!existsSync(COMPONENT_SOURCES)) return [];
  return readdirSync(COMPONENT_SOURCES)
    .filter((dir) => existsSync(join(COMPONENT_SOURCES, dir, 'manifest.json')))
    .map((dir) => readManifest(join(COMPONENT_SOURCES, dir, 'manifest.json')));
}

/** The kind a component's exports make it: `command` (`wasi:cli/run`), `tool`, `agent`, `supervisor`, or null. */
export function kindOf(exports: string[]): Manifest['kind'] | null {
  const has = (iface: string) => exports.some((e) => e === iface || e.startsWith(`${iface}@`));
  if (has('warden:kernel/supervisor')) return 'supervisor';
  if (has('warden:kernel/agent')) return 'agent';
  if (has('warden:kernel/tool')) return 'tool';
  if (has('wasi:cli/run')) return 'command';
  return null;
}

/** Built-in and pinned components of one data directory. */
export class ComponentRegistry {
  /** Directory of pinned copies: `<dataDir>/components/<name>/<sha256>.wasm`. */
  readonly dir: string;

  constructor(dataDir: string, private readonly store: Store, private readonly engine: Engine) {
    this.dir = join(resolve(dataDir), 'components');
  }

  /** Every component: built-ins first, then pinned ones. */
  list(): RegisteredComponent[] {
    return [...this.builtins(), ...this.store.pins().map((row) => this.fromPin(row))];
  }

  builtins(): RegisteredComponent[] {
    return builtinManifests().map((manifest) => ({ name: manifest.name, manifest, file: join(BUILT_COMPONENTS, `${manifest.name}.wasm`), builtin: true }));
  }

  /** @throws WardenError `E_NOT_FOUND` naming the components there are */
  get(name: string): RegisteredComponent {
    const found = this.list().find((c) => c.name === name);
    if (!found) {
      throw new WardenError('E_NOT_FOUND', `no component named ${name}; known: ${this.list().map((c) => c.name).join(', ') || 'none'} (add one with \`warden component add FILE.wasm --name ${name}\`)`);
    }
    return found;
  }

  private fromPin(row: PinRow): RegisteredComponent {
    return { name: row.name, manifest: parseManifest(JSON.parse(row.manifest), `pinned manifest of ${row.name}`), file: row.file, builtin: false, sha256: row.sha256, addedAt: row.added_at };
  }

  /**
   * Copy a component into the registry and pin it by sha256 with its manifest. The component
   * is transpiled and checked first: it must be a component, import only interfaces the kernel
   * knows, and export what its manifest's kind says.
   *
   * @throws WardenError `E_BAD_INPUT` (bad name, manifest or kind; name of a built-in),
   *   `E_NOT_FOUND`, `E_COMPONENT_INVALID`, `E_UNKNOWN_IMPORT`
   */
  async add(file: string, options: AddOptions): Promise<AddResult> {
    const name = options.name;
    if (!/^[a-z][a-z0-9-]*$/.test(name)) throw new WardenError('E_BAD_INPUT', `--name ${name}: use lower-case letters, digits and dashes, starting with a letter`);
    if (this.builtins().some((c) => c.name === name)) throw new WardenError('E_BAD_INPUT', `--name ${name}: a built-in component has that name; choose another`);
    let bytes: Buffer;
    try {
      bytes = readFileSync(file);
    } catch (cause) {
      throw new WardenError('E_NOT_FOUND', `cannot read ${file}: ${messageOf(cause)}`, { cause });
    }
    const sha256 = sha256Hex(bytes);
    // Stage the copy first and check it there: what is pinned is exactly what was checked.
    const target = join(this.dir, name, `${sha256}.wasm`);
    mkdirSync(join(this.dir, name), { recursive: true });
    const staging = `${target}.tmp-${process.pid}`;
    writeFileSync(staging, bytes, { mode: 0o444 });
    let compiled: CompiledComponent;
    try {
      compiled = await this.engine.load(staging, { expectSha256: sha256 });
    } catch (err) {
      rmSync(staging, { force: true });
      throw err;
    }
    const kind = kindOf(compiled.exports);
    let manifest: Manifest;
    if (options.manifestPath) {
      manifest = readManifest(options.manifestPath);
      manifest = { ...manifest, name };
    } else {
      if (!kind) {
        rmSync(staging, { force: true });
        throw new WardenError('E_COMPONENT_INVALID', `${file} exports none of wasi:cli/run, warden:kernel/tool, agent or supervisor (exports: ${compiled.exports.join(', ') || 'nothing'})`);
      }
      manifest = parseManifest({ name, version: sha256.slice(0, 12), kind, description: `added from ${file}` }, 'default manifest');
    }
    if (kind !== manifest.kind) {
      rmSync(staging, { force: true });
      throw new WardenError('E_BAD_INPUT', `manifest says kind ${manifest.kind} but the component exports ${compiled.exports.join(', ') || 'nothing'} (kind ${kind ?? 'unknown'})`);
    }
    renameSync(staging, target);
    const previous = this.store.pin(name);
    this.store.upsertPin({
      name, sha256, kind: manifest.kind, version: manifest.version, manifest: JSON.stringify(manifest), file: target,
      size: bytes.length, added_at: new Date().toISOString(),
    });
    if (previous && previous.file !== target) rmSync(previous.file, { force: true });
    this.store.audit('component.add', { name, sha256, size: bytes.length, kind: manifest.kind, requests: manifest.requests, ...(previous ? { replaced: previous.sha256 } : {}) }, name);
    return {
      component: this.fromPin(this.store.pin(name)!),
      imports: compiled.imports,
      exports: compiled.exports,
      size: bytes.length,
      ...(previous && previous.sha256 !== sha256 ? { replacedSha256: previous.sha256 } : {}),
    };
  }

  /** Unpin and delete a third-party component. @throws WardenError `E_NOT_FOUND`, `E_BAD_INPUT` (built-in) */
  remove(name: string): void {
    const pin = this.store.pin(name);
    if (!pin) {
      if (this.builtins().some((c) => c.name === name)) throw new WardenError('E_BAD_INPUT', `${name} is built in; it cannot be removed`);
      throw new WardenError('E_NOT_FOUND', `no added component named ${name}`);
    }
    this.store.removePin(name);
    rmSync(join(this.dir, name), { recursive: true, force: true });
    this.store.audit('component.remove', { name, sha256: pin.sha256 }, name);
  }

  /**
   * Check a pinned component's bytes against its pin.
   * @returns null when intact, else why not (`E_DIGEST_MISMATCH: …` or `E_NOT_FOUND: …`)
   */
  verify(component: RegisteredComponent): string | null {
    if (!component.sha256) return null;
    let bytes: Buffer;
    try {
      bytes = readFileSync(component.file);
    } catch (err) {
      return `E_NOT_FOUND: ${component.name}: its file ${component.file} is gone (${messageOf(err)}); add it again`;
    }
    const actual = sha256Hex(bytes);
    return actual === component.sha256
      ? null
      : `E_DIGEST_MISMATCH: ${component.name} changed after it was pinned (sha256 ${actual}, pinned ${component.sha256}); it is refused until re-added with \`warden component add\``;
  }
}
