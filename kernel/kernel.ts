/**
 * The kernel: wires the engine, the mesh, sessions, the store, inference and the state
 * document together, and runs tasks. One per process; the server and the CLI drive it.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomUUID } from 'node:crypto';
import pino, { type Logger } from 'pino';
import { Engine } from './engine/index.js';
import { WardenError, messageOf } from './errors.js';
import { allows, KERNEL_GRANTS, type Manifest } from './grants/index.js';
import { effectiveGrants, type Effective } from './grants/effective.js';
import { Mesh, type CallContext, type CallStats, type MeshComponent, type Notice, type SpanNotice } from './mesh/index.js';
import { Metrics } from './metrics.js';
import { SessionFs, type FileChange } from './vfs/index.js';
import { DEFAULT_ORPHAN_DAYS, discardOrphans, recoverSessions } from './session-policy.js';
import { KERNEL_PID_FILE, Store, type TaskRow } from './store/index.js';
import { SQL_GUARD_FILE, sqlGuardBuilt } from './store/scoped-sql.js';
import { StateDocument, type PrivacyLevel, type TaskState, type ToolCall } from './state/index.js';
import { DeltaBuffer, Inference, strictestPrivacy, type ChatRequest, type ChatResult, type InferenceFailure } from './inference/index.js';
import { addFallback, appendChunk, clearChunks, failTurn, finishTurn, startTurn } from './inference/turns.js';
import { checkOutbound, fetchGranted } from './http/outbound.js';
import type { OutboundRequest } from './wasi/http.js';
import { configFile, readConfig, type Config } from './config/index.js';
import { BUILT_COMPONENTS, transpileCacheDir } from './paths.js';
import { ComponentRegistry, type RegisteredComponent } from './registry/index.js';
import { ApiKeys } from './auth/index.js';
import { auditConfig } from './audit/index.js';
import { PinReloader } from './reload.js';
import { RuntimeEvents } from './runtime/events.js';
import { Budgets, type BudgetLimits } from './runtime/budgets.js';
import { Transcripts, replayConfig, transcriptsDir } from './transcript/index.js';
import { minMode, Policies, policySpecFor, POLICY_MODES, type PolicyAction, type PolicyDecision, type PolicyMode } from './policy/index.js';
import { Approvals, approvalDetail } from './approvals/index.js';
import { redactSecrets } from './secrets/detect.js';

/** Options for {@link Kernel.start}. */
export interface KernelOptions {
  /** Data directory: database, sessions, scopes, transpile cache (created when missing). */
  dataDir: string;
  /** Override of the default backend's base URL. */
  baseURL?: string;
  /** Environment the kernel reads keys from (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** Logger (default: pino to stderr at `info`, `silent` when `quiet`). */
  logger?: Logger;
  quiet?: boolean;
  /**
   * A transcript to replay (`warden run --replay`): the run's only backend is a `replay` backend
   * serving that transcript's recorded model responses (see `replayConfig`).
   */
  replay?: string;
  /**
   * The operator's permission mode for this kernel instead of the config's `policy.mode`
   * (`warden run --mode`; tests that edit files run under `acceptEdits`).
   */
  policyMode?: PolicyMode;
  /**
   * Load only these registered components, and those their `mesh` requests name (transitively),
   * instead of every one: a kernel for testing one component (`warden/testing`,
   * `warden test-component`) starts in a fraction of the time. Tasks need `supervisor` among them.
   * @throws WardenError `E_NOT_FOUND` from {@link Kernel.start} for a name nobody registered
   */
  components?: string[];
}

/** What `submitTask` takes. */
export interface TaskInput {
  prompt: string;
  workspace: string;
  /** `model@backend` or a bare model name. */
  model?: string;
  maxTurns?: number;
  /** The privacy level the task starts at: it may raise `inference.privacy`, never lower it; secrets in its requests escalate it to `strict`. */
  privacy?: PrivacyLevel;
  /** This task's token budget (prompt + completion); default `budgets.maxTokens`. */
  maxTokens?: number;
  /** This task's cost budget in US dollars; default `budgets.maxCostUsd`. */
  maxCostUsd?: number;
  /** This task's wall-time budget per run, ms; default `budgets.maxWallMs`. */
  maxWallMs?: number;
  /** Id of the API key that submitted it (stored as `tasks.key_id`, counted for `server.tasksPerKey`). */
  keyId?: string | null;
  /**
   * This task's permission mode: a cap on the mode of every call it makes (it can only lower
   * what the config gives). Absent: no cap. Above `policy.mode` it is refused (`E_POLICY_DENIED`).
   */
  mode?: PolicyMode;
}

/** What {@link Kernel.drain} takes. */
export interface DrainOptions {
  /** Why the kernel stops (`SIGTERM`, `SIGINT`): sent to stream clients. */
  reason: string;
  /** How long running tasks may go on before they are interrupted, in ms. */
  graceMs: number;
  /** Aborting it ends the grace period at once (a second signal). */
  skipGrace?: AbortSignal;
  /** Receives one line per phase, for the operator (never holds secrets). */
  onPhase?: (line: string) => void;
}

/** What {@link Kernel.close} records as the `kernel.stop` audit entry after a drain. */
export interface StopRecord {
  reason: string;
  graceMs: number;
  /** Ids of the tasks the drain interrupted. */
  interrupted: string[];
}

import { DEFAULT_MODEL } from './inference/types.js';
/** Default inference target. */
export { DEFAULT_MODEL };

/** The running kernel. */
export class Kernel {
  readonly state: StateDocument;
  readonly sessions: SessionFs;
  readonly mesh: Mesh;
  /** Prometheus metrics (`GET /metrics`). */
  readonly metrics: Metrics;
  readonly engine: Engine;
  readonly registry: ComponentRegistry;
  readonly inference: Inference;
  /** API keys and web logins (`server.auth`); checks read the store, so a revocation applies at once. */
  readonly keys: ApiKeys;
  /** Hot reload: loads, replaces and unloads pinned components as their pins change (`reload.ts`). */
  readonly reloader: PinReloader;
  /** What happens while tasks run (inference, tool calls, decisions, usage); transcripts, metrics and budgets listen. */
  readonly events: RuntimeEvents;
  /** JSONL transcript per task in `<dataDir>/transcripts/` (a bus listener). */
  readonly transcripts: Transcripts;
  /** Token, cost, wall-time and turn budgets and doom-loop detection (a bus listener that calls {@link stopTask}). */
  readonly budgets: Budgets;
  /** Compiled policies per component, for the decisions made on the main thread (commits, outbound hosts). */
  readonly policies: Policies;
  /** Policy approvals: in the store and at `/approvals` in the state document; decided by the UI, REST or the CLI. */
  readonly approvals: Approvals;
  /** Per running task: aborted by {@link stopTask} (cancels its inference requests). */
  private readonly taskAborts = new Map<string, AbortController>();
  /** Tasks whose runtime record is to be written at the end of this tick. */
  private readonly runtimeDirty = new Set<string>();
  /** Per task: inference requests made so far (turn numbers of `inference.request` events). */
  private readonly turnCounters = new Map<string, number>();
  private readonly running = new Map<string, Promise<TaskState>>();
  private readonly stepCounters = new Map<string, number>();
  /** False from {@link stopAccepting} on: new work is refused with `E_SHUTTING_DOWN`. */
  private acceptingWork = true;
  /** Tasks a drain is interrupting: their late replies and spans are ignored. */
  private readonly interrupting = new Set<string>();
  /** Aborted when a drain interrupts tasks: cancels their inference requests. */
  private readonly interruption = new AbortController();
  private readonly stopListeners = new Set<(reason: string) => void>();
  /** The components this kernel loads (`KernelOptions.components` and their mesh targets), or null: all. */
  private only: Set<string> | null = null;

  private constructor(
    readonly dataDir: string,
    readonly store: Store,
    readonly config: Config,
    readonly log: Logger,
    private readonly env: NodeJS.ProcessEnv,
  ) {
    this.events = new RuntimeEvents(log);
    this.sessions = new SessionFs(join(dataDir, 'sessions'));
    this.engine = new Engine(transpileCacheDir(dataDir, env));
    this.registry = new ComponentRegistry(dataDir, store, this.engine);
    this.inference = new Inference(config.backends, {
      env, settings: config.inference, events: this.events, log,
      onBackendState: (backend) => this.state.update((d) => {
        d.backends[backend.name] = backend;
      }),
    });
    this.state = new StateDocument(
      { kernel: { startedAt: Date.now(), version: '0.1.0' }, components: {}, tasks: {}, approvals: {}, backends: this.inference.backendStates() },
      config.server.retainedEnvelopes,
    );
    this.mesh = new Mesh(
      { request: (op, body, ctx, component) => this.hostRequest(op, body, ctx, component), notice: (n) => this.onNotice(n) },
      { sessionsDir: this.sessions.sessionsDir, sqlDir: join(dataDir, 'scopes') },
    );
    this.metrics = new Metrics(this.mesh);
    this.metrics.watch(this.events, {
      tasks: () => Object.values(this.state.current.tasks),
      openSessions: () => (this.store.db.open ? this.store.sessions('open').length : 0),
      kindOf: (name) => this.state.current.components[name]?.kind,
    });
    this.transcripts = new Transcripts(transcriptsDir(dataDir), log);
    this.transcripts.attach(this.events);
    this.budgets = new Budgets(
      {
        stopTask: (id, reason) => this.stopTask(id, reason),
        usageOf: (id) => {
          const usage = this.state.current.tasks[id]?.usage;
          return { tokens: (usage?.promptTokens ?? 0) + (usage?.completionTokens ?? 0), costUsd: usage?.costUsd ?? 0 };
        },
        maxTurnsOf: (id) => this.store.task(id)?.max_turns ?? config.maxTurns,
        kindOf: (name) => this.state.current.components[name]?.kind,
        onStop: (budget) => this.metrics.budgetStops.inc({ budget }),
      },
      config.budgets,
    );
    this.events.on(this.budgets.listener);
    // The runtime record (cost, turns, fallbacks, privacy…) is written once per tick for each task that changed.
    this.events.on((event) => {
      if (event.taskId !== undefined && RUNTIME_EVENTS.has(event.type)) this.persistRuntimeSoon(event.taskId);
    });
    this.keys = new ApiKeys(store, { env, loginTtlMs: config.server.loginTtlMs, failureLimit: config.server.authFailuresPerMinute });
    this.reloader = new PinReloader(this);
    this.policies = new Policies(config.policy, (name) => this.mesh.component(name)?.kind);
    this.approvals = new Approvals(store, this.state, this.events);
  }

  /**
   * Open the store, rebuild the state document from it, and load every built component.
   * @throws WardenError `E_CONFIG` (bad config), `E_NOT_FOUND` (components not built: run `npm run build`)
   */
  static async start(options: KernelOptions): Promise<Kernel> {
    const dataDir = resolve(options.dataDir);
    const env = options.env ?? process.env;
    const read = readConfig(configFile(dataDir), env, options.baseURL);
    const { warnings } = read;
    const config = options.replay ? replayConfig(read.config, resolve(options.replay)) : read.config;
    if (options.policyMode) config.policy = { ...config.policy, mode: options.policyMode };
    const log = options.logger ?? pino({ level: options.quiet ? 'silent' : 'info' }, pino.destination(2));
    for (const w of warnings) log.warn({ field: w.path }, `config: ${w.message}`);
    const store = new Store(join(dataDir, 'warden.db'));
    const kernel = new Kernel(dataDir, store, config, log, env);
    if (options.components) {
      try {
        kernel.only = kernel.closure(options.components);
      } catch (err) {
        store.close();
        throw err;
      }
    }
    // Tells `warden restore` that a kernel uses this data directory (a stale file names a dead pid).
    writeFileSync(join(dataDir, KERNEL_PID_FILE), String(process.pid));
    store.audit('kernel.start', { pid: process.pid, version: '0.1.0' });
    auditConfig(store, config);
    kernel.recoverSessions();
    kernel.restore();
    kernel.applySessionPolicy();
    await kernel.loadAll();
    kernel.reloader.start();
    return kernel;
  }

  /** Finish or roll back commits a crash interrupted (before anything reads a workspace). */
  private recoverSessions(): void {
    for (const action of recoverSessions(this.sessions, this.store)) {
      const level = action.action === 'failed' ? 'error' : 'warn';
      this.log[level]({ session: action.session, action: action.action, workspace: action.workspace, error: action.error }, `session recovery: ${action.action}`);
    }
  }

  /** Discard orphaned sessions older than `sessions.orphanDays` (default {@link DEFAULT_ORPHAN_DAYS}; 0 keeps them). */
  private applySessionPolicy(): void {
    const days = this.config.sessions.orphanDays ?? DEFAULT_ORPHAN_DAYS;
    if (days <= 0) return;
    for (const orphan of discardOrphans(this.sessions, this.store, days)) {
      this.log.warn({ session: orphan.id, reason: orphan.reason, ageDays: Math.round(orphan.ageDays) }, 'orphaned session discarded by policy (sessions.orphanDays)');
      this.markSession(orphan.id, 'discarded');
    }
  }

  /** Rebuild tasks from the store; tasks that were running when the kernel stopped are interrupted. */
  private restore(): void {
    for (const row of this.store.tasks()) {
      let status = row.status;
      if (status === 'running' || status === 'queued') {
        status = 'interrupted';
        row.error = `the kernel stopped while the task was running; \`warden task resume ${row.id}\` continues it`;
        this.store.updateTask(row.id, { status, error: row.error });
      }
      if (status === 'interrupted') this.store.interruptToolCalls(row.id);
      const session = row.session_id ? this.store.session(row.session_id) : undefined;
      const runtime = parseRuntime(row.runtime);
      const steps: TaskState['steps'] = {};
      for (const step of this.store.steps(row.id)) steps[String(step.n)] = { n: step.n, component: step.component, step: step.step, detail: step.detail, ts: step.ts };
      const toolCalls: TaskState['toolCalls'] = {};
      for (const c of this.store.toolCalls(row.id)) {
        toolCalls[c.id] = {
          id: c.id, caller: c.caller, target: c.target, method: c.method, input: c.input, status: c.status, startedAt: c.started_at,
          ...(c.outcome ? { outcome: c.outcome } : {}), ...(c.output !== null ? { output: c.output } : {}),
          ...(c.duration_us !== null ? { durationUs: c.duration_us, durationMs: Math.round(c.duration_us / 1000) } : {}),
        };
      }
      this.state.update((d) => {
        d.tasks[row.id] = {
          id: row.id, prompt: row.prompt, workspace: row.workspace, model: row.model, status,
          sessionId: row.session_id, createdAt: Date.parse(row.created_at), steps, toolCalls,
          usage: { promptTokens: row.prompt_tokens ?? 0, completionTokens: row.completion_tokens ?? 0 },
          ...(row.diff ? { diff: JSON.parse(row.diff) as FileChange[] } : {}),
          ...(session ? { sessionStatus: session.status } : {}),
          ...(row.summary ? { summary: row.summary } : {}),
          ...(row.error ? { error: row.error } : {}),
          ...(row.finished_at ? { finishedAt: Date.parse(row.finished_at) } : {}),
          ...(row.mode ? { mode: row.mode } : {}),
          ...restoredRuntime(runtime, row),
        };
      });
      if (runtime?.budgets) this.budgets.limit(row.id, runtime.budgets);
    }
    // Pending approvals stay pending (decidable by the CLI meanwhile); a resumed task reuses them.
    this.approvals.restore();
  }

  /**
   * Load every component: built-ins must load (the kernel cannot work without them); a pinned
   * third-party component that fails to load — changed bytes, unknown imports — is refused,
   * audited and shown in the state document, and the kernel carries on without it.
   */
  private async loadAll(): Promise<void> {
    if (!existsSync(BUILT_COMPONENTS)) {
      throw new WardenError('E_NOT_FOUND', `no built components in ${BUILT_COMPONENTS}; run \`npm run build\``);
    }
    if (!sqlGuardBuilt()) {
      this.log.warn({ file: SQL_GUARD_FILE }, 'scoped SQL runs without its guard extension (not built: no C compiler at `npm run build`?): a statement still running at its call\'s deadline is not interrupted and keeps its thread busy until it ends; install gcc and run `npm run build`');
    }
    const all = this.registry.list().filter((c) => !this.only || this.only.has(c.manifest.name));
    await Promise.all(all.filter((c) => c.builtin).map((c) => this.loadComponent(c)));
    for (const component of all.filter((c) => !c.builtin)) {
      try {
        await this.loadComponent(component);
      } catch (err) {
        const reason = err instanceof WardenError ? `${err.code}: ${err.message}` : messageOf(err);
        this.log.error({ component: component.name, reason }, 'component refused');
        this.store.audit('component.refused', { name: component.name, sha256: component.sha256, reason }, component.name);
        this.state.update((d) => {
          d.components[component.name] = {
            name: component.name, kind: component.manifest.kind, version: component.manifest.version, sha256: component.sha256 ?? '',
            workers: 0, origin: 'pinned', status: 'refused', reason,
          };
        });
      }
    }
  }

  /**
   * `names` and every registered component their manifests' `mesh` requests name, transitively.
   * @throws WardenError `E_NOT_FOUND` for a name that is not registered
   */
  private closure(names: string[]): Set<string> {
    const registered = new Map(this.registry.list().map((c) => [c.manifest.name, c.manifest]));
    const missing = names.filter((n) => !registered.has(n));
    if (missing.length) throw new WardenError('E_NOT_FOUND', `no component named ${missing.join(', ')} is registered (known: ${[...registered.keys()].sort().join(', ')})`);
    const wanted = new Set(names);
    for (const name of wanted) {
      const patterns = registered.get(name)!.requests.mesh.filter((p) => !p.startsWith('topic:'));
      for (const other of registered.keys()) if (allows(patterns, other)) wanted.add(other);
    }
    return wanted;
  }

  /** Effective grants and limits of a component, with where each came from. */
  effectiveFor(manifest: Manifest, builtin: boolean): Effective {
    return effectiveGrants(manifest, this.config.grants[manifest.name], { builtin, defaults: this.config.limits, env: this.env });
  }

  /**
   * Compile one component (a pinned one must match its sha256) and describe it for the mesh:
   * effective grants and limits, pool, subscriptions. Starts nothing.
   * @throws WardenError from {@link Engine.load}; `E_COMPONENT_INVALID` (subscribes without exporting `subscriber`)
   */
  async prepareComponent(component: RegisteredComponent): Promise<MeshComponent> {
    const { manifest } = component;
    const { grants, limits } = this.effectiveFor(manifest, component.builtin);
    const compiled = await this.engine.load(component.file, { memoryMb: limits.memoryMb, ...(component.sha256 ? { expectSha256: component.sha256 } : {}) });
    const subscriber = compiled.exports.some((e) => e.startsWith('warden:kernel/subscriber'));
    if (manifest.subscribe.length > 0 && !subscriber) {
      throw new WardenError('E_COMPONENT_INVALID', `${manifest.name} subscribes to ${manifest.subscribe.join(', ')} but does not export warden:kernel/subscriber`);
    }
    // Built-ins are known to initialise without host calls; a third-party component may not.
    return {
      name: manifest.name, kind: manifest.kind, compiled, grants, limits, prewarm: component.builtin,
      ...(this.config.pools[manifest.name] ? { pool: this.config.pools[manifest.name] } : {}),
      subscribe: manifest.subscribe,
      policy: policySpecFor(this.config.policy, manifest.name, manifest.kind),
    };
  }

  /**
   * Load one component (pinned ones must match their sha256) and start its workers.
   * @throws WardenError from {@link Engine.load} and {@link Mesh.add}
   */
  async loadComponent(component: RegisteredComponent): Promise<void> {
    const { manifest } = component;
    const prepared = await this.prepareComponent(component);
    const { compiled, grants, limits } = prepared;
    await this.mesh.add(prepared);
    const workers = this.mesh.pools().find((p) => p.name === manifest.name)?.workers.length ?? 0;
    this.store.upsertComponent(manifest.name, manifest.kind, manifest.version, compiled.sha256, grants, limits);
    // The grant itself: environment variables by name only (their values may be secrets).
    this.store.audit('component.load', {
      name: manifest.name, kind: manifest.kind, version: manifest.version, sha256: compiled.sha256, origin: component.builtin ? 'builtin' : 'pinned',
      grants: { ...grants, env: Object.keys(grants.env).sort() }, limits,
    }, manifest.name);
    this.state.update((d) => {
      d.components[manifest.name] = {
        name: manifest.name, kind: manifest.kind, version: manifest.version, sha256: compiled.sha256, workers,
        origin: component.builtin ? 'builtin' : 'pinned', status: 'loaded', generation: 1,
      };
    });
  }

  // ---- tasks --------------------------------------------------------------------------------

  /**
   * Queue a task and start it. @returns the task id
   * @throws WardenError `E_BAD_INPUT` (empty prompt), `E_NOT_FOUND` (workspace is not a directory),
   *   `E_POLICY_DENIED` (a mode above the configured `policy.mode`), `E_SHUTTING_DOWN` (after {@link stopAccepting})
   */
  submitTask(input: TaskInput): string {
    this.assertAccepting();
    if (this.only && !this.only.has('supervisor')) {
      throw new WardenError('E_NOT_FOUND', `this kernel loads only ${[...this.only].join(', ')} (KernelOptions.components): tasks need the supervisor`);
    }
    if (!input.prompt.trim()) throw new WardenError('E_BAD_INPUT', 'task is empty: say what the agent should do');
    const configured = this.config.policy.mode;
    if (input.mode && minMode(input.mode, configured) !== input.mode) {
      throw new WardenError('E_POLICY_DENIED', `mode ${input.mode} is above the configured policy.mode ${configured}; a task may only lower it (${POLICY_MODES.slice(0, POLICY_MODES.indexOf(configured) + 1).join(', ')}); the operator raises it in the config`);
    }
    const workspace = resolve(input.workspace);
    if (!existsSync(workspace)) throw new WardenError('E_NOT_FOUND', `workspace ${workspace} does not exist`);
    const id = `t-${randomUUID().slice(0, 8)}`;
    const model = input.model ?? DEFAULT_MODEL;
    const createdAt = new Date();
    const maxTurns = input.maxTurns ?? this.config.maxTurns;
    this.store.insertTask({
      id, prompt: input.prompt, workspace, model, status: 'queued', session_id: null, summary: null, error: null,
      created_at: createdAt.toISOString(), finished_at: null, max_turns: maxTurns, key_id: input.keyId ?? null, mode: input.mode ?? null,
    });
    this.state.update((d) => {
      d.tasks[id] = {
        id, prompt: input.prompt, workspace, model, status: 'queued', sessionId: null, createdAt: createdAt.getTime(),
        steps: {}, toolCalls: {}, usage: { promptTokens: 0, completionTokens: 0 }, ...(input.mode ? { mode: input.mode } : {}),
        privacy: { level: strictestPrivacy(input.privacy, this.config.inference.privacy) },
      };
    });
    this.budgets.limit(id, { maxTokens: input.maxTokens, maxCostUsd: input.maxCostUsd, maxWallMs: input.maxWallMs });
    this.persistRuntime(id);
    this.running.set(id, this.runTask(id, maxTurns));
    return id;
  }

  /**
   * Run an interrupted task again from its recorded conversation, in the session it had (kept
   * for review when the kernel stopped). The model is asked again from the last inference request
   * the task made; tool results recorded before it are not repeated.
   * @throws WardenError `E_NOT_FOUND` (no such task), `E_SESSION_STATE` (the task is not
   *   interrupted, or its session was committed or discarded meanwhile), `E_SHUTTING_DOWN`
   */
  resumeTask(id: string): void {
    this.assertAccepting();
    const task = this.state.current.tasks[id];
    if (!task) throw new WardenError('E_NOT_FOUND', `no task ${id}; see \`warden task list\``);
    if (task.status !== 'interrupted') throw new WardenError('E_SESSION_STATE', `task ${id} is ${task.status}; only an interrupted task can be resumed`);
    if (task.sessionId && this.store.session(task.sessionId)?.status !== 'open') {
      throw new WardenError('E_SESSION_STATE', `the session ${task.sessionId} of task ${id} was ${this.store.session(task.sessionId)?.status ?? 'removed'}; submit the task again instead`);
    }
    const conversation = this.store.conversation(id);
    this.setTask(id, { status: 'queued' });
    this.store.updateTask(id, { error: null, finished_at: null });
    this.state.update((d) => {
      delete d.tasks[id]!.error;
      delete d.tasks[id]!.finishedAt;
    });
    this.addStep(id, 'kernel', 'resume', conversation ? `resumed from turn ${conversation.turns} of its recorded conversation` : 'resumed from the start (it never reached inference)');
    this.store.audit('task.resume', { task: id, turns: conversation?.turns ?? 0 }, undefined, id);
    this.running.set(id, this.runTask(id, this.store.task(id)?.max_turns ?? this.config.maxTurns, conversation?.messages));
  }

  /** Resolves when the task has finished (succeeded or failed). */
  async waitForTask(id: string): Promise<TaskState> {
    const run = this.running.get(id);
    if (run) return run;
    const task = this.state.current.tasks[id];
    if (!task) throw new WardenError('E_NOT_FOUND', `no task ${id}`);
    return task;
  }

  /**
   * Stop a running task for `reason` (a budget exhausted, a doom loop detected): the reason is
   * recorded on the task (`stopReason`, persisted as its error), its inference requests in flight
   * are aborted and every later one is refused with `denied`, so the agent's loop ends; the task
   * then fails with `reason` as its error. A task that is not running is left alone.
   * @returns whether the task was running and is now stopping
   */
  stopTask(id: string, reason: string): boolean {
    const task = this.state.current.tasks[id];
    if (!task || task.status !== 'running' || task.stopReason) return false;
    this.state.update((d) => {
      d.tasks[id]!.stopReason = reason;
    });
    this.store.updateTask(id, { error: reason });
    this.addStep(id, 'kernel', 'stopped', reason);
    this.store.audit('task.stop', { task: id, reason }, undefined, id);
    this.taskAborts.get(id)?.abort(new WardenError('E_TASK_STOPPED', reason));
    // A call waiting for a person would otherwise hold the task until the approval's deadline.
    this.approvals.denyForTask(id, `the kernel stopped the task: ${reason}`);
    return true;
  }

  /** Write the task's runtime record after this tick (changes of one tick make one write). */
  private persistRuntimeSoon(id: string): void {
    if (this.runtimeDirty.has(id)) return;
    this.runtimeDirty.add(id);
    setImmediate(() => {
      this.runtimeDirty.delete(id);
      if (this.store.db.open) this.persistRuntime(id);
    });
  }

  /**
   * Write what the agent runtime recorded on a task beyond its tokens (cost per target, turns,
   * fallbacks, privacy, category, stop reason, its own budgets) to `tasks.runtime`, so a restart
   * shows the same task. Turns are kept with their text joined into one chunk.
   */
  private persistRuntime(id: string): void {
    const task = this.state.current.tasks[id];
    if (!task) return;
    const record: TaskRuntime = {
      ...(task.usage.costUsd !== undefined ? { costUsd: task.usage.costUsd } : {}),
      ...(task.usage.byTarget ? { byTarget: task.usage.byTarget } : {}),
      ...(task.turns ? { turns: Object.fromEntries(Object.entries(task.turns).map(([n, t]) => [n, { ...t, chunks: t.chunks.length > 0 ? [t.chunks.join('')] : [] }])) } : {}),
      ...(task.fallbacks ? { fallbacks: task.fallbacks } : {}),
      ...(task.privacy ? { privacy: task.privacy } : {}),
      ...(task.category ? { category: task.category } : {}),
      ...(task.stopReason ? { stopReason: task.stopReason } : {}),
      budgets: this.budgets.ownLimitsOf(id),
    };
    this.store.updateTask(id, { runtime: JSON.stringify(record) });
  }

  private async runTask(id: string, maxTurns: number, history?: unknown[]): Promise<TaskState> {
    const task = this.state.current.tasks[id]!;
    this.setTask(id, { status: 'running' });
    this.taskAborts.set(id, new AbortController());
    this.events.emit(id, { type: 'task.start', prompt: task.prompt, workspace: task.workspace, model: task.model, resumed: history !== undefined });
    const supervisor = this.mesh.component('supervisor');
    const deadline = Date.now() + (supervisor?.limits.timeoutMs ?? 900_000);
    const reply = await this.mesh.call(
      'supervisor',
      'handle-task',
      {
        tag: 'json',
        val: JSON.stringify({
          id, prompt: task.prompt, workspace: task.workspace, model: task.model, sessionId: task.sessionId, maxTurns,
          history: history ? JSON.stringify(history) : null,
        }),
      },
      { taskId: id, sessionId: task.sessionId, chain: [], deadline, grants: KERNEL_GRANTS, ...(task.mode ? { mode: task.mode } : {}) },
    );
    // Interrupted by a drain, which records the outcome; the store may be closing.
    if (this.interrupting.has(id)) return this.state.current.tasks[id]!;
    const sessionId = this.state.current.tasks[id]?.sessionId ?? null;
    let diff: FileChange[] = [];
    if (sessionId) {
      try {
        diff = this.sessions.diff(sessionId);
      } catch (err) {
        this.log.warn({ err: messageOf(err) }, 'diff failed');
      }
    }
    this.store.updateTask(id, { diff: JSON.stringify(diff) });
    const stopReason = this.state.current.tasks[id]?.stopReason;
    if (stopReason) {
      // Stopped by the kernel (a budget, doom-loop detection): whatever the agent made of it, the task failed for that reason.
      this.setTask(id, { status: 'failed', error: stopReason, finishedAt: Date.now(), diff });
      this.events.emit(id, { type: 'task.end', status: 'failed', error: stopReason, stopReason });
    } else if (reply.ok) {
      const outcome = JSON.parse((reply.payload as { val: string }).val) as { summary: string };
      this.setTask(id, { status: 'succeeded', summary: outcome.summary, finishedAt: Date.now(), diff });
      this.events.emit(id, { type: 'task.end', status: 'succeeded', summary: outcome.summary });
    } else {
      this.setTask(id, { status: 'failed', error: reply.error.message, finishedAt: Date.now(), diff });
      this.events.emit(id, { type: 'task.end', status: 'failed', error: reply.error.message });
    }
    this.running.delete(id);
    this.taskAborts.delete(id);
    this.state.flush();
    return this.state.current.tasks[id]!;
  }

  /**
   * Record the task's conversation as of an inference request: the messages the agent sent. The
   * number of turns is the number of assistant messages in it, plus the one being asked for.
   */
  private recordConversation(taskId: string, messages: ChatRequest['messages']): void {
    const turns = messages.filter((m) => m.role === 'assistant').length + 1;
    this.store.saveConversation(taskId, messages, turns);
  }

  private setTask(id: string, fields: Partial<TaskState>): void {
    this.state.update((d) => {
      Object.assign(d.tasks[id]!, fields);
    });
    const row: Record<string, unknown> = {};
    if (fields.status) row['status'] = fields.status;
    if (fields.summary !== undefined) row['summary'] = fields.summary;
    if (fields.error !== undefined) row['error'] = fields.error;
    if (fields.sessionId !== undefined) row['session_id'] = fields.sessionId;
    if (fields.finishedAt) row['finished_at'] = new Date(fields.finishedAt).toISOString();
    this.store.updateTask(id, row);
  }

  private addStep(taskId: string, component: string, step: string, detail: string): void {
    if (!this.state.current.tasks[taskId]) return;
    const n = (this.stepCounters.get(taskId) ?? Object.keys(this.state.current.tasks[taskId]!.steps).length) + 1;
    this.stepCounters.set(taskId, n);
    const ts = Date.now();
    this.state.update((d) => {
      d.tasks[taskId]!.steps[String(n)] = { n, component, step, detail, ts };
    });
    this.store.insertStep({ task_id: taskId, n, component, step, detail, ts });
    this.events.emit(taskId, { type: 'step', component, step, detail });
  }

  // ---- sessions -----------------------------------------------------------------------------

  /** Commit a session into its workspace. @throws `E_SESSION_CONFLICT`, `E_NOT_FOUND`, `E_SHUTTING_DOWN` */
  commitSession(id: string): FileChange[] {
    this.assertAccepting();
    return this.commitNow(id);
  }

  /** The commit itself: a running task's supervisor may still commit during the grace period. */
  private commitNow(id: string): FileChange[] {
    const changes = this.sessions.commit(id);
    this.store.finishSession(id, 'committed');
    this.store.audit('session.commit', { session: id, files: changes.length });
    this.markSession(id, 'committed');
    this.emitSession(id, 'commit');
    return changes;
  }

  /** Discard a session. @throws `E_NOT_FOUND` */
  discardSession(id: string): void {
    this.sessions.rollback(id);
    this.store.finishSession(id, 'discarded');
    this.store.audit('session.discard', { session: id });
    this.markSession(id, 'discarded');
    this.emitSession(id, 'discard');
  }

  /** A `session` event on the task that owns the session (none for a session without a task). */
  private emitSession(id: string, action: 'begin' | 'commit' | 'discard'): void {
    const task = Object.values(this.state.current.tasks).find((t) => t.sessionId === id);
    if (task) this.events.emit(task.id, { type: 'session', session: id, action });
  }

  private markSession(id: string, status: 'committed' | 'discarded'): void {
    this.state.update((d) => {
      for (const task of Object.values(d.tasks)) if (task.sessionId === id) task.sessionStatus = status;
    });
  }

  // ---- host services for guests -------------------------------------------------------------

  private async hostRequest(op: string, body: unknown, ctx: CallContext, component: string): Promise<unknown> {
    const b = body as Record<string, unknown>;
    switch (op) {
      case 'session.begin': {
        let meta;
        try {
          meta = this.sessions.begin(String(b['workspace']));
        } catch (err) {
          throw { tag: 'failed', val: messageOf(err) };
        }
        this.store.insertSession({ id: meta.id, workspace: meta.workspace, task_id: ctx.taskId || null, status: 'open', created_at: meta.createdAt, finished_at: null });
        if (ctx.taskId && this.state.current.tasks[ctx.taskId]) this.setTask(ctx.taskId, { sessionId: meta.id, sessionStatus: 'open' });
        this.emitSession(meta.id, 'begin');
        return meta.id;
      }
      case 'session.meta':
        return { workspace: this.sessions.meta(String(b['id'])).workspace };
      case 'session.diff':
        return this.sessions.diff(String(b['id'])).map((c) => ({ path: c.path, kind: c.kind, renamedFrom: c.from, unified: c.unified }));
      case 'session.commit': {
        const refusal = await this.policyGate(ctx, component, ...this.commitAction(String(b['id'])));
        if (refusal !== null) throw { tag: 'denied', val: refusal };
        try {
          this.commitNow(String(b['id']));
        } catch (err) {
          const e = err as WardenError;
          if (e.code === 'E_SESSION_CONFLICT') throw { tag: 'conflict', val: (e.detail?.['paths'] as string[]) ?? [] };
          throw { tag: 'failed', val: messageOf(err) };
        }
        return null;
      }
      case 'session.rollback':
        this.discardSession(String(b['id']));
        return null;
      case 'inference.chat':
        return this.inferenceChat(body as ChatRequest, ctx);
      case 'policy.ask':
        return this.policyAsk(body as PolicyDecision & { kind: PolicyAction['kind']; detail: string; deadline: number }, ctx, component);
      case 'http.fetch': {
        // The policy decides on requests the grant allows (the fetch checks the grant itself again).
        const request = body as OutboundRequest;
        const target = checkOutbound(request, ctx.grants.http);
        if (target.ok) {
          const detail = `${request.method} ${target.url.protocol}//${target.url.host}${target.url.pathname}`;
          const refusal = await this.policyGate(ctx, component, { kind: 'http', host: target.host }, detail);
          if (refusal !== null) return { error: { tag: 'HTTP-request-denied' } };
        }
        // Denials are audited like the worker's own denial notices (kind `denied`, a step on the task).
        return fetchGranted(request, ctx.grants.http, {
          maxBodyBytes: this.mesh.component(component)?.limits.outputBytes ?? 8 * 2 ** 20,
          deadline: ctx.deadline,
          onDenied: (reason) => this.onNotice({ type: 'notice', op: 'denied', body: { capability: 'http', reason }, ctx, component }),
        });
      }
      default:
        throw new WardenError('E_BAD_INPUT', `${component} asked for unknown host service ${op}`);
    }
  }

  // ---- policy -------------------------------------------------------------------------------

  /** The policy action and review detail of committing session `id`: every path it changes (both sides of a rename). */
  private commitAction(id: string): [PolicyAction, string] {
    let changes: FileChange[] = [];
    try {
      changes = this.sessions.diff(id);
    } catch {
      // No such session: the commit itself reports it.
    }
    const paths = changes.flatMap((c) => (c.from ? [c.from, c.path] : [c.path]));
    const detail = changes.map((c) => `${c.kind} ${c.from ? `${c.from} → ` : ''}${c.path}`).join('\n') || '(no changes)';
    return [{ kind: 'commit', session: id, paths }, detail];
  }

  /**
   * Decide on an action a component takes through a host service (a commit, an outbound
   * request) on the main thread, where those services run: the component's policy under its
   * acting mode (its own mode capped by the one its call carries). Actions outside tasks are the
   * operator's own and are not decided.
   * @returns null when the action may go on, else why it is denied
   */
  private async policyGate(ctx: CallContext, component: string, action: PolicyAction, detail: string): Promise<string | null> {
    const taskId = ctx.taskId;
    if (!taskId || !this.state.current.tasks[taskId]) return null;
    const policy = this.policies.of(component);
    const decision = policy.decide(action, policy.modesFor(ctx.mode).acting);
    if (decision.decision === 'ask') {
      const answer = await this.askApproval(taskId, component, action.kind, decision, detail, Math.min(ctx.deadline, Date.now() + this.config.policy.approvalTimeoutMs));
      return answer.status === 'approved' ? null : answer.message ?? `E_POLICY_DENIED: ${decision.subject} was not approved`;
    }
    this.onPolicyDecision(taskId, component, { ...decision, kind: action.kind });
    if (decision.decision === 'allow') return null;
    return `E_POLICY_DENIED: ${decision.subject} is denied by the policy rule \`${decision.rule}\` of ${component}; do something else, or ask the operator to change policy.rules in the kernel's config`;
  }

  /** The `policy.ask` host service: a worker's call waits for an approval (see `policyRefusal` in the mesh worker). */
  private async policyAsk(
    body: PolicyDecision & { kind: PolicyAction['kind']; detail: string; deadline: number }, ctx: CallContext, component: string,
  ): Promise<{ status: string; id: string; message?: string }> {
    if (!ctx.taskId || !this.state.current.tasks[ctx.taskId]) {
      return { status: 'denied', id: '', message: `E_POLICY_DENIED: ${body.subject} needs an approval and the call belongs to no task of this kernel` };
    }
    return this.askApproval(ctx.taskId, component, body.kind, body, body.detail, Math.min(ctx.deadline, Number(body.deadline) || ctx.deadline));
  }

  /**
   * An `ask`: create (or reuse) the approval, emit the `policy` event with its id, add a step
   * saying how to decide, and wait until it is decided or `deadline` expires it. A denial or
   * expiry is audited as `policy.deny`.
   */
  private async askApproval(
    taskId: string, component: string, kind: PolicyAction['kind'], decision: PolicyDecision, detail: string, deadline: number,
  ): Promise<{ status: string; id: string; message?: string }> {
    const asked = this.approvals.ask({ taskId, component, kind, subject: decision.subject, detail: approvalDetail(detail), rule: decision.rule, deadline });
    const id = asked.approval.id;
    this.events.emit(taskId, { type: 'policy', subject: decision.subject, kind, decision: 'ask', rule: decision.rule, mode: decision.mode, approvalId: id });
    if (asked.approval.status === 'pending') {
      this.addStep(taskId, component, 'approval', `${asked.approval.subject} waits for approval ${id} (${decision.rule}): approve or deny it in the web UI, \`warden approve ${id}\` or \`warden approve ${id} --deny\``);
    } else {
      this.addStep(taskId, component, 'approval', `${asked.approval.subject}: approval ${id} was already ${asked.approval.status}`);
    }
    const decided = await asked.decided;
    if (decided.status === 'approved') return { status: 'approved', id };
    const message = decided.status === 'expired'
      ? `E_POLICY_DENIED: ${decision.subject} needs an approval (\`${decision.rule}\`) and approval ${id} expired at the call's deadline with no decision`
      : `E_POLICY_DENIED: ${decision.subject} was denied${decided.decidedBy ? ` by ${decided.decidedBy}` : ''}${decided.reason ? ` (${decided.reason})` : ''}, approval ${id}; do something else`;
    this.onPolicyDenied(taskId, component, { subject: decision.subject, kind, rule: decision.rule, mode: decision.mode, approvalId: id, status: decided.status });
    return { status: decided.status, id, message };
  }

  /** A decision made without asking (in a worker, or here): the `policy` event; a denial is also audited and a step. */
  private onPolicyDecision(taskId: string, component: string, d: PolicyDecision & { kind: PolicyAction['kind'] }): void {
    this.events.emit(taskId, { type: 'policy', subject: d.subject, kind: d.kind, decision: d.decision, rule: d.rule, mode: d.mode });
    if (d.decision === 'deny') this.onPolicyDenied(taskId, component, { subject: d.subject, kind: d.kind, rule: d.rule, mode: d.mode });
  }

  private onPolicyDenied(taskId: string, component: string, detail: { subject: string; kind: string; rule: string; mode: string; approvalId?: string; status?: string }): void {
    const subject = redactSecrets(detail.subject);
    this.store.audit('policy.deny', { ...detail, subject }, component, taskId);
    const why = detail.approvalId ? `approval ${detail.approvalId} ${detail.status}` : detail.rule;
    this.addStep(taskId, component, 'denied', `policy: ${subject} denied (${why})`);
  }

  /**
   * The `inference.chat` host service: refused once the task was stopped; the conversation is
   * recorded before the request (a kernel killed while it waits resumes by asking again). The
   * request is routed by the task's category and privacy level; the task records the turn
   * (`turns[n]`, its streamed text appended to `chunks` once per `inference.deltaIntervalMs`),
   * every fallback, privacy escalations, and tokens and cost (total and per `model@backend`).
   * Events: `inference.request`, `privacy`, `fallback`, then `inference.response` + `usage` or
   * `inference.error`.
   * @throws WIT `inference-error` values (see {@link Inference.chat}); `denied` for a stopped task
   */
  private async inferenceChat(request: ChatRequest, ctx: CallContext): Promise<unknown> {
    const taskId = ctx.taskId && this.state.current.tasks[ctx.taskId] ? ctx.taskId : '';
    const stopped = taskId ? this.state.current.tasks[taskId]!.stopReason : undefined;
    if (stopped) throw { tag: 'denied', val: `the kernel stopped this task: ${stopped}` };
    const turn = taskId ? (this.turnCounters.get(taskId) ?? 0) + 1 : 0;
    const onTask = (change: (task: TaskState) => void) => {
      if (taskId) this.state.update((d) => d.tasks[taskId] && change(d.tasks[taskId]));
    };
    if (taskId) {
      this.turnCounters.set(taskId, turn);
      this.recordConversation(taskId, request.messages);
      this.events.emit(taskId, { type: 'inference.request', turn, target: request.model, messages: request.messages, tools: request.tools.map((t) => t.name) });
      onTask((t) => startTurn(t, turn, request.model, Date.now()));
    }
    const remaining = ctx.deadline - Date.now();
    const signals = [this.interruption.signal, AbortSignal.timeout(Math.max(1, remaining))];
    const taskAbort = taskId ? this.taskAborts.get(taskId) : undefined;
    if (taskAbort) signals.push(taskAbort.signal);
    const task = taskId ? this.state.current.tasks[taskId] : undefined;
    const chunks = new DeltaBuffer(this.config.inference.deltaIntervalMs, (chunk) => onTask((t) => appendChunk(t, turn, chunk)));
    let result: ChatResult;
    try {
      result = await this.inference.chat(request, {
        signal: AbortSignal.any(signals), deadline: ctx.deadline, taskId: taskId || undefined,
        category: task?.category, privacy: task?.privacy?.level,
        onDelta: (text) => taskId && chunks.push(text),
        onRestart: () => {
          chunks.discard();
          onTask((t) => clearChunks(t, turn));
        },
        onFallback: (fallback) => {
          onTask((t) => addFallback(t, turn, fallback, Date.now()));
          if (taskId) this.events.emit(taskId, { type: 'fallback', turn, ...fallback });
        },
        onPrivacy: (privacy) => {
          if (!taskId) return;
          const before = this.state.current.tasks[taskId]?.privacy;
          if (privacy.escalated) onTask((t) => void (t.privacy = { level: privacy.level, reason: privacy.reason! }));
          if (privacy.escalated || turn === 1 || before?.level !== privacy.level) {
            this.events.emit(taskId, { type: 'privacy', turn, level: privacy.level, ...(privacy.reason ? { reason: privacy.reason } : {}) });
          }
        },
      });
    } catch (err) {
      chunks.flush();
      const failure = err as Partial<InferenceFailure>;
      const message = typeof failure.val === 'string' ? failure.val : messageOf(err);
      onTask((t) => failTurn(t, turn, message, Date.now()));
      if (taskId) this.events.emit(taskId, { type: 'inference.error', turn, target: request.model, error: message });
      const reason = taskId ? this.state.current.tasks[taskId]?.stopReason : undefined;
      if (reason) throw { tag: 'denied', val: `the kernel stopped this task: ${reason}` };
      // Guests get the WIT value alone; the kernel code (`E_PRIVACY_STRICT`, …) is for kernel callers.
      throw typeof failure.tag === 'string' ? { tag: failure.tag, val: message } : err;
    }
    chunks.flush();
    const { response, backend, model, costUsd } = result;
    if (taskId) {
      onTask((t) => finishTurn(t, turn, result, Date.now()));
      this.store.addUsage(taskId, response.usage.promptTokens, response.usage.completionTokens);
      if (result.warning) this.events.emit(taskId, { type: 'privacy', turn, level: result.privacy.level, reason: result.warning });
      this.events.emit(taskId, { type: 'inference.response', turn, target: request.model, backend, model, response, costUsd, durationMs: result.durationMs });
      this.events.emit(taskId, { type: 'usage', backend, model, promptTokens: response.usage.promptTokens, completionTokens: response.usage.completionTokens, costUsd });
      // A budget listener may have stopped the task on this answer's usage: the agent does not act on it.
      const stopReason = this.state.current.tasks[taskId]?.stopReason;
      if (stopReason) throw { tag: 'denied', val: `the kernel stopped this task: ${stopReason}` };
    }
    return response;
  }

  /** Extra listeners for guest output (used by `warden tool run`). */
  outputListener: ((stream: 'stdout' | 'stderr', bytes: Uint8Array) => void) | null = null;

  private onNotice(notice: Notice): void {
    const taskId = notice.ctx?.taskId ?? '';
    const body = notice.body as Record<string, unknown>;
    switch (notice.op) {
      case 'progress':
        if (taskId) this.addStep(taskId, notice.component, String(body['step']), String(body['detail']));
        // A supervisor's classification of the task selects its `inference.categories` target (an agent's report does not).
        if (taskId && body['step'] === 'category' && this.state.current.tasks[taskId] && this.state.current.components[notice.component]?.kind === 'supervisor') {
          this.state.update((d) => {
            d.tasks[taskId]!.category = String(body['detail']);
          });
        }
        break;
      case 'log':
        this.log.info({ component: notice.component, task: taskId || undefined, level: body['level'] }, String(body['message']));
        break;
      case 'span-start':
      case 'span-end': {
        const span = body as unknown as SpanNotice;
        if (notice.op === 'span-end') this.metrics.observeCall(notice.component, span);
        // A span of an interrupted task ends as `interrupted` (set by the drain), not as the failure its dying worker reports.
        if (!taskId || !this.state.current.tasks[taskId] || this.interrupting.has(taskId)) break;
        let recorded: ToolCall | undefined;
        this.state.update((d) => {
          const calls = d.tasks[taskId]!.toolCalls;
          calls[span.spanId] ??= {
            id: span.spanId, caller: notice.component, target: span.target, method: span.method,
            input: span.input ?? '', status: 'running', startedAt: span.startedAt,
          };
          // Read back through the draft: a value written into it is copied in, so the literal above is not the document's.
          const call = calls[span.spanId]!;
          if (notice.op === 'span-end') {
            call.status = span.outcome === 'ok' ? 'ok' : 'error';
            call.outcome = span.outcome ?? 'ok';
            call.output = span.output ?? '';
            call.durationMs = Math.round((span.durationUs ?? 0) / 1000);
            call.durationUs = span.durationUs ?? 0;
          }
          recorded = { ...call };
        });
        if (recorded) {
          if (notice.op === 'span-start') {
            this.events.emit(taskId, { type: 'tool.call', id: recorded.id, caller: recorded.caller, target: recorded.target, method: recorded.method, input: recorded.input });
          } else {
            this.events.emit(taskId, {
              type: 'tool.result', id: recorded.id, caller: recorded.caller, target: recorded.target, method: recorded.method,
              outcome: recorded.outcome ?? 'ok', output: recorded.output ?? '', durationMs: recorded.durationMs ?? 0,
            });
          }
          this.store.upsertToolCall({
            task_id: taskId, id: recorded.id, caller: recorded.caller, target: recorded.target, method: recorded.method,
            input: recorded.input, output: recorded.output ?? null, status: recorded.status, outcome: recorded.outcome ?? null,
            started_at: recorded.startedAt, duration_us: recorded.durationUs ?? null,
          });
        }
        break;
      }
      case 'call-stats':
        this.metrics.observeStats(notice.component, body as unknown as CallStats[]);
        break;
      case 'pool':
        if (this.state.current.components[notice.component]) {
          this.state.update((d) => {
            d.components[notice.component]!.workers = Number(body['workers']);
          });
        }
        break;
      case 'dead-letter':
        this.store.audit('dead-letter', body, notice.component, taskId || undefined);
        this.log.warn({ component: notice.component, topic: body['topic'], seq: body['seq'] }, `event dead-lettered after ${String(body['attempts'])} attempts: ${String(body['reason'])}`);
        if (taskId) this.addStep(taskId, notice.component, 'dead-letter', `event ${String(body['topic'])}#${String(body['seq'])} not delivered: ${String(body['reason'])}`);
        break;
      case 'limit':
        this.store.audit('limit', body, notice.component, taskId || undefined);
        if (taskId) this.addStep(taskId, notice.component, 'limit', String(body['reason']));
        break;
      case 'policy':
        if (taskId && this.state.current.tasks[taskId]) this.onPolicyDecision(taskId, notice.component, body as unknown as PolicyDecision & { kind: PolicyAction['kind'] });
        break;
      case 'denied':
        this.store.audit('denied', body, notice.component, taskId || undefined);
        if (taskId) this.events.emit(taskId, { type: 'denied', component: notice.component, capability: String(body['capability']), reason: String(body['reason']) });
        if (taskId) this.addStep(taskId, notice.component, 'denied', String(body['reason']));
        break;
      case 'stdout':
      case 'stderr':
        if (this.outputListener) this.outputListener(notice.op, body as unknown as Uint8Array);
        else this.log.debug({ component: notice.component }, Buffer.from(body as unknown as Uint8Array).toString('utf8'));
        break;
      default:
        break;
    }
  }

  // ---- shutdown -----------------------------------------------------------------------------

  /** False once {@link stopAccepting} was called. */
  get accepting(): boolean {
    return this.acceptingWork;
  }

  /** Refuse new work from now on: `submitTask`, `resumeTask` and `commitSession` throw `E_SHUTTING_DOWN`. */
  stopAccepting(): void {
    this.acceptingWork = false;
  }

  private assertAccepting(): void {
    if (!this.acceptingWork) throw new WardenError('E_SHUTTING_DOWN', 'the kernel is shutting down and accepts no new work; retry when it is back');
  }

  /** Call `listener(reason)` when a drain has published its last patches (streams send their final message). @returns unsubscribe */
  onStop(listener: (reason: string) => void): () => void {
    this.stopListeners.add(listener);
    return () => this.stopListeners.delete(listener);
  }

  /**
   * The first half of a graceful shutdown. Refuses new work, lets running tasks go on for up to
   * `graceMs` (less when `skipGrace` aborts), then interrupts the rest: their inference requests
   * are aborted and their mesh calls cancelled by stopping every worker; each is marked
   * `interrupted` in the state document and the store as a restart after a crash marks it (so
   * `warden task resume` continues it), with a step saying so and its session left open. Queued
   * tasks are interrupted too. Then the last patches are published and {@link onStop} listeners
   * called. The store stays open for {@link close}.
   * @returns ids of the interrupted tasks
   */
  async drain(options: DrainOptions): Promise<string[]> {
    this.stopAccepting();
    const say = options.onPhase ?? (() => undefined);
    const running = [...this.running.values()];
    let why = `grace of ${options.graceMs} ms over`;
    if (running.length > 0) {
      say(`shutting down: ${running.length} task${running.length === 1 ? '' : 's'} running, waiting up to ${formatSeconds(options.graceMs)}`);
      if ((await settleWithin(running, options.graceMs, options.skipGrace)) === 'skipped') why = 'grace cut short by a second signal';
    } else {
      say('shutting down: no task running');
    }
    const ids = Object.values(this.state.current.tasks).filter((t) => t.status === 'running' || t.status === 'queued').map((t) => t.id);
    for (const id of ids) this.interrupting.add(id);
    this.interruption.abort();
    await this.reloader.close();
    await this.mesh.close();
    // Calls in flight end as their workers exit; bounded because a call waiting for a worker in
    // service would only give up at its deadline.
    await settleWithin([...this.running.values()], 2000);
    for (const id of ids) {
      this.markInterrupted(id, why);
      say(`interrupted ${id} (${why})`);
    }
    this.state.flush();
    for (const listener of this.stopListeners) listener(options.reason);
    return ids;
  }

  private markInterrupted(id: string, why: string): void {
    this.setTask(id, { status: 'interrupted', error: `the kernel shut down while the task was running (${why}); \`warden task resume ${id}\` continues it` });
    this.store.interruptToolCalls(id);
    this.state.update((d) => {
      for (const call of Object.values(d.tasks[id]!.toolCalls)) {
        if (call.status === 'running') Object.assign(call, { status: 'interrupted', outcome: 'interrupted' });
      }
    });
    this.addStep(id, 'kernel', 'interrupted', `interrupted by shutdown (${why})`);
    this.events.emit(id, { type: 'task.end', status: 'interrupted', error: `interrupted by shutdown (${why})` });
    this.running.delete(id);
  }

  /**
   * Stop workers, publish pending patches, record the `kernel.stop` audit entry (with `stop`
   * after a drain), fold the WAL into the database file, close the store and remove `kernel.pid`.
   */
  async close(stop?: StopRecord): Promise<void> {
    // Pending approvals stay pending in the store: decidable while the kernel is down, reused on resume.
    this.approvals.close();
    await this.reloader.close();
    await this.mesh.close();
    this.state.flush();
    this.budgets.close();
    this.transcripts.close();
    if (this.store.db.open) this.store.audit('kernel.stop', stop ? { reason: stop.reason, interrupted: stop.interrupted, graceMs: stop.graceMs } : { reason: 'closed' });
    try {
      // The database file alone is then complete (a copy of it needs no -wal beside it).
      this.store.db.pragma('wal_checkpoint(TRUNCATE)');
    } catch (err) {
      this.log.warn({ err: messageOf(err) }, 'WAL checkpoint at close failed; SQLite folds it in at the next open');
    }
    this.store.close();
    const pidFile = join(this.dataDir, KERNEL_PID_FILE);
    if (existsSync(pidFile) && readFileSync(pidFile, 'utf8') === String(process.pid)) rmSync(pidFile, { force: true });
  }
}

/** `10 s`, `1.5 s`: a duration in ms for people. */
function formatSeconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))} s`;
}

/** Wait until every promise settled, `ms` passed or `skip` aborted; says which came first. */
function settleWithin(work: Promise<unknown>[], ms: number, skip?: AbortSignal): Promise<'settled' | 'timeout' | 'skipped'> {
  return new Promise((resolve) => {
    if (skip?.aborted) return resolve('skipped');
    const onSkip = () => done('skipped');
    const timer = setTimeout(() => done('timeout'), ms);
    const done = (how: 'settled' | 'timeout' | 'skipped') => {
      clearTimeout(timer);
      skip?.removeEventListener('abort', onSkip);
      resolve(how);
    };
    skip?.addEventListener('abort', onSkip, { once: true });
    void Promise.allSettled(work).then(() => done('settled'));
  });
}

/** Task events after which the task's runtime record is written. */
const RUNTIME_EVENTS = new Set(['inference.response', 'inference.error', 'fallback', 'privacy', 'usage', 'task.end', 'step']);

/** What `tasks.runtime` holds (JSON): the parts of a task's state that tokens and steps do not cover. */
interface TaskRuntime {
  costUsd?: number;
  byTarget?: NonNullable<TaskState['usage']['byTarget']>;
  turns?: NonNullable<TaskState['turns']>;
  fallbacks?: NonNullable<TaskState['fallbacks']>;
  privacy?: NonNullable<TaskState['privacy']>;
  category?: string;
  stopReason?: string;
  /** The task's own budgets (fields it was submitted with). */
  budgets?: BudgetLimits;
}

/** `tasks.runtime` parsed; undefined when absent or unreadable (the task is shown without it). */
function parseRuntime(json: string | null | undefined): TaskRuntime | undefined {
  if (!json) return undefined;
  try {
    return JSON.parse(json) as TaskRuntime;
  } catch {
    return undefined;
  }
}

/** The fields of a restored task that come from its runtime record; a turn still streaming when the kernel stopped ends as an error. */
function restoredRuntime(runtime: TaskRuntime | undefined, row: TaskRow): Partial<TaskState> {
  if (!runtime) return {};
  const turns = runtime.turns
    ? Object.fromEntries(Object.entries(runtime.turns).map(([n, t]) => [n, t.status === 'streaming' ? { ...t, status: 'error' as const, error: 'the kernel stopped while this answer streamed' } : t]))
    : undefined;
  return {
    usage: {
      promptTokens: row.prompt_tokens ?? 0, completionTokens: row.completion_tokens ?? 0,
      ...(runtime.costUsd !== undefined ? { costUsd: runtime.costUsd } : {}),
      ...(runtime.byTarget ? { byTarget: runtime.byTarget } : {}),
    },
    ...(turns ? { turns } : {}),
    ...(runtime.fallbacks ? { fallbacks: runtime.fallbacks } : {}),
    ...(runtime.privacy ? { privacy: runtime.privacy } : {}),
    ...(runtime.category ? { category: runtime.category } : {}),
    ...(runtime.stopReason ? { stopReason: runtime.stopReason } : {}),
  };
}
