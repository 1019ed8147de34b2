/**
 * `warden key create|list|revoke`: manage the API keys of a data directory. They work while a
 * kernel runs (the store is in WAL mode, and the kernel reads the table on every check, so a
 * revocation applies to its next request).
 */
import { Option, type Command } from 'commander';
import { mkdirSync } from 'node:fs';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { ApiKeys, LOGIN_TOKEN_TTL_MS, type ApiKeyInfo } from '../auth/index.js';
import { messageOf } from '../errors.js';
import type { Kernel } from '../kernel.js';
import { Store } from '../store/index.js';

function fail(err: unknown): never {
  process.stderr.write(`warden: ${messageOf(err)}\n`);
  process.exit(1);
}

/** Run `action` on the keys of `dataDir` (created when missing: keys may precede the first start), then close the store. */
function withKeys<T>(dataDir: string, action: (keys: ApiKeys) => T): T {
  let store: Store | undefined;
  try {
    const dir = resolve(dataDir);
    mkdirSync(dir, { recursive: true });
    store = new Store(join(dir, 'warden.db'));
    return action(new ApiKeys(store));
  } catch (err) {
    return fail(err);
  } finally {
    store?.close();
  }
}

const line = (k: ApiKeyInfo) =>
  `${k.id}  ${k.name.padEnd(16)} wdn_${k.prefix}…  created ${k.createdAt}  last used ${k.lastUsedAt ?? 'never'}${k.revokedAt ? `  REVOKED ${k.revokedAt}` : ''}`;

/** Add the `key` commands (alias `keys`) to `program`. */
export function registerKeysCommands(program: Command): void {
  const dataDirOption = () => new Option('--data-dir <dir>', 'data directory: database, sessions, caches').default('.warden');
  const key = program.command('key').alias('keys').description('create, list and revoke API keys (Bearer keys for the HTTP API and web UI login)');
  key
    .command('create')
    .description('create an API key and print it once (only its sha256 is stored)')
    .argument('<name>', 'a name to tell keys apart, e.g. ci or laptop-2025')
    .option('--json', 'print JSON {id, name, key, prefix, createdAt}')
    .addOption(dataDirOption())
    .action((name: string, opts: { json?: boolean; dataDir: string }) => {
      const created = withKeys(opts.dataDir, (keys) => keys.create(name));
      if (opts.json) process.stdout.write(`${JSON.stringify(created)}\n`);
      else process.stdout.write(`created key ${created.id} "${created.name}" (shown once, store it now):\n${created.key}\n`);
    });
  key
    .command('list')
    .description('every key: id, name, prefix, created, last used, revoked (never the key)')
    .option('--json', 'print JSON')
    .addOption(dataDirOption())
    .action((opts: { json?: boolean; dataDir: string }) => {
      const rows = withKeys(opts.dataDir, (keys) => keys.list());
      if (opts.json) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      else if (rows.length === 0) process.stdout.write('no keys (`warden serve` creates one at its first start, or `warden key create NAME`)\n');
      else for (const r of rows) process.stdout.write(`${line(r)}\n`);
    });
  key
    .command('revoke')
    .description('revoke a key at once, on a running kernel too; its web logins end with it')
    .argument('<key>', 'key id (k-…) or the name of an active key')
    .option('--json', 'print the revoked key as JSON')
    .addOption(dataDirOption())
    .action((idOrName: string, opts: { json?: boolean; dataDir: string }) => {
      const revoked = withKeys(opts.dataDir, (keys) => keys.revoke(idOrName));
      if (opts.json) process.stdout.write(`${JSON.stringify(revoked)}\n`);
      else process.stdout.write(`revoked ${line(revoked)}\n`);
    });
}

/** True when `host` (a `--host` value) is a loopback address: 127.0.0.0/8, ::1 or localhost. */
export function isLoopbackAddress(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost' || h === '::1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

/**
 * What `warden serve` prints once it listens (stdout, never the log): on a store that never
 * held a key, the key it creates (`default`, shown this once); then a one-time login URL for the
 * web UI, logging in as the oldest active key (`WARDEN_API_KEY`'s `env` when no key is active),
 * so revoking that key also ends the browser's login.
 */
export function serveBanner(kernel: Kernel, host: string, port: number): string {
  const lines: string[] = [];
  const first = kernel.keys.ensureFirstKey();
  if (first) lines.push(`warden: API key "default" (shown once, store it now): ${first.key}`);
  const keyId = kernel.keys.firstActive();
  const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : isIP(host) === 6 ? `[${host}]` : host;
  if (keyId === null) lines.push('warden: no active API key: create one with `warden key create NAME` (works while the kernel runs)');
  else lines.push(`warden: web UI login (one-time link, valid ${LOGIN_TOKEN_TTL_MS / 60_000} minutes): http://${urlHost}:${port}/login?token=${kernel.keys.createLoginToken(keyId)}`);
  return `${lines.join('\n')}\n`;
}
