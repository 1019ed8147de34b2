/**
 * REST calls from the UI. The browser authenticates with the HttpOnly login cookie; a 401 flips
 * {@link auth$} to `needed`, which shows the login form.
 */
import { createStore } from './store.ts';

/** `unknown` until the first probe, `ok` when the cookie is accepted, `needed` when the kernel answered 401. */
export type AuthState = 'unknown' | 'ok' | 'needed';

/** Whether the browser holds a login the kernel accepts. */
export const auth$ = createStore<AuthState>('unknown');

/** An error answer of the kernel: `{error: CODE, message}` with its HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/**
 * `fetch` a kernel route and parse its JSON answer (undefined for 204).
 * @throws ApiError for a non-2xx answer (the kernel's `{error, message}`, or the status text);
 *   a 401 also sets {@link auth$} to `needed`
 */
export async function api<T>(path: string, init: { method?: string; body?: unknown } = {}): Promise<T> {
  const res = await fetch(path, {
    method: init.method ?? 'GET',
    headers: init.body === undefined ? {} : { 'content-type': 'application/json' },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  if (res.status === 401) auth$.set('needed');
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let answer: unknown;
  try {
    answer = text ? JSON.parse(text) : undefined;
  } catch {
    answer = undefined;
  }
  if (!res.ok) {
    const err = (answer ?? {}) as { error?: string; message?: string };
    throw new ApiError(res.status, err.error ?? `HTTP ${res.status}`, err.message ?? `${res.status} ${res.statusText}`);
  }
  return answer as T;
}

/**
 * Ask the kernel whether this browser is logged in (`HEAD /api/state`: 401 or not) and set
 * {@link auth$}. A network failure leaves it as it was (the kernel may be restarting).
 */
export async function probeLogin(): Promise<AuthState> {
  try {
    const res = await fetch('/api/state', { method: 'HEAD' });
    auth$.set(res.status === 401 ? 'needed' : 'ok');
  } catch {
    // Offline: open the pages anyway; their streams retry, show it in the indicator, and report
    // a 401 once the kernel answers.
    if (auth$.get() === 'unknown') auth$.set('ok');
  }
  return auth$.get();
}

/** Log in with a pasted API key (`POST /api/login`: the kernel sets the cookie). @throws ApiError (401: wrong key) */
export async function login(key: string): Promise<void> {
  await api<void>('/api/login', { method: 'POST', body: { key } });
  auth$.set('ok');
}
