/**
 * Agent budgets and doom-loop detection: a listener on the runtime event bus that stops a task
 * through `kernel.stopTask(id, reason)` when it spends more than it may. Budgets per task:
 *
 * - tokens (`budgets.maxTokens`): prompt + completion tokens of every `usage` event, counted
 *   from what the task had used before (a resumed task keeps its count);
 * - cost (`budgets.maxCostUsd`): the `costUsd` of `usage` events (the backends' prices);
 * - wall time (`budgets.maxWallMs`): a timer from each `task.start` (a start or a resume),
 *   cleared at `task.end`;
 * - doom loop (`budgets.doomLoopRepeats`, default 3; 0 turns it off): the same target and method
 *   called with identical input that many times in a row (`tool.call` events; inputs as the
 *   span shows them, the first 4000 characters), or refused before it started with the same
 *   outcome (a `tool.result` without its `tool.call`: an unknown tool, a policy deny);
 * - turns (`maxTurns`): when an agent reports its own `limit` step naming its turns (it stopped
 *   at its turn limit without a final answer), the task is stopped too, so it fails rather than
 *   succeeds with an unfinished piece of work.
 *
 * A stop's reason names the budget, the figures and the field to raise. The first budget
 * crossed wins; later ones are not checked for that task. A token or cost budget is checked
 * when a response's usage arrives (the `usage` event, emitted before the answer is handed to
 * the agent): the kernel then gives the agent `denied` instead of that answer.
 */
import type { RuntimeEvent } from './events.js';
import { redactSecrets } from '../secrets/detect.js';

/** Limits that may be set per task (absent: the config's; absent there too: unlimited). */
export interface BudgetLimits {
  /** Prompt + completion tokens the task may use. */
  maxTokens?: number;
  /** US dollars the task may spend (from the backends' prices). */
  maxCostUsd?: number;
  /** Wall-clock time of one run of the task, ms. */
  maxWallMs?: number;
}

/** The `budgets` config section: defaults for every task, and the doom-loop threshold. */
export interface BudgetConfig extends BudgetLimits {
  /** Identical consecutive calls that stop a task (0: no doom-loop detection). */
  doomLoopRepeats: number;
}

/** Which budget stopped a task (the label of `warden_budget_stops_total`). */
export type BudgetKind = 'tokens' | 'cost' | 'wall_time' | 'doom_loop' | 'turns';

/** What the budgets need from the kernel. */
export interface BudgetHost {
  /** Stop a running task; false when it was not running (or already stopping). */
  stopTask(id: string, reason: string): boolean;
  /** Tokens and cost a task had used when it (re)started. */
  usageOf(id: string): { tokens: number; costUsd: number };
  /** The task's turn limit (`maxTurns`). */
  maxTurnsOf(id: string): number;
  /** Kind of a loaded component (`agent`, `tool`, `supervisor`), undefined when unknown. */
  kindOf(component: string): string | undefined;
  /** Told after each stop this listener made. */
  onStop?(kind: BudgetKind, taskId: string): void;
}

/** What one running task has spent. */
interface Spend {
  limits: BudgetLimits;
  tokens: number;
  costUsd: number;
  /** The wall-time timer (unref'd: it never keeps the process alive on its own). */
  timer?: NodeJS.Timeout;
  /** `target\0method\0input` of the last call and how many times in a row it was made. */
  lastCall?: string;
  repeats: number;
  /** Ids of calls that started (`tool.call`); a `tool.result` of another id was refused before it started. */
  started: Set<string>;
}

/** Where each budget is raised, for the stop reason. */
const RAISE: Record<Exclude<BudgetKind, 'doom_loop' | 'turns'>, string> = {
  tokens: 'raise budgets.maxTokens in the config, or maxTokens for this task (warden run --max-tokens, POST /api/tasks maxTokens)',
  cost: 'raise budgets.maxCostUsd in the config, or maxCostUsd for this task (warden run --max-cost, POST /api/tasks maxCostUsd)',
  wall_time: 'raise budgets.maxWallMs in the config, or maxWallMs for this task (warden run --max-wall, POST /api/tasks maxWallMs)',
};

/** The budgets of a kernel's tasks. */
export class Budgets {
  private readonly tasks = new Map<string, Spend>();
  /** Per-task limits given at submission, until the task starts. */
  private readonly overrides = new Map<string, BudgetLimits>();

  constructor(private readonly host: BudgetHost, private readonly config: BudgetConfig) {}

  /** Set a task's own limits (before it starts); fields absent fall back to the config's. */
  limit(taskId: string, limits: BudgetLimits): void {
    const own = Object.fromEntries(Object.entries(limits).filter(([, v]) => v !== undefined)) as BudgetLimits;
    this.overrides.set(taskId, own);
  }

  /** The limits a task was given itself (at submission or restored), without the config's. */
  ownLimitsOf(taskId: string): BudgetLimits {
    return { ...this.overrides.get(taskId) };
  }

  /** The limits that apply to a task. */
  limitsOf(taskId: string): BudgetLimits {
    const { doomLoopRepeats: _, ...defaults } = this.config;
    return { ...defaults, ...this.overrides.get(taskId) };
  }

  /** The bus listener. */
  readonly listener = (event: RuntimeEvent): void => {
    if (!event.taskId) return;
    const id = event.taskId;
    switch (event.type) {
      case 'task.start':
        this.start(id);
        break;
      case 'task.end':
        this.end(id);
        // An interrupted task may be resumed in this process: its own limits still apply then.
        if (event.status !== 'interrupted') this.overrides.delete(id);
        break;
      case 'usage': {
        const spend = this.tasks.get(id);
        if (!spend) break;
        spend.tokens += event.promptTokens + event.completionTokens;
        spend.costUsd += event.costUsd;
        const { maxTokens, maxCostUsd } = spend.limits;
        if (maxTokens !== undefined && spend.tokens >= maxTokens) {
          this.stop(id, 'tokens', `token budget exhausted: ${spend.tokens} tokens used of maxTokens ${maxTokens}; ${RAISE.tokens}`);
        } else if (maxCostUsd !== undefined && spend.costUsd >= maxCostUsd) {
          this.stop(id, 'cost', `cost budget exhausted: $${spend.costUsd.toFixed(6)} spent of maxCostUsd $${maxCostUsd}; ${RAISE.cost}`);
        }
        break;
      }
      case 'tool.call': {
        const spend = this.tasks.get(id);
        if (!spend) break;
        spend.started.add(event.id);
        const input = () => redactSecrets(event.input.length > 200 ? `${event.input.slice(0, 199)}…` : event.input);
        this.repeat(id, spend, `${event.target}\0${event.method}\0${event.input}`, (n) => `${event.caller} called ${event.target}.${event.method} ${n} times in a row with identical input ${input()}`);
        break;
      }
      case 'tool.result': {
        // A call refused before it started (an unknown target, a policy deny) has a result and no call: repeats of it count too.
        const spend = this.tasks.get(id);
        if (!spend || spend.started.delete(event.id)) break;
        this.repeat(id, spend, `${event.target}\0${event.method}\0\0${event.outcome}`, (n) => `${event.caller} called ${event.target}.${event.method} ${n} times in a row, refused each time (${event.outcome})`);
        break;
      }
      case 'step':
        if (event.step === 'limit' && this.tasks.has(id) && isTurnLimit(event.detail) && this.host.kindOf(event.component) === 'agent') {
          const maxTurns = this.host.maxTurnsOf(id);
          this.stop(
            id, 'turns',
            `turn limit reached: ${event.component} stopped after maxTurns ${maxTurns} turns without a final answer; ` +
              'raise maxTurns in the config, or for this task (warden run --max-turns, POST /api/tasks maxTurns)',
          );
        }
        break;
      default:
        break;
    }
  };

  /**
   * Count a call for doom-loop detection (`key` identifies it) and stop the task at the configured
   * repeats; `what(n)` describes the call repeated `n` times, for the reason.
   */
  private repeat(id: string, spend: Spend, key: string, what: (n: number) => string): void {
    const repeats = this.config.doomLoopRepeats;
    if (repeats <= 0) return;
    spend.repeats = spend.lastCall === key ? spend.repeats + 1 : 1;
    spend.lastCall = key;
    if (spend.repeats < repeats) return;
    this.stop(
      id, 'doom_loop',
      `doom loop: ${what(spend.repeats)}; change the task or the model, or raise budgets.doomLoopRepeats in the config (0 turns the check off)`,
    );
  }

  /** Clear every wall-time timer (the kernel is closing). */
  close(): void {
    for (const id of [...this.tasks.keys()]) this.end(id);
    this.overrides.clear();
  }

  private start(id: string): void {
    this.end(id);
    const limits = this.limitsOf(id);
    const used = this.host.usageOf(id);
    const spend: Spend = { limits, tokens: used.tokens, costUsd: used.costUsd, repeats: 0, started: new Set() };
    this.tasks.set(id, spend);
    if (limits.maxWallMs !== undefined) {
      const started = Date.now();
      const ms = limits.maxWallMs;
      const fire = () => {
        spend.timer = undefined;
        const ran = ((Date.now() - started) / 1000).toFixed(1);
        this.stop(id, 'wall_time', `wall-time budget exhausted: the task ran ${ran} s of maxWallMs ${ms} ms; ${RAISE.wall_time}`);
      };
      spend.timer = setTimeout(fire, ms);
      spend.timer.unref();
    }
  }

  private end(id: string): void {
    const spend = this.tasks.get(id);
    if (spend?.timer) clearTimeout(spend.timer);
    this.tasks.delete(id);
  }

  private stop(id: string, kind: BudgetKind, reason: string): void {
    if (this.host.stopTask(id, reason)) this.host.onStop?.(kind, id);
  }
}

/**
 * Whether a `limit` step is an agent's own report of its turn limit (the coder's is `stopped
 * after N turns`), not one the kernel adds for a resource limit the agent's worker hit
 * (`E_LIMIT_TIME: …`, output or SQL limits), which share the step name.
 */
export function isTurnLimit(detail: string): boolean {
  return /\bturns?\b/i.test(detail) && !/^E_[A-Z_]+:/.test(detail);
}
