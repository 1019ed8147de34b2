/** The one place kernel error codes become HTTP status codes. */
import type { ErrorCode } from '../errors.js';

const STATUS: Partial<Record<ErrorCode, number>> = {
  E_BAD_INPUT: 400,
  E_CONFIG: 400,
  E_PATH_ESCAPE: 400,
  E_NOT_FOUND: 404,
  E_TOO_LARGE: 413,
  E_RATE_LIMITED: 429,
  E_LIMIT_TASKS: 429,
  E_LIMIT_STREAMS: 429,
  E_UNAUTHORIZED: 401,
  E_CROSS_ORIGIN: 403,
  E_CAPABILITY_DENIED: 403,
  E_SESSION_CONFLICT: 409,
  E_SESSION_STATE: 409,
  E_SESSION_BUSY: 409,
  E_STORE: 500,
  E_MESH_BUSY: 503,
  E_SHUTTING_DOWN: 503,
  E_INFERENCE_UNAVAILABLE: 502,
  E_BACKEND_OPEN: 503,
  E_PRIVACY_STRICT: 503,
  E_POLICY_DENIED: 403,
  E_APPROVAL_DECIDED: 409,
  E_TASK_STOPPED: 409,
};

/** HTTP status for a kernel error code (500 for anything unexpected). */
export function statusFor(code: ErrorCode): number {
  return STATUS[code] ?? 500;
}
