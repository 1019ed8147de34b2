/**
 * The `replay` backend kind: serves a recorded transcript again. Each request gets the next
 * `inference.response` of the transcript, in file order, whatever model it asks for; when they
 * run out, the request fails with `invalid-request` (`E_REPLAY`) naming the transcript and the
 * turn. Nothing leaves the machine, so a replay backend counts as zero data retention.
 *
 * Transcript format (version 1, written by `kernel/transcript`): JSON Lines; line 1
 * `{"type":"transcript","version":1,"taskId":…,"ts":…}`, then one runtime event per line. The
 * lines read here are `{"type":"inference.response", …, "response": {content, toolCalls, usage,
 * finishReason}}`.
 */
import { readFileSync } from 'node:fs';
import { WardenError, messageOf } from '../errors.js';
import { AttemptError, type AttemptAnswer, type AttemptOptions, type Provider } from './provider.js';
import type { ChatRequest, ChatResponse } from './types.js';
import { completeLines } from '../transcript/index.js';

/** Serves the answers of one transcript in order. One cursor for the whole kernel. */
export class ReplayProvider implements Provider {
  readonly http = false;
  private served = 0;

  /**
   * @param transcript the file's path (named in errors)
   * @param responses the recorded answers, in order
   */
  constructor(readonly transcript: string, private readonly responses: ChatResponse[]) {}

  /**
   * Read a transcript.
   * @throws WardenError `E_REPLAY`: unreadable, not a version-1 transcript, or a malformed line (named by number)
   */
  static load(transcript: string): ReplayProvider {
    let text: string;
    try {
      text = readFileSync(transcript, 'utf8');
    } catch (err) {
      throw new WardenError('E_REPLAY', `cannot read the transcript ${transcript}: ${messageOf(err)}`);
    }
    // A last line torn by a crash mid-write is left out, as every transcript reader does.
    const lines = completeLines(text).lines;
    const responses: ChatResponse[] = [];
    lines.forEach((line, i) => {
      let event: { type?: unknown; version?: unknown; response?: Partial<ChatResponse> };
      try {
        event = JSON.parse(line) as typeof event;
      } catch {
        throw new WardenError('E_REPLAY', `${transcript}:${i + 1} is not JSON; is it a warden transcript?`);
      }
      if (i === 0 && (event.type !== 'transcript' || event.version !== 1)) {
        throw new WardenError('E_REPLAY', `${transcript} does not start with a version 1 transcript header ({"type":"transcript","version":1,…})`);
      }
      if (event.type !== 'inference.response') return;
      const r = event.response;
      if (!r || typeof r.content !== 'string' || !Array.isArray(r.toolCalls)) {
        throw new WardenError('E_REPLAY', `${transcript}:${i + 1}: an inference.response without a response {content, toolCalls, usage, finishReason}`);
      }
      responses.push({
        content: r.content,
        toolCalls: r.toolCalls.map((c) => ({ id: String(c.id), name: String(c.name), arguments: String(c.arguments) })),
        usage: { promptTokens: Number(r.usage?.promptTokens ?? 0), completionTokens: Number(r.usage?.completionTokens ?? 0) },
        finishReason: typeof r.finishReason === 'string' ? r.finishReason : 'stop',
      });
    });
    if (lines.length === 0) throw new WardenError('E_REPLAY', `${transcript} is empty`);
    return new ReplayProvider(transcript, responses);
  }

  /** Answers recorded, and answers served so far. */
  get progress(): { recorded: number; served: number } {
    return { recorded: this.responses.length, served: this.served };
  }

  /** The next recorded answer (its text delivered as one delta). @throws AttemptError with a final `E_REPLAY` failure when none is left */
  async complete(_model: string, _request: ChatRequest, options: AttemptOptions): Promise<AttemptAnswer> {
    if (options.signal.aborted) throw options.signal.reason;
    const response = this.responses[this.served];
    if (!response) {
      const turn = this.served + 1;
      const val = `E_REPLAY: the transcript ${this.transcript} has no answer for turn ${turn}: it recorded ${this.responses.length} inference response(s); the replayed agent asked for more than the recorded one did`;
      throw new AttemptError(400, val, undefined, { tag: 'invalid-request', val, code: 'E_REPLAY' });
    }
    this.served++;
    if (response.content) options.onDelta?.(response.content);
    return { response: structuredClone(response), latencyMs: 0 };
  }
}
