/**
 * Subscriptions narrowed to a subtree (`?path=/tasks/<id>`): which envelopes touch the subtree,
 * and their operations rebased so that `""` is the subtree's root. Pure (no I/O); used by the
 * WebSocket and SSE routes. See `docs/stream.md` ("Narrowed subscriptions").
 */
import type { Operation } from 'fast-json-patch';
import type { Envelope } from './index.js';
import { formatPointer, parsePointer, resolveTokens } from './pointer.js';
import type { NarrowedEnvelopeMessage } from './protocol.js';

/** How operations relate to the subtree at `tokens`. */
function relation(path: string[], tokens: readonly string[]): 'ancestor' | 'self' | 'inside' | 'outside' {
  const n = Math.min(path.length, tokens.length);
  for (let i = 0; i < n; i++) if (path[i] !== tokens[i]) return 'outside';
  if (path.length === tokens.length) return 'self';
  return path.length < tokens.length ? 'ancestor' : 'inside';
}

/**
 * Rebase `ops` (on the whole document) onto the subtree at `tokens`.
 * - An operation inside the subtree keeps its kind, with its path made relative (`/tasks/t1/status` → `/status`).
 * - An operation on the subtree's root or an ancestor (`replace /tasks`, `remove /tasks/t1`) becomes
 *   `add ""` / `replace ""` with the subtree's new value, or `remove ""` when the subtree is gone.
 * - Operations elsewhere are dropped.
 *
 * `exists` says whether the subtree exists before `ops` (it decides between `add` and `replace`,
 * and whether a removal concerns the subtree); the result says whether it exists after.
 * `resnapshot` is true when an operation cannot be rebased without the document (a `move` or
 * `copy` into the subtree from outside it): the subscriber must then be sent a snapshot.
 * Arrays are not shift-aware: narrow to members of keyed maps (as the state document uses), not
 * to array elements.
 */
export function narrowOps(ops: readonly Operation[], tokens: readonly string[], exists: boolean): { ops: Operation[]; exists: boolean; resnapshot: boolean } {
  const out: Operation[] = [];
  const rebase = (path: string[]) => formatPointer(path.slice(tokens.length));
  for (const op of ops) {
    const path = parsePointer(op.path);
    const where = relation(path, tokens);
    if (op.op === 'move' || op.op === 'copy') {
      const from = parsePointer(op.from);
      const fromWhere = relation(from, tokens);
      const fromInside = fromWhere === 'inside';
      if (where === 'inside' && fromInside) out.push({ ...op, path: rebase(path), from: rebase(from) });
      else if (where !== 'outside' || (op.op === 'move' && fromWhere !== 'outside' && !fromInside)) return { ops: out, exists, resnapshot: true };
      else if (op.op === 'move' && fromInside) out.push({ op: 'remove', path: rebase(from) });
      continue;
    }
    if (where === 'outside') continue;
    if (where === 'inside') {
      out.push({ ...op, path: rebase(path) });
      continue;
    }
    if (op.op === 'test') continue;
    // On the subtree's root or an ancestor: what is at the subtree after the operation?
    const value = op.op === 'remove' ? undefined : resolveTokens(op.value, tokens.slice(path.length));
    if (value !== undefined) {
      out.push({ op: exists ? 'replace' : 'add', path: '', value });
      exists = true;
    } else if (exists) {
      out.push({ op: 'remove', path: '' });
      exists = false;
    }
  }
  return { ops: out, exists, resnapshot: false };
}

/**
 * Whether the subtree at `tokens` existed before `envelopes` (the log since a client's `since`),
 * knowing whether it exists after them (`existsNow`). Read from the first operation that touches
 * the subtree: one inside it or a `replace`/`remove` of its root means it existed, an `add` of its
 * root that it did not; when an ancestor is the first thing touched, it is taken to have existed
 * (then the subscriber may get `replace ""` where `add ""` would do, which applies the same).
 */
export function existedBefore(envelopes: readonly Envelope[], tokens: readonly string[], existsNow: boolean): boolean {
  for (const envelope of envelopes) {
    for (const op of envelope.ops) {
      const where = relation(parsePointer(op.path), tokens);
      const fromWhere = op.op === 'move' || op.op === 'copy' ? relation(parsePointer(op.from), tokens) : 'outside';
      if (where === 'outside' && fromWhere === 'outside') continue;
      if (where === 'inside' || fromWhere === 'inside' || fromWhere === 'self') return true;
      if (where === 'self') return op.op !== 'add' && op.op !== 'move' && op.op !== 'copy';
      return true;
    }
  }
  return existsNow;
}

/**
 * One subscriber's view of the stream narrowed to `path`: turns envelopes into
 * {@link NarrowedEnvelopeMessage}s, `prev` chaining what this subscriber was sent.
 */
export class SubtreeView {
  readonly tokens: readonly string[];
  private exists = false;
  private last = 0;

  /** @throws SyntaxError when `path` is not a JSON Pointer (RFC 6901) */
  constructor(readonly path: string) {
    this.tokens = parsePointer(path);
  }

  /** The `seq` of the last message produced for this subscriber (`prev` of the next envelope). */
  get prev(): number {
    return this.last;
  }

  /**
   * Start from a held position: the subscriber resumes at `seq`, where the subtree `exists` or
   * not (read it from the document as of `seq`).
   */
  resume(seq: number, exists: boolean): void {
    this.last = seq;
    this.exists = exists;
  }

  /**
   * The narrowed envelope for `envelope`, `null` when it does not touch the subtree, or
   * `'snapshot'` when the subscriber needs a snapshot instead (see {@link narrowOps}).
   */
  narrow(envelope: Envelope): NarrowedEnvelopeMessage | null | 'snapshot' {
    const result = narrowOps(envelope.ops, this.tokens, this.exists);
    if (result.resnapshot) return 'snapshot';
    this.exists = result.exists;
    if (result.ops.length === 0) return null;
    const message: NarrowedEnvelopeMessage = { seq: envelope.seq, prev: this.last, ts: envelope.ts, ops: result.ops };
    this.last = envelope.seq;
    return message;
  }
}
