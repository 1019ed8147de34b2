/**
 * Configuration changes between kernel starts, as audit entries. The validated configuration is
 * digested (whole and per top-level field) and compared with the digests the previous start left
 * in the store's `meta` table; entries name the fields that changed, never a value.
 */
import type { Store } from '../store/index.js';
import { canonicalJson } from './canonical.js';

/** `meta` key holding the last configuration's digests. */
export const CONFIG_DIGEST_META = 'config.digest';

/** Digests of a configuration: the whole and each top-level field, hex. */
export interface ConfigDigests {
  digest: string;
  fields: Record<string, string>;
}

/**
 * The digests of `config`: HMAC-SHA256 under the audit key of its canonical JSON (RFC 8785, see
 * {@link canonicalJson}), not a bare sha256, because a configuration may hold a literal
 * environment value and a bare digest of it could be confirmed by guessing.
 */
export function configDigests(config: Record<string, unknown>, mac: (text: string) => string): ConfigDigests {
  const fields: Record<string, string> = {};
  for (const [name, value] of Object.entries(config)) if (value !== undefined) fields[name] = mac(canonicalJson(value));
  return { digest: mac(canonicalJson(config)), fields };
}

/**
 * Audit the configuration the kernel starts with: `config.load` the first time (no digest in
 * `meta`), `config.change` with the top-level fields that changed when the digest differs, nothing
 * when it is the same. Then remember its digests.
 * @returns the kind of entry appended, or null
 */
export function auditConfig(store: Store, config: Record<string, unknown>): 'config.load' | 'config.change' | null {
  const now = configDigests(config, (text) => store.auditMac(text));
  const stored = store.metaValue(CONFIG_DIGEST_META);
  let kind: 'config.load' | 'config.change' | null = null;
  let previous: ConfigDigests | null = null;
  try {
    previous = stored ? (JSON.parse(stored) as ConfigDigests) : null;
  } catch {
    // An unreadable record counts as none: the configuration is audited as loaded afresh.
  }
  if (!previous?.digest || !previous.fields) {
    kind = 'config.load';
    store.audit(kind, { digest: now.digest, fields: Object.keys(now.fields).sort() });
  } else if (previous.digest !== now.digest) {
    kind = 'config.change';
    const names = [...new Set([...Object.keys(previous.fields), ...Object.keys(now.fields)])].sort();
    const changed = names.filter((n) => previous!.fields[n] !== now.fields[n]);
    store.audit(kind, { digest: now.digest, previous: previous.digest, changed });
  }
  if (kind) store.setMeta(CONFIG_DIGEST_META, JSON.stringify(now));
  return kind;
}
