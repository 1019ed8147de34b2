/**
 * `wasi:io` (poll, streams, error) as the kernel implements it for guests: synchronous, in the
 * guest's worker. Follows the WASI 0.2 `wasi:io` specification.
 */

/**
 * `wasi:io/error.error`: an opaque error with a debug string. `code` is the `wasi:filesystem`
 * `error-code` when a filesystem operation behind a stream failed, which the guest reads back with
 * `wasi:filesystem/types.filesystem-error-code` (undefined for other streams).
 */
export class IoError {
  constructor(
    private readonly message: string,
    readonly code?: string,
  ) {}
  toDebugString(): string {
    return this.message;
  }
}

/**
 * The `last-operation-failed` stream error for `err` thrown by a source or sink. A string is a
 * WASI `error-code` thrown by the filesystem layer: it is kept as the error's {@link IoError.code}.
 */
function failed(err: unknown): StreamError {
  if (typeof err === 'string') return { tag: 'last-operation-failed', val: new IoError(err, err) };
  return { tag: 'last-operation-failed', val: new IoError(err instanceof Error ? err.message : String(err)) };
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

/**
 * `wasi:io/streams.input-stream` over a synchronous source (WASI 0.2 `wasi:io/streams`).
 * `read(len)` returns at most `len` bytes (the source may return fewer); it throws the
 * `stream-error` `closed` at the end of the stream, and `last-operation-failed` when the source
 * throws. A read of 0 bytes on an open stream returns an empty list, as the specification asks.
 */
export class InputStream {
  private closed = false;
  constructor(private readonly source: ReadSource) {}

  read(len: bigint): Uint8Array {
    if (this.closed) throw { tag: 'closed' } satisfies StreamError;
    if (len === 0n) return new Uint8Array(0);
    let chunk: Uint8Array | null;
    try {
      chunk = this.source(Number(len));
    } catch (err) {
      throw failed(err);
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

/**
 * `wasi:io/streams.output-stream` over a synchronous sink (WASI 0.2 `wasi:io/streams`). Every
 * write reaches the sink before it returns, so flushes have nothing to do. `check-write` permits
 * {@link WRITE_BUDGET} bytes per write; a sink that throws gives `last-operation-failed`.
 */
export class OutputStream {
  constructor(private readonly sink: WriteSink) {}

  checkWrite(): bigint {
    return BigInt(WRITE_BUDGET);
  }
  write(contents: Uint8Array): void {
    try {
      this.sink(contents);
    } catch (err) {
      throw failed(err);
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
  /** Write `len` zero bytes; more than `check-write` permits fails rather than allocating it host-side. */
  writeZeroes(len: bigint): void {
    if (len > BigInt(WRITE_BUDGET)) throw failed(new Error(`write-zeroes of ${len} bytes exceeds check-write's ${WRITE_BUDGET}`));
    this.write(new Uint8Array(Number(len)));
  }
  blockingWriteZeroesAndFlush(len: bigint): void {
    this.writeZeroes(len);
  }
  /** Move up to `len` bytes (at most check-write's budget) from `src`; `closed` when `src` is at its end. */
  splice(src: InputStream, len: bigint): bigint {
    const chunk = src.read(len < BigInt(WRITE_BUDGET) ? len : BigInt(WRITE_BUDGET));
    this.write(chunk);
    return BigInt(chunk.length);
  }
  blockingSplice(src: InputStream, len: bigint): bigint {
    return this.splice(src, len);
  }
}
