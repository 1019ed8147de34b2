/**
 * `wasi:cli`, `wasi:clocks`, `wasi:random` and the denial stubs, as the kernel gives them to a
 * guest: nothing of the host leaks (no `process.env`, no `process.exit`, no terminal).
 * Follows WASI 0.2 (`wasi:cli@0.2`, `wasi:clocks@0.2`, `wasi:random@0.2`).
 */
import { randomBytes } from 'node:crypto';
import { InputStream, IoError, OutputStream, Pollable, poll } from './io.js';

/** Thrown through the guest by `wasi:cli/exit.exit`; the worker turns it into an exit code. */
export class GuestExit extends Error {
  constructor(readonly code: number) {
    super(`guest exited with status ${code}`);
  }
}

/** What a guest's `wasi:cli` sees. */
export interface CliContext {
  /** Environment variables granted to the guest (never the host's own). */
  env: () => Array<[string, string]>;
  /** Program arguments, the first being the program name. */
  args: () => string[];
  /** Bytes of standard input, consumed once. */
  stdin: () => Uint8Array;
  /** Sinks of standard output and error. */
  stdout: (bytes: Uint8Array) => void;
  stderr: (bytes: Uint8Array) => void;
}

/** The import objects of `wasi:cli/*`, `wasi:clocks/*`, `wasi:random/*` and `wasi:io/*`. */
export function cliImports(cli: CliContext): Record<string, Record<string, unknown>> {
  const start = process.hrtime.bigint();
  return {
    'wasi:cli/environment': {
      getEnvironment: () => cli.env(),
      getArguments: () => cli.args(),
      initialCwd: () => undefined,
    },
    'wasi:cli/exit': {
      exit: (status: { tag: 'ok' | 'err' }) => {
        throw new GuestExit(status.tag === 'ok' ? 0 : 1);
      },
      exitWithCode: (code: number) => {
        throw new GuestExit(code);
      },
    },
    'wasi:cli/stdin': {
      getStdin: () => {
        let data: Uint8Array | null = null;
        let pos = 0;
        return new InputStream((max) => {
          data ??= cli.stdin();
          if (pos >= data.length) return null;
          const chunk = data.subarray(pos, pos + max);
          pos += chunk.length;
          return chunk;
        });
      },
    },
    'wasi:cli/stdout': { getStdout: () => new OutputStream((b) => cli.stdout(b)) },
    'wasi:cli/stderr': { getStderr: () => new OutputStream((b) => cli.stderr(b)) },
    'wasi:cli/terminal-input': { TerminalInput: class TerminalInput {} },
    'wasi:cli/terminal-output': { TerminalOutput: class TerminalOutput {} },
    'wasi:cli/terminal-stdin': { getTerminalStdin: () => undefined },
    'wasi:cli/terminal-stdout': { getTerminalStdout: () => undefined },
    'wasi:cli/terminal-stderr': { getTerminalStderr: () => undefined },
    'wasi:clocks/monotonic-clock': {
      now: () => process.hrtime.bigint() - start,
      resolution: () => 1n,
      subscribeInstant: (when: bigint) => new Pollable(Date.now() + Number((when - (process.hrtime.bigint() - start)) / 1_000_000n)),
      subscribeDuration: (ns: bigint) => new Pollable(Date.now() + Number(ns / 1_000_000n)),
    },
    'wasi:clocks/wall-clock': {
      now: () => {
        const ms = Date.now();
        return { seconds: BigInt(Math.floor(ms / 1000)), nanoseconds: (ms % 1000) * 1e6 };
      },
      resolution: () => ({ seconds: 0n, nanoseconds: 1e6 }),
    },
    'wasi:random/random': {
      getRandomBytes: (len: bigint) => new Uint8Array(randomBytes(Number(len))),
      getRandomU64: () => randomBytes(8).readBigUInt64LE(),
    },
    'wasi:random/insecure': {
      getInsecureRandomBytes: (len: bigint) => new Uint8Array(randomBytes(Number(len))),
      getInsecureRandomU64: () => randomBytes(8).readBigUInt64LE(),
    },
    'wasi:random/insecure-seed': {
      insecureSeed: () => [randomBytes(8).readBigUInt64LE(), randomBytes(8).readBigUInt64LE()],
    },
    'wasi:io/error': { Error: IoError },
    'wasi:io/poll': { Pollable, poll },
    'wasi:io/streams': { InputStream, OutputStream },
  };
}

/** Kernel functions that return no `result` (a denied call can only trap). */
const NO_RESULT = new Set(['listTools', 'log', 'report']);

/**
 * A stub for an interface the component imports but was not granted. Every function fails:
 * result-returning WASI functions see `access-denied` (sockets) or `access`; result-returning
 * kernel functions see their `denied("capability not granted: <name>")` case; others trap with
 * that message. Every use is reported through `onUse` for the audit log.
 */
export function deniedInterface(name: string, onUse: (name: string, member: string) => void): Record<string, unknown> {
  const members = new Map<string, unknown>();
  const errorCode = name.startsWith('wasi:sockets/') ? 'access-denied' : 'access';
  const message = `capability not granted: ${name}`;
  const fail = (member: string): never => {
    onUse(name, member);
    if (name.startsWith('wasi:')) throw errorCode;
    // Every result-returning kernel function has a `denied(string)` error case; the rest trap.
    if (name.startsWith('warden:kernel/') && !NO_RESULT.has(member)) throw { tag: 'denied', val: message };
    throw new Error(message);
  };
  return new Proxy(
    {},
    {
      get(_target, prop) {
        if (typeof prop !== 'string') return undefined;
        if (!members.has(prop)) {
          members.set(
            prop,
            /^[A-Z]/.test(prop)
              ? class Denied {
                  constructor() {
                    fail(String(prop));
                  }
                  static [Symbol.hasInstance](): boolean {
                    return false;
                  }
                }
              : () => fail(prop),
          );
        }
        return members.get(prop);
      },
    },
  );
}
