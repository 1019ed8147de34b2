/**
 * Change tracking for {@link StateDocument.update}: the mutate callback edits a Proxy over the
 * document that records which members it wrote, so the update diffs (fast-json-patch `compare`)
 * only those members instead of the whole document. The cost of an update is then proportional to
 * what changed, not to the document's size (tasks × steps × chunks grows without bound).
 *
 * Values written through the draft are copied in (proxies unwrapped), so no object is reachable
 * from two places of the document and every object sits at exactly one JSON Pointer. Hence
 * `const x = (draft.a ??= {})` holds the value assigned, not the copy in the document: read it
 * back through the draft (`draft.a ??= {}; const x = draft.a`) before writing into it.
 */
import fastJsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import { formatPointer, resolveTokens } from './pointer.js';

const { compare } = fastJsonPatch;

/** A changed place: a member of an object, or a whole array (any write to an array dirties all of it). */
interface Dirty {
  tokens: string[];
  pointer: string;
}

/** Records writes made through drafts of one document. */
export class DraftRecorder {
  /** proxy → the object it stands for. */
  private readonly targets = new WeakMap<object, object>();
  private dirty = new Map<string, Dirty>();

  /**
   * A draft of `doc` for one update: reads see `doc`, writes go to `doc` and are recorded.
   * Make a new one per update (array elements may move between updates, and a proxy knows its path).
   */
  draft<T extends object>(doc: T): T {
    // One handler per draft (not per proxy): each proxy's path is looked up by its target.
    const proxies = new Map<object, object>();
    const paths = new Map<object, string[]>();
    const mark = (target: object, key: string | symbol): void => {
      if (typeof key !== 'string') return;
      const tokens = paths.get(target)!;
      const at = Array.isArray(target) ? tokens : [...tokens, key];
      const pointer = formatPointer(at);
      if (!this.dirty.has(pointer)) this.dirty.set(pointer, { tokens: at, pointer });
    };
    const wrap = (target: object, tokens: string[]): object => {
      let proxy = proxies.get(target);
      if (proxy) return proxy;
      proxy = new Proxy(target, handler);
      paths.set(target, tokens);
      this.targets.set(proxy, target);
      proxies.set(target, proxy);
      return proxy;
    };
    const handler: ProxyHandler<object> = {
      get: (obj, key, receiver) => {
        const value: unknown = Reflect.get(obj, key, receiver);
        if (typeof key !== 'string' || value === null || typeof value !== 'object' || !Object.prototype.hasOwnProperty.call(obj, key)) return value;
        return wrap(value, [...paths.get(obj)!, key]);
      },
      set: (obj, key, value) => {
        mark(obj, key);
        (obj as Record<string | symbol, unknown>)[key] = this.raw(value);
        return true;
      },
      deleteProperty: (obj, key) => {
        mark(obj, key);
        return delete (obj as Record<string | symbol, unknown>)[key];
      },
      defineProperty: (obj, key, descriptor) => {
        mark(obj, key);
        if ('value' in descriptor) descriptor = { ...descriptor, value: this.raw(descriptor.value) };
        return Reflect.defineProperty(obj, key, descriptor);
      },
    };
    return wrap(doc, []) as T;
  }

  /**
   * RFC 6902 operations turning `before` into `after` at the places written since the last call
   * (then forgotten). A place under another changed place is covered by it.
   */
  diff(before: unknown, after: unknown): Operation[] {
    if (this.dirty.size === 0) return [];
    const places = [...this.dirty.values()].sort((a, b) => a.tokens.length - b.tokens.length);
    this.dirty = new Map();
    const covered = new Set<string>();
    const ops: Operation[] = [];
    for (const place of places) {
      let under = false;
      for (let i = 0, prefix = ''; i < place.tokens.length && !under; i++) {
        if (covered.has(prefix)) under = true;
        prefix += formatPointer([place.tokens[i]!]);
      }
      if (under || covered.has(place.pointer)) continue;
      covered.add(place.pointer);
      diffAt(place, resolveTokens(before, place.tokens), resolveTokens(after, place.tokens), ops);
    }
    return ops;
  }

  /** `value` copied without proxies (a JSON value: objects, arrays, primitives). */
  private raw(value: unknown): unknown {
    if (value === null || typeof value !== 'object') return value;
    const target = this.targets.get(value) ?? value;
    if (Array.isArray(target)) return target.map((v) => this.raw(v));
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(target)) out[key] = this.raw((target as Record<string, unknown>)[key]);
    return out;
  }
}

/** Append the operations that turn `before` into `after` at `place` (`undefined`: absent, as `compare` treats it). */
function diffAt(place: Dirty, before: unknown, after: unknown, ops: Operation[]): void {
  const bothContainers = typeof before === 'object' && before !== null && typeof after === 'object' && after !== null && Array.isArray(before) === Array.isArray(after);
  if (bothContainers) {
    for (const op of compare(before, after)) {
      op.path = place.pointer + op.path;
      ops.push(op);
    }
  } else if (after === undefined) {
    if (before !== undefined) ops.push({ op: 'remove', path: place.pointer });
  } else if (before === undefined) {
    ops.push({ op: 'add', path: place.pointer, value: structuredClone(after) });
  } else if (before !== after) {
    ops.push({ op: 'replace', path: place.pointer, value: structuredClone(after) });
  }
}
