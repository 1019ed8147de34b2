/** Formatting of times, durations, token counts and costs for display. Pure functions. */

/**
 * How long ago `ts` was, relative to `now` (both ms since the epoch), in the largest whole unit:
 * `just now` (under 5 s), `42 s`, `3 min`, `5 h`, `2 d`.
 */
export function formatAge(ts: number, now: number): string {
  const s = Math.max(0, Math.floor((now - ts) / 1000));
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86_400)} d ago`;
}

/** A duration in ms for people: `850 ms`, `1.2 s`, `2 min 5 s`. */
export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  const min = Math.floor(ms / 60_000);
  const s = Math.round((ms % 60_000) / 1000);
  return s === 0 ? `${min} min` : `${min} min ${s} s`;
}

/** A tool call's duration: µs below a millisecond (as measured by the caller), ms above; '' while unknown. */
export function formatCallDuration(call: { durationUs?: number; durationMs?: number }): string {
  if (call.durationUs !== undefined && call.durationUs < 1000) return `${call.durationUs} µs`;
  if (call.durationUs !== undefined) return formatMs(call.durationUs / 1000);
  return call.durationMs === undefined ? '' : formatMs(call.durationMs);
}

/** A token count, compact: `950`, `12.3k`, `1.2M`. */
export function formatTokens(n: number): string {
  if (n < 1000) return String(n);
  if (n < 1_000_000) return `${(n / 1000).toFixed(n < 10_000 ? 1 : 0)}k`;
  return `${(n / 1_000_000).toFixed(1)}M`;
}

/**
 * A cost in US dollars: `$0`, `<$0.0001` for tiny non-zero amounts, 4 decimals under a dollar
 * (agent tasks mostly cost cents), 2 from a dollar on. Undefined (no price configured) is `—`.
 */
export function formatCost(usd: number | undefined): string {
  if (usd === undefined) return '—';
  if (usd === 0) return '$0';
  if (usd < 0.0001) return '<$0.0001';
  if (usd < 1) return `$${usd.toFixed(4)}`;
  return `$${usd.toFixed(2)}`;
}

/** The first `n` hex digits of a sha256, or '—' when there is none. */
export function shortHash(hex: string | undefined, n = 12): string {
  return hex ? hex.slice(0, n) : '—';
}

/** `1 file`, `3 files`. */
export function plural(n: number, word: string, many = `${word}s`): string {
  return `${n} ${n === 1 ? word : many}`;
}
