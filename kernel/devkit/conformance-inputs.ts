/**
 * Inputs for `warden test-component`, read from a tool's input schema (JSON Schema draft
 * 2020-12, as its `describe` gives it): example inputs that should succeed, and malformed inputs
 * that must get the tool's `err` case. Only the keywords tools commonly use are understood:
 * `type`, `properties`, `required`, the first branch of `oneOf`/`anyOf`, `enum`, `const`,
 * `examples`, `default`, `minimum`, `minItems`, `items`.
 */

/** A parsed JSON Schema object. */
export type JsonSchema = Record<string, unknown>;

/** What {@link exampleInputs} returns. */
export interface ExampleInputs {
  /** `examples`, `default`, `property examples/defaults` or `synthesized`. */
  source: string;
  /** At most {@link MAX_EXAMPLES} inputs. */
  inputs: unknown[];
  /** One sentence for the report: where the inputs came from. */
  note: string;
}

/** A malformed input and what is wrong with it. */
export interface MalformedInput {
  what: string;
  /** The input text as the tool receives it. */
  input: string;
}

const MAX_EXAMPLES = 5;
/** Missing-field and wrong-type inputs per run, each. */
const MAX_FIELD_CHECKS = 3;

function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function isObject(value: unknown): value is JsonSchema {
  return !!value && typeof value === 'object' && !Array.isArray(value);
}

/** The first branch of `oneOf`/`anyOf` that is an object schema, if any. */
function firstBranch(schema: JsonSchema): JsonSchema {
  const branch = [...list(schema['oneOf']), ...list(schema['anyOf'])].find(isObject);
  return branch ?? {};
}

/** Property schemas, with those of the first `oneOf`/`anyOf` branch. */
function propertiesOf(schema: JsonSchema): Record<string, JsonSchema> {
  const out: Record<string, JsonSchema> = {};
  for (const source of [schema['properties'], firstBranch(schema)['properties']]) {
    if (isObject(source)) for (const [key, value] of Object.entries(source)) if (isObject(value)) out[key] = value;
  }
  return out;
}

/** Required names, with those of the first `oneOf`/`anyOf` branch (a valid input satisfies one branch). */
function requiredOf(schema: JsonSchema): string[] {
  const names = [...list(schema['required']), ...list(firstBranch(schema)['required'])].filter((n): n is string => typeof n === 'string');
  return [...new Set(names)];
}

/** The schema's type: its `type` (the first non-null of a list), or `object` when it has properties. */
function typeOf(schema: JsonSchema): string | undefined {
  const type = schema['type'];
  if (typeof type === 'string') return type;
  const listed = list(type).find((t) => typeof t === 'string' && t !== 'null');
  if (typeof listed === 'string') return listed;
  return isObject(schema['properties']) ? 'object' : undefined;
}

/**
 * A minimal value valid for `schema`: required properties only; strings are `example.txt` for
 * fields whose name mentions a path, file or directory (the default workspace holds that file)
 * and `example` (its first line) otherwise; numbers are the minimum or 1.
 */
function synthesize(schema: JsonSchema, name = ''): unknown {
  if ('const' in schema) return schema['const'];
  const choices = list(schema['enum']);
  if (choices.length > 0) return choices[0];
  const examples = list(schema['examples']);
  if (examples.length > 0) return examples[0];
  if (schema['default'] !== undefined) return schema['default'];
  switch (typeOf(schema)) {
    case 'object': {
      const props = propertiesOf(schema);
      return Object.fromEntries(requiredOf(schema).map((key) => [key, synthesize(props[key] ?? {}, key)]));
    }
    case 'array': {
      const min = typeof schema['minItems'] === 'number' ? schema['minItems'] : 0;
      return Array.from({ length: min }, () => synthesize(isObject(schema['items']) ? schema['items'] : {}, name));
    }
    case 'string':
      return /path|file|dir/i.test(name) ? 'example.txt' : 'example';
    case 'integer':
      return typeof schema['minimum'] === 'number' ? Math.ceil(schema['minimum']) : 1;
    case 'number':
      return typeof schema['minimum'] === 'number' ? schema['minimum'] : 1;
    case 'boolean':
      return false;
    default:
      return null;
  }
}

/**
 * Example inputs of an object schema: its top-level `examples` (or `default`); else inputs built
 * from the properties' `examples` and `default`s (the i-th input takes each property's i-th
 * example); else one synthesized minimal valid input.
 */
export function exampleInputs(schema: JsonSchema): ExampleInputs {
  const top = list(schema['examples']);
  if (top.length > 0) return { source: 'examples', inputs: top.slice(0, MAX_EXAMPLES), note: `the schema's top-level "examples" (${top.length})` };
  if (schema['default'] !== undefined) return { source: 'default', inputs: [schema['default']], note: 'the schema\'s top-level "default"' };
  const given = Object.entries(propertiesOf(schema)).filter(([, p]) => list(p['examples']).length > 0 || p['default'] !== undefined);
  if (given.length > 0) {
    const count = Math.min(MAX_EXAMPLES, Math.max(1, ...given.map(([, p]) => list(p['examples']).length)));
    const base = synthesize(schema) as JsonSchema;
    const inputs = Array.from({ length: count }, (_, i) => {
      const input = { ...base };
      for (const [key, p] of given) {
        const examples = list(p['examples']);
        input[key] = examples.length > 0 ? examples[Math.min(i, examples.length - 1)] : p['default'];
      }
      return input;
    });
    return { source: 'property examples/defaults', inputs, note: `"examples"/"default" of ${given.map(([k]) => k).join(', ')}, other required fields synthesized` };
  }
  return {
    source: 'synthesized',
    inputs: [synthesize(schema)],
    note: 'synthesized from "required" and the property types (the schema has no "examples" or "default"; add some for a stronger check)',
  };
}

/** A value of another type than `type` (`12345` for a string, `"not a number"` for a number, …). */
function wrongValue(type: string): unknown {
  return type === 'string' ? 12345 : `not ${type === 'integer' ? 'a number' : type === 'array' || type === 'object' ? `an ${type}` : `a ${type}`}`;
}

/**
 * Malformed inputs: not JSON, a JSON array, then (with a schema and an object example) the
 * example without each required field and with fields of the wrong type.
 */
export function malformedInputs(schema: JsonSchema | null, example: unknown): MalformedInput[] {
  const out: MalformedInput[] = [
    { what: 'not JSON', input: '{"unterminated": ' },
    { what: 'a JSON array, not an object', input: '[]' },
  ];
  if (!schema || !isObject(example)) return out;
  for (const key of requiredOf(schema).slice(0, MAX_FIELD_CHECKS)) {
    const { [key]: _dropped, ...rest } = example;
    out.push({ what: `missing required "${key}"`, input: JSON.stringify(rest) });
  }
  const props = propertiesOf(schema);
  const required = new Set(requiredOf(schema));
  const typed = Object.entries(props)
    .map(([key, p]) => [key, typeOf(p)] as const)
    .filter((entry): entry is readonly [string, string] => entry[1] !== undefined && entry[1] !== 'null')
    .sort(([a], [b]) => Number(required.has(b)) - Number(required.has(a)));
  for (const [key, type] of typed.slice(0, MAX_FIELD_CHECKS)) {
    const value = wrongValue(type);
    out.push({ what: `"${key}" of the wrong type (${typeof value}, not ${type})`, input: JSON.stringify({ ...example, [key]: value }) });
  }
  return out;
}
