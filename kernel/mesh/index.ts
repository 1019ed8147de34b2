/**
 * The mesh on the main thread. Each component is a target with a pool of workers (tools: a
 * pool that grows under load to a bound and shrinks when idle, every call on a fresh
 * instance; agents and supervisors: one long-lived worker) and a dispatch board in shared
 * memory (`board.ts`). The main thread starts, replaces and retires workers and hands out
 * direct MessagePorts; after that, caller workers pick a worker and admit their calls through
 * the board and talk to it directly — the main thread is off the path of guest-to-guest calls.
 * Callers always get an answer: a result or an error, never a hang.
 *
 * A component can be replaced by a new version while it serves (`replace`, the kernel's hot
 * reload) or removed (`remove`) without failing a call: the old version's board is marked
 * retired, new calls go to the current version (or get `E_MESH_UNKNOWN_TARGET`), and calls
 * already admitted finish on the old workers, each stopped once idle (see `board.ts`).
 */
import { randomBytes } from 'node:crypto';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { WardenError } from '../errors.js';
import { allows, type Grants, type Limits } from '../grants/index.js';
import type { CompiledComponent } from '../engine/index.js';
import { distFile } from '../paths.js';
import { Board, busyMessage, MAX_SLOTS } from './board.js';
import { notify } from './sync.js';
import { Topics, type TopicStats } from './topics.js';
import { preview, type CallContext, type CallReply, type CallRequest, type Connection, type HostRequest, type Notice, type Payload, type SpanNotice, type WorkerInit } from './protocol.js';

export type { CallContext, CallReply, CallStats, Payload, Notice, SpanNotice } from './protocol.js';
export type { TopicStats } from './topics.js';

/** How many workers serve a component and how many calls may wait for them. */
export interface PoolSettings {
  /** Workers kept even when idle (≥ 1). */
  min: number;
  /** Workers the pool may grow to under load (≤ 64). */
  max: number;
  /** Calls queued or running, all workers together, before callers get `E_MESH_BUSY`. */
  queue: number;
  /** A worker above `min` that served nothing for this long (ms) is stopped. */
  idleMs: number;
  /** Fresh instances each tool worker keeps ready ahead of calls (0: instantiate inside the call). */
  spares: number;
}

/** Pool of a stateless tool unless configured: two workers, growing to four, one spare instance each. */
export const DEFAULT_TOOL_POOL: PoolSettings = { min: 2, max: 4, queue: 64, idleMs: 30_000, spares: 1 };
/** Pool of a long-lived component (agent, supervisor, command): one worker, one instance. */
export const LONG_LIVED_POOL: PoolSettings = { min: 1, max: 1, queue: 64, idleMs: 30_000, spares: 0 };

/** How often the watchdog looks for workers serving a call past its deadline, and its grace, ms. */
const WATCH_MS = 100;
const WATCH_GRACE_MS = 200;

/** How often a worker to terminate is checked for having left SQLite, ms. */
const NATIVE_POLL_MS = 5;
/** How long closing the mesh waits for a worker to leave SQLite, ms (the process is exiting). */
const CLOSE_NATIVE_WAIT_MS = 5000;

/** Default {@link MeshOptions.sharedThreshold}, bytes. */
export const SHARED_THRESHOLD = 256 * 1024;

/** A component the mesh can route to. */
export interface MeshComponent {
  name: string;
  kind: WorkerInit['kind'];
  compiled: CompiledComponent;
  /** requested ∩ granted. */
  grants: Grants;
  limits: Limits;
  /** Pool settings; default {@link DEFAULT_TOOL_POOL} for tools, {@link LONG_LIVED_POOL} otherwise. */
  pool?: Partial<PoolSettings>;
  /** A fresh instance per call (default: tools yes, everything else no). */
  fresh?: boolean;
  mounts?: WorkerInit['mounts'];
  /** Instantiate ahead of calls (default true); see {@link WorkerInit.prewarm}. */
  prewarm?: boolean;
  /** Topic patterns (`topic:NAME`, `topic:prefix*`) whose events it handles; needs the `subscriber` export and the grant. */
  subscribe?: string[];
  /** Its policy, decided on in its workers for the calls it makes in tasks (see `kernel/policy`). */
  policy?: WorkerInit['policy'];
}

/** Host services the mesh forwards guest requests and notices to (implemented by the kernel). */
export interface HostServices {
  /** Answer a synchronous host request; throw a WIT error value or a WardenError to fail it. */
  request(op: string, body: unknown, ctx: CallContext, component: string): Promise<unknown>;
  /** Take a notice (log, progress, span, denial, output). Must not throw. */
  notice(notice: Notice): void;
}

/** Options for {@link Mesh}. */
export interface MeshOptions {
  sessionsDir: string;
  sqlDir: string;
  /**
   * `bytes` payloads of at least this many bytes travel worker-to-worker through shared memory
   * instead of structured clone. Default 256 KiB: bench/mesh measured the two within noise at
   * 4 and 64 KiB and shared memory 9–12% faster at 1 MiB.
   */
  sharedThreshold?: number;
}

interface WorkerSlot {
  id: number;
  target: Target;
  index: number;
  worker: Worker;
  control: MessagePort;
  signal: SharedArrayBuffer;
  ready: Promise<void>;
  /** In service on the board. */
  open: boolean;
  /** Stopped on purpose (idle or closing): not replaced. */
  retired: boolean;
  dead: boolean;
  /** Targets this worker holds ports to (it is told when their workers come and go). */
  connections: Set<Target>;
  /** Calls from the main thread waiting for an answer. */
  pending: Map<number, (reply: CallReply) => void>;
}

interface Target {
  /** Unique in the mesh: tells this version of a component from a replaced one (`peer-add`). */
  id: number;
  component: MeshComponent;
  pool: PoolSettings;
  board: Board;
  slots: Map<number, WorkerSlot>;
  /** Workers holding ports to this target's workers. */
  callers: Set<WorkerSlot>;
  growing: boolean;
  /** Per slot: the served count last seen and since when it has not moved (idle detection). */
  idle: Map<number, { served: number; since: number }>;
  /** Resolvers waiting for a worker of this target to come into service. */
  waiters: Array<() => void>;
  /** Replaced by a new version or removed: admits no new call, each worker stops once idle. */
  retiring: boolean;
  /** Resolves when every worker of a retiring target has stopped. */
  drained: Promise<void>;
  markDrained: () => void;
}

/** A snapshot of one target's pool, for the state document, metrics and tests. */
export interface PoolStats {
  name: string;
  settings: PoolSettings;
  workers: Array<{ workerId: number; slot: number; load: number; ready: number; served: number }>;
  /** Calls queued or running. */
  depth: number;
}

/** The kernel's mesh of component workers. */
export class Mesh {
  private readonly targets = new Map<string, Target>();
  private readonly byId = new Map<number, WorkerSlot>();
  private nextWorkerId = 1;
  private nextCallId = 1;
  /** Distinguishes this mesh's span ids from those of earlier kernel runs (recorded on resumed tasks). */
  private readonly runId = randomBytes(3).toString('hex');
  private nextTargetId = 1;
  /** Replaced or removed targets whose workers still finish the calls admitted before. */
  private readonly draining = new Set<Target>();
  /** New versions `replace` is starting (not routed to yet; `close` stops them too). */
  private readonly starting = new Set<Target>();
  private closing = false;
  private readonly timer: NodeJS.Timeout;
  /** Publish-subscribe between components (at-least-once, in order per topic). */
  readonly topics: Topics;

  constructor(private readonly services: HostServices, private readonly options: MeshOptions) {
    let ticks = 0;
    this.timer = setInterval(() => {
      this.watch();
      if (++ticks % 10 === 0) this.shrink();
    }, WATCH_MS);
    this.timer.unref();
    this.topics = new Topics(this, (notice) => this.services.notice(notice));
  }

  /** Names of registered components. */
  names(): string[] {
    return [...this.targets.keys()];
  }

  /** A registered component, or undefined. */
  component(name: string): MeshComponent | undefined {
    return this.targets.get(name)?.component;
  }

  /**
   * Register a component and start its `min` workers; resolves when they instantiated it.
   * @throws WardenError `E_COMPONENT_INVALID` when instantiation fails (the message says why)
   */
  async add(component: MeshComponent): Promise<void> {
    const target = this.createTarget(component);
    this.targets.set(component.name, target);
    try {
      await this.startWorkers(target);
    } catch (err) {
      if (this.targets.get(component.name) === target) this.targets.delete(component.name);
      throw err;
    }
    if (component.subscribe?.length) this.topics.subscribe(component.name, component.subscribe);
  }

  /**
   * Replace a registered component by a new version while it serves, failing no call. The new
   * version's `min` workers start first; when they fail, the old version keeps serving. Then, in
   * one synchronous step, the name routes to the new version and the old board is marked
   * retired: new calls from the kernel go to the new version at once, caller workers (which
   * cache boards and ports) see the mark at their next call and ask for the new board, and calls
   * admitted on the old board before finish on the old workers, each stopped once idle.
   * Registers `component` when its name is unknown.
   * @throws WardenError `E_COMPONENT_INVALID` when the new version fails to instantiate, or when
   *   the name was replaced or removed meanwhile (the mesh is then unchanged)
   */
  async replace(component: MeshComponent): Promise<void> {
    const name = component.name;
    const old = this.targets.get(name);
    if (!old) return this.add(component);
    const next = this.createTarget(component);
    this.starting.add(next);
    try {
      await this.startWorkers(next);
    } finally {
      this.starting.delete(next);
    }
    if (this.closing || this.targets.get(name) !== old) {
      for (const slot of next.slots.values()) void this.stopWorker(slot);
      throw new WardenError('E_COMPONENT_INVALID', `${name} was replaced or removed while its new version started; the new version was stopped`);
    }
    this.targets.set(name, next);
    this.described.delete(name);
    // Same patterns: the subscription and its queued events stay, delivered to the new version.
    const patterns = component.subscribe ?? [];
    if ((old.component.subscribe ?? []).join('\0') !== patterns.join('\0')) {
      this.topics.unsubscribe(name);
      if (patterns.length) this.topics.subscribe(name, patterns);
    }
    this.retire(old);
    this.poolChanged(next);
  }

  /**
   * Forget a component: new calls get `E_MESH_UNKNOWN_TARGET` at once, calls already admitted
   * finish on its workers, each stopped once idle. Resolves when all of them have stopped.
   */
  async remove(name: string): Promise<void> {
    const target = this.targets.get(name);
    if (!target) return;
    this.targets.delete(name);
    this.described.delete(name);
    this.topics.unsubscribe(name);
    this.retire(target);
    await target.drained;
  }

  private createTarget(component: MeshComponent): Target {
    const base = component.kind === 'tool' ? DEFAULT_TOOL_POOL : LONG_LIVED_POOL;
    const pool = { ...base, ...component.pool };
    pool.max = Math.min(MAX_SLOTS, Math.max(pool.min, pool.max));
    let markDrained!: () => void;
    const drained = new Promise<void>((resolve) => {
      markDrained = resolve;
    });
    return {
      id: this.nextTargetId++, component, pool, board: Board.create(pool.queue), slots: new Map(), callers: new Set(), growing: false,
      idle: new Map(), waiters: [], retiring: false, drained, markDrained,
    };
  }

  /** Start `target`'s `min` workers and wait until they instantiated it; on failure stop them. */
  private async startWorkers(target: Target): Promise<void> {
    const started = Array.from({ length: target.pool.min }, (_, i) => this.spawn(target, i));
    try {
      await Promise.all(started.map((s) => s.ready));
    } catch (err) {
      for (const slot of started) {
        slot.retired = true;
        void slot.worker.terminate();
      }
      throw err;
    }
  }

  /**
   * Take a replaced or removed target out of routing (it is no longer in `targets`): mark its
   * board retired, wake its callers and the kernel's calls waiting for one of its workers so they
   * look again (and find the current version), then stop each worker once it is idle.
   */
  private retire(target: Target): void {
    target.retiring = true;
    target.board.markRetired();
    for (const caller of target.callers) if (!caller.dead) notify(caller.signal);
    for (const wake of target.waiters.splice(0)) wake();
    this.draining.add(target);
    this.drainStep(target);
  }

  /**
   * Stop the workers of a retiring target that hold no call (run at retirement, when one of its
   * workers exits, and on every watchdog tick); forget the target when none is left. A slot is
   * taken with the board's compare-and-swap from load 0, so a call a caller admits at the same
   * instant keeps its worker; a kernel call is also waited for until its reply was read here.
   */
  private drainStep(target: Target): void {
    for (const slot of target.slots.values()) {
      if (slot.dead || slot.retired || slot.pending.size > 0) continue;
      if (!slot.open || target.board.retire(slot.index)) void this.stopWorker(slot);
    }
    if (target.slots.size === 0 && this.draining.delete(target)) target.markDrained();
  }

  /** Pool state of every target. */
  pools(): PoolStats[] {
    return [...this.targets.values()].map((t) => ({
      name: t.component.name,
      settings: t.pool,
      depth: t.board.depth(),
      workers: [...t.slots.values()].filter((s) => s.open).map((s) => ({
        workerId: s.id, slot: s.index, load: t.board.load(s.index), ready: t.board.ready(s.index), served: t.board.served(s.index),
      })),
    }));
  }

  /** Replaced or removed versions whose workers still finish calls admitted before: name and workers left. */
  retiring(): Array<{ name: string; workers: number }> {
    return [...this.draining].map((t) => ({ name: t.component.name, workers: t.slots.size }));
  }

  /**
   * Terminate one worker as if it crashed (operator action; tests use it to kill a callee mid
   * call). Its callers get `E_MESH_FAILED` and the worker is replaced. @returns false when unknown
   */
  async terminateWorker(workerId: number): Promise<boolean> {
    const slot = this.byId.get(workerId);
    if (!slot) return false;
    await this.terminate(slot);
    return true;
  }

  private spawn(target: Target, index: number): WorkerSlot {
    const { component, pool, board } = target;
    const id = this.nextWorkerId++;
    const { port1, port2 } = new MessageChannel();
    const signal = new SharedArrayBuffer(4);
    const init: WorkerInit = {
      workerId: id,
      spanPrefix: `${this.runId}.${id}`,
      name: component.name,
      kind: component.kind,
      component: component.compiled,
      grants: component.grants,
      limits: component.limits,
      fresh: component.fresh ?? component.kind === 'tool',
      prewarm: component.prewarm ?? true,
      spares: pool.spares,
      control: port2,
      signal,
      board: board.buffer,
      slot: index,
      sharedThreshold: this.options.sharedThreshold ?? SHARED_THRESHOLD,
      sessionsDir: this.options.sessionsDir,
      sqlDir: this.options.sqlDir,
      ...(component.mounts ? { mounts: component.mounts } : {}),
      ...(component.policy ? { policy: component.policy } : {}),
    };
    const worker = new Worker(distFile('kernel/mesh/worker.js'), { workerData: init, transferList: [port2], env: {} });
    let markReady!: () => void;
    let markFailed!: (err: Error) => void;
    const slot: WorkerSlot = {
      id, target, index, worker, control: port1, signal, open: false, retired: false, dead: false,
      connections: new Set(), pending: new Map(),
      ready: new Promise<void>((resolve, reject) => {
        markReady = resolve;
        markFailed = reject;
      }),
    };
    slot.ready.catch(() => undefined);
    target.slots.set(index, slot);
    this.byId.set(id, slot);
    port1.on('message', (message: any) => {
      if (message.type === 'ready') {
        this.putInService(slot);
        markReady();
      } else if (message.type === 'failed') {
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
    worker.on('exit', () => {
      // A worker that exits before it is ready (stopped meanwhile, or crashed) fails its start.
      markFailed(new WardenError('E_COMPONENT_INVALID', `${component.name} worker exited before it was ready`));
      this.onExit(slot);
    });
    return slot;
  }

  /**
   * A started worker: join it to every worker that calls its target, open its slot, then wake
   * the callers. In that order: a caller woken before the slot is open would find no worker,
   * wait again, and sleep through to its deadline.
   */
  private putInService(slot: WorkerSlot): void {
    if (slot.dead || slot.retired) return;
    const target = slot.target;
    // A replacement that came up after its version was replaced serves nobody.
    if (target.retiring) return void this.stopWorker(slot);
    const woken: WorkerSlot[] = [];
    for (const caller of target.callers) {
      if (caller.dead) continue;
      const { port1, port2 } = new MessageChannel();
      slot.control.postMessage({ type: 'attach', port: port2 }, [port2]);
      caller.control.postMessage({ type: 'peer-add', target: target.component.name, targetId: target.id, slot: slot.index, workerId: slot.id, port: port1 }, [port1]);
      woken.push(caller);
    }
    slot.open = true;
    target.board.open(slot.index, slot.id);
    for (const caller of woken) notify(caller.signal);
    target.idle.set(slot.index, { served: 0, since: Date.now() });
    for (const wake of target.waiters.splice(0)) wake();
    this.poolChanged(target);
  }

  /** Tell the kernel how many workers a target has in service. */
  private poolChanged(target: Target): void {
    if (!target.growing) target.board.clearPressure();
    // Only the version in service speaks for the component; a replaced one drains quietly.
    if (this.targets.get(target.component.name) !== target) return;
    const workers = [...target.slots.values()].filter((s) => s.open).length;
    this.services.notice({ type: 'notice', op: 'pool', component: target.component.name, body: { workers } });
  }

  private onExit(slot: WorkerSlot): void {
    if (slot.dead) return;
    slot.dead = true;
    this.byId.delete(slot.id);
    const target = slot.target;
    if (slot.open) target.board.close(slot.index);
    slot.open = false;
    this.tellCallers(slot);
    for (const resolve of slot.pending.values()) {
      resolve({ type: 'reply', id: 0, ok: false, error: { tag: 'failed', message: `E_MESH_FAILED: ${target.component.name} stopped before answering; its worker is being replaced` } });
    }
    slot.pending.clear();
    for (const connected of slot.connections) connected.callers.delete(slot);
    if (target.slots.get(slot.index) === slot) target.slots.delete(slot.index);
    if (!this.closing) this.poolChanged(target);
    if (target.retiring && !this.closing) return this.drainStep(target);
    if (this.closing || slot.retired || this.targets.get(target.component.name) !== target) return;
    // Replaced in the same slot; callers skip the slot until the new worker is in service.
    const replacement = this.spawn(target, slot.index);
    replacement.ready.catch((err: Error) => {
      // Stopped on purpose before it was ready (its version was replaced meanwhile): nothing failed.
      if (replacement.retired) return;
      this.services.notice({ type: 'notice', op: 'log', component: target.component.name, body: { level: 'error', message: `replacement worker failed: ${err.message}` } });
    });
  }

  private tellCallers(slot: WorkerSlot): void {
    for (const caller of slot.target.callers) {
      if (caller.dead) continue;
      caller.control.postMessage({ type: 'peer-dead', workerId: slot.id });
      notify(caller.signal);
    }
  }

  private async stopWorker(slot: WorkerSlot): Promise<void> {
    slot.retired = true;
    if (slot.open) slot.target.board.close(slot.index);
    slot.open = false;
    this.tellCallers(slot);
    await this.terminate(slot);
  }

  /**
   * Terminate a worker's thread once it is outside SQLite ({@link Board.native}; polled every
   * {@link NATIVE_POLL_MS}): better-sqlite3 aborts the process when a statement fails while its
   * thread is being terminated. The scope's guard ends a statement at the call's deadline, so the
   * wait is short; without the guard it lasts until the statement ends. `maxWaitMs` bounds it.
   */
  private async terminate(slot: WorkerSlot, maxWaitMs = Infinity): Promise<void> {
    const until = Date.now() + maxWaitMs;
    while (!slot.dead && slot.target.board.native(slot.index) && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, NATIVE_POLL_MS));
    }
    await slot.worker.terminate();
  }

  /** Start one more worker for `target` (below its max, one at a time); lowers the grow signal when done. */
  private grow(target: Target): void {
    const live = [...target.slots.values()].filter((s) => !s.dead && !s.retired).length;
    // At max the signal stays up, so callers stop reporting it; it is lowered when a worker leaves.
    if (target.growing || live >= target.pool.max || this.closing) return;
    const index = target.board.free(new Set(target.slots.keys()));
    if (index < 0) return;
    target.growing = true;
    const slot = this.spawn(target, index);
    slot.ready.then(
      () => {
        target.growing = false;
        target.board.clearPressure();
      },
      () => {
        target.growing = false;
        target.board.clearPressure();
      },
    );
  }

  /**
   * Stop a worker at once: take it out of service on the board and tell its callers first, so
   * no new call goes to it while its thread exits; `onExit` replaces it.
   */
  private kill(slot: WorkerSlot): void {
    if (slot.open) slot.target.board.close(slot.index);
    slot.open = false;
    this.tellCallers(slot);
    void this.terminate(slot);
  }

  /**
   * The watchdog: a worker still serving a call more than {@link WATCH_GRACE_MS} past the call's
   * deadline is stopped (its caller normally does that at the deadline; this covers a caller
   * that died first, so no callee outlives its deadline). Audited as a `limit`.
   */
  private watch(): void {
    const now = Date.now();
    for (const target of this.draining) this.drainStep(target);
    for (const target of [...this.targets.values(), ...this.draining]) {
      for (const slot of target.slots.values()) {
        const deadline = target.board.deadline(slot.index);
        if (!slot.open || deadline === 0 || now <= deadline + WATCH_GRACE_MS) continue;
        const reason = `E_LIMIT_TIME: ${target.component.name} was still serving a call ${now - deadline} ms after its deadline; its worker was stopped and is being replaced`;
        this.services.notice({ type: 'notice', op: 'limit', component: target.component.name, body: { limit: 'timeoutMs', reason } });
        this.kill(slot);
      }
    }
  }

  /** Retire workers above `min` that served nothing for `idleMs` (one per target per tick). */
  private shrink(): void {
    const now = Date.now();
    for (const target of this.targets.values()) {
      const open = [...target.slots.values()].filter((s) => s.open);
      let excess = open.length - target.pool.min;
      for (const slot of open.reverse()) {
        const served = target.board.served(slot.index);
        const seen = target.idle.get(slot.index);
        if (!seen || seen.served !== served) {
          target.idle.set(slot.index, { served, since: now });
          continue;
        }
        if (excess > 0 && now - seen.since >= target.pool.idleMs && target.board.retire(slot.index)) {
          slot.open = false;
          excess--;
          void this.stopWorker(slot);
          break;
        }
      }
    }
  }

  private onNotice(notice: Notice): void {
    if (notice.op === 'kill-peer') {
      const { workerId, cap, reason } = notice.body as { workerId: number; cap: number; reason: string };
      const slot = this.byId.get(workerId);
      if (!slot) return;
      this.kill(slot);
      this.services.notice({ type: 'notice', op: 'limit', component: slot.target.component.name, ...(notice.ctx ? { ctx: notice.ctx } : {}), body: { limit: 'timeoutMs', cap, caller: notice.component, reason } });
      return;
    } else if (notice.op === 'pool-pressure') {
      const target = this.targets.get((notice.body as { target: string }).target);
      if (target) this.grow(target);
      return;
    }
    this.services.notice(notice);
  }

  private async onHost(slot: WorkerSlot, request: HostRequest): Promise<void> {
    let reply: unknown;
    const transfer: MessagePort[] = [];
    try {
      let value: unknown;
      if (request.op === 'mesh.connect') {
        const connection = this.connect(slot, (request.body as { target: string }).target);
        transfer.push(...connection.peers.map((p) => p.port));
        value = connection;
      } else if (request.op === 'mesh.list-tools') {
        value = await this.listTools(request.ctx.grants);
      } else if (request.op === 'mesh.publish') {
        const { topic, payload } = request.body as { topic: string; payload: Payload };
        value = this.topics.publish(topic, payload, request.component, request.ctx);
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

  /** Give `caller` the board of `name` and a direct port to each of its workers in service. */
  private connect(caller: WorkerSlot, name: string): Connection {
    const target = this.targets.get(name);
    if (!target) {
      throw { tag: 'unknown-target', val: `E_MESH_UNKNOWN_TARGET: no component named ${name}; loaded: ${this.names().join(', ')}` };
    }
    target.callers.add(caller);
    caller.connections.add(target);
    const peers: Connection['peers'] = [];
    for (const slot of target.slots.values()) {
      if (!slot.open || slot.dead) continue;
      const { port1, port2 } = new MessageChannel();
      slot.control.postMessage({ type: 'attach', port: port2 }, [port2]);
      peers.push({ slot: slot.index, workerId: slot.id, port: port1 });
    }
    const { kind, grants } = target.component;
    return {
      targetId: target.id, board: target.board.buffer, timeoutMs: target.component.limits.timeoutMs, peers,
      access: { kind, filesystem: grants.filesystem, http: grants.http.length > 0 },
    };
  }

  private readonly described = new Map<string, { name: string; description: string; inputSchema: string }>();

  /** Tools the grants allow, with their descriptions (asked once per tool, then cached). */
  async listTools(grants: Grants): Promise<Array<{ name: string; description: string; inputSchema: string }>> {
    const out = [];
    for (const { component } of this.targets.values()) {
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
   * Call `method` of `target` from the main thread (the kernel as caller), through the same
   * board as worker callers. Never rejects: failures come back as error replies (`unknown-target`,
   * `busy` when the target's queue is full, `timeout`, `failed`); a callee that passes the
   * deadline is terminated and replaced.
   */
  async call(name: string, method: string, payload: Payload, ctx: CallContext): Promise<CallReply> {
    const started = performance.now();
    const span: SpanNotice = { spanId: `${this.runId}.k-${this.nextCallId}`, target: name, method, startedAt: Date.now() };
    if (ctx.taskId) this.services.notice({ type: 'notice', op: 'span-start', component: 'kernel', ctx, body: { ...span, input: preview(payload) } });
    const reply = await this.dispatch(name, method, payload, ctx);
    const outcome = reply.ok ? 'ok' : reply.error.tag;
    const output = reply.ok ? (ctx.taskId ? preview(reply.payload) : '') : reply.error.message;
    this.services.notice({
      type: 'notice', op: 'span-end', component: 'kernel', ctx,
      body: { ...span, durationUs: Math.round((performance.now() - started) * 1000), outcome, output } satisfies SpanNotice,
    });
    return reply;
  }

  private async dispatch(name: string, method: string, payload: Payload, ctx: CallContext): Promise<CallReply> {
    const target = this.targets.get(name);
    if (!target) {
      return { type: 'reply', id: 0, ok: false, error: { tag: 'unknown-target', message: `E_MESH_UNKNOWN_TARGET: no component named ${name}` } };
    }
    const id = this.nextCallId++;
    const start = Date.now();
    let slot: WorkerSlot | undefined;
    while (!slot) {
      const claim = target.board.claim((s, workerId) => target.slots.get(s)?.id === workerId);
      if ('busy' in claim) {
        return { type: 'reply', id, ok: false, error: { tag: 'busy', message: busyMessage(name, claim.busy) } };
      }
      if ('slot' in claim) {
        slot = target.slots.get(claim.slot)!;
        if (claim.pressured) this.grow(target);
        break;
      }
      // No worker in service (all being replaced): wait for one, within the deadline.
      const remaining = ctx.deadline - Date.now();
      const woke = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), Math.max(0, remaining));
        target.waiters.push(() => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      // Replaced or removed while waiting: ask again (the new version, or `unknown-target`).
      if (this.targets.get(name) !== target) return this.dispatch(name, method, payload, ctx);
      if (!woke) {
        return { type: 'reply', id, ok: false, error: { tag: 'timeout', message: `E_LIMIT_TIME: ${name} had no worker in service within ${Date.now() - start} ms` } };
      }
    }
    const chosen = slot;
    return new Promise<CallReply>((resolve) => {
      const expire = (): void => {
        // A timer counts from the event loop's cached clock, so under load it can fire before
        // `Date.now()` reaches the deadline; the serving deadline below is then still this very
        // call's own and would read as another call ahead of it. Wait out the remainder first.
        if (Date.now() < ctx.deadline) {
          timer = setTimeout(expire, ctx.deadline - Date.now());
          return;
        }
        chosen.pending.delete(id);
        // Still queued behind a call within its own deadline: that call keeps the worker, and the
        // worker drops this one unserved when it reaches it (its deadline has passed).
        const serving = chosen.target.board.deadline(chosen.index);
        if (serving !== 0 && serving > Date.now()) {
          const message = `E_LIMIT_TIME: ${name}.${method} waited ${ctx.deadline - start} ms behind another call on its worker and never started`;
          this.services.notice({ type: 'notice', op: 'limit', component: name, ctx, body: { limit: 'timeoutMs', cap: ctx.deadline - start, reason: message } });
          resolve({ type: 'reply', id, ok: false, error: { tag: 'timeout', message } });
          return;
        }
        this.kill(chosen);
        const message = `E_LIMIT_TIME: ${name}.${method} did not answer within ${ctx.deadline - start} ms; its worker was stopped and is being replaced`;
        this.services.notice({ type: 'notice', op: 'limit', component: name, ctx, body: { limit: 'timeoutMs', cap: ctx.deadline - start, reason: message } });
        resolve({ type: 'reply', id, ok: false, error: { tag: 'timeout', message } });
      };
      let timer = setTimeout(expire, Math.max(0, ctx.deadline - Date.now()));
      chosen.pending.set(id, (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
      chosen.control.postMessage({ type: 'call', id, method, payload, ctx } satisfies CallRequest);
    });
  }

  /** Stop every worker and every event delivery. */
  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.timer);
    this.topics.close();
    const targets = [...this.targets.values(), ...this.draining, ...this.starting];
    this.targets.clear();
    this.draining.clear();
    await Promise.all(targets.flatMap((t) => [...t.slots.values()]).map((s) => this.terminate(s, CLOSE_NATIVE_WAIT_MS)));
    for (const target of targets) target.markDrained();
  }
}
