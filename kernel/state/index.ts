/**
 * The kernel's state document and its patch log. Every change goes through
 * {@link StateDocument.update}, which records RFC 6902 operations (fast-json-patch) on JSON
 * Pointers (RFC 6901). Operations of one tick are coalesced into one envelope `{seq, ts, ops}`;
 * sequence numbers are contiguous, so a client that sees a gap knows to resync.
 */
import fastJsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import type { FileChange } from '../vfs/index.js';
import { DraftRecorder } from './draft.js';
import { resolveTokens } from './pointer.js';

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
  usage: TaskUsage;
  /** Inference turns keyed by turn number (1, 2, …): what was asked of which backend, and the streamed answer. */
  turns?: Record<string, InferenceTurn>;
  /** Every fallback the router took for this task, keyed by a counter (1, 2, …). */
  fallbacks?: Record<string, FallbackRecord>;
  /** Set by the supervisor (a `category` progress step): selects per-category targets in `inference.categories`. */
  category?: string;
  /** The privacy level the task's requests run under; `reason` says why it was escalated (never the secret itself). */
  privacy?: { level: PrivacyLevel; reason?: string };
  /** Why the kernel stopped the task (a budget or doom-loop detection); the task then fails with it. */
  stopReason?: string;
  /** The permission mode the task was submitted with: a cap on the mode of each of its calls (absent: none). */
  mode?: 'default' | 'acceptEdits' | 'bypassPermissions';
}

/** Privacy levels: `standard` (any backend), `sensitive` (prefer zero-data-retention), `strict` (ZDR only). */
export type PrivacyLevel = 'standard' | 'sensitive' | 'strict';

/** Tokens and cost of a task. Cost in US dollars, from the backends' configured prices. */
export interface TaskUsage {
  promptTokens: number;
  completionTokens: number;
  costUsd?: number;
  /** Per `model@backend` actually served. */
  byTarget?: Record<string, { promptTokens: number; completionTokens: number; costUsd: number; requests: number }>;
}

/** One inference request of a task and its answer, as it streams. */
export interface InferenceTurn {
  n: number;
  /** The target the agent asked for (`model@backend` or a bare model). */
  target: string;
  /** `model@backend` that served it (after fallbacks); absent until one answers. */
  servedBy?: string;
  status: 'streaming' | 'done' | 'error';
  /**
   * The answer's text as it streams: each element is the text that arrived within one delta
   * interval, appended with an RFC 6902 `add` at the end of the array. Concatenated, it is the
   * full content.
   */
  chunks: string[];
  toolCalls?: Array<{ id: string; name: string; arguments: string }>;
  /** ms since the epoch. */
  startedAt: number;
  durationMs?: number;
  usage?: { promptTokens: number; completionTokens: number; costUsd: number };
  error?: string;
}

/** A fallback taken by the inference router. */
export interface FallbackRecord {
  turn: number;
  /** `model@backend` left. */
  from: string;
  /** `model@backend` tried next. */
  to: string;
  reason: string;
  ts: number;
}

/** A request for a human decision, made by a policy `ask`. */
export interface Approval {
  id: string;
  taskId: string | null;
  /** The component whose action waits. */
  component: string;
  kind: 'tool' | 'mesh' | 'commit' | 'http';
  /** What is asked, in rule syntax: `write-file(src/a.ts)`, `mesh:agent-x`, `commit(<session>)`, `http(api.example.com)`. */
  subject: string;
  /** The action's input for review (secrets redacted, at most 4 KiB). */
  detail: string;
  /** The rule that asked (`ask: write-file(src/**)`), or `mode default` when none matched. */
  rule: string;
  status: 'pending' | 'approved' | 'denied' | 'expired';
  /** ms since the epoch. */
  createdAt: number;
  /** When the waiting call gives up (its deadline), ms since the epoch. */
  expiresAt: number;
  decidedAt?: number;
  /** `ui`, `rest`, `cli`, `expired`, or `kernel` (the task was stopped), plus the API key id when there is one (`rest:k-1a2b`). */
  decidedBy?: string;
  reason?: string;
}

/** A backend as the state document shows it (never its key). */
export interface BackendState {
  name: string;
  /** Base URL with any userinfo removed. */
  baseURL: string;
  zdr: boolean;
  breaker: 'closed' | 'open' | 'half-open';
  health: 'healthy' | 'degraded' | 'unhealthy';
  consecutiveFailures: number;
  /** When the breaker opened, ms since the epoch. */
  openedAt?: number;
  /** Median latency over the health window, ms. */
  latencyP50Ms?: number;
}

/** The whole document. */
export interface KernelState {
  kernel: { startedAt: number; version: string };
  components: Record<string, ComponentState>;
  tasks: Record<string, TaskState>;
  /** Policy approvals keyed by id; pending ones wait for a decision. */
  approvals: Record<string, Approval>;
  /** Inference backends keyed by name, with breaker and health. */
  backends: Record<string, BackendState>;
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
  private readonly recorder = new DraftRecorder();
  private snapshotCache: { seq: number; json: string } | undefined;
  /**
   * Identifies this document's lifetime (one kernel run): sequence numbers restart at 0 when the
   * kernel restarts, so a client resuming with `since=N` also sends the epoch its document came
   * from, and gets a snapshot when it differs. 12 random hex digits.
   */
  readonly epoch: string = globalThis.crypto.randomUUID().replace(/-/g, '').slice(0, 12);

  /**
   * @param initial the document at seq 0 (copied)
   * @param retained how many envelopes {@link since} can replay (`server.retainedEnvelopes`); older `since` values get a snapshot
   */
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
   * The document as of {@link seq}, serialized (JSON text). Made once per `seq` and shared by every
   * client that needs a snapshot at that position (200 clients connecting cost one serialization).
   */
  snapshotJson(): { seq: number; json: string } {
    if (this.snapshotCache?.seq !== this.seqNo) this.snapshotCache = { seq: this.seqNo, json: JSON.stringify(this.mirror) };
    return this.snapshotCache;
  }

  /** The subtree at `tokens` (RFC 6901 reference tokens) as of {@link seq}, serialized; `json` undefined when nothing is there. */
  subtreeJson(tokens: readonly string[]): { seq: number; json: string | undefined } {
    const value = resolveTokens(this.mirror, tokens);
    return { seq: this.seqNo, json: value === undefined ? undefined : JSON.stringify(value) };
  }

  /** Whether something is at `tokens` in the document as of {@link seq}. */
  existsAt(tokens: readonly string[]): boolean {
    return resolveTokens(this.mirror, tokens) !== undefined;
  }

  /**
   * Change the document. `mutate` edits a draft; the change is recorded as RFC 6902 operations
   * and published with the other changes of the same tick as one envelope.
   *
   * The draft is a Proxy that records which members were written, and only those are diffed
   * (`draft.ts`): the cost follows the size of the change, not of the document. Values assigned
   * into the draft are copied in; keep no reference to the draft or its parts after `mutate`.
   * Its objects are Proxies: read them, spread them or `JSON.stringify` them, but `structuredClone`
   * cannot copy them. An append to an array (`chunks.push(text)`) becomes `add …/chunks/K`.
   */
  update(mutate: (draft: KernelState) => void): void {
    mutate(this.recorder.draft(this.doc));
    const ops = this.recorder.diff(this.shadow, this.doc);
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
