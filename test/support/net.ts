/** Waiting helpers for tests that drive child processes and servers. */
import { createServer } from 'node:net';

/** A TCP port on 127.0.0.1 that was free a moment ago (for a child `warden serve --port`). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Poll `probe` every `everyMs` until it returns something other than undefined.
 * @throws Error `timed out waiting for WHAT` after `ms`
 */
export async function until<T>(probe: () => Promise<T | undefined> | T | undefined, ms: number, what: string, everyMs = 25): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
