/**
 * The `openai` backend kind: one attempt at `POST /chat/completions` through the `openai`
 * package (its own retries off: `maxRetries: 0`; retries are the caller's). Streams by default
 * (`stream: true` with `stream_options.include_usage`), assembling text and tool-call deltas;
 * `stream: false` on the backend asks for whole answers. Failures become {@link AttemptError}s
 * whose messages name the URL and what to set, never the key.
 */
import OpenAI from 'openai';
import { messageOf } from '../errors.js';
import { redactSecrets } from '../secrets/detect.js';
import { AttemptError, type AttemptAnswer, type AttemptOptions, type Provider } from './provider.js';
import { parseRetryAfter } from './retry.js';
import type { ChatRequest, ChatResponse, Clock, OpenAIBackend } from './types.js';

type Completion = OpenAI.Chat.Completions.ChatCompletion;
type Params = OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming;

/** The request body for the `openai` package. */
function bodyOf(model: string, request: ChatRequest): Params {
  return {
    model,
    messages: request.messages.map((m) => {
      if (m.role === 'tool') return { role: 'tool' as const, content: m.content, tool_call_id: m.toolCallId ?? '' };
      if (m.role === 'assistant') {
        return {
          role: 'assistant' as const,
          content: m.content,
          ...(m.toolCalls.length > 0
            ? { tool_calls: m.toolCalls.map((c) => ({ id: c.id, type: 'function' as const, function: { name: c.name, arguments: c.arguments } })) }
            : {}),
        };
      }
      return { role: m.role, content: m.content };
    }),
    ...(request.tools.length > 0
      ? {
          tools: request.tools.map((t) => ({
            type: 'function' as const,
            function: { name: t.name, description: t.description, parameters: JSON.parse(t.parameters) as Record<string, unknown> },
          })),
        }
      : {}),
    ...(request.maxTokens ? { max_tokens: request.maxTokens } : {}),
  };
}

/** An OpenAI-compatible endpoint. */
export class OpenAIProvider implements Provider {
  readonly http = true;
  private readonly client: OpenAI;
  /** Held only to keep it out of messages; never logged or serialised. */
  private readonly apiKey: string;

  /** @param env where the key is read from, once */
  constructor(private readonly backend: OpenAIBackend, env: NodeJS.ProcessEnv, private readonly clock: Clock) {
    this.apiKey = env[backend.apiKeyEnv] || 'not-set';
    // `logLevel: 'off'`: the package would otherwise print unparsable stream data to the console.
    this.client = new OpenAI({ baseURL: backend.baseURL, apiKey: this.apiKey, maxRetries: 0, logLevel: 'off' });
  }

  async complete(model: string, request: ChatRequest, options: AttemptOptions): Promise<AttemptAnswer> {
    const controller = new AbortController();
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, options.timeoutMs);
    };
    const onAbort = () => controller.abort();
    if (options.signal.aborted) throw options.signal.reason;
    options.signal.addEventListener('abort', onAbort, { once: true });
    const started = this.clock.now();
    arm();
    try {
      const requestOptions = { signal: controller.signal, maxRetries: 0, timeout: options.timeoutMs + 1000 };
      if (this.backend.stream === false) {
        const completion = await this.client.chat.completions.create(bodyOf(model, request), requestOptions);
        if (timedOut || options.signal.aborted) throw new Error('aborted');
        return { response: this.whole(completion), status: 200, latencyMs: this.clock.now() - started };
      }
      const stream = await this.client.chat.completions.create({ ...bodyOf(model, request), stream: true, stream_options: { include_usage: true } }, requestOptions);
      const latencyMs = this.clock.now() - started;
      arm();
      const response = await this.assemble(stream, arm, options.onDelta);
      // The package ends a stream quietly when it is aborted.
      if (timedOut || options.signal.aborted) throw new Error('aborted');
      if (!response) throw new AttemptError('malformed', `${this.backend.baseURL} ended the stream before its last chunk (no finish reason)`);
      return { response, status: 200, latencyMs };
    } catch (err) {
      if (options.signal.aborted) throw options.signal.reason;
      if (timedOut) throw new AttemptError('timeout', `${this.backend.baseURL} did not answer within ${options.timeoutMs} ms`);
      throw this.describe(err);
    } finally {
      clearTimeout(timer);
      options.signal.removeEventListener('abort', onAbort);
    }
  }

  /** A whole completion as a WIT response. @throws AttemptError `malformed` without choices */
  private whole(completion: Completion): ChatResponse {
    const choice = completion.choices?.[0];
    if (!choice?.message) throw new AttemptError('malformed', `${this.backend.baseURL} answered without a choice`);
    return {
      content: choice.message.content ?? '',
      toolCalls: (choice.message.tool_calls ?? []).flatMap((c) => (c.type === 'function' ? [{ id: c.id, name: c.function.name, arguments: c.function.arguments }] : [])),
      usage: { promptTokens: completion.usage?.prompt_tokens ?? 0, completionTokens: completion.usage?.completion_tokens ?? 0 },
      finishReason: choice.finish_reason ?? 'stop',
    };
  }

  /** Read a stream to its end; undefined when it ended without a finish reason (cut short). */
  private async assemble(
    stream: AsyncIterable<OpenAI.Chat.Completions.ChatCompletionChunk>,
    onChunk: () => void,
    onDelta?: (text: string) => void,
  ): Promise<ChatResponse | undefined> {
    let content = '';
    let finishReason: string | undefined;
    const usage = { promptTokens: 0, completionTokens: 0 };
    const calls = new Map<number, { id: string; name: string; arguments: string }>();
    for await (const chunk of stream) {
      onChunk();
      if (chunk.usage) usage.promptTokens = chunk.usage.prompt_tokens ?? 0;
      if (chunk.usage) usage.completionTokens = chunk.usage.completion_tokens ?? 0;
      const choice = chunk.choices?.[0];
      if (!choice) continue;
      const text = choice.delta?.content;
      if (text) {
        content += text;
        onDelta?.(text);
      }
      for (const delta of choice.delta?.tool_calls ?? []) {
        const call = calls.get(delta.index) ?? { id: '', name: '', arguments: '' };
        if (delta.id) call.id = delta.id;
        if (delta.function?.name) call.name += delta.function.name;
        if (delta.function?.arguments) call.arguments += delta.function.arguments;
        calls.set(delta.index, call);
      }
      if (choice.finish_reason) finishReason = choice.finish_reason;
    }
    if (!finishReason) return undefined;
    const toolCalls = [...calls.entries()].sort(([a], [b]) => a - b).map(([index, c]) => ({ ...c, id: c.id || `call_${index}` }));
    return { content, toolCalls, usage, finishReason };
  }

  /** A failure of the package or the network as an {@link AttemptError} naming the URL and the fix. */
  private describe(err: unknown): AttemptError {
    if (err instanceof AttemptError) return err;
    const url = this.backend.baseURL;
    if (err instanceof OpenAI.APIConnectionTimeoutError) return new AttemptError('timeout', `${url} did not answer in time`);
    if (err instanceof OpenAI.APIConnectionError) {
      const fix = this.backend.apiKeyEnv === 'OPENAI_API_KEY' && this.backend.name === 'default'
        ? 'start it, or set OPENAI_BASE_URL and OPENAI_API_KEY (or warden run --base-url)'
        : `start it, or correct backend ${this.backend.name}'s baseURL in the configuration`;
      return new AttemptError('connection', this.clean(`cannot reach the model endpoint ${url} (${messageOf(err.cause ?? err)}); ${fix}`));
    }
    if (err instanceof OpenAI.APIError && typeof err.status === 'number') {
      const status = err.status;
      const detail = `${url} answered ${status}: ${bodyMessage(err).slice(0, 300)}`;
      const retryAfter = parseRetryAfter(err.headers?.get('retry-after'), this.clock.now());
      const hint = status === 401 || status === 403 ? `; check ${this.backend.apiKeyEnv}` : '';
      return new AttemptError(status, this.clean(detail + hint), retryAfter);
    }
    if (err instanceof OpenAI.APIError) return new AttemptError('malformed', this.clean(`${url} sent an error in the stream: ${bodyMessage(err).slice(0, 300)}`));
    if (err instanceof SyntaxError) return new AttemptError('malformed', `${url} answered with malformed JSON`);
    if (err instanceof TypeError) return new AttemptError('connection', this.clean(`${url}: the connection broke off (${messageOf(err.cause ?? err)})`));
    return new AttemptError('malformed', this.clean(`${url}: ${messageOf(err)}`));
  }

  /** A message with the key (should a server echo it) and anything secret-looking removed. */
  private clean(message: string): string {
    return redactSecrets(this.apiKey.length >= 4 ? message.split(this.apiKey).join('***') : message);
  }
}

/** The message of an API error's body (`{error: {message}}`), else the body as JSON, else the error's message. */
function bodyMessage(err: InstanceType<typeof OpenAI.APIError>): string {
  const body = err.error as { message?: unknown } | undefined;
  return typeof body?.message === 'string' ? body.message : messageOf(body ?? err.message);
}
