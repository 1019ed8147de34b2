/**
 * Caps the linear memory of WebAssembly core modules by rewriting their memory section.
 *
 * Worker `resourceLimits` do not bound WebAssembly memory (DESIGN.md, measured facts), so the
 * engine sets each defined memory's maximum to the granted cap before compiling. A guest that
 * grows past it gets an out-of-memory result from `memory.grow`, which the guest turns into a trap.
 *
 * Follows the WebAssembly core specification, binary format §5.5.8 (memory section) and §5.3.8
 * (limits).
 */
import { WardenError } from '../errors.js';

/** Size of one WebAssembly page in bytes. */
export const WASM_PAGE_BYTES = 65536;

function readU32(buf: Uint8Array, pos: number): [value: number, next: number] {
  let result = 0;
  let shift = 0;
  for (;;) {
    const byte = buf[pos++];
    if (byte === undefined) throw new WardenError('E_COMPONENT_INVALID', 'truncated LEB128 in core module');
    result += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return [result, pos];
    shift += 7;
    if (shift > 35) throw new WardenError('E_COMPONENT_INVALID', 'LEB128 too long in core module');
  }
}

function writeU32(value: number): number[] {
  const out: number[] = [];
  do {
    let byte = value & 0x7f;
    value = Math.floor(value / 128);
    if (value !== 0) byte |= 0x80;
    out.push(byte);
  } while (value !== 0);
  return out;
}

/**
 * Returns a copy of `module` (core module bytes) whose defined memories have at most
 * `maxPages` pages (64 KiB each). Memories that already declare a lower maximum keep it.
 *
 * @throws WardenError `E_LIMIT_MEMORY` when a memory's minimum already exceeds the cap;
 *   `E_COMPONENT_INVALID` for a malformed module or a 64-bit memory.
 */
export function capMemory(module: Uint8Array, maxPages: number): Uint8Array {
  if (module.length < 8 || module[0] !== 0 || module[1] !== 0x61 || module[2] !== 0x73 || module[3] !== 0x6d) {
    throw new WardenError('E_COMPONENT_INVALID', 'not a WebAssembly core module');
  }
  const parts: Uint8Array[] = [module.subarray(0, 8)];
  let pos = 8;
  while (pos < module.length) {
    const id = module[pos]!;
    const [size, bodyStart] = readU32(module, pos + 1);
    const bodyEnd = bodyStart + size;
    if (id !== 5) {
      parts.push(module.subarray(pos, bodyEnd));
      pos = bodyEnd;
      continue;
    }
    const body: number[] = [];
    let [count, p] = readU32(module, bodyStart);
    body.push(...writeU32(count));
    while (count-- > 0) {
      const flags = module[p++]!;
      if (flags & 0x04) throw new WardenError('E_COMPONENT_INVALID', '64-bit memories are not supported');
      let min: number;
      let max: number | undefined;
      [min, p] = readU32(module, p);
      if (flags & 0x01) [max, p] = readU32(module, p);
      if (min > maxPages) {
        throw new WardenError(
          'E_LIMIT_MEMORY',
          `component needs ${min} pages (${(min * WASM_PAGE_BYTES) / 2 ** 20} MiB) of memory at start; the cap is ${maxPages} pages — raise limits.memoryMb`,
        );
      }
      const capped = max === undefined ? maxPages : Math.min(max, maxPages);
      body.push(flags | 0x01, ...writeU32(min), ...writeU32(capped));
    }
    const bodyBytes = Uint8Array.from(body);
    parts.push(Uint8Array.from([5, ...writeU32(bodyBytes.length)]), bodyBytes);
    pos = bodyEnd;
  }
  return Buffer.concat(parts);
}

/** Module and field name of the import that {@link importMemory} makes of a module's memory. */
export const MEMORY_IMPORT = { module: 'warden:engine', name: 'memory' } as const;

/** Limits of a linear memory in pages of 64 KiB, as `new WebAssembly.Memory` takes them. */
export interface MemoryLimits {
  initial: number;
  maximum: number;
}

/** A core module whose memory the host supplies (see {@link importMemory}). */
export interface MemoryImporting {
  /** The module, its one memory now the import {@link MEMORY_IMPORT}. */
  bytes: Uint8Array;
  /** The memory's limits as the module defined them (after {@link capMemory}). */
  limits: MemoryLimits;
}

/**
 * Returns a copy of `module` (core module bytes) in which its one defined memory is imported
 * instead, as {@link MEMORY_IMPORT} with the same limits, so that the host can hand an instance a
 * memory of its choosing: a new one, or a dropped instance's memory zeroed (a tool pool's
 * recycling, kernel/mesh/worker.ts). Nothing else changes: the memory keeps index 0 (an imported
 * memory is numbered before defined ones, and the module defines no other), function indices do
 * not depend on memories, its active data segments are written into the memory at instantiation
 * and its exports still export it. Follows the core specification's binary format: §5.5.5
 * (import section, `0x02` memory imports), §5.5.8 (memory section), §5.5.2 (section order).
 *
 * @returns null when the module defines no memory, more than one, or a shared or 64-bit one, or
 *   one without a maximum (apply after {@link capMemory}, which always sets one)
 */
export function importMemory(module: Uint8Array): MemoryImporting | null {
  const sections: Array<{ id: number; start: number; bodyStart: number; end: number }> = [];
  let pos = 8;
  while (pos < module.length) {
    const [size, bodyStart] = readU32(module, pos + 1);
    sections.push({ id: module[pos]!, start: pos, bodyStart, end: bodyStart + size });
    pos = bodyStart + size;
  }
  const memories = sections.find((s) => s.id === 5);
  if (!memories) return null;
  let [count, p] = readU32(module, memories.bodyStart);
  if (count !== 1) return null;
  const flags = module[p++]!;
  if (flags & 0x06) return null; // shared or 64-bit
  let initial: number;
  let maximum: number | undefined;
  [initial, p] = readU32(module, p);
  if (flags & 0x01) [maximum, p] = readU32(module, p);
  if (maximum === undefined) return null;
  const name = (text: string) => [...writeU32(Buffer.byteLength(text)), ...Buffer.from(text)];
  // An import entry: module name, field name, kind 0x02 (memory), limits with a maximum.
  const entry = [...name(MEMORY_IMPORT.module), ...name(MEMORY_IMPORT.name), 0x02, 0x01, ...writeU32(initial), ...writeU32(maximum)];
  const importSection = (entries: number, rest: Uint8Array): Uint8Array => {
    const body = Buffer.concat([Uint8Array.from(writeU32(entries)), rest, Uint8Array.from(entry)]);
    return Buffer.concat([Uint8Array.from([2, ...writeU32(body.length)]), body]);
  };
  const parts: Uint8Array[] = [module.subarray(0, 8)];
  let imported = false;
  for (const s of sections) {
    if (s.id === 2) {
      // The new entry goes last: memories already imported keep their indices, and the defined
      // memory's index (after all imported ones) is the new import's.
      const [entries, first] = readU32(module, s.bodyStart);
      parts.push(importSection(entries + 1, module.subarray(first, s.end)));
      imported = true;
      continue;
    }
    // Sections other than custom ones (id 0) come in a fixed order, the import section before
    // every section with a higher id (§5.5.2): a module without one gets it there.
    if (!imported && s.id !== 0 && s.id > 2) {
      parts.push(importSection(1, new Uint8Array(0)));
      imported = true;
    }
    if (s.id !== 5) parts.push(module.subarray(s.start, s.end));
  }
  return { bytes: Buffer.concat(parts), limits: { initial, maximum } };
}
