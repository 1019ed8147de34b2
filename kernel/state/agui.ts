/**
 * The AG-UI view of a task (https://docs.ag-ui.com, event shapes of `@ag-ui/core` 1.0): events
 * derived from the difference between two versions of a {@link TaskState}. Pure (no I/O);
 * `kernel/server/routes/agui.ts` streams them over SSE.
 *
 * Mapping (also in `docs/stream.md`):
 * - a new step `steps[n]` → `STEP_STARTED` + `STEP_FINISHED` (`stepName` "component:step",
 *   the step itself as `rawEvent`): Warden's steps are progress reports, finished when made;
 * - a new inference turn `turns[n]` → `TEXT_MESSAGE_START` (`messageId` "<task>-turn-<n>",
 *   role `assistant`); each chunk appended → `TEXT_MESSAGE_CONTENT` (`delta`, empty chunks skipped);
 *   the turn leaving `streaming` → `TEXT_MESSAGE_END`;
 * - a new mesh call `toolCalls[id]` → `TOOL_CALL_START` (`toolCallName` = the target component,
 *   `parentMessageId` = the turn it followed) + `TOOL_CALL_ARGS` (its input); the call ending →
 *   `TOOL_CALL_END` + `TOOL_CALL_RESULT` (`content` = its output, or its outcome);
 * - the task reaching `succeeded` → `RUN_FINISHED` (`result` = its summary); `failed` or
 *   `interrupted` → `RUN_ERROR` (`message` = its error, `code` = `failed`, `stopped` or `interrupted`).
 *   Messages and calls still open are ended first, as AG-UI requires before `RUN_FINISHED`.
 * `RUN_STARTED`, `STATE_SNAPSHOT` and `STATE_DELTA` are the route's (they need the stream's position).
 */
import type { TaskState } from './index.js';

/** An AG-UI event: `type` plus the fields of its `@ag-ui/core` schema; `timestamp` ms since the epoch. */
export interface AguiEvent {
  type: string;
  timestamp?: number;
  [field: string]: unknown;
}

/** Statuses after which a task's run is over. */
export const FINISHED_STATUSES: ReadonlySet<TaskState['status']> = new Set(['succeeded', 'failed', 'interrupted']);

/** The AG-UI message id of turn `n` of `taskId`. */
export function turnMessageId(taskId: string, n: string | number): string {
  return `${taskId}-turn-${n}`;
}

/**
 * The AG-UI events that take a watcher from `before` (what it was last shown; undefined: nothing
 * yet, replay everything) to `after`, in time order (a stable sort: events of one item keep their order).
 */
export function deriveEvents(before: TaskState | undefined, after: TaskState): AguiEvent[] {
  const timed: Array<{ at: number; events: AguiEvent[] }> = [];
  const at = (t: number, events: AguiEvent[]) => events.length > 0 && timed.push({ at: t, events });

  for (const [n, step] of Object.entries(after.steps)) {
    if (before?.steps[n]) continue;
    const stepName = `${step.component}:${step.step}`;
    at(step.ts, [
      { type: 'STEP_STARTED', timestamp: step.ts, stepName, rawEvent: step },
      { type: 'STEP_FINISHED', timestamp: step.ts, stepName },
    ]);
  }

  const turns = Object.entries(after.turns ?? {}).sort((a, b) => a[1].startedAt - b[1].startedAt);
  for (const [n, turn] of turns) {
    const messageId = turnMessageId(after.id, n);
    const old = before?.turns?.[n];
    const events: AguiEvent[] = [];
    if (!old) events.push({ type: 'TEXT_MESSAGE_START', timestamp: turn.startedAt, messageId, role: 'assistant' });
    for (const delta of turn.chunks.slice(old?.chunks.length ?? 0)) if (delta) events.push({ type: 'TEXT_MESSAGE_CONTENT', messageId, delta });
    if (turn.status !== 'streaming' && (!old || old.status === 'streaming')) events.push({ type: 'TEXT_MESSAGE_END', messageId });
    at(turn.startedAt, events);
  }

  for (const [id, call] of Object.entries(after.toolCalls)) {
    const old = before?.toolCalls[id];
    if (!old) {
      const parent = turns.filter(([, t]) => t.startedAt <= call.startedAt).pop();
      at(call.startedAt, [
        { type: 'TOOL_CALL_START', timestamp: call.startedAt, toolCallId: id, toolCallName: call.target, ...(parent ? { parentMessageId: turnMessageId(after.id, parent[0]) } : {}) },
        ...(call.input ? [{ type: 'TOOL_CALL_ARGS', toolCallId: id, delta: call.input }] : []),
      ]);
    }
    if (call.status !== 'running' && (!old || old.status === 'running')) {
      const end = call.startedAt + (call.durationMs ?? 0);
      at(end, [
        { type: 'TOOL_CALL_END', timestamp: end, toolCallId: id },
        { type: 'TOOL_CALL_RESULT', timestamp: end, messageId: `${id}-result`, toolCallId: id, content: call.output ?? call.outcome ?? call.status, role: 'tool' },
      ]);
    }
  }

  const events = timed.sort((a, b) => a.at - b.at).flatMap((t) => t.events);
  if (FINISHED_STATUSES.has(after.status) && !(before && FINISHED_STATUSES.has(before.status))) events.push(...finish(after));
  return events;
}

/** End what is still open (AG-UI wants no open message or call at `RUN_FINISHED`), then the run's last event. */
function finish(task: TaskState): AguiEvent[] {
  const events: AguiEvent[] = [];
  for (const [n, turn] of Object.entries(task.turns ?? {})) if (turn.status === 'streaming') events.push({ type: 'TEXT_MESSAGE_END', messageId: turnMessageId(task.id, n) });
  for (const [id, call] of Object.entries(task.toolCalls)) if (call.status === 'running') events.push({ type: 'TOOL_CALL_END', toolCallId: id });
  const timestamp = task.finishedAt ?? Date.now();
  if (task.status === 'succeeded') {
    events.push({ type: 'RUN_FINISHED', timestamp, threadId: task.id, runId: task.id, ...(task.summary !== undefined ? { result: task.summary } : {}) });
  } else {
    const code = task.status === 'interrupted' ? 'interrupted' : task.stopReason ? 'stopped' : 'failed';
    events.push({ type: 'RUN_ERROR', timestamp, message: task.error ?? task.stopReason ?? `the task ${task.status}`, code });
  }
  return events;
}
