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
