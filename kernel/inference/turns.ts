/**
 * What an inference call records on its task in the state document (applied to a draft inside
 * `kernel.state.update`): the turn as it streams and ends, fallbacks, tokens and cost per task
 * and per `model@backend`.
 */
import type { FallbackRecord, TaskState } from '../state/index.js';
import type { ChatResult } from './types.js';

/** Open turn `n` of a task: `streaming`, no chunks yet. `now` in ms since the epoch. */
export function startTurn(task: TaskState, n: number, target: string, now: number): void {
  // The draft copies what is assigned into it: write through `task.turns` (read back), never
  // through the value `??=` returns (the copy's original, outside the document).
  task.turns ??= {};
  task.turns[String(n)] = { n, target, status: 'streaming', chunks: [], startedAt: now };
}

/** Append a streamed chunk to turn `n` (an RFC 6902 `add` at the end of `chunks`). */
export function appendChunk(task: TaskState, n: number, chunk: string): void {
  task.turns?.[String(n)]?.chunks.push(chunk);
}

/** Drop turn `n`'s streamed text: a new attempt starts over. */
export function clearChunks(task: TaskState, n: number): void {
  const turn = task.turns?.[String(n)];
  if (turn && turn.chunks.length > 0) turn.chunks = [];
}

/** Record a fallback of turn `n`; @returns the record (keyed by the task's next counter). */
export function addFallback(task: TaskState, n: number, fallback: { from: string; to: string; reason: string }, now: number): FallbackRecord {
  task.fallbacks ??= {};
  const fallbacks = task.fallbacks;
  const record: FallbackRecord = { turn: n, ...fallback, ts: now };
  fallbacks[String(Object.keys(fallbacks).length + 1)] = record;
  return record;
}

/** Turn `n` answered: who served it, its tool calls and usage; the task's totals and `byTarget` grow. */
export function finishTurn(task: TaskState, n: number, result: ChatResult, now: number): void {
  const { promptTokens, completionTokens } = result.response.usage;
  const turn = task.turns?.[String(n)];
  if (turn) {
    Object.assign(turn, {
      servedBy: result.target, status: 'done', durationMs: now - turn.startedAt,
      usage: { promptTokens, completionTokens, costUsd: result.costUsd },
      ...(result.response.toolCalls.length > 0 ? { toolCalls: result.response.toolCalls } : {}),
    });
  }
  const usage = task.usage;
  usage.promptTokens += promptTokens;
  usage.completionTokens += completionTokens;
  usage.costUsd = roundUsd((usage.costUsd ?? 0) + result.costUsd);
  usage.byTarget ??= {};
  usage.byTarget[result.target] ??= { promptTokens: 0, completionTokens: 0, costUsd: 0, requests: 0 };
  const entry = usage.byTarget[result.target]!;
  entry.promptTokens += promptTokens;
  entry.completionTokens += completionTokens;
  entry.costUsd = roundUsd(entry.costUsd + result.costUsd);
  entry.requests++;
}

/** Turn `n` failed with `error` (a message without secrets). */
export function failTurn(task: TaskState, n: number, error: string, now: number): void {
  const turn = task.turns?.[String(n)];
  if (turn) Object.assign(turn, { status: 'error', error, durationMs: now - turn.startedAt });
}

/** Dollars rounded to 1e-9, so sums of many small costs stay readable. */
function roundUsd(usd: number): number {
  return Math.round(usd * 1e9) / 1e9;
}
