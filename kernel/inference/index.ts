/**
 * Inference through the `openai` package against OpenAI-compatible endpoints. Targets are
 * `model@backend`; a bare model name uses the default backend. API keys stay in memory: they
 * never reach a log, a patch or an error message.
 */
import OpenAI from 'openai';
import { WardenError, messageOf } from '../errors.js';

/** One backend: an OpenAI-compatible endpoint. */
export interface Backend {
  name: string;
  baseURL: string;
  /** Name of the environment variable holding the key (the key itself is read once, kept in memory). */
  apiKeyEnv: string;
}

/** Default base URL: a local Ollama. */
export const DEFAULT_BASE_URL = 'http://127.0.0.1:11434/v1';

/** WIT `inference.chat-request` as jco passes it (u32 as number, option as undefined/null). */
export interface ChatRequest {
  model: string;
  messages: Array<{
    role: 'system' | 'user' | 'assistant' | 'tool';
    content: string;
    toolCalls: Array<{ id: string; name: string; arguments: string }>;
    toolCallId?: string | null;
  }>;
  tools: Array<{ name: string; description: string; parameters: string }>;
  maxTokens?: number | null;
}

/** WIT `inference.chat-response`. */
export interface ChatResponse {
  content: string;
  toolCalls: Array<{ id: string; name: string; arguments: string }>;
  usage: { promptTokens: number; completionTokens: number };
  finishReason: string;
}

/** Split `model@backend`; the backend defaults to `defaultBackend`. */
export function parseTarget(target: string, defaultBackend: string): { model: string; backend: string } {
  const at = target.lastIndexOf('@');
  if (at <= 0) return { model: target, backend: defaultBackend };
  return { model: target.slice(0, at), backend: target.slice(at + 1) };
}

/** Chat completions over configured backends. */
export class Inference {
  private readonly clients = new Map<string, { client: OpenAI; backend: Backend }>();

  /**
   * @param backends configured backends; the first is the default
   * @param env where API keys are read from (`process.env` by default)
   */
  constructor(readonly backends: Backend[], env: NodeJS.ProcessEnv = process.env, private readonly timeoutMs = 120_000) {
    for (const backend of backends) {
      const apiKey = env[backend.apiKeyEnv] || 'not-set';
      this.clients.set(backend.name, {
        backend,
        client: new OpenAI({ baseURL: backend.baseURL, apiKey, maxRetries: 1, timeout: timeoutMs }),
      });
    }
  }

  /** Name of the default backend. */
  get defaultBackend(): string {
    return this.backends[0]?.name ?? 'default';
  }

  /**
   * One chat completion.
   * @throws WIT `inference-error` values: `unavailable` (endpoint unreachable or failing; the
   *   message names the URL and the variables to set), `invalid-request` (unknown backend, 4xx)
   */
  async chat(request: ChatRequest, signal?: AbortSignal): Promise<ChatResponse> {
    const { model, backend } = parseTarget(request.model, this.defaultBackend);
    const entry = this.clients.get(backend);
    if (!entry) {
      throw { tag: 'invalid-request', val: `unknown backend "${backend}" in target ${request.model}; configured: ${[...this.clients.keys()].join(', ')}` };
    }
    let completion: OpenAI.Chat.Completions.ChatCompletion;
    try {
      completion = await entry.client.chat.completions.create(
        {
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
        },
        signal ? { signal } : undefined,
      );
    } catch (err) {
      throw this.describeFailure(entry.backend, err);
    }
    const choice = completion.choices[0];
    return {
      content: choice?.message.content ?? '',
      toolCalls: (choice?.message.tool_calls ?? []).flatMap((c) =>
        c.type === 'function' ? [{ id: c.id, name: c.function.name, arguments: c.function.arguments }] : [],
      ),
      usage: { promptTokens: completion.usage?.prompt_tokens ?? 0, completionTokens: completion.usage?.completion_tokens ?? 0 },
      finishReason: choice?.finish_reason ?? 'stop',
    };
  }

  private describeFailure(backend: Backend, err: unknown): { tag: string; val: string } {
    if (err instanceof OpenAI.APIConnectionError || err instanceof OpenAI.APIConnectionTimeoutError) {
      return {
        tag: 'unavailable',
        val: `cannot reach the model endpoint ${backend.baseURL} (${messageOf(err.cause ?? err)}); start it, or set OPENAI_BASE_URL and OPENAI_API_KEY (or warden run --base-url)`,
      };
    }
    if (err instanceof OpenAI.APIError) {
      const status = err.status ?? 0;
      const detail = `${backend.baseURL} answered ${status}: ${messageOf(err.error ?? err.message).slice(0, 300)}`;
      if (status === 401 || status === 403) return { tag: 'unavailable', val: `${detail}; check ${backend.apiKeyEnv}` };
      if (status >= 400 && status < 500 && status !== 429) return { tag: 'invalid-request', val: detail };
      return { tag: 'unavailable', val: detail };
    }
    return { tag: 'unavailable', val: `${backend.baseURL}: ${messageOf(err)}` };
  }
}

/** Wrap a WIT inference error as a kernel error for CLI and HTTP callers. */
export function inferenceFailure(error: { tag: string; val: string }): WardenError {
  return new WardenError(error.tag === 'unavailable' ? 'E_INFERENCE_UNAVAILABLE' : 'E_INFERENCE_INVALID', error.val);
}
