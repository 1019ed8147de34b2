/**
 * The kernel's state document and its patch log. Every change goes through
 * {@link StateDocument.update}, which records RFC 6902 operations (fast-json-patch) on JSON
 * Pointers (RFC 6901). Operations of one tick are coalesced into one envelope `{seq, ts, ops}`;
 * sequence numbers are contiguous, so a client that sees a gap knows to resync.
 */
import fastJsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import type { FileChange } from '../vfs/index.js';

const { applyPatch, deepClone } = fastJsonPatch;

/** One entry of the patch log. `ts` in ms since the epoch. */
export interface Envelope {
  seq: number;
  ts: number;
  ops: Operation[];
}

/** A full copy of the document at `seq`. */
export interface Snapshot {
  seq: number;
  state: KernelState;
}

/** A step of a task (a progress report of a component). */
export interface TaskStep {
  n: number;
  component: string;
  step: string;
  detail: string;
  ts: number;
}

/** A call over the mesh made on behalf of a task. */
export interface ToolCall {
  id: string;
  caller: string;
  target: string;
  method: string;
  input: string;
  /** `interrupted`: the kernel stopped while the call was running. */
  status: 'running' | 'ok' | 'error' | 'interrupted';
  /** `ok` or the mesh-error case (`denied`, `timeout`, `cycle`, `busy`, `failed`, `unknown-target`). */
  outcome?: string;
  output?: string;
  /** ms since the epoch. */
  startedAt: number;
  durationMs?: number;
  /** Duration in microseconds, as measured by the caller. */
  durationUs?: number;
}

/** A task as shown to clients. */
export interface TaskState {
  id: string;
  prompt: string;
  workspace: string;
  model: string;
  status: 'queued' | 'running' | 'succeeded' | 'failed' | 'interrupted';
  sessionId: string | null;
  sessionStatus?: 'open' | 'committed' | 'discarded';
  createdAt: number;
  finishedAt?: number;
  summary?: string;
  error?: string;
  /** Keyed by step number, so JSON Pointers stay stable. */
  steps: Record<string, TaskStep>;
  /** Keyed by call id. */
  toolCalls: Record<string, ToolCall>;
  diff?: FileChange[];
  usage: { promptTokens: number; completionTokens: number };
}

/** The whole document. */
export interface KernelState {
  kernel: { startedAt: number; version: string };
  components: Record<string, ComponentState>;
  tasks: Record<string, TaskState>;
}

/** A component as the state document shows it. */
export interface ComponentState {
  name: string;
  kind: string;
  version: string;
  /** sha256 of the loaded bytes, hex (of the pin when refused). */
  sha256: string;
  workers: number;
  /** `builtin` (this repository) or `pinned` (`warden component add`). */
  origin: 'builtin' | 'pinned';
  /** `loaded`, or `refused` with the reason (changed bytes, unknown imports, …). */
  status: 'loaded' | 'refused';
  reason?: string;
  /** Which version of the component this is: 1 as loaded at start, +1 per hot reload (pinned components only). */
  generation?: number;
  /** When the last hot reload put this version in service, ms since the epoch. */
  reloadedAt?: number;
  /** Why the last hot reload failed (the version shown keeps serving); gone after a successful one. */
  reloadError?: string;
}

/** How many envelopes the log retains; older `since` values get a snapshot. */
export const DEFAULT_RETAINED = 10_000;

type Listener = (envelope: Envelope) => void;

/** The state document with its sequenced patch log. */
export class StateDocument {
  private doc: KernelState;
  /** The document as of the last recorded operation: what the next `update` is diffed against. */
  private shadow: KernelState;
  /** The document as of the last published envelope: what snapshots show. */
  private mirror: KernelState;
  private seqNo = 0;
  private readonly log: Envelope[] = [];
  private pending: Operation[] = [];
  private flushScheduled = false;
  private readonly listeners = new Set<Listener>();

  constructor(initial: KernelState, private readonly retained = DEFAULT_RETAINED) {
    this.doc = deepClone(initial) as KernelState;
    this.shadow = deepClone(initial) as KernelState;
    this.mirror = deepClone(initial) as KernelState;
  }

  /** Sequence number of the last envelope published. */
  get seq(): number {
    return this.seqNo;
  }

  /** A deep copy of the document as of {@link seq} (pending changes of this tick excluded). */
  snapshot(): Snapshot {
    return { seq: this.seqNo, state: deepClone(this.mirror) as KernelState };
  }

  /**
   * Change the document. `mutate` edits a draft; the change is recorded as RFC 6902 operations
   * and published with the other changes of the same tick as one envelope.
   */
  update(mutate: (draft: KernelState) => void): void {
    mutate(this.doc);
    const ops = fastJsonPatch.compare(this.shadow, this.doc);
    if (ops.length === 0) return;
    applyPatch(this.shadow, deepClone(ops) as Operation[]);
    this.pending.push(...ops);
    this.schedule();
  }

  private schedule(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  /** Publish pending operations now (normally done once per tick). */
  flush(): void {
    this.flushScheduled = false;
    if (this.pending.length === 0) return;
    const ops = this.pending;
    this.pending = [];
    applyPatch(this.mirror, deepClone(ops) as Operation[]);
    const envelope: Envelope = { seq: ++this.seqNo, ts: Date.now(), ops };
    this.log.push(envelope);
    if (this.log.length > this.retained) this.log.splice(0, this.log.length - this.retained);
    for (const listener of this.listeners) listener(envelope);
  }

  /** Read the current document (including changes not yet published). Do not mutate. */
  get current(): Readonly<KernelState> {
    return this.doc;
  }

  /**
   * Envelopes after `since`, or null when `since` has left the retained log (the client needs a
   * snapshot) or is ahead of it.
   */
  since(since: number): Envelope[] | null {
    if (since > this.seqNo) return null;
    if (since === this.seqNo) return [];
    const first = this.log[0];
    if (!first || since < first.seq - 1) return null;
    return this.log.slice(since - first.seq + 1);
  }

  /** Subscribe to every new envelope. @returns unsubscribe */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
