/**
 * Secrets in the configuration: they are only ever named (`apiKeyEnv`, `"$NAME"` references),
 * never written in the file. This module decides what looks like a secret, masks the effective
 * configuration for display, and lists references to variables that are not set.
 */

/** An environment variable name. */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Variable names that hold secrets by convention (`GITHUB_TOKEN`, `OPENAI_API_KEY`,
 * `DB_PASSWORD`, `AUTH`, `MY_PAT`). Errs toward caution: a false positive only asks the
 * operator to move the value into the environment, which always works.
 */
const SECRET_NAME = /KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|(^|_)(AUTH|PAT|PASS|PWD)(_|$)/i;

/** Prefixes of well-known credential formats (OpenAI, Stripe, GitHub, GitLab, Slack, AWS, Google, Hugging Face, npm, PyPI, JWT). */
const SECRET_PREFIX = /^(sk-|sk_|rk_|ghp_|gho_|ghs_|ghu_|ghr_|github_pat_|glpat-|xox[abprs]-|AKIA|ASIA|AIza|hf_|npm_|pypi-|eyJ)/;

/** Shannon entropy of `s`, bits per character. */
function entropy(s: string): number {
  const counts = new Map<string, number>();
  for (const c of s) counts.set(c, (counts.get(c) ?? 0) + 1);
  let bits = 0;
  for (const n of counts.values()) bits -= (n / s.length) * Math.log2(n / s.length);
  return bits;
}

/**
 * Whether a value looks like a credential: a PEM block, a known credential prefix (16+
 * characters), or a long token (32+ characters of base64/hex/URL-safe alphabet, letters and
 * digits mixed, ≥ 3.5 bits of entropy per character — random keys, not paths or words).
 */
export function looksLikeSecret(value: string): boolean {
  if (value.includes('-----BEGIN')) return true;
  if (value.length >= 16 && SECRET_PREFIX.test(value)) return true;
  return value.length >= 32 && /^[A-Za-z0-9+/=_.-]+$/.test(value) && /\d/.test(value) && /[A-Za-z]/.test(value) && entropy(value) >= 3.5;
}

/** Whether a variable or field name conventionally holds a secret. */
export function secretName(name: string): boolean {
  return SECRET_NAME.test(name);
}

/** The variable a `"$NAME"` reference names, or null when `value` is not a reference. */
export function envReference(value: string): string | null {
  return value.startsWith('$') && ENV_NAME.test(value.slice(1)) ? value.slice(1) : null;
}

/**
 * Why a granted env value may not be written in the file, or null when it may. A value starting
 * with `$` must be a well-formed reference; a literal is refused for a secret-looking name or a
 * secret-looking value. The message never repeats the value.
 */
export function envValueProblem(name: string, value: string): string | null {
  if (value.startsWith('$')) return envReference(value) ? null : 'a reference is "$NAME" (letters, digits and _ after the $)';
  if (secretName(name) || looksLikeSecret(value)) {
    return `a secret may not be written in the config file; put it in the environment and write "$${name}"`;
  }
  return null;
}

/** The mask that replaces a literal secret in displayed configuration. */
export const MASK = '***';

/**
 * The configuration as it may be shown (`GET /api/config`, `warden config check`): env values
 * stay `"$NAME"` references (never resolved) and any literal is replaced by {@link MASK}; any
 * other string that looks like a secret, or sits under a secret-looking field name (other than
 * `…Env` fields, which name variables), is masked too; credentials in URLs are removed.
 * Returns a deep copy; `config` is not changed.
 */
export function maskConfig(config: unknown): unknown {
  return maskValue(config, []);
}

/** Whether `path` is a granted env value (`grants.<component>.env.<NAME>`). */
function isEnvValue(path: readonly string[]): boolean {
  return path.length === 4 && path[0] === 'grants' && path[2] === 'env';
}

function maskValue(value: unknown, path: readonly string[]): unknown {
  if (typeof value === 'string') {
    if (envReference(value)) return value;
    const field = [...path].reverse().find((p) => !/^\d+$/.test(p));
    if (isEnvValue(path) || looksLikeSecret(value)) return MASK;
    if (field !== undefined && secretName(field) && !field.endsWith('Env')) return MASK;
    return maskUrl(value);
  }
  if (Array.isArray(value)) return value.map((v, i) => maskValue(v, [...path, String(i)]));
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, maskValue(v, [...path, k])]));
  return value;
}

/** A URL with user info or secret-looking query parameters shows them as {@link MASK}. */
function maskUrl(value: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return value;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return value;
  }
  let changed = false;
  if (url.username || url.password) {
    url.username = MASK;
    url.password = '';
    changed = true;
  }
  for (const key of [...url.searchParams.keys()]) {
    if (secretName(key)) {
      url.searchParams.set(key, MASK);
      changed = true;
    }
  }
  return changed ? url.toString() : value;
}

/** Why a backend URL may not be written in the config file, or null when it may. */
export function urlProblem(value: string): string | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return null; // the URL check reports it
  }
  if (url.username || url.password) return 'credentials may not be written in the URL; put the key in the environment and name it in apiKeyEnv';
  for (const key of url.searchParams.keys()) {
    if (secretName(key)) return `query parameter ${key} looks like a secret; put it in the environment and name it in apiKeyEnv`;
  }
  return null;
}
