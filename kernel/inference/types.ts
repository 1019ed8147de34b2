/**
 * The shapes inference works with: WIT chat requests and responses as jco passes them, the
 * configured backends, the WIT `inference-error` value guests receive, and the injected clock.
 */
import type { PrivacyLevel } from '../state/index.js';

export type { PrivacyLevel } from '../state/index.js';

/** Default inference target of a task (a model of the default backend). */
export const DEFAULT_MODEL = 'qwen2.5-coder:7b';

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

/** Price of one model, US dollars per million tokens. */
export interface ModelPrice {
  inputPerMTok: number;
  outputPerMTok: number;
}

/**
 * Prices per model name served by a backend (`"gpt-4o"`); the key `"*"` prices every model
 * without its own entry. A model without a price costs 0.
 */
export type Prices = Record<string, ModelPrice>;

/** What every backend kind has. */
interface BackendCommon {
  name: string;
  /** Zero data retention: the provider keeps no prompt or answer. Default false (true for `replay`). */
  zdr?: boolean;
  prices?: Prices;
}

/** An OpenAI-compatible HTTP endpoint (`kind` absent or `openai`). */
export interface OpenAIBackend extends BackendCommon {
  kind?: 'openai';
  baseURL: string;
  /** Name of the environment variable holding the key (the key itself is read once, kept in memory). */
  apiKeyEnv: string;
  /** Stream answers (`stream: true` with `stream_options.include_usage`). Default true. */
  stream?: boolean;
}

/** A recorded transcript served again, turn by turn (see `replay.ts`). */
export interface ReplayBackend extends BackendCommon {
  kind: 'replay';
  /** Path of the transcript (`<dataDir>/transcripts/<taskId>.jsonl`). */
  transcript: string;
}

/** One configured backend. */
export type Backend = OpenAIBackend | ReplayBackend;

/**
 * The WIT `inference-error` value guests receive (`unavailable`, `invalid-request`, `denied`),
 * with the kernel error code for kernel callers (`E_PRIVACY_STRICT`, `E_BACKEND_OPEN`,
 * `E_REPLAY`, …) when there is a more precise one than the tag. Messages never hold a key.
 */
export interface InferenceFailure {
  tag: 'unavailable' | 'invalid-request' | 'denied';
  val: string;
  code?: 'E_PRIVACY_STRICT' | 'E_BACKEND_OPEN' | 'E_REPLAY';
}

/** Time and waiting, injectable so tests run on fake time. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Resolve after `ms` milliseconds; reject with the signal's reason when it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** What {@link Inference.chat} takes besides the request. */
export interface ChatOptions {
  /** Cancels the call (a stopped or interrupted task). */
  signal?: AbortSignal;
  /** When the call must be over, ms since the epoch (by the inference clock); no attempt starts and no sleep runs past it. */
  deadline?: number;
  /** The task the call serves (for logs and events); none for kernel-internal calls. */
  taskId?: string;
  /** The task's category (`coding`, `planning`, …): its `inference.categories` target replaces the requested one. */
  category?: string;
  /** The task's privacy level so far (default: the configured `inference.privacy`). */
  privacy?: PrivacyLevel;
  /** Streamed text as it arrives (one call per delta from the backend). */
  onDelta?: (text: string) => void;
  /** A new attempt starts after text was already streamed: what `onDelta` delivered so far is void. */
  onRestart?: () => void;
  /** The router moved on from `from` to `to` (`model@backend`). */
  onFallback?: (fallback: { from: string; to: string; reason: string }) => void;
  /**
   * The privacy level the request is routed under, called before the first attempt; `reason`
   * set when the request's content escalated it or when `sensitive` had to use a backend
   * without zero data retention.
   */
  onPrivacy?: (privacy: { level: PrivacyLevel; reason?: string; escalated: boolean }) => void;
}

/** A served chat completion and where it came from. */
export interface ChatResult {
  response: ChatResponse;
  /** The backend and model that answered, and `model@backend`. */
  backend: string;
  model: string;
  target: string;
  /** From the backend's prices; 0 when unpriced. */
  costUsd: number;
  /** From the call's start to the answer, ms (by the inference clock). */
  durationMs: number;
  /** HTTP attempts made across every target. */
  attempts: number;
  /** The privacy level the request was routed under, and why when escalated. */
  privacy: { level: PrivacyLevel; reason?: string };
  /** Set when `sensitive` had to be served by a backend without zero data retention. */
  warning?: string;
}
