/**
 * Entry of a component worker. Hosts one component: one long-lived instance (agents,
 * supervisors) or a fresh pre-instantiated instance per call (tools). Builds the instance's
 * imports from its grants only, serves calls arriving from the main thread or directly from
 * peer workers, and makes the guest's synchronous imports block on `Atomics.wait`.
 */
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { enableWasmFeatures } from '../engine/index.js';
import { allows, attenuate, type Grants } from '../grants/index.js';
import { Overlay, type SessionMode } from '../vfs/index.js';
import { cliImports, deniedInterface, GuestExit } from '../wasi/cli.js';
import { filesystemImports } from '../wasi/filesystem.js';
import { httpImports, type OutboundRequest, type OutboundResponse } from '../wasi/http.js';
import { checkOutbound } from '../http/outbound.js';
import { ScopedSql } from '../store/scoped-sql.js';
import { blockUntil, notify } from './sync.js';
import type { CallContext, CallReply, CallRequest, HostReply, MeshErrorTag, Notice, Payload, WorkerInit } from './protocol.js';
import { join } from 'node:path';

enableWasmFeatures();
const init = workerData as WorkerInit;
const signal = new Int32Array(init.signal);
const control = init.control;

type Exports = Record<string, Record<string, (...args: unknown[]) => unknown>>;

// ---- state of the call being served ------------------------------------------------------------

let ctx: CallContext | null = null;
const peers = new Map<string, { port: MessagePort; workerId: number; timeoutMs: number }>();
const deadPeers = new Set<number>();
const hostReplies = new Map<number, HostReply>();
const deferred: Array<{ request: CallRequest; reply: (r: CallReply) => void }> = [];
let busy = false;
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
  control.postMessage({ type: 'notice', op, body, ctx: ctx ?? undefined, component: init.name } satisfies Notice);
}

/** Take every queued control message: answers, peer deaths, and calls to serve later. */
function pumpControl(): void {
  let received;
  while ((received = receiveMessageOnPort(control))) onControl(received.message);
}

function onControl(message: any): void {
  if (message.type === 'host-reply') hostReplies.set(message.id, message);
  else if (message.type === 'peer-dead') deadPeers.add(message.workerId);
  else if (message.type === 'attach') attachPeer(message.port);
  else if (message.type === 'call') enqueue(message, (r) => control.postMessage(r));
}

/** A synchronous request to a host service on the main thread. */
function host(op: string, body: unknown): HostReply {
  const id = ++hostSeq;
  const c = current();
  control.postMessage({ type: 'host', id, op, body, ctx: c, component: init.name });
  const reply = blockUntil(signal, c.deadline, () => {
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

// ---- the mesh from the guest's side -----------------------------------------------------------

function meshError(tag: MeshErrorTag, message: string): { tag: MeshErrorTag; val: string } {
  return { tag, val: message };
}

function meshCall(target: string, method: string, payload: Payload): Payload {
  const c = current();
  if (c.chain.includes(target)) {
    throw meshError('cycle', `E_MESH_CYCLE: ${[...c.chain, target].join(' → ')} would re-enter ${target}`);
  }
  if (!allows(c.grants.mesh, target)) {
    send('denied', { capability: 'mesh', target, reason: `mesh target ${target} not granted` });
    throw meshError('denied', `capability not granted: mesh target ${target}`);
  }
  let peer = peers.get(target);
  if (!peer) {
    const reply = host('mesh.connect', { target });
    if (!reply.ok) throw reply.error;
    const value = reply.value as { port: MessagePort; workerId: number; timeoutMs: number };
    value.port.on('close', () => peers.delete(target));
    peer = value;
    peers.set(target, peer);
  }
  const id = ++callSeq;
  const deadline = Math.min(c.deadline, Date.now() + peer.timeoutMs);
  const spanId = `${init.workerId}-${id}`;
  const started = Date.now();
  send('span-start', { spanId, target, method, input: payloadPreview(payload), startedAt: started });
  Atomics.store(signal, 0, 0);
  peer.port.postMessage({ type: 'call', id, method, payload, ctx: { ...c, deadline }, signal: init.signal } satisfies CallRequest);
  const workerId = peer.workerId;
  const reply = blockUntil<CallReply | 'gone'>(signal, deadline, () => {
    let received;
    while ((received = receiveMessageOnPort(peer!.port))) {
      if ((received.message as CallReply).id === id) return received.message as CallReply;
    }
    pumpControl();
    return deadPeers.has(workerId) ? 'gone' : undefined;
  });
  let result: CallReply;
  if (reply === undefined) {
    peers.delete(target);
    send('kill-peer', { workerId, reason: `call ${target}.${method} passed its deadline` });
    result = { type: 'reply', id, ok: false, error: { tag: 'timeout', message: `E_LIMIT_TIME: ${target}.${method} did not answer within ${deadline - started} ms (its wall-clock limit or the caller's deadline); its worker was stopped and is being replaced` } };
  } else if (reply === 'gone') {
    peers.delete(target);
    result = { type: 'reply', id, ok: false, error: { tag: 'failed', message: `E_MESH_FAILED: ${target} crashed during ${method}; its worker is being replaced` } };
  } else {
    result = reply;
  }
  send('span-end', {
    spanId, durationMs: Date.now() - started, ok: result.ok,
    output: result.ok ? payloadPreview(result.payload) : result.error.message,
  });
  if (!result.ok) throw meshError(result.error.tag, result.error.message);
  return result.payload;
}

function payloadPreview(payload: Payload): string {
  const text = payload.tag === 'json' ? payload.val : `<${payload.val.length} bytes>`;
  return text.length > 4000 ? `${text.slice(0, 4000)}…` : text;
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

let sql: ScopedSql | null = null;
function sqlFor(grants: Grants): ScopedSql {
  if (!grants.sql) denied('sql');
  if (!sql) sql = new ScopedSql(join(init.sqlDir, `${grants.sql.scope}.db`), grants.sql.mode);
  return sql;
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
  if (Buffer.byteLength(text) <= cap) return text;
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
      publish: (topic: string, payload: Payload) => send('log', { level: 'debug', message: `publish ${topic} ${payloadPreview(payload)}` }),
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
      query: (text: string, params: unknown[]) => sqlFor(current().grants).query(text, params as never),
      execute: (text: string, params: unknown[]) => sqlFor(current().grants).execute(text, params as never),
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
}
let instance: Instance | null = null;

function instantiate(): Instance {
  const memories: WebAssembly.Memory[] = [];
  const exports = glue.instantiate((name) => init.component.modules[name]!, buildImports(), (module, imports) => {
    const core = new WebAssembly.Instance(module, imports);
    for (const value of Object.values(core.exports)) if (value instanceof WebAssembly.Memory) memories.push(value);
    return core;
  });
  return { exports, memories };
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

function exportOf(exports: Exports, iface: string): Record<string, (...args: unknown[]) => unknown> {
  const key = Object.keys(exports).find((k) => k === iface || k.startsWith(`${iface}@`));
  if (!key) throw new Error(`component does not export ${iface}`);
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
    case 'command.run':
      exportOf(exports, 'wasi:cli/run').run!();
      return { payload: json(null), exitCode: 0 };
    default:
      throw Object.assign(new Error(`${init.name} (${init.kind}) has no method ${method}`), { meshTag: 'unknown-target' });
  }
}

function serve(request: CallRequest): CallReply {
  const chain = [...request.ctx.chain, init.name];
  ctx = { ...request.ctx, chain, grants: attenuate(init.grants, request.ctx.grants) };
  outputBytes = 0;
  outputCut = false;
  let trapped = false;
  try {
    instance ??= instantiate();
    const { payload, exitCode } = invoke(instance.exports, request.method, request.payload);
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
      const oom = outOfMemory(instance, why);
      if (oom) {
        const capMb = (init.component.maxPages * 65536) / 2 ** 20;
        message = `E_LIMIT_MEMORY: ${init.name} ran out of memory at its cap of ${capMb} MiB (${oom.usedMb} MiB in use; ${why}); raise limits.memoryMb to allow more`;
        send('limit', { limit: 'memoryMb', cap: capMb, reason: message });
      } else {
        message = `${init.name} trapped: ${why}`;
      }
    }
    return { type: 'reply', id: request.id, ok: false, error: { tag: e?.meshTag ?? 'failed', message }, trapped, ...(trapped && init.kind === 'command' ? { exitCode: 125 } : {}) };
  } finally {
    ctx = null;
    // A trapped instance is unusable; a pool instance is never reused: prepare a fresh one off the critical path.
    if (trapped || init.fresh) instance = null;
  }
}

function enqueue(request: CallRequest, reply: (r: CallReply) => void): void {
  deferred.push({ request, reply });
  if (!busy) setImmediate(drain);
}

function drain(): void {
  if (busy) return;
  busy = true;
  try {
    let next;
    while ((next = deferred.shift())) {
      const result = serve(next.request);
      next.reply(result);
      if (next.request.signal) notify(next.request.signal);
    }
  } finally {
    busy = false;
  }
  if (init.fresh && init.prewarm && !instance) setImmediate(prewarm);
}

function prewarm(): void {
  if (instance || busy) return;
  try {
    instance = instantiate();
  } catch (err) {
    send('log', { level: 'error', message: `instantiation failed: ${(err as Error).message}` });
  }
}

function attachPeer(port: MessagePort): void {
  port.on('message', (request: CallRequest) => enqueue(request, (r) => port.postMessage(r)));
}

control.on('message', onControl);
// Instantiate ahead of the first call when allowed, and report readiness (or the reason it failed).
// Components that may call WASI while they initialise (C/Rust reactors: `_initialize`, constructors
// reading preopens or the environment) are instantiated inside their first call instead, where the
// call's grants and session exist.
try {
  if (init.prewarm) instance = instantiate();
  control.postMessage({ type: 'ready' });
} catch (err) {
  control.postMessage({ type: 'failed', message: (err as Error).message });
}
