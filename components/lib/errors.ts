// Error text for guests: host imports that fail throw an Error whose `payload` is the WIT error value.

/** A one-line description of a failed import call or a thrown WIT error value. */
export function errorText(err: unknown): string {
  const value = err && typeof err === 'object' && 'payload' in err ? (err as { payload: unknown }).payload : err;
  if (value && typeof value === 'object' && 'tag' in value) {
    const e = value as { tag: string; val?: unknown };
    return `${e.tag}: ${typeof e.val === 'string' ? e.val : JSON.stringify(e.val)}`;
  }
  if (typeof value === 'string') return value;
  return err instanceof Error ? err.message : String(err);
}
