/** What the benchmarks share: command-line options and sample statistics. */

/** `--NAME N` from the command line, a positive integer, or `fallback`. @throws Error naming the flag */
export function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const value = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} takes a positive integer`);
  return value;
}

/** The `q` quantile (0..1) of ascending `sorted` samples (nearest rank); NaN when empty. */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

/** Median, p99 and minimum of a series, in the samples' unit, and its size. */
export interface Summary {
  median: number;
  p99: number;
  min: number;
  n: number;
}

/** Summarise samples (not modified). */
export function summarise(samples: number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  return { median: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), min: sorted[0]!, n: sorted.length };
}
