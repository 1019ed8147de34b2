/**
 * A task's timeline: progress steps, inference turns (their text streaming in), tool calls and
 * approvals, in the order they started.
 */
import type { Approval, InferenceTurn, TaskState, TaskStep, ToolCall } from '../state/index.ts';
import { Badge } from './Badge.tsx';
import { formatCallDuration, formatCost, formatMs, formatTokens, plural } from '../lib/format.ts';

type Entry =
  | { kind: 'step'; ts: number; order: number; step: TaskStep }
  | { kind: 'turn'; ts: number; order: number; turn: InferenceTurn }
  | { kind: 'call'; ts: number; order: number; call: ToolCall }
  | { kind: 'approval'; ts: number; order: number; approval: Approval };

/** Entries sorted by start time; ties keep kind order (step, turn, call, approval) then their own order. */
export function timelineOf(task: TaskState, approvals: Approval[]): Entry[] {
  const entries: Entry[] = [
    ...Object.values(task.steps).map((step): Entry => ({ kind: 'step', ts: step.ts, order: step.n, step })),
    ...Object.values(task.turns ?? {}).map((turn): Entry => ({ kind: 'turn', ts: turn.startedAt, order: turn.n, turn })),
    ...Object.values(task.toolCalls).map((call, i): Entry => ({ kind: 'call', ts: call.startedAt, order: i, call })),
    ...approvals.map((approval, i): Entry => ({ kind: 'approval', ts: approval.createdAt, order: i, approval })),
  ];
  const rank = { step: 0, turn: 1, call: 2, approval: 3 };
  return entries.sort((a, b) => a.ts - b.ts || rank[a.kind] - rank[b.kind] || a.order - b.order);
}

/** The whole timeline. */
export function Timeline(props: { task: TaskState; approvals: Approval[] }) {
  const entries = timelineOf(props.task, props.approvals);
  const calls = Object.keys(props.task.toolCalls).length;
  const turns = Object.keys(props.task.turns ?? {}).length;
  return (
    <section class="panel" id="timeline">
      <header class="panel-head">
        <h2>Timeline</h2>
        <span class="muted">
          {plural(Object.keys(props.task.steps).length, 'step')} · {plural(turns, 'turn')} · {plural(calls, 'tool call')}
        </span>
      </header>
      {entries.length === 0 && <p class="muted pad">Nothing yet: the task is queued.</p>}
      <ol class="timeline">
        {entries.map((e) => {
          switch (e.kind) {
            case 'step':
              return <StepItem key={`s${e.step.n}`} step={e.step} />;
            case 'turn':
              return <TurnItem key={`t${e.turn.n}`} turn={e.turn} />;
            case 'call':
              return <CallItem key={`c${e.call.id}`} call={e.call} />;
            case 'approval':
              return <ApprovalItem key={`a${e.approval.id}`} approval={e.approval} />;
          }
        })}
      </ol>
    </section>
  );
}

function StepItem({ step }: { step: TaskStep }) {
  return (
    <li class="tl tl-step" data-step={step.n}>
      <span class="tl-dot" />
      <div class="tl-body">
        <span class="tl-step-name">
          <span class="muted">{step.component}</span> {step.step}
        </span>
        {step.detail && <span class="tl-detail">{step.detail}</span>}
      </div>
    </li>
  );
}

function TurnItem({ turn }: { turn: InferenceTurn }) {
  const text = turn.chunks.join('');
  const streaming = turn.status === 'streaming';
  return (
    <li class={`tl tl-turn ${streaming ? 'is-streaming' : ''}`} data-turn={turn.n} data-status={turn.status}>
      <span class="tl-dot" />
      <div class="tl-card">
        <div class="tl-head">
          <span class="tl-title">Inference {turn.n}</span>
          <code class="target">{turn.servedBy ?? turn.target}</code>
          {turn.servedBy && turn.servedBy !== turn.target && <span class="muted small">asked {turn.target}</span>}
          <span class="spacer" />
          <Badge status={turn.status} />
        </div>
        {(text || streaming) && (
          <div class="turn-text">
            {text}
            {streaming && <span class="caret" aria-hidden="true" />}
          </div>
        )}
        {turn.toolCalls && turn.toolCalls.length > 0 && (
          <div class="turn-tools">
            {turn.toolCalls.map((c) => (
              <code key={c.id} class="chip" title={c.arguments}>
                {c.name}({truncate(c.arguments, 60)})
              </code>
            ))}
          </div>
        )}
        {turn.error && <p class="error-text">{turn.error}</p>}
        {(turn.usage || turn.durationMs !== undefined) && (
          <div class="tl-foot muted">
            {turn.durationMs !== undefined && <span>{formatMs(turn.durationMs)}</span>}
            {turn.usage && (
              <span>
                {formatTokens(turn.usage.promptTokens)} in · {formatTokens(turn.usage.completionTokens)} out · {formatCost(turn.usage.costUsd)}
              </span>
            )}
          </div>
        )}
      </div>
    </li>
  );
}

function CallItem({ call }: { call: ToolCall }) {
  const outcome = call.status === 'error' && call.outcome ? call.outcome : call.status;
  return (
    <li class={`tl tl-call outcome-${outcome}`} data-call={call.id} data-status={call.status}>
      <span class="tl-dot" />
      <div class="tl-card">
        <div class="tl-head">
          <span class="tl-title">
            <span class="muted">{call.caller} →</span> {call.target}.{call.method}
          </span>
          <span class="spacer" />
          <span class="muted small">{formatCallDuration(call)}</span>
          <Badge status={outcome} tone={call.status === 'error' ? 'error' : call.status} />
        </div>
        <IoBlock label="input" text={call.input} />
        {call.output !== undefined && call.output !== '' && <IoBlock label={call.status === 'error' ? 'error' : 'output'} text={call.output} />}
      </div>
    </li>
  );
}

function ApprovalItem({ approval }: { approval: Approval }) {
  return (
    <li class={`tl tl-approval status-${approval.status}`} data-approval-entry={approval.id}>
      <span class="tl-dot" />
      <div class="tl-body">
        <span class="tl-step-name">
          <span class="muted">approval</span> <code>{approval.subject}</code> <Badge status={approval.status} />
        </span>
        <span class="tl-detail">
          {approval.rule}
          {approval.decidedBy ? ` · decided by ${approval.decidedBy}` : ''}
          {approval.reason ? ` · ${approval.reason}` : ''}
        </span>
      </div>
    </li>
  );
}

/** Input or output of a call: short ones inline, long ones folded. */
function IoBlock(props: { label: string; text: string }) {
  const pretty = prettyJson(props.text);
  if (pretty.length <= 160 && !pretty.includes('\n')) {
    return (
      <div class="io">
        <span class="io-label">{props.label}</span>
        <code class="io-inline">{pretty}</code>
      </div>
    );
  }
  return (
    <details class="io">
      <summary>
        <span class="io-label">{props.label}</span>
        <code class="io-inline">{truncate(pretty.replace(/\s+/g, ' '), 110)}</code>
      </summary>
      <pre class="io-full">{pretty}</pre>
    </details>
  );
}

/** JSON pretty-printed when it parses, the text itself otherwise. */
function prettyJson(text: string): string {
  const trimmed = text.trim();
  if (!trimmed.startsWith('{') && !trimmed.startsWith('[')) return text;
  try {
    const value: unknown = JSON.parse(trimmed);
    const flat = JSON.stringify(value);
    return flat.length <= 160 ? flat : JSON.stringify(value, null, 2);
  } catch {
    return text;
  }
}

function truncate(text: string, n: number): string {
  return text.length <= n ? text : `${text.slice(0, n - 1)}…`;
}
