/**
 * Blocking waits for synchronous guest imports: the requester posts its message, then blocks on
 * its signal word with `Atomics.wait` until a responder notifies it or the deadline passes, and
 * reads the answer with `receiveMessageOnPort`. A responder always posts before it notifies, so
 * the answer is queued by the time the requester wakes.
 */

/**
 * Block until `check` returns a value or `deadline` (ms since epoch) passes.
 * `check` is called at once and after every wake-up. @returns the value, or undefined on timeout
 */
export function blockUntil<T>(signal: Int32Array, deadline: number, check: () => T | undefined): T | undefined {
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    const remaining = deadline - Date.now();
    if (remaining <= 0) return undefined;
    Atomics.wait(signal, 0, 0, remaining);
    Atomics.store(signal, 0, 0);
  }
}

/** Wake the owner of `signal` (after posting its answer). */
export function notify(signal: SharedArrayBuffer | Int32Array): void {
  const word = signal instanceof Int32Array ? signal : new Int32Array(signal);
  Atomics.store(word, 0, 1);
  Atomics.notify(word, 0);
}
