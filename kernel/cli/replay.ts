/**
 * Transcripts on the command line: `warden transcript ID` (print a task's transcript) and what
 * `warden run --replay TRANSCRIPT` needs (the recorded task to run again, see {@link replayTask}),
 * plus the parsing of `run`'s budget flags (`--max-tokens`, `--max-cost`, `--max-wall`).
 */
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { WardenError, messageOf } from '../errors.js';
import { readTranscript, transcriptPath, type Transcript } from '../transcript/index.js';
import { formatTranscript, totalsOf } from '../transcript/format.js';
import { isTurnLimit } from '../runtime/budgets.js';

/** What `run --replay` submits: the recorded task, with its workspace possibly overridden. */
export interface ReplayTask {
  /** The transcript, absolute (the kernel's replay backend reads it). */
  transcript: string;
  prompt: string;
  workspace: string;
  /** The recorded model without its backend: the replay backend is the kernel's default for the run. */
  model: string;
  /** The recorded turn limit when the task hit it (a `limit` step of an agent), else undefined. */
  maxTurns?: number;
}

/**
 * The task recorded in a transcript, to run again against its recorded model responses: the
 * prompt, workspace and model of its first `task.start` (prompts are stored redacted, so a
 * prompt that held a secret is replayed with `[REDACTED:…]` in its place).
 * @param workspace overrides the recorded workspace (`--workspace`)
 * @throws WardenError `E_NOT_FOUND` (no file), `E_BAD_INPUT` (not a transcript), `E_REPLAY` (no
 *   `task.start` or no recorded model response in it)
 */
export function replayTask(file: string, workspace?: string): ReplayTask {
  const transcript = readTranscript(resolve(file));
  const start = transcript.events.find((e) => e.type === 'task.start');
  if (!start || start.type !== 'task.start') throw new WardenError('E_REPLAY', `${file} records no task.start: nothing to replay`);
  const responses = transcript.events.filter((e) => e.type === 'inference.response').length;
  if (responses === 0) throw new WardenError('E_REPLAY', `${file} records no model response (inference.response): nothing to replay`);
  const at = start.model.lastIndexOf('@');
  const limited = transcript.events.some((e) => e.type === 'step' && e.step === 'limit' && isTurnLimit(e.detail));
  return {
    transcript: resolve(file),
    prompt: start.prompt,
    workspace: resolve(workspace ?? start.workspace),
    model: at > 0 ? start.model.slice(0, at) : start.model,
    ...(limited ? { maxTurns: transcript.events.filter((e) => e.type === 'inference.request').length } : {}),
  };
}

/** Budget flags of `warden run`, parsed. */
export interface BudgetFlags {
  maxTokens?: number;
  maxCostUsd?: number;
  maxWallMs?: number;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * A duration flag: `500ms`, `90s`, `10m`, `1.5h`, or a bare number of milliseconds. @returns ms
 * @throws WardenError `E_BAD_INPUT` naming the flag
 */
export function parseDuration(value: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  const ms = m ? Math.round(Number(m[1]) * UNITS[m[2] ?? 'ms']!) : NaN;
  if (!Number.isFinite(ms) || ms < 1) throw new WardenError('E_BAD_INPUT', `${flag} ${value}: expected a duration such as 500ms, 90s, 10m or 1h (a bare number is ms)`);
  return ms;
}

/**
 * Parse `--max-tokens N`, `--max-cost USD`, `--max-wall DURATION` (each optional).
 * @throws WardenError `E_BAD_INPUT` naming the flag
 */
export function parseBudgetFlags(opts: { maxTokens?: string; maxCost?: string; maxWall?: string }): BudgetFlags {
  const flags: BudgetFlags = {};
  if (opts.maxTokens !== undefined) {
    const n = Number(opts.maxTokens);
    if (!Number.isInteger(n) || n < 1) throw new WardenError('E_BAD_INPUT', `--max-tokens ${opts.maxTokens}: expected a positive whole number of tokens`);
    flags.maxTokens = n;
  }
  if (opts.maxCost !== undefined) {
    const usd = Number(opts.maxCost.replace(/^\$/, ''));
    if (!Number.isFinite(usd) || usd <= 0) throw new WardenError('E_BAD_INPUT', `--max-cost ${opts.maxCost}: expected a positive amount of US dollars, such as 0.50`);
    flags.maxCostUsd = usd;
  }
  if (opts.maxWall !== undefined) flags.maxWallMs = parseDuration(opts.maxWall, '--max-wall');
  return flags;
}

/** A task id (`t-…`) names `<data-dir>/transcripts/<id>.jsonl`; anything else is a file path. */
function fileOf(idOrFile: string, dataDir: string): string {
  return /^t-[0-9a-f]{8}$/.test(idOrFile) ? transcriptPath(resolve(dataDir), idOrFile) : resolve(idOrFile);
}

/** Register `warden transcript`. */
export function registerTranscriptCommands(program: Command): void {
  program
    .command('transcript')
    .description('print a task\'s transcript: turns, tool calls, policy decisions, usage (secrets are stored redacted)')
    .argument('<task>', 'task id (t-…) or the path of a transcript file')
    .option('--json', 'print {header, events, torn, totals} as JSON')
    .option('--data-dir <dir>', 'data directory: database, sessions, caches', '.warden')
    .action((idOrFile: string, opts: { json?: boolean; dataDir: string }) => {
      let transcript: Transcript;
      try {
        transcript = readTranscript(fileOf(idOrFile, opts.dataDir));
      } catch (err) {
        process.stderr.write(`warden: ${messageOf(err)}\n`);
        process.exit(1);
      }
      if (opts.json) process.stdout.write(`${JSON.stringify({ ...transcript, totals: totalsOf(transcript) }, null, 2)}\n`);
      else process.stdout.write(formatTranscript(transcript));
    });
}
