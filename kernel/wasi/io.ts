/**
 * `wasi:io` (poll, streams, error) as the kernel implements it for guests: synchronous, in the
 * guest's worker. Follows the WASI 0.2 `wasi:io` specification.
 */

/** `wasi:io/error.error`: an opaque error with a debug string. */
export class IoError {
  constructor(private readonly message: string) {}
  toDebugString(): string {
    return this.message;
  }
}

/** `wasi:io/poll.pollable`. `waitMs` is how long `block` waits (0: ready now). */
export class Pollable {
  constructor(private readonly readyAt = 0) {}
  ready(): boolean {
    return Date.now() >= this.readyAt;
  }
  block(): void {
    const wait = this.readyAt - Date.now();
    if (wait > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, wait);
  }
}

/** `wasi:io/poll.poll`: blocks until at least one is ready; returns the indices of the ready ones. */
export function poll(list: Pollable[]): Uint32Array {
  for (;;) {
    const ready = list.flatMap((p, i) => (p.ready() ? [i] : []));
    if (ready.length > 0) return Uint32Array.from(ready);
    list[0]?.block();
  }
}

/** Stream errors as the WASI `stream-error` variant. */
export type StreamError = { tag: 'closed' } | { tag: 'last-operation-failed'; val: IoError };

/** Source of bytes behind an {@link InputStream}: returns a chunk, or null at end of stream. */
export type ReadSource = (maxBytes: number) => Uint8Array | null;

/** `wasi:io/streams.input-stream` over a synchronous source. */
export class InputStream {
  private closed = false;
  constructor(private readonly source: ReadSource) {}

  read(len: bigint): Uint8Array {
    if (this.closed) throw { tag: 'closed' } satisfies StreamError;
    let chunk: Uint8Array | null;
    try {
      chunk = this.source(Number(len));
    } catch (err) {
      throw { tag: 'last-operation-failed', val: new IoError(String(err)) } satisfies StreamError;
    }
    if (chunk === null) {
      this.closed = true;
      throw { tag: 'closed' } satisfies StreamError;
    }
    return chunk;
  }
  blockingRead(len: bigint): Uint8Array {
    return this.read(len);
  }
  skip(len: bigint): bigint {
    return BigInt(this.read(len).length);
  }
  blockingSkip(len: bigint): bigint {
    return this.skip(len);
  }
  subscribe(): Pollable {
    return new Pollable();
  }
}

/** Sink of bytes behind an {@link OutputStream}. */
export type WriteSink = (bytes: Uint8Array) => void;

/** Largest write a guest may make in one `write` call, in bytes (`check-write`). */
const WRITE_BUDGET = 1 << 20;

/** `wasi:io/streams.output-stream` over a synchronous sink. */
export class OutputStream {
  constructor(private readonly sink: WriteSink) {}

  checkWrite(): bigint {
    return BigInt(WRITE_BUDGET);
  }
  write(contents: Uint8Array): void {
    try {
      this.sink(contents);
    } catch (err) {
      throw { tag: 'last-operation-failed', val: new IoError(err instanceof Error ? err.message : String(err)) } satisfies StreamError;
    }
  }
  blockingWriteAndFlush(contents: Uint8Array): void {
    this.write(contents);
  }
  flush(): void {}
  blockingFlush(): void {}
  subscribe(): Pollable {
    return new Pollable();
  }
  writeZeroes(len: bigint): void {
    this.write(new Uint8Array(Number(len)));
  }
  blockingWriteZeroesAndFlush(len: bigint): void {
    this.writeZeroes(len);
  }
  splice(src: InputStream, len: bigint): bigint {
    let chunk: Uint8Array;
    try {
      chunk = src.read(len);
    } catch (err) {
      throw err;
    }
    this.write(chunk);
    return BigInt(chunk.length);
  }
  blockingSplice(src: InputStream, len: bigint): bigint {
    return this.splice(src, len);
  }
}
