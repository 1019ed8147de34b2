/**
 * API keys and web UI logins, over the store's `api_keys` and `web_logins` tables.
 *
 * A key (`wdn_` + 32 random bytes, base64url) is shown once, when it is created; the store keeps
 * its sha256 and an 8-character prefix for display. `WARDEN_API_KEY`, when set, is one more key
 * (id `env`) that lives only in the kernel's environment. A browser logs in once, with a one-time
 * URL token or by pasting a key, and then holds a random cookie token whose sha256 is stored with
 * an expiry, so a login survives a kernel restart. Nothing here ever logs or audits a key or token.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Store } from '../store/index.js';
import { WardenError } from '../errors.js';

/** Key id under which `WARDEN_API_KEY` authenticates. */
export const ENV_KEY_ID = 'env';
/** Prefix of every generated key (and a hint for secret scanners). */
export const KEY_PREFIX = 'wdn_';
/** Lifetime of a one-time login URL token, ms. */
export const LOGIN_TOKEN_TTL_MS = 10 * 60_000;
/** Shortest `WARDEN_API_KEY` accepted, characters. */
export const MIN_ENV_KEY_LENGTH = 16;
/** Longest credential even looked at, characters (anything longer fails without hashing). */
const MAX_PRESENTED_LENGTH = 512;
/** `last_used_at` is written at most this often per key, ms (no write per request). */
const TOUCH_INTERVAL_MS = 60_000;
/** Failed authentications from one source within {@link FAILURE_WINDOW_MS} that make a burst worth auditing. */
const FAILURE_BURST = 10;
const FAILURE_WINDOW_MS = 60_000;

/** An API key as listed: never the key itself. Times are ISO 8601. */
export interface ApiKeyInfo {
  id: string;
  name: string;
  /** First 8 characters after `wdn_`, to tell keys apart. */
  prefix: string;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

/** A freshly created key: the only value that ever holds `key`. */
export interface CreatedKey {
  id: string;
  name: string;
  /** The secret, `wdn_…`; show it once, it cannot be recovered. */
  key: string;
  prefix: string;
  createdAt: string;
}

/** Options of {@link ApiKeys}. */
export interface ApiKeysOptions {
  /** Environment read for `WARDEN_API_KEY` (omit in commands that only manage keys). */
  env?: NodeJS.ProcessEnv;
  /** Lifetime of a web login (cookie), ms; `server.loginTtlMs`. Default 7 days. */
  loginTtlMs?: number;
  /** Failed authentications per client address per minute before it is answered 429; `server.authFailuresPerMinute`. Default 50. */
  failureLimit?: number;
}

interface KeyRow {
  id: string;
  name: string;
  hash: string;
  prefix: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();
const toInfo = (r: KeyRow): ApiKeyInfo => ({ id: r.id, name: r.name, prefix: r.prefix, createdAt: r.created_at, lastUsedAt: r.last_used_at, revokedAt: r.revoked_at });

/** Key names: what `warden key revoke NAME` can type. */
export const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * The kernel's API keys and web logins. Every check reads the table, so a key revoked by
 * `warden key revoke` in another process fails on the running kernel's next request.
 */
export class ApiKeys {
  private readonly envHash: Buffer | null;
  private readonly loginTtlMs: number;
  private readonly failureLimit: number;
  /** sha256 hex of a one-time URL token → the key it logs in as and when it expires (ms). */
  private readonly loginTokens = new Map<string, { keyId: string; expiresAt: number }>();
  /** Key id → when `last_used_at` was last written (ms). */
  private readonly touched = new Map<string, number>();
  /** Source address → failures in the current window. */
  private readonly failures = new Map<string, { since: number; count: number }>();

  /**
   * @throws WardenError `E_CONFIG` when `WARDEN_API_KEY` is set but shorter than {@link MIN_ENV_KEY_LENGTH}
   */
  constructor(private readonly store: Store, options: ApiKeysOptions = {}) {
    const envKey = options.env?.['WARDEN_API_KEY'];
    if (envKey !== undefined && envKey !== '' && envKey.length < MIN_ENV_KEY_LENGTH) {
      throw new WardenError('E_CONFIG', `WARDEN_API_KEY is too short: use at least ${MIN_ENV_KEY_LENGTH} random characters (\`warden key create NAME\` prints a good one)`);
    }
    this.envHash = envKey ? sha256(envKey) : null;
    this.loginTtlMs = options.loginTtlMs ?? 7 * 86_400_000;
    this.failureLimit = options.failureLimit ?? 50;
  }

  /**
   * Create a key named `name`. The result is the only time the key is returned.
   * @throws WardenError `E_BAD_INPUT` for a bad name or one an active key already has
   */
  create(name: string): CreatedKey {
    if (!KEY_NAME.test(name)) throw new WardenError('E_BAD_INPUT', `key name ${JSON.stringify(name.slice(0, 80))}: 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit`);
    if (this.store.db.prepare('SELECT 1 FROM api_keys WHERE name = ? AND revoked_at IS NULL').get(name)) {
      throw new WardenError('E_BAD_INPUT', `an active key is already named "${name}": revoke it (\`warden key revoke ${name}\`) or choose another name`);
    }
    const key = KEY_PREFIX + randomBytes(32).toString('base64url');
    const row = { id: `k-${randomBytes(4).toString('hex')}`, name, hash: sha256(key).toString('hex'), prefix: key.slice(KEY_PREFIX.length, KEY_PREFIX.length + 8), created_at: new Date().toISOString() };
    this.store.db.prepare('INSERT INTO api_keys (id, name, hash, prefix, created_at) VALUES (@id, @name, @hash, @prefix, @created_at)').run(row);
    this.store.audit('key.create', { id: row.id, name, prefix: row.prefix });
    return { id: row.id, name, key, prefix: row.prefix, createdAt: row.created_at };
  }

  /** Every key ever created, oldest first, revoked ones included. */
  list(): ApiKeyInfo[] {
    return (this.store.db.prepare('SELECT * FROM api_keys ORDER BY created_at, rowid').all() as KeyRow[]).map(toInfo);
  }

  /**
   * Revoke a key by id (`k-…`) or by the name of an active key; its web logins end with it.
   * Revoking a revoked key changes nothing and returns it.
   * @throws WardenError `E_NOT_FOUND` when no key has that id or active name
   */
  revoke(idOrName: string): ApiKeyInfo {
    const row = (this.store.db.prepare('SELECT * FROM api_keys WHERE id = ?').get(idOrName)
      ?? this.store.db.prepare('SELECT * FROM api_keys WHERE name = ? AND revoked_at IS NULL').get(idOrName)) as KeyRow | undefined;
    if (!row) throw new WardenError('E_NOT_FOUND', `no key with id or active name "${idOrName.slice(0, 80)}" (\`warden key list\` shows them)`);
    if (row.revoked_at) return toInfo(row);
    const revokedAt = new Date().toISOString();
    this.store.db.transaction(() => {
      this.store.db.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ?').run(revokedAt, row.id);
      this.store.db.prepare('DELETE FROM web_logins WHERE key_id = ?').run(row.id);
    })();
    this.store.audit('key.revoke', { id: row.id, name: row.name, prefix: row.prefix });
    return toInfo({ ...row, revoked_at: revokedAt });
  }

  /**
   * The id of the key `presented` is (`env` for `WARDEN_API_KEY`), or null. Its sha256 is
   * compared with every active key's in constant time, without stopping at a match.
   */
  verify(presented: string): string | null {
    if (presented.length === 0 || presented.length > MAX_PRESENTED_LENGTH) return null;
    const hash = sha256(presented);
    let found: string | null = null;
    for (const row of this.store.db.prepare('SELECT id, hash FROM api_keys WHERE revoked_at IS NULL').all() as Array<{ id: string; hash: string }>) {
      const stored = Buffer.from(row.hash, 'hex');
      if (stored.length === hash.length && timingSafeEqual(stored, hash)) found = row.id;
    }
    if (this.envHash && timingSafeEqual(this.envHash, hash)) found = ENV_KEY_ID;
    if (found && found !== ENV_KEY_ID) this.touch(found);
    return found;
  }

  /** True when `keyId` can authenticate now: an active key, or `env` while `WARDEN_API_KEY` is set. */
  isActive(keyId: string): boolean {
    if (keyId === ENV_KEY_ID) return this.envHash !== null;
    return this.store.db.prepare('SELECT 1 FROM api_keys WHERE id = ? AND revoked_at IS NULL').get(keyId) !== undefined;
  }

  /** The oldest active key's id, else `env` when `WARDEN_API_KEY` is set, else null. */
  firstActive(): string | null {
    const row = this.store.db.prepare('SELECT id FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at, rowid LIMIT 1').get() as { id: string } | undefined;
    return row?.id ?? (this.envHash ? ENV_KEY_ID : null);
  }

  /**
   * On a store that has never held a key, create one named `default` and return it (the only
   * time it is seen); null when any key exists, revoked ones included.
   */
  ensureFirstKey(): { id: string; key: string } | null {
    // IMMEDIATE: the write lock is taken before the check, so two starts cannot both create one.
    const created = this.store.db.transaction(() => (this.store.db.prepare('SELECT 1 FROM api_keys LIMIT 1').get() ? null : this.create('default'))).immediate();
    return created ? { id: created.id, key: created.key } : null;
  }

  /**
   * A one-time token for the login URL `/login?token=…`: valid {@link LOGIN_TOKEN_TTL_MS}, used
   * once, held only in this process's memory.
   */
  createLoginToken(keyId: string): string {
    const now = Date.now();
    for (const [hash, t] of this.loginTokens) if (t.expiresAt <= now) this.loginTokens.delete(hash);
    const token = randomBytes(32).toString('base64url');
    this.loginTokens.set(sha256(token).toString('hex'), { keyId, expiresAt: now + LOGIN_TOKEN_TTL_MS });
    return token;
  }

  /**
   * Spend a one-time URL token: a new web login (see {@link login}) for its key, or null when
   * the token is unknown, used, expired, or its key was revoked since.
   */
  exchangeLoginToken(token: string): string | null {
    if (token.length === 0 || token.length > MAX_PRESENTED_LENGTH) return null;
    const hash = sha256(token).toString('hex');
    const entry = this.loginTokens.get(hash);
    this.loginTokens.delete(hash);
    if (!entry || entry.expiresAt <= Date.now() || !this.isActive(entry.keyId)) return null;
    return this.login(entry.keyId, 'url');
  }

  /**
   * A web login for `keyId`: a random cookie token, returned once; its sha256 is stored with
   * `expires_at` = now + `server.loginTtlMs`. Audited as `auth.login` (`via`: `url` or `key`).
   */
  login(keyId: string, via: 'url' | 'key'): string {
    const token = randomBytes(32).toString('base64url');
    const now = Date.now();
    this.store.db.prepare('DELETE FROM web_logins WHERE expires_at <= ?').run(new Date(now).toISOString());
    this.store.db
      .prepare('INSERT INTO web_logins (hash, key_id, created_at, expires_at) VALUES (?, ?, ?, ?)')
      .run(sha256(token).toString('hex'), keyId, new Date(now).toISOString(), new Date(now + this.loginTtlMs).toISOString());
    this.store.audit('auth.login', { keyId, via });
    return token;
  }

  /** The key id of the web login whose cookie token is `cookieToken`; null when unknown, expired, or its key is revoked. */
  verifyLogin(cookieToken: string): string | null {
    if (cookieToken.length === 0 || cookieToken.length > MAX_PRESENTED_LENGTH) return null;
    const row = this.store.db.prepare('SELECT key_id, expires_at FROM web_logins WHERE hash = ?').get(sha256(cookieToken).toString('hex')) as
      | { key_id: string; expires_at: string }
      | undefined;
    if (!row || Date.parse(row.expires_at) <= Date.now() || !this.isActive(row.key_id)) return null;
    if (row.key_id !== ENV_KEY_ID) this.touch(row.key_id);
    return row.key_id;
  }

  /** End the web login whose cookie token is `cookieToken` (nothing when unknown). */
  logout(cookieToken: string): void {
    this.store.db.prepare('DELETE FROM web_logins WHERE hash = ?').run(sha256(cookieToken).toString('hex'));
  }

  /**
   * Count a failed authentication from `source` (a client address). The
   * {@link FAILURE_BURST}th failure within a minute is audited once as `auth.failed`.
   */
  recordFailure(source: string): void {
    const now = Date.now();
    if (this.failures.size > 10_000) {
      for (const [s, f] of this.failures) if (now - f.since > FAILURE_WINDOW_MS) this.failures.delete(s);
    }
    let entry = this.failures.get(source);
    if (!entry || now - entry.since > FAILURE_WINDOW_MS) {
      entry = { since: now, count: 0 };
      this.failures.set(source, entry);
    }
    entry.count += 1;
    if (entry.count === FAILURE_BURST) this.store.audit('auth.failed', { source, failures: FAILURE_BURST, windowMs: FAILURE_WINDOW_MS });
  }

  /**
   * How long `source` must wait before it may try a credential again, ms: 0 until it failed
   * `failureLimit` times within {@link FAILURE_WINDOW_MS}, then the rest of that window.
   * Failed attempts get a 401 before the per-key rate limit can count them, so guessing is
   * bounded here, per client address.
   */
  retryAfterMs(source: string): number {
    const entry = this.failures.get(source);
    if (!entry || entry.count < this.failureLimit) return 0;
    return Math.max(0, entry.since + FAILURE_WINDOW_MS - Date.now());
  }

  /** Record a key's use, at most once per {@link TOUCH_INTERVAL_MS}. */
  private touch(keyId: string): void {
    const now = Date.now();
    if (now - (this.touched.get(keyId) ?? 0) < TOUCH_INTERVAL_MS) return;
    this.touched.set(keyId, now);
    this.store.db.prepare('UPDATE api_keys SET last_used_at = ? WHERE id = ?').run(new Date(now).toISOString(), keyId);
  }
}
