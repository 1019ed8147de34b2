/**
 * The interfaces the kernel can link. Anything else a component imports refuses instantiation
 * (DESIGN.md, "Capabilities"). Names are without version.
 */

/** Every interface the kernel implements, keyed as jco names imports (`ns:pkg/iface`). */
export const KNOWN_INTERFACES: ReadonlySet<string> = new Set([
  'warden:kernel/log',
  'warden:kernel/mesh',
  'warden:kernel/sql',
  'warden:kernel/session',
  'warden:kernel/inference',
  'warden:kernel/progress',
  'warden:kernel/types',
  'wasi:cli/environment',
  'wasi:cli/exit',
  'wasi:cli/stdin',
  'wasi:cli/stdout',
  'wasi:cli/stderr',
  'wasi:cli/terminal-input',
  'wasi:cli/terminal-output',
  'wasi:cli/terminal-stdin',
  'wasi:cli/terminal-stdout',
  'wasi:cli/terminal-stderr',
  'wasi:clocks/monotonic-clock',
  'wasi:clocks/wall-clock',
  'wasi:filesystem/types',
  'wasi:filesystem/preopens',
  'wasi:http/types',
  'wasi:http/outgoing-handler',
  'wasi:io/error',
  'wasi:io/poll',
  'wasi:io/streams',
  'wasi:random/random',
  'wasi:random/insecure',
  'wasi:random/insecure-seed',
  'wasi:sockets/network',
  'wasi:sockets/instance-network',
  'wasi:sockets/tcp',
  'wasi:sockets/tcp-create-socket',
  'wasi:sockets/udp',
  'wasi:sockets/udp-create-socket',
  'wasi:sockets/ip-name-lookup',
]);

/** `wasi:filesystem/types@0.2.12` → `wasi:filesystem/types`. */
export function interfaceOf(importName: string): string {
  return importName.replace(/@[^/]*$/, '');
}
