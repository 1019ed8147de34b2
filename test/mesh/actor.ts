/**
 * One test guest for the mesh suites, loaded under many component names (each with its own
 * manifest, grants, limits and pool). What it does is chosen by its input, so a single build
 * (a few seconds with componentize-qjs) serves every scenario:
 *
 * - `{op:'echo', ...}` returns its input text unchanged; `{op:'count'}` returns a module-level
 *   counter after incrementing it (1 on a fresh instance);
 * - `{op:'sleep', ms}` blocks on `wasi:clocks` (no CPU); `{op:'tick', ms, step, label}` sleeps in
 *   steps and records each step in its SQL scope (table `ticks`) so a test can see when it stopped;
 * - `{op:'spin'}` loops forever; `{op:'trap'}` throws a JS error (the guest traps:
 *   `unreachable`); `{op:'fail'}` returns a `tool-error` (an error result, not a trap);
 * - `{op:'call', target, input}` calls `target`'s tool `call` with `input` (JSON) and returns
 *   `{ok, value|error, ms}` (value: the reply payload's text);
 * - `{op:'seq', steps: [{target, input}]}` makes those calls one right after another and returns
 *   their attempts as a JSON array;
 * - `{op:'calls', target, n, tag}` makes `n` calls of `{op:'echo', tag, k}` one after another
 *   and returns how many replies matched their own input;
 * - `{op:'publish', topic, n, failFirst?, doomed?}` publishes `n` events `{k, mode}`;
 * - `{op:'bytes', target, size, seed}` sends `size` pattern bytes to `target`'s `handle-event`
 *   and returns the FNV-1a checksum it computed before sending.
 *
 * As a subscriber it records every attempt (`attempts`) and every accepted event (`delivered`)
 * in its SQL scope; `mode: 'fail-first'` fails an event's first attempt, `mode: 'doomed'` fails
 * every attempt; a `bytes` event is checksummed into `blobs`.
 */
import { buildWorld } from '../support/worlds.js';

export const ACTOR_SOURCE = `
import { call, publish } from 'warden:kernel/mesh@0.1.0';
import { execute, query } from 'warden:kernel/sql@0.1.0';
import { subscribeDuration } from 'wasi:clocks/monotonic-clock@0.2.12';

let count = 0;
const sleep = (ms) => subscribeDuration(ms * 1000000).block();
const errorOf = (e) => (e && e.payload !== undefined ? e.payload : { tag: 'thrown', val: String(e) });
const int = (n) => ({ tag: 'integer', val: n });
const text = (s) => ({ tag: 'text', val: s });

function fnv(bytes) {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) { h ^= bytes[i]; h = Math.imul(h, 0x01000193) >>> 0; }
  return h >>> 0;
}

function attempt(f) {
  const t0 = Date.now();
  try { return { ok: true, value: f(), ms: Date.now() - t0 }; }
  catch (e) { return { ok: false, error: errorOf(e), ms: Date.now() - t0 }; }
}

function pattern(size, seed) {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + seed + (i >> 8)) & 255;
  return bytes;
}

function run(req) {
  switch (req.op) {
    case 'echo': return null;
    case 'count': count++; return String(count);
    case 'sleep': sleep(req.ms); return 'slept ' + req.ms;
    case 'tick': {
      execute('CREATE TABLE IF NOT EXISTS ticks (label TEXT, at INTEGER)', []);
      const t0 = Date.now();
      while (Date.now() - t0 < req.ms) {
        sleep(req.step);
        execute('INSERT INTO ticks (label, at) VALUES (?, ?)', [text(req.label), int(Date.now())]);
      }
      return 'ticked';
    }
    case 'spin': for (;;) {}
    case 'trap': throw new Error('boom: a JS error that is not a tool-error');
    case 'fail': throw { tag: 'failed', val: 'refused on purpose' };
    case 'call':
      return JSON.stringify(attempt(() => call(req.target, 'call', { tag: 'json', val: JSON.stringify(req.input ?? null) }).val));
    case 'seq':
      return JSON.stringify(req.steps.map((step) => attempt(() => call(step.target, 'call', { tag: 'json', val: JSON.stringify(step.input ?? null) }).val)));
    case 'calls': {
      let ok = 0, mismatched = 0;
      const errors = [];
      for (let k = 0; k < req.n; k++) {
        const input = JSON.stringify({ op: 'echo', tag: req.tag, k });
        try {
          const reply = call(req.target, 'call', { tag: 'json', val: input });
          if (JSON.parse(reply.val).output === input) ok++; else mismatched++;
        } catch (e) { if (errors.length < 3) errors.push(errorOf(e)); }
      }
      return JSON.stringify({ ok, mismatched, errors });
    }
    case 'publish': {
      let published = 0;
      const errors = [];
      for (let k = 0; k < req.n; k++) {
        const mode = (req.failFirst ?? []).includes(k) ? 'fail-first' : (req.doomed ?? []).includes(k) ? 'doomed' : 'ok';
        try { publish(req.topic, { tag: 'json', val: JSON.stringify({ k, mode }) }); published++; }
        catch (e) { if (errors.length < 3) errors.push(errorOf(e)); }
      }
      return JSON.stringify({ published, errors });
    }
    case 'bytes': {
      const bytes = pattern(req.size, req.seed);
      const sum = fnv(bytes);
      const result = attempt(() => call(req.target, 'handle-event', { tag: 'bytes', val: bytes }));
      return JSON.stringify({ sum, size: bytes.length, ok: result.ok, error: result.error ?? null });
    }
    default: throw { tag: 'invalid-input', val: 'unknown op ' + req.op };
  }
}

export const tool = {
  describe() { return { name: 'actor', description: 'mesh test actor', inputSchema: '{}' }; },
  call(input) {
    const out = run(JSON.parse(input));
    return out === null ? input : out;
  },
};

export const subscriber = {
  handleEvent(topic, payload) {
    if (payload.tag === 'bytes') {
      execute('CREATE TABLE IF NOT EXISTS blobs (size INTEGER, sum INTEGER)', []);
      execute('INSERT INTO blobs (size, sum) VALUES (?, ?)', [int(payload.val.length), int(fnv(payload.val))]);
      return;
    }
    const event = JSON.parse(payload.val);
    execute('CREATE TABLE IF NOT EXISTS attempts (topic TEXT, k INTEGER)', []);
    execute('CREATE TABLE IF NOT EXISTS delivered (topic TEXT, k INTEGER)', []);
    execute('INSERT INTO attempts (topic, k) VALUES (?, ?)', [text(topic), int(event.k)]);
    if (event.mode === 'doomed') throw 'doomed on purpose';
    if (event.mode === 'fail-first') {
      const seen = query('SELECT count(*) FROM attempts WHERE topic = ? AND k = ?', [text(topic), int(event.k)]);
      if (Number(seen.values[0][0].val) === 1) throw 'first attempt fails on purpose';
    }
    execute('INSERT INTO delivered (topic, k) VALUES (?, ?)', [text(topic), int(event.k)]);
  },
};
`;

export const ACTOR_WORLD = [
  'import warden:kernel/mesh@0.1.0;',
  'import warden:kernel/sql@0.1.0;',
  'import wasi:clocks/monotonic-clock@0.2.12;',
  'export warden:kernel/tool@0.1.0;',
  'export warden:kernel/subscriber@0.1.0;',
].join('\n');

/** Build the actor component once. @returns the `.wasm` path */
export function buildActor(): Promise<string> {
  return buildWorld('actor', ACTOR_SOURCE, ACTOR_WORLD);
}
