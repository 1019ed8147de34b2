/**
 * The mesh on the main thread: spawns one worker per long-lived instance and a pool of workers
 * for tools, brokers direct MessagePorts between workers (after which the main thread is off
 * the path of guest-to-guest calls), serves host requests, and replaces workers that crash,
 * trap or pass their deadline. Callers always get an answer: a result or an error, never a hang.
 */
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { WardenError } from '../errors.js';
import { allows, type Grants, type Limits } from '../grants/index.js';
import type { CompiledComponent } from '../engine/index.js';
import { distFile } from '../paths.js';
import { notify } from './sync.js';
import type { CallContext, CallReply, CallRequest, HostRequest, Notice, Payload, WorkerInit } from './protocol.js';

export type { CallContext, CallReply, Payload, Notice } from './protocol.js';

/** A component the mesh can route to. */
export interface MeshComponent {
  name: string;
  kind: WorkerInit['kind'];
  compiled: CompiledComponent;
  /** requested ∩ granted. */
  grants: Grants;
  limits: Limits;
  /** Workers for this component (tools: pool size; others: 1). */
  workers: number;
  mounts?: WorkerInit['mounts'];
  /** Instantiate ahead of calls (default true); see {@link WorkerInit.prewarm}. */
  prewarm?: boolean;
}

/** Host services the mesh forwards guest requests and notices to (implemented by the kernel). */
export interface HostServices {
  /** Answer a synchronous host request; throw a WIT error value or a WardenError to fail it. */
  request(op: string, body: unknown, ctx: CallContext, component: string): Promise<unknown>;
  /** Take a notice (log, progress, span, denial, output). Must not throw. */
  notice(notice: Notice): void;
}

interface WorkerSlot {
  id: number;
  component: MeshComponent;
  worker: Worker;
  control: MessagePort;
  signal: SharedArrayBuffer;
  ready: Promise<void>;
  /** Workers holding a direct port to this one (told when it dies). */
  callers: Set<WorkerSlot>;
  /** Calls from the main thread waiting for an answer. */
  pending: Map<number, (reply: CallReply) => void>;
  attached: number;
  dead: boolean;
}

/** Options for {@link Mesh}. */
export interface MeshOptions {
  sessionsDir: string;
  sqlDir: string;
}

/** The kernel's mesh of component workers. */
export class Mesh {
  private readonly components = new Map<string, MeshComponent>();
  private readonly slots = new Map<string, WorkerSlot[]>();
  private readonly byId = new Map<number, WorkerSlot>();
  private nextWorkerId = 1;
  private nextCallId = 1;
  private closing = false;

  constructor(private readonly services: HostServices, private readonly options: MeshOptions) {}

  /** Names of registered components. */
  names(): string[] {
    return [...this.components.keys()];
  }

  /** A registered component, or undefined. */
  component(name: string): MeshComponent | undefined {
    return this.components.get(name);
  }

  /**
   * Register a component and start its workers; resolves when every worker instantiated it.
   * @throws WardenError `E_COMPONENT_INVALID` when instantiation fails (the message says why)
   */
  async add(component: MeshComponent): Promise<void> {
    this.components.set(component.name, component);
    const slots = Array.from({ length: component.workers }, () => this.spawn(component));
    this.slots.set(component.name, slots);
    await Promise.all(slots.map((s) => s.ready));
  }

  private spawn(component: MeshComponent): WorkerSlot {
    const id = this.nextWorkerId++;
    const { port1, port2 } = new MessageChannel();
    const signal = new SharedArrayBuffer(4);
    const init: WorkerInit = {
      workerId: id,
      name: component.name,
      kind: component.kind,
      component: component.compiled,
      grants: component.grants,
      limits: component.limits,
      fresh: component.kind === 'tool',
      prewarm: component.prewarm ?? true,
      control: port2,
      signal,
      sessionsDir: this.options.sessionsDir,
      sqlDir: this.options.sqlDir,
      ...(component.mounts ? { mounts: component.mounts } : {}),
    };
    const worker = new Worker(distFile('kernel/mesh/worker.js'), {
      workerData: init,
      transferList: [port2],
      env: {},
    });
    let markReady!: () => void;
    let markFailed!: (err: Error) => void;
    const slot: WorkerSlot = {
      id, component, worker, control: port1, signal, callers: new Set(), pending: new Map(), attached: 0, dead: false,
      ready: new Promise<void>((resolve, reject) => {
        markReady = resolve;
        markFailed = reject;
      }),
    };
    slot.ready.catch(() => undefined);
    this.byId.set(id, slot);
    port1.on('message', (message: any) => {
      if (message.type === 'ready') markReady();
      else if (message.type === 'failed') {
        markFailed(new WardenError('E_COMPONENT_INVALID', `${component.name} failed to instantiate: ${message.message}`));
      } else if (message.type === 'reply') {
        const resolve = slot.pending.get(message.id);
        slot.pending.delete(message.id);
        resolve?.(message as CallReply);
      } else if (message.type === 'host') void this.onHost(slot, message as HostRequest);
      else if (message.type === 'notice') this.onNotice(message as Notice);
    });
    worker.on('error', (err) => {
      markFailed(new WardenError('E_COMPONENT_INVALID', `${component.name} worker failed: ${err.message}`, { cause: err }));
      this.services.notice({ type: 'notice', op: 'log', component: component.name, body: { level: 'error', message: `worker error: ${err.message}` } });
    });
    worker.on('exit', () => this.onExit(slot));
    return slot;
  }

  private onExit(slot: WorkerSlot): void {
    if (slot.dead) return;
    slot.dead = true;
    this.byId.delete(slot.id);
    for (const caller of slot.callers) {
      caller.control.postMessage({ type: 'peer-dead', workerId: slot.id });
      notify(caller.signal);
    }
    for (const resolve of slot.pending.values()) {
      resolve({ type: 'reply', id: 0, ok: false, error: { tag: 'failed', message: `E_MESH_FAILED: ${slot.component.name} stopped before answering; its worker is being replaced` } });
    }
    slot.pending.clear();
    const list = this.slots.get(slot.component.name);
    if (!list || this.closing) return;
    const index = list.indexOf(slot);
    if (index >= 0) list[index] = this.spawn(slot.component);
  }

  private onNotice(notice: Notice): void {
    if (notice.op === 'kill-peer') {
      const { workerId } = notice.body as { workerId: number };
      const slot = this.byId.get(workerId);
      if (slot) void slot.worker.terminate();
    }
    this.services.notice(notice);
  }

  private async onHost(slot: WorkerSlot, request: HostRequest): Promise<void> {
    let reply: unknown;
    const transfer: MessagePort[] = [];
    try {
      let value: unknown;
      if (request.op === 'mesh.connect') {
        value = await this.connect(slot, (request.body as { target: string }).target);
        transfer.push((value as { port: MessagePort }).port);
      } else if (request.op === 'mesh.list-tools') {
        value = await this.listTools(request.ctx.grants);
      } else {
        value = await this.services.request(request.op, request.body, request.ctx, request.component);
      }
      reply = { type: 'host-reply', id: request.id, ok: true, value };
    } catch (err) {
      const error = err instanceof WardenError ? { tag: 'failed', val: `${err.code}: ${err.message}` } : err instanceof Error ? { tag: 'failed', val: err.message } : err;
      reply = { type: 'host-reply', id: request.id, ok: false, error };
    }
    if (slot.dead) return;
    slot.control.postMessage(reply, transfer);
    notify(slot.signal);
  }

  /** Pick the least-attached live worker of `target` and join it to `caller` with a fresh channel. */
  private async connect(caller: WorkerSlot, target: string): Promise<{ port: MessagePort; workerId: number; timeoutMs: number }> {
    const list = this.slots.get(target);
    if (!list) {
      throw { tag: 'unknown-target', val: `E_MESH_UNKNOWN_TARGET: no component named ${target}; loaded: ${this.names().join(', ')}` };
    }
    const live = list.filter((s) => !s.dead);
    const slot = live.sort((a, b) => a.attached - b.attached)[0];
    if (!slot) throw { tag: 'failed', val: `E_MESH_FAILED: ${target} has no live worker` };
    await slot.ready;
    const { port1, port2 } = new MessageChannel();
    slot.control.postMessage({ type: 'attach', port: port2 }, [port2]);
    slot.attached++;
    slot.callers.add(caller);
    return { port: port1, workerId: slot.id, timeoutMs: slot.component.limits.timeoutMs };
  }

  private readonly described = new Map<string, { name: string; description: string; inputSchema: string }>();

  /** Tools the grants allow, with their descriptions (asked once per tool, then cached). */
  async listTools(grants: Grants): Promise<Array<{ name: string; description: string; inputSchema: string }>> {
    const out = [];
    for (const component of this.components.values()) {
      if (component.kind !== 'tool' || !allows(grants.mesh, component.name)) continue;
      let info = this.described.get(component.name);
      if (!info) {
        const reply = await this.call(component.name, 'describe', { tag: 'json', val: 'null' }, {
          taskId: '', sessionId: null, chain: [], deadline: Date.now() + component.limits.timeoutMs, grants,
        });
        if (!reply.ok) continue;
        info = JSON.parse((reply.payload as { val: string }).val) as { name: string; description: string; inputSchema: string };
        this.described.set(component.name, info);
      }
      out.push(info);
    }
    return out;
  }

  /**
   * Call `method` of `target` from the main thread (the kernel as caller). Never rejects:
   * failures come back as error replies; a callee that passes the deadline is terminated and replaced.
   */
  async call(target: string, method: string, payload: Payload, ctx: CallContext): Promise<CallReply> {
    const list = this.slots.get(target);
    const slot = list?.filter((s) => !s.dead).sort((a, b) => a.pending.size - b.pending.size)[0];
    if (!slot) {
      return { type: 'reply', id: 0, ok: false, error: { tag: 'unknown-target', message: `E_MESH_UNKNOWN_TARGET: no component named ${target}` } };
    }
    try {
      await slot.ready;
    } catch (err) {
      return { type: 'reply', id: 0, ok: false, error: { tag: 'failed', message: (err as Error).message } };
    }
    const id = this.nextCallId++;
    return new Promise<CallReply>((resolve) => {
      const timer = setTimeout(() => {
        slot.pending.delete(id);
        void slot.worker.terminate();
        const message = `E_LIMIT_TIME: ${target}.${method} did not answer within ${ctx.deadline - start} ms; its worker was stopped and is being replaced`;
        this.services.notice({ type: 'notice', op: 'limit', component: target, ctx, body: { limit: 'timeoutMs', cap: ctx.deadline - start, reason: message } });
        resolve({ type: 'reply', id, ok: false, error: { tag: 'timeout', message } });
      }, Math.max(0, ctx.deadline - Date.now()));
      const start = Date.now();
      slot.pending.set(id, (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
      slot.control.postMessage({ type: 'call', id, method, payload, ctx: { ...ctx, chain: ctx.chain } } satisfies CallRequest);
    });
  }

  /** Stop every worker. */
  async close(): Promise<void> {
    this.closing = true;
    const all = [...this.slots.values()].flat();
    this.slots.clear();
    await Promise.all(all.map((s) => s.worker.terminate()));
  }
}
