/**
 * Which targets serve a request, in order: the task's category target (or the requested one),
 * then its fallback chain, under the request's privacy level.
 *
 * Privacy levels: `standard` (any backend), `sensitive` (backends with zero data retention
 * first; the others still serve, with a warning), `strict` (zero-data-retention backends only;
 * none left is a clear failure). A request whose messages hold a secret (`findSecrets`: PEM
 * private keys, credentials of known formats, secret-named assignments, Luhn-valid card
 * numbers) is escalated to `strict`; the reason names the kinds found and where, never the secret.
 */
import { describeSecrets, findSecrets } from '../secrets/detect.js';
import type { InferenceSettings } from './config.js';
import type { Backend, ChatRequest, InferenceFailure, PrivacyLevel } from './types.js';

/** One candidate of a chain. */
export interface Target {
  model: string;
  backend: string;
  /** `model@backend`. */
  target: string;
}

/** The targets to try and the privacy level they were chosen under. */
export interface Route {
  targets: Target[];
  privacy: { level: PrivacyLevel; reason?: string; escalated: boolean };
}

/** Split `model@backend`; the backend defaults to `defaultBackend`. */
export function parseTarget(target: string, defaultBackend: string): { model: string; backend: string } {
  const at = target.lastIndexOf('@');
  if (at <= 0) return { model: target, backend: defaultBackend };
  return { model: target.slice(0, at), backend: target.slice(at + 1) };
}

const LEVELS: PrivacyLevel[] = ['standard', 'sensitive', 'strict'];

/** The stricter of two privacy levels (an absent one counts as `standard`). */
export function strictestPrivacy(a: PrivacyLevel | undefined, b: PrivacyLevel | undefined): PrivacyLevel {
  return LEVELS[Math.max(LEVELS.indexOf(a ?? 'standard'), LEVELS.indexOf(b ?? 'standard'))]!;
}

const WHERE: Record<ChatRequest['messages'][number]['role'], string> = {
  system: 'the system prompt',
  user: 'a user message',
  assistant: 'an assistant message',
  tool: 'a tool result',
};

/**
 * Secrets in a request's messages (contents and tool-call arguments): a reason naming the
 * kinds and where they are (`PEM private key in a tool result`), or undefined when there are none.
 */
export function secretsIn(messages: ChatRequest['messages']): string | undefined {
  const found = new Map<string, Set<string>>();
  for (const message of messages) {
    const texts = [message.content, ...message.toolCalls.map((c) => c.arguments)];
    for (const text of texts) {
      const matches = findSecrets(text);
      if (matches.length === 0) continue;
      const kinds = describeSecrets(matches);
      for (const kind of kinds.split(', ')) (found.get(kind) ?? found.set(kind, new Set()).get(kind)!).add(WHERE[message.role]);
    }
  }
  if (found.size === 0) return undefined;
  return [...found].map(([kind, where]) => `${kind} in ${[...where].join(' and ')}`).join('; ');
}

/** Routes requests over the configured backends. */
export class Router {
  private readonly byName: Map<string, Backend>;

  constructor(
    backends: Backend[],
    private readonly settings: Pick<InferenceSettings, 'fallback' | 'categories' | 'privacy'>,
  ) {
    this.byName = new Map(backends.map((b) => [b.name, b]));
  }

  /** Name of the default backend (the first configured). */
  get defaultBackend(): string {
    return this.byName.keys().next().value ?? 'default';
  }

  /** Whether `backend` keeps no data (`zdr`; a replay backend sends nothing anywhere). */
  zdr(backend: string): boolean {
    const b = this.byName.get(backend);
    return b?.zdr ?? b?.kind === 'replay';
  }

  /** `target` as `{model, backend, target}`, the default backend filled in. */
  resolve(target: string): Target {
    const { model, backend } = parseTarget(target, this.defaultBackend);
    return { model, backend, target: `${model}@${backend}` };
  }

  /**
   * The route of a request.
   * @param requested the target the agent asked for
   * @param category the task's category; its configured target replaces `requested`
   * @param level the task's level so far (default: the configured one)
   * @throws InferenceFailure `invalid-request` (a target names an unknown backend);
   *   `unavailable` + `E_PRIVACY_STRICT` (strict, and no target of the chain has zero data retention)
   */
  route(request: ChatRequest, category: string | undefined, level: PrivacyLevel = this.settings.privacy): Route {
    const categoryTarget = category ? this.settings.categories[category] : undefined;
    const primary = this.resolve(categoryTarget ?? request.model);
    const chain = this.settings.fallback[primary.target] ?? this.settings.fallback['*'] ?? [];
    const targets: Target[] = [];
    for (const t of [primary, ...chain.map((c) => this.resolve(c))]) {
      if (!targets.some((x) => x.target === t.target)) targets.push(t);
    }
    for (const t of targets) {
      if (!this.byName.has(t.backend)) {
        throw failure('invalid-request', `unknown backend "${t.backend}" in target ${t.target}; configured: ${[...this.byName.keys()].join(', ')}`);
      }
    }
    const secrets = level === 'strict' ? undefined : secretsIn(request.messages);
    const privacy: Route['privacy'] = secrets ? { level: 'strict', reason: `secrets in the request: ${secrets}`, escalated: true } : { level, escalated: false };
    if (privacy.level === 'standard') return { targets, privacy };
    if (privacy.level === 'sensitive') {
      return { targets: [...targets.filter((t) => this.zdr(t.backend)), ...targets.filter((t) => !this.zdr(t.backend))], privacy };
    }
    const zdrTargets = targets.filter((t) => this.zdr(t.backend));
    if (zdrTargets.length === 0) {
      const zdrBackends = [...this.byName.values()].filter((b) => this.zdr(b.name)).map((b) => b.name);
      throw failure(
        'unavailable',
        `privacy level strict${privacy.reason ? ` (${privacy.reason})` : ''} allows only backends with zero data retention, and no target of ${primary.target}'s chain (${targets.map((t) => t.target).join(', ')}) is on one; ` +
          (zdrBackends.length > 0
            ? `ZDR backends: ${zdrBackends.join(', ')}; add a target on one to inference.fallback for ${primary.target}`
            : 'no backend is marked ZDR: set "zdr": true on a backend that keeps no data and add it to inference.fallback'),
        'E_PRIVACY_STRICT',
      );
    }
    return { targets: zdrTargets, privacy };
  }
}

/** An {@link InferenceFailure} value. */
export function failure(tag: InferenceFailure['tag'], val: string, code?: InferenceFailure['code']): InferenceFailure {
  return code ? { tag, val, code } : { tag, val };
}
