// Guest of bench/mesh.ts: the callee. A tool that answers its input unchanged (JSON payloads),
// or only the length of a `bytes` payload (its bytes arrive as text starting with `b`), so that
// in the shared-memory vs structured-clone comparison only the request's transport differs:
// a tool's reply is always JSON text and never travels through shared memory.
export const tool = {
  describe() {
    return { name: 'echo', description: 'answers its input (bytes payloads: their length)', inputSchema: '{}' };
  },
  call(input) {
    return input.charCodeAt(0) === 98 ? String(input.length) : input;
  },
};
