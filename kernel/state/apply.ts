/**
 * Copy-on-write application of RFC 6902 operations: the input document is never mutated; every
 * container on a changed path is copied once per call and everything else is shared, so a UI
 * framework sees a new object exactly where something changed (and a new root per change).
 * Isomorphic (no Node imports).
 */
import type { Operation } from 'fast-json-patch';
import { parsePointer } from './pointer.js';

/** An operation that cannot be applied to the document (a missing path, a failed `test`): the holder's copy has diverged. */
export class PatchFailure extends Error {
  constructor(
    message: string,
    /** The operation that failed. */
    readonly operation: Operation,
  ) {
    super(message);
    this.name = 'PatchFailure';
  }
}

type Container = Record<string, unknown> | unknown[];

const INDEX = /^(0|[1-9][0-9]*)$/;

/**
 * Apply `ops` (RFC 6902: add, remove, replace, move, copy, test) to `doc` without mutating it.
 * An operation on the root pointer `""` replaces (add/replace) or removes (remove → `undefined`)
 * the whole document. Values of `add`/`replace` are inserted as given (not cloned): the caller
 * must not mutate them afterwards.
 * @returns the new document (`doc` itself when `ops` is empty)
 * @throws PatchFailure when an operation's path (or `from`) does not resolve, an array index is
 *   out of range, a `test` fails, or an operation is unknown
 */
export function applyOperations<T>(doc: T | undefined, ops: readonly Operation[]): T | undefined {
  let root: unknown = doc;
  const copied = new Set<object>();

  const fail = (op: Operation, why: string): never => {
    throw new PatchFailure(`cannot apply ${op.op} ${op.path}: ${why}`, op);
  };
  const copyOf = (node: Container): Container => {
    const copy = Array.isArray(node) ? node.slice() : { ...node };
    copied.add(copy);
    return copy;
  };
  const child = (node: Container, token: string, op: Operation): unknown => {
    if (Array.isArray(node)) {
      if (!INDEX.test(token) || Number(token) >= node.length) fail(op, `no element ${token} in an array of ${node.length}`);
      return node[Number(token)];
    }
    if (!Object.prototype.hasOwnProperty.call(node, token)) fail(op, `no member ${JSON.stringify(token)}`);
    return node[token];
  };
  /** The (copied, writable) container holding the last token of `tokens`. */
  const parentOf = (tokens: string[], op: Operation): Container => {
    if (root === null || typeof root !== 'object') fail(op, 'the document is not an object or array');
    if (!copied.has(root as object)) root = copyOf(root as Container);
    let node = root as Container;
    for (let i = 0; i < tokens.length - 1; i++) {
      const token = tokens[i]!;
      let next = child(node, token, op);
      if (next === null || typeof next !== 'object') fail(op, `${JSON.stringify(token)} is not an object or array`);
      if (!copied.has(next as object)) {
        next = copyOf(next as Container);
        if (Array.isArray(node)) node[Number(token)] = next;
        else node[token] = next;
      }
      node = next as Container;
    }
    return node;
  };
  const read = (pointer: string, op: Operation): unknown => {
    let node = root;
    for (const token of parsePointer(pointer)) {
      if (node === null || typeof node !== 'object') fail(op, `${pointer} does not resolve`);
      node = child(node as Container, token, op);
    }
    return node;
  };
  const add = (tokens: string[], value: unknown, op: Operation): void => {
    if (tokens.length === 0) {
      root = value;
      return;
    }
    const parent = parentOf(tokens, op);
    const last = tokens[tokens.length - 1]!;
    if (Array.isArray(parent)) {
      if (last === '-') parent.push(value);
      else if (INDEX.test(last) && Number(last) <= parent.length) parent.splice(Number(last), 0, value);
      else fail(op, `index ${last} is out of range for an array of ${parent.length}`);
    } else parent[last] = value;
  };
  const remove = (tokens: string[], op: Operation): void => {
    if (tokens.length === 0) {
      root = undefined;
      return;
    }
    const parent = parentOf(tokens, op);
    const last = tokens[tokens.length - 1]!;
    child(parent, last, op);
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else delete parent[last];
  };

  for (const op of ops) {
    let tokens: string[];
    try {
      tokens = parsePointer(op.path);
    } catch (err) {
      return fail(op, (err as Error).message);
    }
    switch (op.op) {
      case 'add':
        add(tokens, op.value, op);
        break;
      case 'remove':
        remove(tokens, op);
        break;
      case 'replace':
        if (tokens.length > 0) child(parentOf(tokens, op), tokens[tokens.length - 1]!, op);
        remove(tokens, op);
        add(tokens, op.value, op);
        break;
      case 'move': {
        if (op.path.startsWith(op.from + '/')) fail(op, `cannot move ${op.from} into its own child`);
        const value = read(op.from, op);
        remove(parsePointer(op.from), op);
        add(tokens, value, op);
        break;
      }
      case 'copy':
        add(tokens, structuredClone(read(op.from, op)), op);
        break;
      case 'test':
        if (!deepEqual(read(op.path, op), op.value)) fail(op, 'test failed: the value differs');
        break;
      default:
        fail(op, 'unknown operation');
    }
  }
  return root as T | undefined;
}

/** Structural equality of JSON values (member order ignored), as RFC 6902 §4.6 `test` requires. */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const other = b as unknown[];
    return a.length === other.length && a.every((v, i) => deepEqual(v, other[i]));
  }
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}
