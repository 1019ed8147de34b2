/**
 * The kernel's one error class. Every failure the kernel reports carries a stable `code`
 * (for scripts, HTTP mapping and tests) and a message a person can act on.
 */

/** Stable error codes. The HTTP layer maps them to status codes in one place (`server/errors.ts`). */
export type ErrorCode =
  | 'E_BAD_INPUT'
  | 'E_NOT_FOUND'
  | 'E_CAPABILITY_DENIED'
  | 'E_UNKNOWN_IMPORT'
  | 'E_COMPONENT_INVALID'
  | 'E_DIGEST_MISMATCH'
  | 'E_LIMIT_MEMORY'
  | 'E_LIMIT_TIME'
  | 'E_LIMIT_OUTPUT'
  | 'E_MESH_UNKNOWN_TARGET'
  | 'E_MESH_CYCLE'
  | 'E_MESH_TIMEOUT'
  | 'E_MESH_BUSY'
  | 'E_MESH_FAILED'
  | 'E_SESSION_CONFLICT'
  | 'E_SESSION_STATE'
  | 'E_SESSION_BUSY'
  | 'E_STORE'
  | 'E_PATH_ESCAPE'
  | 'E_SQL_DENIED'
  | 'E_SQL_INVALID'
  | 'E_INFERENCE_UNAVAILABLE'
  | 'E_INFERENCE_INVALID'
  | 'E_CONFIG'
  | 'E_RATE_LIMITED'
  | 'E_LIMIT_TASKS'
  | 'E_LIMIT_STREAMS'
  | 'E_TOO_LARGE'
  | 'E_UNAUTHORIZED'
  | 'E_CROSS_ORIGIN'
  | 'E_SHUTTING_DOWN'
  | 'E_TASK_STOPPED'
  | 'E_POLICY_DENIED'
  | 'E_APPROVAL_DECIDED'
  | 'E_PRIVACY_STRICT'
  | 'E_BACKEND_OPEN'
  | 'E_REPLAY'
  | 'E_INTERNAL';

/**
 * An error raised by the kernel.
 *
 * @example new WardenError('E_SESSION_CONFLICT', 'base changed under src/a.ts; begin a new session', { cause })
 */
export class WardenError extends Error {
  /** Stable machine-readable code. */
  readonly code: ErrorCode;
  /** Extra structured detail (paths in conflict, limits, ...); never holds secrets. */
  readonly detail: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; detail?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WardenError';
    this.code = code;
    this.detail = options.detail;
  }

  /** A plain, cloneable shape for crossing worker boundaries and JSON responses. */
  toJSON(): { code: ErrorCode; message: string; detail?: Record<string, unknown> } {
    return this.detail ? { code: this.code, message: this.message, detail: this.detail } : { code: this.code, message: this.message };
  }
}

/** True when `err` is a {@link WardenError}, optionally with the given code. */
export function isWardenError(err: unknown, code?: ErrorCode): err is WardenError {
  return err instanceof WardenError && (code === undefined || err.code === code);
}

/** The message of any thrown value, for one-line reports. */
export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === 'string') return err;
  try {
    return JSON.stringify(err);
  } catch {
    return String(err);
  }
}
