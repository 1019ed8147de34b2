/**
 * JSON Pointers (RFC 6901): parse, format, and resolve against a JSON value. Isomorphic (no Node
 * imports): used by the kernel's narrowed subscriptions and by the browser/Node state client.
 */

/**
 * Split a JSON Pointer into its reference tokens, unescaping `~1` → `/` and `~0` → `~`
 * (RFC 6901 §3–4). `""` is the whole document (no tokens); `"/"` is the member named `""`.
 * @throws SyntaxError when `pointer` is not empty and does not start with `/`, or holds a `~`
 *   not followed by `0` or `1`; the message names the offending position.
 */
export function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  if (pointer[0] !== '/') throw new SyntaxError(`a JSON Pointer is empty or starts with "/" (RFC 6901), got ${JSON.stringify(pointer.slice(0, 80))}`);
  const bad = /~(?![01])/.exec(pointer);
  if (bad) throw new SyntaxError(`"~" at position ${bad.index} of the JSON Pointer must be followed by 0 or 1 (RFC 6901: "~0" is "~", "~1" is "/")`);
  return pointer
    .slice(1)
    .split('/')
    .map((token) => token.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** Join reference tokens into a JSON Pointer, escaping `~` and `/` (RFC 6901 §3). */
export function formatPointer(tokens: readonly string[]): string {
  let out = '';
  for (const token of tokens) out += '/' + (token.includes('~') || token.includes('/') ? token.replace(/~/g, '~0').replace(/\//g, '~1') : token);
  return out;
}

/** The JSON value at `tokens` inside `value`, or `undefined` when any step is missing. Array tokens are decimal indices. */
export function resolveTokens(value: unknown, tokens: readonly string[]): unknown {
  let node = value;
  for (const token of tokens) {
    if (node === null || typeof node !== 'object') return undefined;
    if (Array.isArray(node)) {
      if (!/^(0|[1-9][0-9]*)$/.test(token)) return undefined;
      node = node[Number(token)];
    } else {
      if (!Object.prototype.hasOwnProperty.call(node, token)) return undefined;
      node = (node as Record<string, unknown>)[token];
    }
  }
  return node;
}
