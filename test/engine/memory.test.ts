// The engine's rewrites of core modules (kernel/engine/memory.ts): a defined memory made an
// import that the host supplies (for recycling in tool pools), and the cap on memories. Modules
// are written in WAT, assembled by jco's `parse`, and instantiated by V8.
import { describe, expect, it } from 'vitest';
import { parse } from '@bytecodealliance/jco';
import { capMemory, importMemory, MEMORY_IMPORT } from '../../kernel/engine/index.js';

async function wasm(wat: string): Promise<Uint8Array> {
  return parse(wat) as Promise<Uint8Array>;
}

/** Bytes 0..n of a memory as text. */
function text(memory: WebAssembly.Memory, n: number): string {
  return Buffer.from(memory.buffer, 0, n).toString('latin1');
}

describe('importMemory', () => {
  it('turns the one defined memory into an import with the same limits; data, exports and code work as before', async () => {
    const bytes = capMemory(await wasm(`(module
      (import "env" "log" (func $log (param i32)))
      (memory (export "memory") 2 5)
      (data (i32.const 16) "segment")
      (func (export "store") (param i32 i32) (i32.store8 (local.get 0) (local.get 1)))
      (func (export "grow") (result i32) (memory.grow (i32.const 1)))
      (func (export "size") (result i32) (memory.size)))`), 100);
    const rewritten = importMemory(bytes)!;
    expect(rewritten.limits).toEqual({ initial: 2, maximum: 5 });
    const module = new WebAssembly.Module(rewritten.bytes as Uint8Array<ArrayBuffer>);
    expect(WebAssembly.Module.imports(module)).toEqual([
      { module: 'env', name: 'log', kind: 'function' },
      { module: MEMORY_IMPORT.module, name: MEMORY_IMPORT.name, kind: 'memory' },
    ]);
    const memory = new WebAssembly.Memory(rewritten.limits);
    const instance = new WebAssembly.Instance(module, { env: { log: () => {} }, [MEMORY_IMPORT.module]: { [MEMORY_IMPORT.name]: memory } });
    const exports = instance.exports as { memory: WebAssembly.Memory; store(at: number, v: number): void; grow(): number; size(): number };
    expect(exports.memory).toBe(memory);
    expect(text(memory, 23).slice(16)).toBe('segment');
    exports.store(0, 65);
    expect(text(memory, 1)).toBe('A');
    expect(exports.size()).toBe(2);
    // The maximum holds: 5 pages, then memory.grow fails (-1).
    expect([exports.grow(), exports.grow(), exports.grow(), exports.grow()]).toEqual([2, 3, 4, -1]);
    // A memory of other limits is refused at link time.
    expect(() => new WebAssembly.Instance(module, { env: { log: () => {} }, [MEMORY_IMPORT.module]: { [MEMORY_IMPORT.name]: new WebAssembly.Memory({ initial: 1, maximum: 5 }) } })).toThrow(WebAssembly.LinkError);
  });

  it('adds an import section to a module without one, before the sections that follow it', async () => {
    const rewritten = importMemory(capMemory(await wasm(`(module
      (type (func (result i32)))
      (memory 1)
      (global $g (mut i32) (i32.const 7))
      (data (i32.const 0) "x")
      (func (export "load") (type 0) (i32.load8_u (i32.const 0))))`), 3))!;
    expect(rewritten.limits).toEqual({ initial: 1, maximum: 3 });
    const memory = new WebAssembly.Memory(rewritten.limits);
    new Uint8Array(memory.buffer).fill(9);
    const instance = new WebAssembly.Instance(new WebAssembly.Module(rewritten.bytes as Uint8Array<ArrayBuffer>), { [MEMORY_IMPORT.module]: { [MEMORY_IMPORT.name]: memory } });
    // The data segment is written over what the memory held; the rest stays as given.
    expect((instance.exports as { load(): number }).load()).toBe('x'.charCodeAt(0));
    expect(new Uint8Array(memory.buffer)[1]).toBe(9);
  });

  it('leaves alone what it cannot rewrite: no memory, two memories, an imported memory only', async () => {
    expect(importMemory(await wasm('(module (func (export "f")))'))).toBeNull();
    expect(importMemory(await wasm('(module (memory 1 1) (memory 1 1))'))).toBeNull();
    expect(importMemory(await wasm('(module (import "env" "memory" (memory 1 1)))'))).toBeNull();
  });
});
