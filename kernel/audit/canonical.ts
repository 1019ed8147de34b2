/**
 * Canonical JSON: one byte-exact text per value, so a hash over it is reproducible by any
 * process and any later version of the kernel.
 *
 * The reference is RFC 8785 (JSON Canonicalization Scheme, JCS): object members sorted by their
 * names compared as UTF-16 code units, no whitespace, strings and numbers serialised as
 * ECMAScript's `JSON.stringify` does (JCS defines both by ECMAScript). One deviation: a lone
 * surrogate in a string is escaped (`\udxxx`, as `JSON.stringify` does) instead of refused, so any
 * text the store holds can be chained.
 */

/**
 * The canonical JSON text of `value`: `null`, booleans, finite numbers, strings, arrays and plain
 * objects (members whose value is `undefined` are left out, as `JSON.stringify` does).
 * @throws TypeError for a non-finite number, a bigint, a function, a symbol, or a top-level `undefined`
 * @example canonicalJson({ b: 1, a: [true, null, 'x'] }) === '{"a":[true,null,"x"],"b":1}'
 */
export function canonicalJson(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`canonical JSON has no form for ${value}`);
      // ECMAScript Number::toString, as JCS requires (-0 becomes 0).
      return JSON.stringify(value);
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
      const members = Object.keys(value)
        .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
        // Default sort compares UTF-16 code units: exactly JCS's member order.
        .sort()
        .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
      return `{${members.join(',')}}`;
    }
    default:
      throw new TypeError(`canonical JSON has no form for a ${typeof value}`);
  }
}
