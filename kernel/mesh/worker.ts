/**
 * Entry of a component worker. Hosts one component: one long-lived instance (agents,
 * supervisors) or a fresh pre-instantiated instance per call (tools). Builds the instance's
 * imports from its grants only, serves calls arriving from the main thread or directly from
 * peer workers, and makes the guest's synchronous imports block on `Atomics.wait`.
 */
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { enableWasmFeatures, importedMemoryOf, instantiateCore, WASM_PAGE_BYTES, type MemoryLimits } from '../engine/index.js';
import { allows, attenuate, type Grants } from '../grants/index.js';
import { Overlay, type SessionMode } from '../vfs/index.js';
import { cliImports, deniedInterface, GuestExit } from '../wasi/cli.js';
import { filesystemImports } from '../wasi/filesystem.js';
import { httpImports, type OutboundRequest, type OutboundResponse } from '../wasi/http.js';
import { checkOutbound } from '../http/outbound.js';
import { ScopedSql, ScopedSqlError, type SqlValue } from '../store/scoped-sql.js';
import { blockUntil, notify } from './sync.js';
import { Board, busyMessage, type Claim } from './board.js';
import { preview } from './protocol.js';
import { Policy, type PolicyAction, type PolicyDecision, type PolicyMode } from '../policy/index.js';
import {
  decodePeerCall, decodePeerReply, encodePeerCall, encodePeerReply, peerCallable, peerReplyId,
  type CallContext, type CallReply, type CallRequest, type CallStats, type Connection, type HostReply, type MeshErrorTag, type Notice,
  type Payload, type PeerMessage, type SpanNotice, type Wire, type WorkerInit,
} from './protocol.js';
import { join } from 'node:path';

enableWasmFeatures();
const init = workerData as WorkerInit;
const signal = new Int32Array(init.signal);
const control = init.control;
/** This component's policy (compiled once); null when the mesh gave none (no policy enforced). */
const policy = init.policy ? new Policy(init.policy) : null;
/** The mode the call being served acts under (its own mode capped by the caller's, see `Policy.modesFor`). */
let actingMode: PolicyMode = 'bypassPermissions';

type Exports = Record<string, Record<string, (...args: unknown[]) => unknown>>;

// ---- state of the call being served ------------------------------------------------------------

let ctx: CallContext | null = null;
const board = new Board(init.board);
/** Targets this worker has called: their board and a direct port per worker in service. */
interface Peer {
  /** Which version of the target (see `Connection.targetId`). */
  targetId: number;
  board: Board;
  timeoutMs: number;
  ports: Map<number, { port: MessagePort; workerId: number }>;
  /** The target's kind and write-making grants (see `Connection.access`). */
  access: Connection['access'];
}
const peers = new Map<string, Peer>();
/** The call context last sent whole on each peer port (see `PeerMessage`). */
const contextSent = new WeakMap<MessagePort, CallContext>();
const deadPeers = new Set<number>();
/** Replies found on a peer's port when it was closed on news of the peer's stop, by call id. */
const lateReplies = new Map<number, CallReply>();
const hostReplies = new Map<number, HostReply>();
/**
 * Calls waiting to be served: how to answer each, the caller's signal word to wake after it, and
 * whether the reply reports the instance's memory (calls from the main thread; see `serve`).
 */
const deferred: Array<{ request: CallRequest; reply: (r: CallReply) => void; wake: Int32Array | null; withMemory: boolean }> = [];
let busy = false;
/** The signal word of the caller the last call served woke (null: a call from the main thread); see `yieldToCaller`. */
let lastWoken: Int32Array | null = null;
let hostSeq = 0;
let callSeq = 0;
let outputBytes = 0;
/** Whether this call's output was already cut (the marker is written once). */
let outputCut = false;

function current(): CallContext {
  if (!ctx) throw new Error('host function called outside a call');
  return ctx;
}

function send(op: Notice['op'], body: unknown): void {
  control.postMessage({ type: 'notice', op, body, ...(ctx ? { ctx: { taskId: ctx.taskId } } : {}), component: init.name } satisfies Notice);
}

/** Take every queued control message: answers, peers coming and going, and calls to serve later. */
function pumpControl(): void {
  let received;
  while ((received = receiveMessageOnPort(control))) onControl(received.message);
}

function onControl(message: any): void {
  if (message.type === 'host-reply') hostReplies.set(message.id, message);
  else if (message.type === 'peer-dead') {
    deadPeers.add(message.workerId);
    for (const peer of peers.values()) {
      for (const [slot, p] of peer.ports) {
        if (p.workerId !== message.workerId) continue;
        peer.ports.delete(slot);
        // A worker stopped right after it answered (an idle one retired by a reload or a shrink)
        // posted its reply first; it may still be queued on the port being closed.
        let queued;
        while ((queued = receiveMessageOnPort(p.port))) {
          const late = decodePeerReply(queued.message as CallReply | string);
          lateReplies.set(late.id, late);
        }
        p.port.close();
      }
    }
  } else if (message.type === 'peer-add') {
    const peer = peers.get(message.target);
    // A worker of a version this worker no longer calls (replaced, or not connected yet).
    if (!peer || peer.targetId !== message.targetId) message.port.close();
    else {
      peer.ports.get(message.slot)?.port.close();
      peer.ports.set(message.slot, { port: message.port, workerId: message.workerId });
    }
  } else if (message.type === 'attach') attachPeer(message.port);
  else if (message.type === 'call') enqueue({ request: message, reply: (r) => control.postMessage(r), wake: message.signal ? new Int32Array(message.signal) : null, withMemory: true });
}

/** A synchronous request to a host service on the main thread, waited on until `deadline` (default: the call's). */
function host(op: string, body: unknown, deadline?: number): HostReply {
  const id = ++hostSeq;
  const c = current();
  control.postMessage({ type: 'host', id, op, body, ctx: c, component: init.name });
  const reply = blockUntil(signal, deadline ?? c.deadline, () => {
    pumpControl();
    const r = hostReplies.get(id);
    hostReplies.delete(id);
    return r;
  });
  return reply ?? { type: 'host-reply', id, ok: false, error: { tag: 'timeout', val: `deadline passed waiting for ${op}` } };
}

/** Call a host service and return its value, or throw its error (a WIT variant value) to the guest. */
function hostValue(op: string, body: unknown): unknown {
  const reply = host(op, body);
  if (reply.ok) return reply.value;
  throw reply.error;
}

// ---- shared-memory payloads ---------------------------------------------------------------------

/**
 * A region of shared memory for `bytes` payloads one sender writes: a caller's requests (one
 * call in flight at a time) or a callee's replies on one port (the caller reads each reply
 * before it makes its next call on that port), so a region is never overwritten while read.
 */
interface Region {
  bytes: Uint8Array | null;
}
/** This worker's region for the requests it sends as a caller. */
const requestRegion: Region = { bytes: null };

/** Put a large `bytes` payload in `region`; small ones and JSON go by structured clone. */
function toWire(payload: Payload, region: Region): { payload: Payload; wire?: Wire } {
  if (payload.tag !== 'bytes' || payload.val.length < init.sharedThreshold) return { payload };
  const length = payload.val.length;
  if (!region.bytes || region.bytes.length < length) {
    region.bytes = new Uint8Array(new SharedArrayBuffer(2 ** Math.ceil(Math.log2(Math.max(length, 65536)))));
  }
  region.bytes.set(payload.val);
  return { payload: { tag: 'bytes', val: EMPTY }, wire: { buffer: region.bytes.buffer as SharedArrayBuffer, length } };
}
const EMPTY = new Uint8Array(0);

/** The payload as the receiver sees it: a view of the sender's region (read it before answering). */
function fromWire(payload: Payload, wire: Wire | undefined): Payload {
  return wire ? { tag: 'bytes', val: new Uint8Array(wire.buffer, 0, wire.length) } : payload;
}

// ---- the mesh from the guest's side -----------------------------------------------------------

function meshError(tag: MeshErrorTag, message: string): { tag: MeshErrorTag; val: string } {
  return { tag, val: message };
}

/** Connect to `target`: its board and ports to its workers in service (the main thread adds later ones). */
function connect(target: string): Peer {
  const reply = host('mesh.connect', { target });
  if (!reply.ok) throw reply.error;
  const connection = reply.value as Connection;
  const peer: Peer = { targetId: connection.targetId, board: new Board(connection.board), timeoutMs: connection.timeoutMs, ports: new Map(), access: connection.access };
  for (const p of connection.peers) peer.ports.set(p.slot, { port: p.port, workerId: p.workerId });
  peers.set(target, peer);
  return peer;
}

/** Drop the cached connection to `target` (its version was replaced or removed). */
function forget(target: string): void {
  const peer = peers.get(target);
  if (!peer) return;
  peers.delete(target);
  for (const { port } of peer.ports.values()) port.close();
}

/**
 * Admit a call on `target`'s board and pick the worker, waiting (until `deadline`) while every
 * worker is being replaced. A retired board means the target was hot-reloaded or removed since
 * this worker connected: it asks the main thread again, getting the new version's board and
 * ports (or `unknown-target`). The mark is checked before each claim and whenever no worker is
 * found, and a claim on the old board either succeeds before its slots are retired (the call
 * then finishes on the old version) or finds nothing: no call falls between the two versions.
 * @throws a WIT mesh-error value when reconnecting fails
 */
function admit(target: string, peer: Peer, deadline: number): { peer: Peer; claim: Claim } {
  for (;;) {
    pumpControl();
    if (peer.board.retired) {
      forget(target);
      peer = connect(target);
      continue;
    }
    const current = peer;
    const usable = (slot: number, workerId: number) => current.ports.get(slot)?.workerId === workerId;
    const claim = current.board.claim(usable);
    if (!('none' in claim)) return { peer, claim };
    const again = blockUntil<Claim | 'retired'>(signal, deadline, () => {
      pumpControl();
      if (current.board.retired) return 'retired';
      const next = current.board.claim(usable);
      return 'none' in next ? undefined : next;
    });
    if (again === 'retired') continue;
    return { peer, claim: again ?? claim };
  }
}

/**
 * Report a call that ended. A call of a task is a span on the task, sent at once (the kernel
 * counts its metric); other calls are only counted, in batches (`call-stats`), so the hot path
 * does not post a message to the main thread per call.
 */
function endSpan(span: SpanNotice, started: number, outcome: NonNullable<SpanNotice['outcome']>, output: string): void {
  const durationUs = Math.round((performance.now() - started) * 1000);
  if (ctx?.taskId) {
    send('span-end', { ...span, durationUs, outcome, output });
    return;
  }
  const key = `${span.target}\0${span.method}\0${outcome}`;
  let stats = callStats.get(key);
  if (!stats) {
    stats = { target: span.target, method: span.method, outcome, durationsUs: [] };
    callStats.set(key, stats);
  }
  stats.durationsUs.push(durationUs);
  if (++statsPending >= 4096) flushStats();
}

/** Durations of calls outside tasks not yet reported, by target, method and outcome. */
const callStats = new Map<string, CallStats>();
let statsPending = 0;

/** Send the counted calls to the main thread (every second while idle, or every 4096 calls). */
function flushStats(): void {
  if (statsPending === 0) return;
  control.postMessage({ type: 'notice', op: 'call-stats', body: [...callStats.values()], component: init.name } satisfies Notice);
  callStats.clear();
  statsPending = 0;
}
setInterval(flushStats, 1000).unref();

function meshCall(target: string, method: string, payload: Payload): Payload {
  const c = current();
  const started = performance.now();
  const id = ++callSeq;
  const span: SpanNotice = { spanId: `${init.spanPrefix}-${id}`, target, method, startedAt: Date.now() };
  const fail = (tag: MeshErrorTag, message: string): never => {
    endSpan(span, started, tag, message);
    throw meshError(tag, message);
  };
  if (c.chain.includes(target)) fail('cycle', `E_MESH_CYCLE: ${[...c.chain, target].join(' → ')} would re-enter ${target}`);
  if (!allows(c.grants.mesh, target)) {
    send('denied', { capability: 'mesh', target, reason: `mesh target ${target} not granted` });
    fail('denied', `capability not granted: mesh target ${target}`);
  }
  let peer: Peer;
  try {
    peer = peers.get(target) ?? connect(target);
  } catch (err) {
    const e = err as { tag?: MeshErrorTag; val?: string };
    return fail(e.tag ?? 'failed', String(e.val ?? err));
  }
  if (policy && c.taskId) {
    // A person gets up to `policy.approvalTimeoutMs`, within the caller's own deadline (not the callee's time limit).
    const refusal = policyRefusal(target, method, payload, peer.access, Math.min(c.deadline, Date.now() + policy.spec.approvalTimeoutMs));
    if (refusal !== null) {
      span.input = preview(payload);
      fail('denied', refusal);
    }
  }
  // After any approval: waiting for a person does not eat into the callee's own time limit.
  const deadline = Math.min(c.deadline, Date.now() + peer.timeoutMs);
  let claim: Claim;
  try {
    ({ peer, claim } = admit(target, peer, deadline));
  } catch (err) {
    const e = err as { tag?: MeshErrorTag; val?: string };
    return fail(e.tag ?? 'failed', String(e.val ?? err));
  }
  if ('busy' in claim) fail('busy', busyMessage(target, claim.busy));
  if ('none' in claim) fail('timeout', `E_LIMIT_TIME: ${target} had no worker in service before the deadline`);
  const { slot, pressured } = claim as { slot: number; pressured: boolean };
  if (pressured && peer.board.raisePressure()) send('pool-pressure', { target });
  const { port, workerId } = peer.ports.get(slot)!;
  if (c.taskId) send('span-start', { ...span, input: preview(payload) });
  Atomics.store(signal, 0, 0);
  // The context goes whole once per port and call context; later calls in it go compact.
  if (contextSent.get(port) === c && peerCallable(method, payload)) {
    port.postMessage(encodePeerCall(id, deadline, method, payload.val));
  } else {
    const wired = toWire(payload, requestRegion);
    contextSent.set(port, c);
    port.postMessage({ type: 'call', id, method, payload: wired.payload, ctx: { ...c, deadline }, signal: init.signal, ...(wired.wire ? { wire: wired.wire } : {}) } satisfies CallRequest);
  }
  const reply = blockUntil<CallReply | 'gone'>(signal, deadline, () => {
    let received;
    while ((received = receiveMessageOnPort(port))) {
      const message = received.message as CallReply | string;
      if (peerReplyId(message) === id) return decodePeerReply(message);
    }
    pumpControl();
    const late = lateReplies.get(id);
    if (late) return late;
    return deadPeers.has(workerId) ? 'gone' : undefined;
  });
  lateReplies.clear();
  if (reply === undefined && peer.board.worker(slot) === workerId && peer.board.deadline(slot) > Date.now()) {
    // Still queued behind another call within its own deadline: that call keeps the worker, which
    // drops this one unserved when it reaches it. A `bytes` request may still be read from the region.
    requestRegion.bytes = null;
    return fail('timeout', `E_LIMIT_TIME: ${target}.${method} waited ${Math.round(deadline - span.startedAt)} ms behind another call on its worker and never started`);
  }
  if (reply === undefined) {
    // The stopped callee may still be reading the request: later requests go to a new region.
    requestRegion.bytes = null;
    // Out of service at once, for every caller: no later call may be claimed by the stopped
    // worker while the main thread is still stopping it.
    if (peer.board.worker(slot) === workerId) peer.board.close(slot);
    const stale = peer.ports.get(slot);
    if (stale?.workerId === workerId) {
      peer.ports.delete(slot);
      stale.port.close();
    }
    const message = `E_LIMIT_TIME: ${target}.${method} did not answer within ${Math.round(deadline - span.startedAt)} ms (its wall-clock limit or the caller's deadline); its worker was stopped and is being replaced`;
    // The main thread stops the callee and audits the limit hit on it.
    send('kill-peer', { workerId, cap: Math.round(deadline - span.startedAt), reason: message });
    return fail('timeout', message);
  }
  if (reply === 'gone') {
    // A callee stopped at the call's deadline died of the time limit: a busy caller may only see
    // its death after the deadline passed, and it is a timeout, not a crash.
    if (Date.now() >= deadline) return fail('timeout', `E_LIMIT_TIME: ${target} did not answer ${method} before the deadline; its worker was stopped`);
    return fail('failed', `E_MESH_FAILED: ${target} crashed during ${method}; its worker is being replaced`);
  }
  if (!reply.ok) return fail(reply.error.tag, reply.error.message);
  const result = fromWire(reply.payload, reply.wire);
  endSpan(span, started, 'ok', c.taskId ? preview(result) : '');
  return result;
}

/**
 * What the policy decides on for a call to `target`: a tool's `call` (a write when the tool's
 * effective filesystem grant is read-write, or it and the caller have outbound http), or any call
 * of an agent or supervisor (`mesh:`); null for anything else (`describe`, commands).
 */
function policyAction(target: string, method: string, payload: Payload, access: Connection['access']): PolicyAction | null {
  const kind = access?.kind ?? (method === 'call' ? 'tool' : 'agent');
  if (kind === 'agent' || kind === 'supervisor') return { kind: 'mesh', name: target };
  if (kind !== 'tool' || method !== 'call') return null;
  const g = current().grants;
  const http = access ? access.http && g.http.length > 0 : false;
  const fs = access ? access.filesystem === 'session:rw' && g.filesystem === 'session:rw' : false;
  return { kind: 'tool', name: target, input: payload.tag === 'json' ? payload.val : '', write: http ? 'http' : fs ? 'fs' : false };
}

/**
 * Decide on a call of a task under this component's policy, in this worker (the main thread
 * is not on the path): `allow` goes on, `deny` is refused with the rule, `ask` blocks on a host
 * request that creates (or reuses) an approval and answers when it is decided or `deadline` (the
 * caller's deadline, capped by `policy.approvalTimeoutMs`) expires it. Each decision is
 * reported as a `policy` notice (the kernel emits the event; an `ask` is reported by the kernel).
 * @returns null when the call may go on, else why it is denied (the mesh error's message)
 */
function policyRefusal(target: string, method: string, payload: Payload, access: Connection['access'], deadline: number): string | null {
  const action = policyAction(target, method, payload, access);
  if (!action) return null;
  const decision: PolicyDecision = policy!.decide(action, actingMode);
  if (decision.decision !== 'ask') {
    send('policy', { ...decision, kind: action.kind });
    if (decision.decision === 'allow') return null;
    return `E_POLICY_DENIED: ${decision.subject} is denied by the policy rule \`${decision.rule}\` of ${init.name}; do something else, or ask the operator to change policy.rules in the kernel's config`;
  }
  // The kernel expires the approval at `deadline` and answers; the grace is for that answer to arrive.
  const reply = host('policy.ask', { ...decision, kind: action.kind, detail: action.kind === 'tool' ? action.input : '', deadline }, Math.min(current().deadline, deadline + 1000));
  if (!reply.ok) {
    const error = reply.error as { tag?: string; val?: unknown };
    return error?.tag === 'timeout'
      ? `E_POLICY_DENIED: ${decision.subject} needs an approval (rule \`${decision.rule}\`) and none came before the call's deadline; it expired`
      : `E_POLICY_DENIED: ${decision.subject} needs an approval and asking failed: ${String(error?.val ?? error)}`;
  }
  const answer = reply.value as { status: string; message?: string };
  return answer.status === 'approved' ? null : answer.message ?? `E_POLICY_DENIED: ${decision.subject} was not approved`;
}

/** `mesh.publish`: checked here against the call's grants, queued by the broker on the main thread. */
function meshPublish(topic: string, payload: Payload): void {
  if (!allows(current().grants.mesh, `topic:${topic}`)) {
    send('denied', { capability: 'mesh', target: `topic:${topic}`, reason: `topic ${topic} not granted` });
    throw meshError('denied', `capability not granted: topic:${topic}`);
  }
  hostValue('mesh.publish', { topic, payload: payload.tag === 'bytes' ? { tag: 'bytes', val: payload.val.slice() } : payload });
}


// ---- imports built from grants ----------------------------------------------------------------

const overlays = new Map<string, Overlay>();
function overlayFor(sessionId: string, mode: SessionMode): Overlay {
  const key = `${sessionId}:${mode}`;
  let overlay = overlays.get(key);
  if (!overlay) {
    const meta = host('session.meta', { id: sessionId });
    if (!meta.ok) throw new Error(`session ${sessionId} is not open`);
    overlay = new Overlay((meta.value as { workspace: string }).workspace, join(init.sessionsDir, sessionId), mode);
    overlays.set(key, overlay);
  }
  return overlay;
}

function preopens(): Array<{ overlay: Overlay; guestPath: string }> {
  const c = current();
  if (init.mounts) return init.mounts.map((m) => ({ overlay: overlayFor(m.sessionId, m.mode), guestPath: m.guestPath }));
  if (c.grants.filesystem === 'none' || !c.sessionId) return [];
  return [{ overlay: overlayFor(c.sessionId, c.grants.filesystem === 'session:rw' ? 'rw' : 'ro'), guestPath: '/' }];
}

function denied(capability: string): never {
  send('denied', { capability, reason: `capability not granted: ${capability}` });
  throw { tag: 'denied', val: `capability not granted: ${capability}` };
}

/** This worker's connection to its component's SQL scope (the grant's scope never changes per call). */
let sql: ScopedSql | null = null;
/** The call that used the scope last: a transaction never outlives the call that began it. */
let sqlCall: CallContext | null = null;
/** The call whose SQL ran into its deadline: if it then fails, it failed for lack of time. */
let sqlTimedOut: CallContext | null = null;
let sqlRollbackQueued = false;

/** Run `op` on the call's SQL scope; its refusals and limit hits are audited. */
function withSql<T>(op: (scope: ScopedSql) => T): T {
  const c = current();
  const grant = c.grants.sql;
  if (!grant) denied('sql');
  // The main thread does not terminate this worker while it is inside SQLite (see Board.native).
  board.setNative(init.slot, true);
  try {
    sql ??= new ScopedSql(join(init.sqlDir, `${grant.scope}.db`), grant.mode, { name: grant.scope, maxResultBytes: init.component.maxPages * 65536 });
    if (sqlCall !== c) {
      sqlCall = c;
      sql.endCall();
      sql.setDeadline(sqlDeadline(c.deadline));
    }
    return op(sql);
  } catch (err) {
    if (!(err instanceof ScopedSqlError)) throw new ScopedSqlError('E_SQL_INVALID', `scope ${grant.scope} cannot be used: ${(err as Error).message}`, err);
    if (err.code === 'E_LIMIT_TIME' && sql?.expired) sqlTimedOut = c;
    if (err.code === 'E_SQL_DENIED') send('denied', { capability: 'sql', scope: grant.scope, reason: err.message });
    else if (err.payload.tag === 'limit') send('limit', { limit: 'sql', scope: grant.scope, reason: err.message });
    throw err;
  } finally {
    board.setNative(init.slot, false);
    // Serving a call is synchronous, so this runs once the call (and any queued after it) ended:
    // an open transaction would hold the scope's write lock against this pool's other workers.
    if (sql?.inTransaction && !sqlRollbackQueued) {
      sqlRollbackQueued = true;
      setImmediate(rollbackLeftOpen);
    }
  }
}

/**
 * When a call's statements stop (epoch ms): its deadline less a margin — 10 % of the time left,
 * between 50 and 500 ms — so that the guest gets `E_LIMIT_TIME` from the statement and can still
 * answer before the mesh stops its worker at the deadline itself. null: no deadline.
 */
function sqlDeadline(deadline: number): number | null {
  if (!Number.isFinite(deadline)) return null;
  return deadline - Math.min(500, Math.max(50, (deadline - Date.now()) * 0.1));
}

/** Roll back a transaction the last call left open (between calls only). */
function rollbackLeftOpen(): void {
  sqlRollbackQueued = false;
  if (ctx || !sql) return;
  board.setNative(init.slot, true);
  let rolledBack: boolean;
  try {
    rolledBack = sql.endCall();
  } finally {
    board.setNative(init.slot, false);
  }
  if (!rolledBack) return;
  send('log', { level: 'warn', message: 'sql: rolled back a transaction the call left open (a transaction never outlives its call)' });
}

function decode(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('utf8');
}

/** The marker that replaces output past the call's `outputBytes` limit. */
function truncationMarker(): string {
  return `\n[warden: output truncated at ${init.limits.outputBytes} bytes]\n`;
}

/** Forward guest output, cut at the call's output limit (the guest keeps running; excess is dropped). */
function emit(op: 'stdout' | 'stderr', bytes: Uint8Array): void {
  const cap = init.limits.outputBytes;
  const room = cap - outputBytes;
  outputBytes += bytes.length;
  if (bytes.length <= room) {
    send(op, bytes.slice());
    return;
  }
  if (outputCut) return;
  outputCut = true;
  if (room > 0) send(op, bytes.slice(0, room));
  send(op, new Uint8Array(Buffer.from(truncationMarker())));
  send('limit', { limit: 'outputBytes', cap, reason: `E_LIMIT_OUTPUT: output past ${cap} bytes was dropped` });
}

/** Cut a tool's result text at the output limit, with the marker. */
function capResult(text: string): string {
  const cap = init.limits.outputBytes;
  // A UTF-16 code unit is at most 3 bytes of UTF-8: most results need no count.
  if (text.length * 3 <= cap || Buffer.byteLength(text) <= cap) return text;
  send('limit', { limit: 'outputBytes', cap, reason: `E_LIMIT_OUTPUT: result past ${cap} bytes was cut` });
  return Buffer.from(text).subarray(0, cap).toString('utf8') + truncationMarker();
}

function buildImports(): Record<string, unknown> {
  const g = init.grants;
  const audit = (name: string, member: string) => send('denied', { capability: name, member, reason: `capability not granted: ${name}` });
  const fs = filesystemImports(preopens, (operation, path, reason) => send('denied', { capability: 'filesystem', operation, path, reason }));
  // Outbound HTTP: checked against this call's (attenuated) grant before the main thread is asked.
  const sendHttp = (req: OutboundRequest): OutboundResponse => {
    const target = checkOutbound(req, current().grants.http);
    if (!target.ok) {
      if (target.denied) send('denied', { capability: 'http', reason: target.denied });
      return { error: target.error };
    }
    const reply = host('http.fetch', req);
    if (reply.ok) return reply.value as OutboundResponse;
    const error = reply.error as { tag?: string; val?: unknown };
    return { error: error?.tag === 'timeout' ? { tag: 'connection-timeout' } : { tag: 'internal-error', val: String(error?.val ?? error) } };
  };
  // The wasi:http types are plain data; the capability is the handler, which checks every request
  // against the call's grant (an empty grant denies each one with `HTTP-request-denied`, audited).
  const http = httpImports(sendHttp, () => current().deadline - Date.now());
  const imports: Record<string, unknown> = {
    ...cliImports({
      env: () => Object.entries(current().grants.env),
      args: () => current().args ?? [init.name],
      stdin: () => current().stdin ?? new Uint8Array(),
      stdout: (b) => emit(init.kind === 'command' ? 'stdout' : 'stderr', b),
      stderr: (b) => emit('stderr', b),
    }),
    'wasi:filesystem/types': fs.types,
    'wasi:filesystem/preopens': fs.preopens,
    'warden:kernel/log': {
      log: (level: string, message: string) => send('log', { level, message: message.slice(0, 8192) }),
    },
    'warden:kernel/progress': {
      report: (step: string, detail: string) => send('progress', { step, detail: detail.slice(0, 8192) }),
    },
    'warden:kernel/mesh': g.mesh.length === 0 ? deniedInterface('warden:kernel/mesh', audit) : {
      call: meshCall,
      listTools: () => hostValue('mesh.list-tools', {}),
      publish: meshPublish,
    },
    'warden:kernel/session': !g.session ? deniedInterface('warden:kernel/session', audit) : {
      begin: (workspace: string) => {
        if (!current().grants.session) denied('session');
        const id = hostValue('session.begin', { workspace }) as string;
        current().sessionId = id;
        return id;
      },
      commit: (id: string) => void (current().grants.session ? hostValue('session.commit', { id }) : denied('session')),
      rollback: (id: string) => void (current().grants.session ? hostValue('session.rollback', { id }) : denied('session')),
      diff: (id: string) => (current().grants.session ? hostValue('session.diff', { id }) : denied('session')),
    },
    'warden:kernel/inference': g.inference.length === 0 ? deniedInterface('warden:kernel/inference', audit) : {
      chat: (request: { model: string }) => {
        if (!allows(current().grants.inference, request.model)) denied(`inference target ${request.model}`);
        return hostValue('inference.chat', request);
      },
    },
    'warden:kernel/sql': !g.sql ? deniedInterface('warden:kernel/sql', audit) : {
      query: (text: string, params: SqlValue[]) => withSql((scope) => scope.query(text, params)),
      execute: (text: string, params: SqlValue[]) => withSql((scope) => scope.execute(text, params)),
    },
    'wasi:http/types': http['wasi:http/types'],
    'wasi:http/outgoing-handler': http['wasi:http/outgoing-handler'],
  };
  for (const name of init.component.imports) {
    if (!(name in imports)) imports[name] = deniedInterface(name, audit);
  }
  return imports;
}

// ---- instances ----------------------------------------------------------------------------------

const glue = (await import(init.component.glueUrl)) as {
  instantiate: (
    getCoreModule: (name: string) => WebAssembly.Module,
    imports: Record<string, unknown>,
    instantiateCore: (module: WebAssembly.Module, imports?: WebAssembly.Imports) => WebAssembly.Instance,
  ) => Exports;
};
/** An instance and the linear memories of its core instances (to tell memory exhaustion from other traps). */
interface Instance {
  exports: Exports;
  memories: WebAssembly.Memory[];
  /** Memories the instance was given that may go to another instance once it is dropped (see `recycle`). */
  given: GivenMemory[];
}
/** The instance of a long-lived component (agents, supervisors, commands); null until created. */
let instance: Instance | null = null;
/** Fresh instances made ahead of calls (pool workers of tools); each serves one call only. */
const spares: Instance[] = [];
/** Whether this worker instantiates fresh instances ahead of calls (else inside each call). */
const keepsSpares = init.fresh && init.prewarm && init.spares > 0;
/** The instance serving the current call. */
let serving: Instance | null = null;
/** Linear memory of the instance that served the last call, bytes (set as the call ends). */
let served: number | undefined;

/** What the board shows as ready: instances a call can start on without instantiating. */
function readyCount(): number {
  if (keepsSpares) return spares.length;
  // Instantiating inside each call (fresh without spares, or not prewarmed): idle is as ready as it gets.
  if (init.fresh || !init.prewarm) return 1;
  return instance ? 1 : 0;
}

/** The instance for the next call: a spare (fresh) or the long-lived one, instantiated if none. */
function takeInstance(): Instance {
  if (!init.fresh) return (instance ??= instantiate());
  const spare = spares.shift();
  board.setReady(init.slot, readyCount());
  return spare ?? instantiate();
}

/** A linear memory given to an instance, and the limits of the module that imports it. */
interface GivenMemory {
  memory: WebAssembly.Memory;
  limits: MemoryLimits;
}

/**
 * Whether this worker gives new instances the linear memories of dropped ones: a fresh-instance
 * pool whose glue registers no finalizers (see `CompiledComponent.recyclable`). Instantiating
 * into a new memory costs a page fault per page the data segments write (~1.6 ms of the ~2 ms a
 * QuickJS instance takes on this machine), and every dropped memory (~1.4 MB) waits for a garbage
 * collection: a fresh worker ran a mark-compact every 25–40 instances.
 */
const recycling = init.fresh && init.component.recyclable;
/** Zeroed memories of their module's initial size, by the module's limits (see `recycle`). */
const readyMemories = new Map<MemoryLimits, WebAssembly.Memory[]>();
/** Memories of instances that served their call, not zeroed yet. */
const dropped: GivenMemory[] = [];

/**
 * Make the dropped instances' memories ready for new instances. Only a memory still at its
 * module's initial size is kept, and it is zeroed whole: instantiation then writes the module's
 * data segments into it, so the new instance starts byte for byte as in a new memory, and nothing
 * of the call that used it before can be read. A memory that grew is left to the collector.
 */
function recycle(): void {
  for (const { memory, limits } of dropped.splice(0)) {
    if (memory.buffer.byteLength !== limits.initial * WASM_PAGE_BYTES) continue;
    new Uint8Array(memory.buffer).fill(0);
    let ready = readyMemories.get(limits);
    if (!ready) readyMemories.set(limits, (ready = []));
    ready.push(memory);
  }
}

function instantiate(): Instance {
  const memories: WebAssembly.Memory[] = [];
  const given: GivenMemory[] = [];
  if (dropped.length > 0) recycle();
  const exports = glue.instantiate((name) => init.component.modules[name]!, buildImports(), (module, imports) => {
    const limits = recycling ? importedMemoryOf(init.component, module) : undefined;
    const { instance: core, memory } = instantiateCore(init.component, module, imports ?? {}, limits && readyMemories.get(limits)?.pop());
    if (memory && limits) given.push({ memory, limits });
    for (const value of Object.values(core.exports)) if (value instanceof WebAssembly.Memory) memories.push(value);
    return core;
  });
  return { exports, memories, given };
}

/**
 * Whether a failure is the guest running out of memory, and how much it held. A refused
 * `memory.grow` reaches the guest as a failed allocation, which guests report in many ways
 * (`abort`, `unreachable`, an exception), so the test is: the message says so, or a memory of
 * the instance stands within max(2 MiB, a quarter of the cap) of the cap when it failed.
 */
function outOfMemory(inst: Instance | null, message: string): { usedMb: number } | null {
  const capBytes = init.component.maxPages * 65536;
  const used = Math.max(0, ...(inst?.memories ?? []).map((m) => m.buffer.byteLength));
  const usedMb = Math.round(used / 2 ** 20);
  if (/out of memory/i.test(message)) return { usedMb };
  return used >= capBytes - Math.max(2 ** 21, capBytes / 4) ? { usedMb } : null;
}

/** Export names by interface (`warden:kernel/tool` → `warden:kernel/tool@0.1.0`): the same for every instance. */
const exportKeys = new Map<string, string>();

function exportOf(exports: Exports, iface: string): Record<string, (...args: unknown[]) => unknown> {
  let key = exportKeys.get(iface);
  if (key === undefined) {
    key = Object.keys(exports).find((k) => k === iface || k.startsWith(`${iface}@`));
    if (!key) throw new Error(`component does not export ${iface}`);
    exportKeys.set(iface, key);
  }
  return exports[key]!;
}

function json(value: unknown): Payload {
  return { tag: 'json', val: JSON.stringify(value) };
}

function parsePayload(payload: Payload): unknown {
  return JSON.parse(payload.tag === 'json' ? payload.val : decode(payload.val));
}

function invoke(exports: Exports, method: string, payload: Payload): { payload: Payload; exitCode?: number } {
  switch (`${init.kind}.${method}`) {
    case 'tool.describe':
      return { payload: json(exportOf(exports, 'warden:kernel/tool').describe!()) };
    case 'tool.call': {
      const input = payload.tag === 'json' ? payload.val : decode(payload.val);
      return { payload: json({ output: capResult(String(exportOf(exports, 'warden:kernel/tool').call!(input))) }) };
    }
    case 'agent.run':
      return { payload: json(exportOf(exports, 'warden:kernel/agent').run!(parsePayload(payload))) };
    case 'supervisor.handle-task':
      return { payload: json(exportOf(exports, 'warden:kernel/supervisor').handleTask!(parsePayload(payload))) };
    case 'tool.handle-event':
    case 'agent.handle-event':
    case 'supervisor.handle-event':
      exportOf(exports, 'warden:kernel/subscriber').handleEvent!(ctx?.topic ?? '', payload);
      return { payload: json(null) };
    case 'command.run':
      exportOf(exports, 'wasi:cli/run').run!();
      return { payload: json(null), exitCode: 0 };
    default:
      throw Object.assign(new Error(`${init.name} (${init.kind}) has no method ${method}`), { meshTag: 'unknown-target' });
  }
}

let lastCallerGrants: Grants | null = null;
let lastAttenuated: Grants = init.grants;
/** This component's grants attenuated by a caller's (remembered for the same caller grants object). */
function attenuated(callerGrants: Grants): Grants {
  if (callerGrants !== lastCallerGrants) {
    lastAttenuated = attenuate(init.grants, callerGrants);
    lastCallerGrants = callerGrants;
  }
  return lastAttenuated;
}

/**
 * The call's reply, with the serving instance's linear memory size (see `CallReply.memoryBytes`)
 * when `withMemory`: the main thread reads it; a peer caller does not, and its hot path skips it.
 */
function serve(request: CallRequest, withMemory: boolean): CallReply {
  served = undefined;
  const reply = serveCall(request);
  return served === undefined || !withMemory ? reply : { ...reply, memoryBytes: served };
}

function memoryOf(inst: Instance | null): number | undefined {
  return inst ? inst.memories.reduce((sum, m) => sum + m.buffer.byteLength, 0) : undefined;
}

function serveCall(request: CallRequest): CallReply {
  const chain = [...request.ctx.chain, init.name];
  if (policy) {
    // The mode is attenuated down the chain like the grants: never above what the caller passed on.
    const modes = policy.modesFor(request.ctx.mode);
    actingMode = modes.acting;
    ctx = { ...request.ctx, chain, grants: attenuated(request.ctx.grants), mode: modes.passOn };
  } else {
    ctx = { ...request.ctx, chain, grants: attenuated(request.ctx.grants) };
  }
  outputBytes = 0;
  outputCut = false;
  let trapped = false;
  try {
    serving = takeInstance();
    const { payload, exitCode } = invoke(serving.exports, request.method, fromWire(request.payload, request.wire));
    return exitCode === undefined ? { type: 'reply', id: request.id, ok: true, payload } : { type: 'reply', id: request.id, ok: true, payload, exitCode };
  } catch (err) {
    if (err instanceof GuestExit) {
      return { type: 'reply', id: request.id, ok: err.code === 0, payload: json(null), exitCode: err.code, error: { tag: 'failed', message: err.message } } as CallReply;
    }
    const e = err as { payload?: unknown; message?: string; meshTag?: MeshErrorTag };
    let message: string;
    if (e && typeof e === 'object' && 'payload' in e) {
      const p = e.payload as { tag?: string; val?: unknown } | string;
      message = typeof p === 'string' ? p : `${p.tag ?? 'error'}: ${typeof p.val === 'string' ? p.val : JSON.stringify(p.val)}`;
    } else {
      trapped = true;
      const why = e?.message ?? String(err);
      const oom = outOfMemory(serving, why);
      if (oom) {
        const capMb = (init.component.maxPages * 65536) / 2 ** 20;
        message = `E_LIMIT_MEMORY: ${init.name} ran out of memory at its cap of ${capMb} MiB (${oom.usedMb} MiB in use; ${why}); raise limits.memoryMb to allow more`;
        send('limit', { limit: 'memoryMb', cap: capMb, reason: message });
      } else {
        message = `${init.name} trapped: ${why}`;
      }
    }
    // A call whose SQL was stopped at its deadline and that then failed ran out of time.
    if (sqlTimedOut === ctx && ctx) {
      return { type: 'reply', id: request.id, ok: false, error: { tag: 'timeout', message: `E_LIMIT_TIME: ${init.name}.${request.method} ran out of time: its SQL reached the call's deadline (${message})` }, trapped };
    }
    return { type: 'reply', id: request.id, ok: false, error: { tag: e?.meshTag ?? 'failed', message }, trapped, ...(trapped && init.kind === 'command' ? { exitCode: 125 } : {}) };
  } finally {
    served = memoryOf(serving);
    // A fresh instance served its one call: its memories go to the next instance made.
    if (init.fresh && serving) dropped.push(...serving.given);
    ctx = null;
    serving = null;
    // A trapped instance is unusable; a fresh instance served its one call and is dropped.
    if (trapped && !init.fresh) instance = null;
  }
}

/** Queue a call; serve it at once when idle (inside a blocking import, `busy` holds it for later). */
function enqueue(entry: (typeof deferred)[number]): void {
  deferred.push(entry);
  if (!busy) drain();
}

/** Serve queued calls in arrival order; answer each, free its place on the board, wake its caller. */
function drain(): void {
  if (busy) return;
  busy = true;
  try {
    let next;
    while ((next = deferred.shift())) {
      // A call whose deadline passed while it waited behind another was answered by its caller already.
      if (Date.now() >= next.request.ctx.deadline) {
        next.reply({ type: 'reply', id: next.request.id, ok: false, error: { tag: 'timeout', message: `E_LIMIT_TIME: ${init.name}.${next.request.method} reached its deadline before it started` } });
        board.release(init.slot);
        if (next.wake) notify(next.wake);
        continue;
      }
      board.setDeadline(init.slot, next.request.ctx.deadline);
      const result = serve(next.request, next.withMemory);
      board.setDeadline(init.slot, 0);
      next.reply(result);
      board.setReady(init.slot, readyCount());
      board.release(init.slot);
      if (next.wake) notify(next.wake);
      lastWoken = next.wake;
    }
  } finally {
    busy = false;
  }
  if (keepsSpares) setImmediate(refill);
}

/**
 * Before instantiating after a call: let the caller that call woke take the CPU first. With no
 * idle core (2 cores, busy machine) the woken caller was often queued behind this thread's
 * instantiation (1.5–3 ms of CPU), and a fresh call then took ~1.3 ms longer than one to a
 * long-lived instance (bench/mesh). This thread sleeps (`Atomics.wait`: the core is free, it does
 * not spin) while the caller's word still holds the wake-up, that is until the caller ran and
 * cleared it (`blockUntil`), checking every 50 µs, for at most 1 ms (with an idle core for the
 * caller, one check or two).
 */
function yieldToCaller(): void {
  const word = lastWoken;
  lastWoken = null;
  if (!word) return;
  const until = performance.now() + 1;
  while (Atomics.load(word, 0) === 1 && performance.now() < until) Atomics.wait(word, 0, 1, 0.05);
}

/**
 * Make spare instances up to `init.spares`, one per turn of the event loop so calls that
 * arrive meanwhile are served first (instantiation stays off their critical path).
 */
function refill(): void {
  if (busy || deferred.length > 0 || spares.length >= init.spares) return;
  yieldToCaller();
  try {
    spares.push(instantiate());
  } catch (err) {
    send('log', { level: 'error', message: `instantiation failed: ${(err as Error).message}` });
    return;
  }
  board.setReady(init.slot, readyCount());
  if (spares.length < init.spares) setImmediate(refill);
}

function attachPeer(port: MessagePort): void {
  // Replies on this port go through its own region (see `Region`).
  const region: Region = { bytes: null };
  // The caller's context and signal word, from its last call in the object form (see `PeerMessage`).
  let caller: { ctx: CallContext; wake: Int32Array | null } | null = null;
  const answer = (r: CallReply): void => {
    if (r.ok && r.payload.tag === 'json' && r.exitCode === undefined) return port.postMessage(encodePeerReply(r.id, r.payload.val));
    if (!r.ok) return port.postMessage(r);
    const wired = toWire(r.payload, region);
    port.postMessage(wired.wire ? { ...r, payload: wired.payload, wire: wired.wire } : r);
  };
  port.on('message', (message: PeerMessage) => {
    if (typeof message !== 'string') {
      caller = { ctx: message.ctx, wake: message.signal ? new Int32Array(message.signal) : null };
      return enqueue({ request: message, reply: answer, wake: caller.wake, withMemory: false });
    }
    const { id, deadline, method, json } = decodePeerCall(message);
    if (!caller) return answer({ type: 'reply', id, ok: false, error: { tag: 'failed', message: 'E_MESH_FAILED: a compact call before any call context on its port' } });
    enqueue({ request: { type: 'call', id, method, payload: { tag: 'json', val: json }, ctx: { ...caller.ctx, deadline } }, reply: answer, wake: caller.wake, withMemory: false });
  });
}

control.on('message', onControl);
// Instantiate ahead of the first call when allowed, and report readiness (or the reason it failed).
// Components that may call WASI while they initialise (C/Rust reactors: `_initialize`, constructors
// reading preopens or the environment) are instantiated inside their first call instead, where the
// call's grants and session exist.
try {
  if (keepsSpares) spares.push(instantiate());
  else if (init.prewarm && !init.fresh) instance = instantiate();
  board.setReady(init.slot, readyCount());
  control.postMessage({ type: 'ready' });
  if (keepsSpares) setImmediate(refill);
} catch (err) {
  control.postMessage({ type: 'failed', message: (err as Error).message });
}
