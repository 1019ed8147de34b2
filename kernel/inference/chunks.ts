/**
 * Streamed text published at a bounded rate: deltas are buffered and handed on at most once
 * per interval, so a fast stream costs one state-document patch per interval, not one per token.
 */

/** Buffers deltas and publishes them as one chunk per interval. */
export class DeltaBuffer {
  private buffered = '';
  private timer: NodeJS.Timeout | undefined;

  /**
   * @param intervalMs the longest a delta waits before it is published, ms
   * @param publish receives each chunk (never empty)
   */
  constructor(private readonly intervalMs: number, private readonly publish: (chunk: string) => void) {}

  /** Add streamed text; the first delta after a publication starts the interval. */
  push(text: string): void {
    if (!text) return;
    this.buffered += text;
    this.timer ??= setTimeout(() => this.flush(), this.intervalMs);
  }

  /** Publish what is buffered now. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.buffered) return;
    const chunk = this.buffered;
    this.buffered = '';
    this.publish(chunk);
  }

  /** Drop what is buffered (the stream it came from was abandoned). */
  discard(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.buffered = '';
  }
}
