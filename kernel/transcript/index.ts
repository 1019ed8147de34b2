/**
 * JSONL transcripts: one file per task, `<dataDir>/transcripts/<taskId>.jsonl`, written by a
 * listener on the kernel's runtime event bus ({@link Transcripts}) and read back by
 * `warden transcript`, `GET /api/tasks/:id/transcript` and the `replay` backend.
 *
 * Format (version 1): line 1 is the header `{"type":"transcript","version":1,"taskId":…,"ts":…}`;
 * every other line is one {@link RuntimeEvent} of that task exactly as emitted on the bus
 * (`{type, taskId, ts, …}`), with every string passed through `redactDeep` (secrets become
 * `[REDACTED:<kind>]`). A resumed task appends to the same file (its `task.start` has
 * `resumed: true`).
 *
 * One exception to "as emitted": an `inference.request` line holds only the messages the file
 * does not have yet — `messages` from index `messagesFrom` of the conversation, `messageCount`
 * in all — since each request repeats the whole conversation (as written, a transcript grows
 * linearly with the conversation, not quadratically). The first request after the file is opened
 * (a new task, or a resumed one in a new kernel) has `messagesFrom: 0`.
 *
 * Crash safety: the file is opened for appending (`O_APPEND`) and each line is one `write`, so
 * a crash can only leave the last line torn. Readers skip a torn last line; the writer cuts it
 * off before appending again, so a resumed task never glues its first line onto a fragment.
 * Files are created 0600 in a 0700 directory: transcripts hold prompts and tool output.
 */
import { closeSync, fstatSync, ftruncateSync, mkdirSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/index.js';
import { WardenError, messageOf } from '../errors.js';
import type { RuntimeEvent, RuntimeEvents } from '../runtime/events.js';
import { redactDeep } from '../secrets/detect.js';

/** Version of the format this module writes and reads. */
export const TRANSCRIPT_VERSION = 1;

/** Line 1 of every transcript. `ts` in ms since the epoch (when the file was created). */
export interface TranscriptHeader {
  type: 'transcript';
  version: number;
  taskId: string;
  ts: number;
}

/** One task event as a transcript line holds it. */
export type TranscriptEvent = Extract<RuntimeEvent, { taskId: string }>;

/** A transcript as read: its header, its events in order, and whether a torn last line was skipped. */
export interface Transcript {
  header: TranscriptHeader;
  events: TranscriptEvent[];
  /** True when the file ended in an incomplete line (a crash mid-write), which was skipped. */
  torn: boolean;
}

/** Task ids the kernel makes (`t-` and 8 hex digits): the only names a transcript file may have. */
const TASK_ID = /^t-[0-9a-f]{8}$/;

/** The directory transcripts live in. */
export function transcriptsDir(dataDir: string): string {
  return join(dataDir, 'transcripts');
}

/**
 * The transcript file of a task.
 * @throws WardenError `E_BAD_INPUT` when `taskId` is not a task id (`t-` and 8 hex digits)
 */
export function transcriptPath(dataDir: string, taskId: string): string {
  return fileIn(transcriptsDir(dataDir), taskId);
}

/** `<dir>/<taskId>.jsonl`, for a well-formed task id only (no path can be smuggled in). */
function fileIn(dir: string, taskId: string): string {
  if (!TASK_ID.test(taskId)) throw new WardenError('E_BAD_INPUT', `${JSON.stringify(taskId.slice(0, 40))} is not a task id (t- and 8 hex digits); see \`warden task list\``);
  return join(dir, `${taskId}.jsonl`);
}

/**
 * The complete lines of a transcript's text: a last line without its newline (torn by a crash)
 * is left out. @returns the lines and whether one was left out
 */
export function completeLines(text: string): { lines: string[]; torn: boolean } {
  const end = text.lastIndexOf('\n');
  const torn = end < text.length - 1;
  const lines = end < 0 ? [] : text.slice(0, end).split('\n').filter((line) => line.length > 0);
  return { lines, torn };
}

/**
 * Parse a transcript's text (see the module comment for the format).
 * @param where the file name, for error messages
 * @throws WardenError `E_BAD_INPUT` naming the file and line: no header, an unknown version, a
 *   line that is not JSON (other than a torn last line), an event of another task
 */
export function parseTranscript(text: string, where: string): Transcript {
  const { lines, torn } = completeLines(text);
  const bad = (line: number, why: string) => new WardenError('E_BAD_INPUT', `${where}:${line}: ${why}; not a Warden transcript, or damaged`);
  const parsed = lines.map((line, i) => {
    try {
      return JSON.parse(line) as Record<string, unknown>;
    } catch {
      throw bad(i + 1, 'not a JSON line');
    }
  });
  const header = parsed[0];
  if (!header || header['type'] !== 'transcript') throw bad(1, 'the first line is not a transcript header');
  if (header['version'] !== TRANSCRIPT_VERSION) throw bad(1, `version ${String(header['version'])}, this kernel reads version ${TRANSCRIPT_VERSION}`);
  const taskId = String(header['taskId']);
  parsed.forEach((event, i) => {
    if (i > 0 && (typeof event['type'] !== 'string' || event['taskId'] !== taskId)) throw bad(i + 1, `not an event of task ${taskId}`);
  });
  return { header: header as unknown as TranscriptHeader, events: parsed.slice(1) as unknown as TranscriptEvent[], torn };
}

/**
 * Read a transcript file.
 * @throws WardenError `E_NOT_FOUND` (no such file), `E_BAD_INPUT` (see {@link parseTranscript})
 */
export function readTranscript(file: string): Transcript {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new WardenError('E_NOT_FOUND', `no transcript ${file}`);
    throw new WardenError('E_BAD_INPUT', `cannot read transcript ${file}: ${messageOf(err)}`);
  }
  return parseTranscript(text, file);
}

/**
 * The bus listener that writes transcripts. One per kernel: {@link attach} it to the kernel's
 * events; {@link close} closes the files still open.
 */
export class Transcripts {
  /** Open files of tasks that are running (between `task.start` and `task.end`). */
  private readonly open = new Map<string, number>();
  /** Per task with an open file: how many conversation messages its `inference.request` lines hold. */
  private readonly messagesWritten = new Map<string, number>();
  /** Tasks whose transcript failed to write (logged once each, not per event). */
  private readonly failed = new Set<string>();

  /**
   * @param dir where the files go (created 0700 when missing)
   * @param log where write failures are logged (the task goes on without its transcript)
   */
  constructor(readonly dir: string, private readonly log?: Logger) {}

  /** Record every task event of `events` from now on. @returns unsubscribe */
  attach(events: RuntimeEvents): () => void {
    return events.on((event) => this.record(event));
  }

  /** The file of `taskId`. @throws WardenError `E_BAD_INPUT` for a malformed id */
  pathOf(taskId: string): string {
    return fileIn(this.dir, taskId);
  }

  /**
   * Append one event to its task's transcript (kernel-wide events are not a task's and are
   * skipped). The file stays open from `task.start` to `task.end`; an event outside that span
   * (a session committed after the task ended) opens, appends and closes.
   */
  record(event: RuntimeEvent): void {
    const taskId = event.taskId;
    if (!taskId) return;
    try {
      let fd = this.open.get(taskId);
      const live = event.type !== 'task.end' && (fd !== undefined || event.type === 'task.start');
      if (fd === undefined) fd = this.openFile(taskId, event.ts);
      if (live) this.open.set(taskId, fd);
      try {
        writeLine(fd, redactDeep(this.compact(event)));
      } finally {
        if (!live) {
          this.open.delete(taskId);
          this.messagesWritten.delete(taskId);
          closeSync(fd);
        }
      }
    } catch (err) {
      if (!this.failed.has(taskId)) this.log?.error({ task: taskId, event: event.type, err: messageOf(err) }, 'transcript write failed; the task goes on without it');
      this.failed.add(taskId);
    }
  }

  /** An `inference.request` with only the messages this file does not hold yet (see the module comment). */
  private compact(event: RuntimeEvent): RuntimeEvent | (RuntimeEvent & { messagesFrom: number; messageCount: number }) {
    if (event.type !== 'inference.request') return event;
    const taskId = event.taskId;
    const written = this.messagesWritten.get(taskId) ?? 0;
    // A conversation that shrank (it should not) is written whole again.
    const from = written <= event.messages.length ? written : 0;
    this.messagesWritten.set(taskId, event.messages.length);
    return { ...event, messages: event.messages.slice(from), messagesFrom: from, messageCount: event.messages.length };
  }

  /** Close every file still open (tasks that did not end: a drain, a kernel closed mid-task). */
  close(): void {
    for (const fd of this.open.values()) closeSync(fd);
    this.open.clear();
    this.messagesWritten.clear();
  }

  /** Open a task's file for appending: created 0600 with its header, or with a torn last line cut off. */
  private openFile(taskId: string, ts: number): number {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const file = this.pathOf(taskId);
    const fd = openSync(file, 'a+', 0o600);
    const size = fstatSync(fd).size;
    if (size === 0) {
      writeLine(fd, { type: 'transcript', version: TRANSCRIPT_VERSION, taskId, ts } satisfies TranscriptHeader);
    } else {
      const keep = completeLength(fd, size);
      if (keep < size) {
        ftruncateSync(fd, keep);
        this.log?.warn({ task: taskId, bytes: size - keep }, 'transcript ended in a torn line (a crash mid-write); cut it off');
      }
    }
    return fd;
  }
}

/** One line, one `write` (O_APPEND: the whole line lands at the end of the file). */
function writeLine(fd: number, value: unknown): void {
  writeSync(fd, `${JSON.stringify(value)}\n`);
}

/** Length of the file up to and including its last newline (reads backwards in 64 KiB blocks). */
function completeLength(fd: number, size: number): number {
  const block = Buffer.alloc(65_536);
  let end = size;
  while (end > 0) {
    const start = Math.max(0, end - block.length);
    const n = readSync(fd, block, 0, end - start, start);
    const at = block.subarray(0, n).lastIndexOf(0x0a);
    if (at >= 0) return start + at + 1;
    end = start;
  }
  return 0;
}

/**
 * Bytes of a transcript file that hold complete lines (a torn last line left out), for serving
 * it as NDJSON while it may still grow.
 * @throws the `fs` error (`ENOENT` when there is no such file)
 */
export function completeSize(file: string): number {
  const fd = openSync(file, 'r');
  try {
    return completeLength(fd, fstatSync(fd).size);
  } finally {
    closeSync(fd);
  }
}

/** Name of the backend a replay run serves every request from. */
export const REPLAY_BACKEND = 'replay';

/**
 * The configuration of a replay run (`warden run --replay`, `KernelOptions.replay`): one backend,
 * `{name: "replay", kind: "replay", transcript}`, so it is the default and every request goes to
 * it; fallback chains and category targets are dropped (they would name backends the run must
 * not call). Everything else (grants, limits, policy, budgets) is the operator's.
 */
export function replayConfig(config: Config, transcript: string): Config {
  return {
    ...config,
    backends: [{ name: REPLAY_BACKEND, kind: 'replay', transcript }],
    inference: { ...config.inference, fallback: {}, categories: {} },
  };
}
