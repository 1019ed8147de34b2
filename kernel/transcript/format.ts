/**
 * A transcript for people (`warden transcript ID`): one line per event, offsets from the task's
 * first event, turns, tool calls, policy decisions and usage, and totals at the end. Long texts
 * are cut to one line of at most {@link WIDTH} characters; `--json` prints everything.
 */
import type { Transcript, TranscriptEvent } from './index.js';

/** Longest excerpt of a text (prompt, answer, tool input or output) on one line. */
const WIDTH = 160;

/** `text` on one line, at most `width` characters (an ellipsis marks a cut). */
function oneLine(text: string, width = WIDTH): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > width ? `${flat.slice(0, width - 1)}…` : flat;
}

/** `+1.234s` from the first event. */
function offset(ts: number, start: number): string {
  return `+${((ts - start) / 1000).toFixed(3)}s`.padStart(9);
}

/** One event as one line. */
function describe(event: TranscriptEvent): string {
  switch (event.type) {
    case 'task.start':
      return `${event.resumed ? 'resumed' : 'started'} on ${event.workspace} with ${event.model}: ${oneLine(event.prompt)}`;
    case 'task.end':
      return `ended ${event.status}${event.stopReason ? ` (stopped: ${oneLine(event.stopReason)})` : ''}${event.summary ? `: ${oneLine(event.summary)}` : ''}${event.error && !event.stopReason ? `: ${oneLine(event.error)}` : ''}`;
    case 'inference.request':
      return `turn ${event.turn} → ${event.target}: ${(event as { messageCount?: number }).messageCount ?? event.messages.length} message(s), ${event.tools.length} tool(s); last: ${oneLine(event.messages.at(-1)?.content ?? '', 100)}`;
    case 'inference.response': {
      const calls = event.response.toolCalls.map((c) => `${c.name} ${oneLine(c.arguments, 80)}`).join('; ');
      const text = event.response.content ? ` "${oneLine(event.response.content, 100)}"` : '';
      return `turn ${event.turn} ← ${event.model}@${event.backend} in ${event.durationMs} ms (${event.response.finishReason})${text}${calls ? ` calls: ${calls}` : ''}`;
    }
    case 'inference.error':
      return `turn ${event.turn} ✗ ${event.target}: ${oneLine(event.error)}`;
    case 'fallback':
      return `turn ${event.turn} fallback ${event.from} → ${event.to}: ${oneLine(event.reason)}`;
    case 'privacy':
      return `turn ${event.turn} privacy ${event.level}${event.reason ? ` (${event.reason})` : ''}`;
    case 'usage':
      return `usage ${event.model}@${event.backend}: ${event.promptTokens} in, ${event.completionTokens} out, $${event.costUsd.toFixed(6)}`;
    case 'tool.call':
      return `call ${event.caller} → ${event.target}.${event.method} ${oneLine(event.input, 120)}`;
    case 'tool.result':
      return `${event.outcome === 'ok' ? '✓' : '✗'} ${event.target}.${event.method} ${event.outcome} in ${event.durationMs} ms: ${oneLine(event.output, 120)}`;
    case 'policy':
      return `policy ${event.decision} ${event.kind} ${event.subject} (mode ${event.mode}${event.rule ? `, rule ${event.rule}` : ''}${event.approvalId ? `, approval ${event.approvalId}` : ''})`;
    case 'approval':
      return `approval ${event.id} ${event.status}${event.by ? ` by ${event.by}` : ''}${event.reason ? `: ${oneLine(event.reason)}` : ''}`;
    case 'step':
      return `step ${event.component}: ${event.step} ${oneLine(event.detail, 120)}`;
    case 'denied':
      return `denied ${event.component} ${event.capability}: ${oneLine(event.reason)}`;
    case 'session':
      return `session ${event.session} ${event.action}`;
    default:
      return `${(event as { type: string }).type}`;
  }
}

/** Totals of a transcript: turns asked, tool calls, tokens and cost. */
export interface TranscriptTotals {
  turns: number;
  toolCalls: number;
  promptTokens: number;
  completionTokens: number;
  costUsd: number;
  policyDecisions: number;
}

/** Count what a transcript holds. */
export function totalsOf(transcript: Transcript): TranscriptTotals {
  const totals: TranscriptTotals = { turns: 0, toolCalls: 0, promptTokens: 0, completionTokens: 0, costUsd: 0, policyDecisions: 0 };
  for (const event of transcript.events) {
    if (event.type === 'inference.request') totals.turns++;
    else if (event.type === 'tool.call') totals.toolCalls++;
    else if (event.type === 'policy') totals.policyDecisions++;
    else if (event.type === 'usage') {
      totals.promptTokens += event.promptTokens;
      totals.completionTokens += event.completionTokens;
      totals.costUsd += event.costUsd;
    }
  }
  return totals;
}

/** The whole transcript as text, one event per line, then totals. */
export function formatTranscript(transcript: Transcript): string {
  const start = transcript.events[0]?.ts ?? transcript.header.ts;
  const lines = [`transcript of ${transcript.header.taskId} (version ${transcript.header.version}, created ${new Date(transcript.header.ts).toISOString()})`];
  for (const event of transcript.events) lines.push(`${offset(event.ts, start)}  ${describe(event)}`);
  const t = totalsOf(transcript);
  lines.push(
    `totals: ${t.turns} inference request(s), ${t.toolCalls} call(s), ${t.policyDecisions} policy decision(s), ${t.promptTokens} tokens in, ${t.completionTokens} out, $${t.costUsd.toFixed(6)}`,
  );
  if (transcript.torn) lines.push('(the last line was torn by a crash mid-write and is left out)');
  return `${lines.join('\n')}\n`;
}
