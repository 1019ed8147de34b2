/**
 * `warden inspect`: what a component is, read without running it — its size and sha256, its
 * world (imports and exports, each import known to this kernel or not, the functions it imports),
 * the kind it would load as, the grants it would need, and the linear memory it starts with.
 *
 * The world comes from jco's wasm-tools bindings (the same package the engine transpiles with):
 * `componentWit` for the imports and exports, `print` of the component's leading type and import
 * sections for the imported functions, `metadataShow` for the ranges of its core modules.
 */
import { readFile, stat } from 'node:fs/promises';
import { componentWit, metadataShow, print } from '@bytecodealliance/jco-transpile/wasm-tools';
import { KNOWN_INTERFACES, WASM_PAGE_BYTES, interfaceOf, sha256Hex } from '../engine/index.js';
import { WardenError, messageOf } from '../errors.js';
import type { Manifest } from '../grants/index.js';
import { kindOf } from '../registry/index.js';

/** A field of a manifest's `requests` (and of the operator's `grants.NAME`). */
export type GrantField = 'filesystem' | 'sql' | 'mesh' | 'inference' | 'session' | 'http' | 'sockets' | 'env';

/** One imported interface (or bare function) of a component. */
export interface ImportedItem {
  /** As the component names it, with its version: `wasi:filesystem/types@0.2.12`, `warden:kernel/mesh@0.1.0`. */
  name: string;
  /** Without the version, as the kernel keys it: `wasi:filesystem/types`. */
  interface: string;
  /** `interface`, or `function` for a bare function import (which no kernel provides). */
  kind: 'interface' | 'function';
  /** Whether the kernel provides it; one unknown import makes the kernel refuse the component. */
  known: boolean;
  /** The grant field that governs it, when it needs one. */
  grant?: GrantField;
  /** Functions of the interface the component imports (`descriptor.stat`, `get-environment`); empty when unknown. */
  functions: string[];
}

/** One export of a component. */
export interface ExportedItem {
  /** `warden:kernel/tool@0.1.0`, `wasi:cli/run@0.2.12`, or a bare function's name (`init`). */
  name: string;
  kind: 'interface' | 'function';
}

/** A grant the component's imports call for. */
export interface GrantNeed {
  field: GrantField;
  /** The imports (with version) that need it. */
  via: string[];
  /** What to request and what happens without it. */
  note: string;
}

/** What {@link inspectComponent} reports. */
export interface Inspection {
  /** The path as given. */
  file: string;
  /** Size of the file, bytes. */
  size: number;
  /** sha256 of the file, lower-case hex (what `warden component add` pins). */
  sha256: string;
  /** The kind its exports make it (`command` for a `wasi:cli/command`), or null: none the kernel runs. */
  kind: Manifest['kind'] | null;
  imports: ImportedItem[];
  exports: ExportedItem[];
  /** Imports the kernel does not provide (with version). */
  unknownImports: string[];
  /** Whether the kernel would load it: every import known and a kind it runs. */
  loadable: boolean;
  /** One sentence: how it would load, or why the kernel would refuse it. */
  verdict: string;
  grants: GrantNeed[];
  /** Linear memory its core modules declare at start (the sum of their defined memories' minimums). */
  initialMemory: { pages: number; bytes: number };
}

/** Which grant governs an interface (by prefix of the name without version), and what to say about it. */
const GRANTS: ReadonlyArray<{ prefix: string; field: GrantField; note: string }> = [
  { prefix: 'wasi:filesystem/', field: 'filesystem', note: 'session:ro or session:rw: the component decides at run time which it needs; request the least (without it the session is not preopened)' },
  { prefix: 'warden:kernel/sql', field: 'sql', note: '{scope, mode}: one SQLite database per scope, mode ro or rw' },
  { prefix: 'warden:kernel/mesh', field: 'mesh', note: 'the component names it calls and the topic:NAMEs it publishes to (list-tools shows only granted tools)' },
  { prefix: 'warden:kernel/inference', field: 'inference', note: 'the model@backend targets (or prefix*) it may ask for' },
  { prefix: 'warden:kernel/session', field: 'session', note: 'true: it may begin, diff, commit and roll back sessions' },
  { prefix: 'wasi:http/outgoing-handler', field: 'http', note: 'the hosts it may reach: host, host:port, *.suffix' },
  { prefix: 'wasi:sockets/', field: 'sockets', note: 'always denied in this version: every wasi:sockets call fails whatever is granted (use http)' },
  { prefix: 'wasi:cli/environment', field: 'env', note: 'the variable names it may read; without a grant it sees an empty environment (componentize-qjs components import it whether or not they read it)' },
];

function grantOf(iface: string): (typeof GRANTS)[number] | undefined {
  return GRANTS.find((g) => iface === g.prefix || iface.startsWith(g.prefix));
}

const CORE_VERSION = [0x01, 0x00, 0x00, 0x00];
const COMPONENT_VERSION = [0x0d, 0x00, 0x01, 0x00];

/**
 * Check the preamble: `\0asm` then the component version and layer.
 * @throws WardenError `E_COMPONENT_INVALID`: not WebAssembly, or a core module (with how to wrap it)
 */
function checkPreamble(file: string, bytes: Uint8Array): void {
  const magic = bytes.length >= 8 && bytes[0] === 0 && bytes[1] === 0x61 && bytes[2] === 0x73 && bytes[3] === 0x6d;
  if (!magic) throw new WardenError('E_COMPONENT_INVALID', `${file} is not WebAssembly: it does not start with the bytes \\0asm`);
  const version = [...bytes.subarray(4, 8)];
  if (version.every((b, i) => b === CORE_VERSION[i])) {
    throw new WardenError(
      'E_COMPONENT_INVALID',
      `${file} is a WebAssembly core module, not a component: wrap it with \`wasm-tools component new ${file} -o component.wasm\`; ` +
        `a WASI preview1 module needs the preview1 adapter: \`wasm-tools component new ${file} --adapt wasi_snapshot_preview1.reactor.wasm -o component.wasm\` ` +
        `(or \`npx jco new ${file} --wasi-reactor -o component.wasm\`, which ships the adapter; --wasi-command for a program with main)`,
    );
  }
  if (!version.every((b, i) => b === COMPONENT_VERSION[i])) {
    throw new WardenError('E_COMPONENT_INVALID', `${file}: unknown WebAssembly binary version ${version.map((b) => b.toString(16).padStart(2, '0')).join(' ')} (a component has 0d 00 01 00)`);
  }
}

function readU32(bytes: Uint8Array, pos: number): [value: number, next: number] {
  let value = 0;
  for (let shift = 0; shift <= 35; shift += 7) {
    const byte = bytes[pos++];
    if (byte === undefined) break;
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return [value, pos];
  }
  throw new WardenError('E_COMPONENT_INVALID', 'malformed LEB128 in a section header');
}

/**
 * The component's leading type, core-type, alias and import sections (where wit-component puts
 * every import) as a component of their own: printing it takes milliseconds, printing the whole
 * component (its core modules as text) takes seconds and tens of megabytes.
 */
function importPrefix(bytes: Uint8Array): Uint8Array {
  const kept: Uint8Array[] = [bytes.subarray(0, 8)];
  let pos = 8;
  while (pos < bytes.length) {
    const id = bytes[pos]!;
    const [size, body] = readU32(bytes, pos + 1);
    if (id !== 0 && id !== 3 && id !== 6 && id !== 7 && id !== 10) break;
    if (id !== 0) kept.push(bytes.subarray(pos, body + size));
    pos = body + size;
  }
  return Buffer.concat(kept);
}

/** `[method]descriptor.stat` → `descriptor.stat`, `[constructor]fields` → `fields.constructor`. */
function functionName(raw: string): string {
  const match = /^\[(method|static|constructor)\](.*)$/.exec(raw);
  if (!match) return raw;
  return match[1] === 'constructor' ? `${match[2]}.constructor` : match[2]!;
}

/**
 * The functions each imported instance declares, by import name, from the printed import
 * sections: top-level `(type (;N;) (instance … (export (;k;) "NAME" (func …)) …))` blocks and
 * `(import "NAME" (instance (;i;) (type N)))` lines.
 */
function importedFunctions(wat: string): Map<string, string[]> {
  const byType = new Map<string, string[]>();
  const byImport = new Map<string, string[]>();
  let currentType: string[] | null = null;
  for (const line of wat.split('\n')) {
    const top = /^ {2}\((type|import|alias|core)\b/.exec(line);
    if (top) {
      currentType = null;
      const type = /^ {2}\(type \(;(\d+);\)/.exec(line);
      if (type) byType.set(type[1]!, (currentType = []));
      const imported = /^ {2}\(import "([^"]+)" \(instance \(;\d+;\) \(type (\d+)\)\)\)/.exec(line);
      if (imported) byImport.set(imported[1]!, byType.get(imported[2]!) ?? []);
      continue;
    }
    const fn = /^ {6}\(export \(;\d+;\) "([^"]+)" \(func /.exec(line);
    if (fn && currentType) currentType.push(functionName(fn[1]!));
  }
  return byImport;
}

/** Imports and exports of the root world as `componentWit` prints it. */
function worldItems(wit: string): { imports: Array<{ name: string; kind: 'interface' | 'function' }>; exports: ExportedItem[] } {
  const imports: Array<{ name: string; kind: 'interface' | 'function' }> = [];
  const exports: ExportedItem[] = [];
  let depth = 0;
  for (const line of wit.split('\n')) {
    // Only the world's own lines (depth 1): inline interfaces and records nest deeper.
    if (depth === 1) {
      const item = /^\s*(import|export)\s+(\S+?)(;|:\s)/.exec(line);
      if (item) {
        const entry = { name: item[2]!, kind: item[3] === ';' || !/:\s*func\b/.test(line) ? ('interface' as const) : ('function' as const) };
        (item[1] === 'import' ? imports : exports).push(entry);
      }
    }
    depth += (line.match(/\{/g)?.length ?? 0) - (line.match(/\}/g)?.length ?? 0);
  }
  return { imports, exports };
}

/** Pages declared by the memory section of one core module (its defined memories' minimums). */
function definedMemoryPages(module: Uint8Array): number {
  let pos = 8;
  while (pos < module.length) {
    const id = module[pos]!;
    const [size, body] = readU32(module, pos + 1);
    if (id === 5) {
      let [count, p] = readU32(module, body);
      let pages = 0;
      while (count-- > 0) {
        const flags = module[p++]!;
        let min: number;
        [min, p] = readU32(module, p);
        if (flags & 0x01) [, p] = readU32(module, p);
        pages += min;
      }
      return pages;
    }
    pos = body + size;
  }
  return 0;
}

/**
 * Read a component file and describe it without running it.
 *
 * @param file path of a `.wasm` component
 * @throws WardenError `E_NOT_FOUND` (no such file), `E_BAD_INPUT` (a directory, or unreadable),
 *   `E_COMPONENT_INVALID` (not WebAssembly; a core module, with how to make it a component;
 *   a malformed component, with the decoder's first line)
 */
export async function inspectComponent(file: string): Promise<Inspection> {
  let bytes: Buffer;
  try {
    if ((await stat(file)).isDirectory()) throw new WardenError('E_BAD_INPUT', `${file} is a directory, not a .wasm file`);
    bytes = await readFile(file);
  } catch (cause) {
    if (cause instanceof WardenError) throw cause;
    const code = (cause as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new WardenError('E_NOT_FOUND', `${file}: no such file`, { cause });
    throw new WardenError('E_BAD_INPUT', `cannot read ${file}: ${messageOf(cause)}`, { cause });
  }
  checkPreamble(file, bytes);
  let wit: string;
  try {
    wit = await componentWit(bytes);
  } catch (cause) {
    throw new WardenError('E_COMPONENT_INVALID', `${file} is not a valid component: ${messageOf(cause).split('\n').slice(0, 2).join(' ')}`, { cause });
  }
  const world = worldItems(wit);
  const functions = importedFunctions(await print(importPrefix(bytes)));
  const imports: ImportedItem[] = world.imports.map(({ name, kind }) => {
    const iface = interfaceOf(name);
    const grant = grantOf(iface);
    return {
      name, interface: iface, kind, known: kind === 'interface' && KNOWN_INTERFACES.has(iface),
      ...(grant ? { grant: grant.field } : {}), functions: functions.get(name) ?? [],
    };
  });
  const unknownImports = imports.filter((i) => !i.known).map((i) => i.name);
  const kind = kindOf(world.exports.filter((e) => e.kind === 'interface').map((e) => e.name));
  const grants: GrantNeed[] = [];
  for (const g of GRANTS) {
    const via = imports.filter((i) => i.known && i.grant === g.field).map((i) => i.name);
    if (via.length > 0) grants.push({ field: g.field, via, note: g.note });
  }
  let pages = 0;
  for (const module of await metadataShow(bytes)) {
    if (module.metaType.tag === 'module') pages += definedMemoryPages(bytes.subarray(module.range[0], module.range[1]));
  }
  const verdict = unknownImports.length > 0
    ? `the kernel would refuse it (E_UNKNOWN_IMPORT): it imports what the kernel does not provide: ${unknownImports.join(', ')}`
    : kind === null
      ? 'the kernel would refuse it: it exports none of warden:kernel/tool, agent, supervisor or wasi:cli/run'
      : kind === 'command'
        ? 'a wasi:cli/command: the kernel runs it with `warden tool run FILE [ARGS]`'
        : `the kernel would load it as ${kind === 'agent' ? 'an' : 'a'} ${kind} (\`warden component add ${file} --name NAME --manifest manifest.json\`)`;
  return {
    file, size: bytes.length, sha256: sha256Hex(bytes), kind, imports, exports: world.exports, unknownImports,
    loadable: unknownImports.length === 0 && kind !== null, verdict, grants,
    initialMemory: { pages, bytes: pages * WASM_PAGE_BYTES },
  };
}

/** `1711377 bytes (1.63 MiB)`. */
function sizeText(bytes: number): string {
  return `${bytes} bytes (${(bytes / 2 ** 20).toFixed(2)} MiB)`;
}

/** `names` joined with `, ` and wrapped at `width` columns, each line indented by `indent`. */
function wrap(names: string[], indent: string, width = 100): string[] {
  const lines: string[] = [];
  let line = '';
  for (const name of names) {
    const next = line ? `${line}, ${name}` : name;
    if (line && indent.length + next.length > width) {
      lines.push(`${indent}${line},`);
      line = name;
    } else line = next;
  }
  if (line) lines.push(`${indent}${line}`);
  return lines;
}

/** The text `warden inspect FILE` prints. */
export function formatInspection(i: Inspection): string {
  const nameWidth = Math.max(...i.imports.map((m) => m.name.length), 0);
  const lines = [
    `${i.file}: ${i.kind ? `${i.kind} component` : 'component'}`,
    `  size     ${sizeText(i.size)}`,
    `  sha256   ${i.sha256}`,
    `  memory   ${i.initialMemory.pages} pages (${(i.initialMemory.bytes / 2 ** 20).toFixed(2)} MiB) of linear memory at start, declared by its core modules`,
    `  verdict  ${i.verdict}`,
    '',
    `imports (${i.imports.length}; known: the kernel provides it, unknown: the kernel would refuse the component)`,
  ];
  for (const m of i.imports) {
    const tag = m.known ? 'known  ' : 'UNKNOWN';
    const note = m.kind === 'function' ? 'a bare function' : m.grant ? `grant: ${m.grant}` : m.functions.length === 0 ? '(types only)' : '';
    lines.push(`  ${tag}  ${note ? `${m.name.padEnd(nameWidth)}  ${note}` : m.name}`);
    lines.push(...wrap(m.functions, '             '));
  }
  lines.push('', `exports (${i.exports.length})`);
  for (const e of i.exports) lines.push(`  ${e.name}${e.kind === 'function' ? '  (function)' : ''}`);
  lines.push('', i.grants.length ? 'grants it would need (manifest.json `requests`; the operator grants them in warden.config.json `grants.NAME`)' : 'grants it would need: none');
  for (const g of i.grants) lines.push(`  ${g.field.padEnd(10)}  ${g.note}`, `              via ${g.via.join(', ')}`);
  return lines.join('\n');
}
