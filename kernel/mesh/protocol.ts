/**
 * Messages between the main thread and component workers, and between workers.
 * Everything here is structured-clone data; payloads are the WIT `payload` variant.
 */
import type { MessagePort } from 'node:worker_threads';
import type { CompiledComponent } from '../engine/index.js';
import type { FsGrant, Grants, Limits } from '../grants/index.js';
import type { PolicyMode, PolicySpec } from '../policy/index.js';

/** WIT `payload`: JSON text or bytes. */
export type Payload = { tag: 'json'; val: string } | { tag: 'bytes'; val: Uint8Array };

/** WIT `mesh-error` cases. */
export type MeshErrorTag = 'unknown-target' | 'denied' | 'timeout' | 'cycle' | 'busy' | 'failed';

/** What travels with every call: who is calling, for which task, until when, with what authority. */
export interface CallContext {
  /** Task the call belongs to (spans and progress land on it); empty for calls outside a task. */
  taskId: string;
  /** Session the task works in; the filesystem preopen of a callee. */
  sessionId: string | null;
  /** Component names from the first caller to the current callee. */
  chain: string[];
  /** Absolute deadline, ms since the epoch. */
  deadline: number;
  /**
   * The caller's effective grants (the callee's are intersected with them). On a peer port they
   * are sent only when they changed since the last call on that port; the callee keeps the last.
   */
  grants: Grants;
  /** Program arguments and stdin for `wasi:cli/command` runs. */
  args?: string[];
  stdin?: Uint8Array;
  /** For `handle-event` calls: the topic the event was published on. */
  topic?: string;
  /**
   * The permission mode the caller passes on: a cap on the callee's own mode (the minimum along
   * the call chain, see `PolicySpec.caps`). Absent: no cap. Policy applies only to calls of a task.
   */
  mode?: PolicyMode;
}

/**
 * A `bytes` payload moved through shared memory instead of structured clone: the sender wrote
 * `length` bytes at offset 0 of `buffer` (its own region, reused call after call) and sent
 * `{tag: 'bytes', val: null}` with this beside it. Used for worker-to-worker calls at and above
 * the mesh's shared-memory threshold; the reader must be done with the bytes before it answers.
 */
export interface Wire {
  buffer: SharedArrayBuffer;
  length: number;
}

/** A call of an exported function: `method` is `tool.call`, `tool.describe`, `agent.run`, `supervisor.handle-task` or `run`. */
export interface CallRequest {
  type: 'call';
  id: number;
  method: string;
  payload: Payload;
  ctx: CallContext;
  /** The caller's signal word; the callee notifies it after replying (absent for async callers). */
  signal?: SharedArrayBuffer;
  /** Where the bytes of a `bytes` payload are, when they travel through shared memory. */
  wire?: Wire;
}

/** The answer to a {@link CallRequest}. */
export type CallReply = (
  | { type: 'reply'; id: number; ok: true; payload: Payload; exitCode?: number; wire?: Wire }
  | { type: 'reply'; id: number; ok: false; error: { tag: MeshErrorTag; message: string }; exitCode?: number; trapped?: boolean }
) & {
  /**
   * Linear memory of the instance that served the call when it ended, bytes (all its core
   * memories; memory only grows, so this is the call's high-water mark). Absent when no
   * instance was reached (the call failed before, or the worker died).
   */
  memoryBytes?: number;
};

/**
 * The compact forms of a call and its reply on a peer port (worker to worker), for the common
 * case: a JSON payload whose call context the callee already holds. Structured clone of a
 * string costs a fraction of a nested object's (measured: ~1.3 µs against ~8 µs for a
 * {@link CallRequest} sent and received, ~5 µs for a {@link CallReply}), and every guest-to-guest
 * call pays it twice.
 *
 * - A caller sends the object form, a {@link CallRequest} with its whole context and signal, for
 *   the first call on a port within each of its own calls (a new context object) and for `bytes`
 *   payloads; the callee keeps that context and signal for the port. Further calls within the
 *   same context send `id,deadline,method,json` ({@link encodePeerCall}).
 * - A callee answers a successful call with a JSON payload as `id,json` ({@link encodePeerReply});
 *   every other reply (errors, `bytes`, exit codes) is the object form.
 */
export type PeerMessage = CallRequest | string;

/** `id,deadline,method,json`. `method` must not contain a comma ({@link peerCallable}). */
export function encodePeerCall(id: number, deadline: number, method: string, json: string): string {
  return `${id},${deadline},${method},${json}`;
}

/** Whether a call can travel in the compact form: a JSON payload and a method without a comma. */
export function peerCallable(method: string, payload: Payload): payload is { tag: 'json'; val: string } {
  return payload.tag === 'json' && !method.includes(',');
}

/** The fields of {@link encodePeerCall}'s text. */
export function decodePeerCall(text: string): { id: number; deadline: number; method: string; json: string } {
  const a = text.indexOf(',');
  const b = text.indexOf(',', a + 1);
  const c = text.indexOf(',', b + 1);
  return { id: Number(text.slice(0, a)), deadline: Number(text.slice(a + 1, b)), method: text.slice(b + 1, c), json: text.slice(c + 1) };
}

/** `id,json`: a successful reply with a JSON payload. */
export function encodePeerReply(id: number, json: string): string {
  return `${id},${json}`;
}

/** The call id a peer reply answers, in either form. */
export function peerReplyId(message: CallReply | string): number {
  return typeof message === 'string' ? Number(message.slice(0, message.indexOf(','))) : message.id;
}

/** A peer reply in its object form. */
export function decodePeerReply(message: CallReply | string): CallReply {
  if (typeof message !== 'string') return message;
  const comma = message.indexOf(',');
  return { type: 'reply', id: Number(message.slice(0, comma)), ok: true, payload: { tag: 'json', val: message.slice(comma + 1) } };
}

/** A synchronous request from a worker to a host service on the main thread. */
export interface HostRequest {
  type: 'host';
  id: number;
  op: string;
  body: unknown;
  ctx: CallContext;
  component: string;
}

/** The answer to a {@link HostRequest}. */
/** Span of one mesh call, as a worker reports it when the call ends (and starts, for task calls). */
export interface SpanNotice {
  spanId: string;
  target: string;
  method: string;
  /** ms since the epoch. */
  startedAt: number;
  /** Set on `span-end`: microseconds, and `ok` or the mesh-error tag. */
  durationUs?: number;
  outcome?: 'ok' | MeshErrorTag;
  input?: string;
  output?: string;
}

/** Calls outside tasks of one target, method and outcome, counted by a caller worker (`call-stats` notice). */
export interface CallStats {
  target: string;
  method: string;
  outcome: MeshErrorTag | 'ok';
  durationsUs: number[];
}

/** What a caller worker learns when it first calls a target: the board and a port per live worker. */
export interface Connection {
  /**
   * Which version of the target this is (unique in the mesh): `peer-add` messages carry it, so a
   * port to a worker of a replaced version never lands among the current version's ports.
   */
  targetId: number;
  board: SharedArrayBuffer;
  timeoutMs: number;
  peers: Array<{ slot: number; workerId: number; port: MessagePort }>;
  /** The target's kind and the grants that make its calls writes for the policy (never its env). */
  access?: { kind: WorkerInit['kind']; filesystem: FsGrant; http: boolean };
}

export type HostReply = { type: 'host-reply'; id: number; ok: true; value: unknown } | { type: 'host-reply'; id: number; ok: false; error: unknown };

/** A fire-and-forget notice from a worker to the main thread. */
export interface Notice {
  type: 'notice';
  op: 'log' | 'progress' | 'span-start' | 'span-end' | 'stdout' | 'stderr' | 'denied' | 'limit' | 'kill-peer' | 'pool-pressure' | 'dead-letter' | 'pool' | 'call-stats' | 'policy';
  body: unknown;
  /** The task of the call the notice came from (only the id: notices are on the hot path). */
  ctx?: { taskId: string };
  component: string;
}

/** What a worker starts with (`workerData`). */
export interface WorkerInit {
  workerId: number;
  /**
   * Prefix of the span ids this worker makes (`<run>.<workerId>-<n>`): unique per mesh, so the
   * spans of a task resumed by a later kernel never reuse the ids its earlier calls were recorded under.
   */
  spanPrefix: string;
  name: string;
  kind: 'tool' | 'agent' | 'supervisor' | 'command';
  component: CompiledComponent;
  /** requested ∩ granted: the most this component can ever hold. */
  grants: Grants;
  limits: Limits;
  /** Fresh instance per call (tools) or one long-lived instance (agents, supervisors). */
  fresh: boolean;
  /**
   * Instantiate ahead of calls (off the critical path). False for components that may touch WASI
   * while initialising: they are instantiated inside each call instead.
   */
  prewarm: boolean;
  /** Ready fresh instances the worker keeps (tools that prewarm; otherwise ignored). */
  spares: number;
  control: MessagePort;
  signal: SharedArrayBuffer;
  /** The dispatch board of this component and the worker's slot on it (see `board.ts`). */
  board: SharedArrayBuffer;
  slot: number;
  /** `bytes` payloads of at least this many bytes go worker-to-worker through shared memory. */
  sharedThreshold: number;
  sessionsDir: string;
  sqlDir: string;
  /** `warden tool run` mounts: host dirs exposed as sessions (ro or rw) at guest paths. */
  mounts?: Array<{ sessionId: string; guestPath: string; mode: 'ro' | 'rw' }>;
  /** The component's policy, decided on in this worker for the tool and agent calls it makes in tasks (absent: none). */
  policy?: PolicySpec;
}

/** A payload as a span shows it: JSON text or a byte count, at most 4000 characters. */
export function preview(payload: Payload): string {
  const text = payload.tag === 'json' ? payload.val : `<${payload.val.length} bytes>`;
  return text.length > 4000 ? `${text.slice(0, 4000)}…` : text;
}
