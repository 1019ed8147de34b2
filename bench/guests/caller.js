// Guest of bench/mesh.ts: the caller. A tool whose `call(input)` makes mesh calls from inside a
// component and times them with the guest's own clock (`performance.now()`, which reaches the
// kernel's `wasi:clocks/monotonic-clock` through an import). `input` is JSON:
//   {target, n, size, kind: 'json'|'bytes', pauseUs?}  latency: n calls of `target`.call, each
//       with a payload of `size` bytes (json: a JSON string literal of that length; bytes: that
//       many `b` bytes), busy-waiting `pauseUs` before each one. Answers {us, clockUs, failures,
//       error}: per call the µs between the two clock reads around it, and per call the µs
//       between two back-to-back clock reads (the cost of reading the clock, to subtract).
//   {target, durationMs, size, kind}  throughput: calls back to back for `durationMs` (the
//       clock is read every 16 calls). Answers {count, elapsedMs, failures, error}.
import { call } from 'warden:kernel/mesh@0.1.0';

function payloadOf(kind, size) {
  if (kind === 'bytes') return { tag: 'bytes', val: new Uint8Array(size).fill(98) };
  return { tag: 'json', val: JSON.stringify('a'.repeat(Math.max(0, size - 2))) };
}

export const tool = {
  describe() {
    return { name: 'mesh-caller', description: 'times mesh calls from inside a component', inputSchema: '{}' };
  },
  call(input) {
    const req = JSON.parse(input);
    const payload = payloadOf(req.kind ?? 'json', req.size ?? 16);
    let failures = 0;
    let error = null;
    const once = () => {
      try {
        call(req.target, 'call', payload);
      } catch (e) {
        failures++;
        error = e && e.payload !== undefined ? e.payload : String(e);
      }
    };
    if (req.durationMs) {
      const start = performance.now();
      const end = start + req.durationMs;
      let count = 0;
      for (;;) {
        once();
        count++;
        if ((count & 15) === 0 && performance.now() >= end) break;
      }
      return JSON.stringify({ count, elapsedMs: performance.now() - start, failures, error });
    }
    const us = [];
    const clockUs = [];
    for (let i = 0; i < req.n; i++) {
      if (req.pauseUs) {
        const until = performance.now() + req.pauseUs / 1000;
        while (performance.now() < until);
      }
      const t0 = performance.now();
      once();
      const t1 = performance.now();
      const c0 = performance.now();
      const c1 = performance.now();
      us.push(Math.round((t1 - t0) * 10000) / 10);
      clockUs.push(Math.round((c1 - c0) * 10000) / 10);
    }
    return JSON.stringify({ us, clockUs, failures, error });
  },
};
