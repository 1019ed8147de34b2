/**
 * Secrets in free text (prompts, tool results, transcripts): where they are, and the text with
 * them redacted. Used by privacy routing (a prompt holding a secret escalates to `strict`) and
 * by everything that persists text a model or a tool produced (transcripts, approvals).
 *
 * What counts as a secret:
 * - PEM blocks (`-----BEGIN … PRIVATE KEY-----` … `-----END …-----`, any label containing
 *   `PRIVATE KEY`, plus `OPENSSH PRIVATE KEY` and `PGP PRIVATE KEY BLOCK`);
 * - credentials of well-known formats (OpenAI/Anthropic `sk-`, GitHub `ghp_`…`github_pat_`,
 *   GitLab `glpat-`, Slack `xox?-`, AWS `AKIA`/`ASIA`, Google `AIza`, Hugging Face `hf_`,
 *   Stripe `sk_live_`/`rk_live_`, JWTs);
 * - assignments to secret-named keys: `password`, `passwd`, `pwd`, `api_key`/`api-key`/`apikey`,
 *   `secret`, `client_secret`, `token`, `access_token`, `auth_token`, `private_key` … followed by
 *   `=` or `:` and a value of 4+ characters. Names match on word boundaries, so `tokenizer = x`
 *   or `secretary: y` do not count; `$NAME`/`${NAME}` references and obvious placeholders
 *   (`***`, `<…>`, `xxxx`) are not values;
 * - payment card numbers: 13–19 digits, optionally grouped by spaces or dashes, that pass the
 *   Luhn check (ISO/IEC 7812-1, Annex B).
 *
 * Matches never carry the secret out: {@link SecretMatch} gives kind and offsets, and
 * {@link redactSecrets} replaces each with `[REDACTED:<kind>]`.
 */

/** Kinds of secret {@link findSecrets} reports. */
export type SecretKind = 'pem' | 'credential' | 'assignment' | 'card';

/** One secret found in a text: its kind and UTF-16 offsets `[start, end)` of the secret value. */
export interface SecretMatch {
  kind: SecretKind;
  start: number;
  end: number;
  /** For `assignment`: the key name as written (`api_key`); never the value. */
  name?: string;
}

const PEM = /-----BEGIN ((?:[A-Z0-9]+ )*(?:PRIVATE KEY|PRIVATE KEY BLOCK))-----[\s\S]*?(?:-----END \1-----|$)/g;

const CREDENTIAL = new RegExp(
  [
    String.raw`\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}`,
    String.raw`\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}`,
    String.raw`\b(?:ghp|gho|ghs|ghu|ghr)_[A-Za-z0-9]{30,}`,
    String.raw`\bgithub_pat_[A-Za-z0-9_]{40,}`,
    String.raw`\bglpat-[A-Za-z0-9_-]{20,}`,
    String.raw`\bxox[abprs]-[A-Za-z0-9-]{10,}`,
    String.raw`\b(?:AKIA|ASIA)[A-Z0-9]{16}\b`,
    String.raw`\bAIza[A-Za-z0-9_-]{35}`,
    String.raw`\bhf_[A-Za-z0-9]{30,}`,
    String.raw`\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`,
  ].join('|'),
  'g',
);

/**
 * `name = value` / `name: value` / `"name": "value"` with a secret-named key. The name must be
 * a whole word (`\b` before; after it only an optional closing quote, spaces and `=`/`:`), with
 * optional prefixes such as `db_`, `client_`, `x-`.
 */
const ASSIGNMENT =
  /(?<![A-Za-z0-9])((?:[A-Za-z0-9]+[_-])*(?:password|passwd|pwd|passphrase|api[_-]?key|apikey|secret|secret[_-]?key|token|access[_-]?token|refresh[_-]?token|auth[_-]?token|bearer[_-]?token|private[_-]?key|access[_-]?key))(?![A-Za-z0-9])["']?\s*(?:=|:)\s*(["']?)([^\s"'`,;]{4,})\2/gi;

/** Values of an assignment that are not secrets: references, placeholders (`<your key>` is cut at its space: `<your`), redactions. */
const NOT_A_VALUE = /^(?:\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\*+|<[^>]*>?|x{4,}|\.{3,}|\[REDACTED[^\]]*\]|null|none|true|false|undefined|changeme|placeholder|example)$/i;

/** 13–19 digits, optionally grouped by single spaces or dashes, not inside a longer number. */
const CARD = /(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])/g;

/** Luhn check (ISO/IEC 7812-1 Annex B) of a string of digits. */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return false;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return digits.length > 0 && sum % 10 === 0;
}

/**
 * Every secret in `text`, in order of position, overlaps removed (the earlier, longer one
 * wins). Linear in the text's length; texts over `maxChars` (default 4 MiB of UTF-16) are
 * scanned up to that length.
 */
export function findSecrets(text: string, maxChars = 4 * 2 ** 20): SecretMatch[] {
  const scanned = text.length > maxChars ? text.slice(0, maxChars) : text;
  const found: SecretMatch[] = [];
  for (const m of scanned.matchAll(PEM)) found.push({ kind: 'pem', start: m.index, end: m.index + m[0].length });
  for (const m of scanned.matchAll(CREDENTIAL)) found.push({ kind: 'credential', start: m.index, end: m.index + m[0].length });
  for (const m of scanned.matchAll(ASSIGNMENT)) {
    const value = m[3]!;
    if (NOT_A_VALUE.test(value)) continue;
    const end = m.index + m[0].length - m[2]!.length;
    found.push({ kind: 'assignment', start: end - value.length, end, name: m[1]! });
  }
  for (const m of scanned.matchAll(CARD)) {
    const digits = m[0].replace(/[ -]/g, '');
    // Grouping must be regular (no `1-2 3`), and the digits must not be all the same.
    if (/[ -].*[ -]/.test(m[0]) && new Set(m[0].match(/[ -]/g)).size > 1) continue;
    if (/^(\d)\1+$/.test(digits) || !luhnValid(digits)) continue;
    found.push({ kind: 'card', start: m.index, end: m.index + m[0].length });
  }
  found.sort((a, b) => a.start - b.start || b.end - a.end);
  const merged: SecretMatch[] = [];
  for (const match of found) {
    const last = merged[merged.length - 1];
    if (last && match.start < last.end) continue;
    merged.push(match);
  }
  return merged;
}

/** Whether `text` holds any secret {@link findSecrets} knows. */
export function hasSecret(text: string): boolean {
  return findSecrets(text).length > 0;
}

/**
 * A short, secret-free reason naming what was found, for a task's privacy record:
 * `"PEM private key, api_key assignment"`. Empty when nothing was found.
 */
export function describeSecrets(matches: SecretMatch[]): string {
  const names = new Set<string>();
  for (const m of matches) {
    names.add(m.kind === 'pem' ? 'PEM private key' : m.kind === 'credential' ? 'credential token' : m.kind === 'card' ? 'payment card number (Luhn)' : `${m.name!.toLowerCase()} assignment`);
  }
  return [...names].join(', ');
}

/** `text` with every secret replaced by `[REDACTED:<kind>]`. */
export function redactSecrets(text: string): string {
  const matches = findSecrets(text);
  if (matches.length === 0) return text;
  let out = '';
  let at = 0;
  for (const m of matches) {
    out += `${text.slice(at, m.start)}[REDACTED:${m.kind}]`;
    at = m.end;
  }
  return out + text.slice(at);
}

/**
 * A deep copy of a JSON-like value with every string passed through {@link redactSecrets}
 * (object keys kept). For transcripts and approvals.
 */
export function redactDeep<T>(value: T): T {
  if (typeof value === 'string') return redactSecrets(value) as T;
  if (Array.isArray(value)) return value.map((v) => redactDeep(v)) as T;
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = redactDeep(v);
    return out as T;
  }
  return value;
}
