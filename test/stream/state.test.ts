// The state document's pure parts: JSON Pointers, copy-on-write patch application, the draft's
// change tracking against a full `compare`, per-tick coalescing, subtree narrowing, AG-UI derivation.
import { describe, expect, it } from 'vitest';
import fastJsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import { StateDocument, type Envelope, type KernelState, type TaskState } from '../../kernel/state/index.js';
import { applyOperations, PatchFailure } from '../../kernel/state/apply.js';
import { formatPointer, parsePointer } from '../../kernel/state/pointer.js';
import { existedBefore, narrowOps, SubtreeView } from '../../kernel/state/narrow.js';
import { deriveEvents } from '../../kernel/state/agui.js';
import { mulberry32 } from '../../bench/lib/random.js';

const { applyPatch, deepClone } = fastJsonPatch;

function emptyState(): KernelState {
  return { kernel: { startedAt: 1, version: 'test' }, components: {}, tasks: {}, approvals: {}, backends: {} };
}

function task(id: string, extra: Partial<TaskState> = {}): TaskState {
  return { id, prompt: 'p', workspace: '/w', model: 'm', status: 'running', sessionId: null, createdAt: 1, steps: {}, toolCalls: {}, usage: { promptTokens: 0, completionTokens: 0 }, ...extra };
}

/** Envelopes published by `doc`, collected. */
function collect(doc: StateDocument): Envelope[] {
  const seen: Envelope[] = [];
  doc.subscribe((e) => seen.push(e));
  return seen;
}


describe('JSON Pointers (RFC 6901)', () => {
  it('parses and formats with ~0 and ~1 escapes, and names what is malformed', () => {
    expect(parsePointer('')).toEqual([]);
    expect(parsePointer('/')).toEqual(['']);
    expect(parsePointer('/a~1b/c~0d/~01')).toEqual(['a/b', 'c~d', '~1']);
    expect(formatPointer(['a/b', 'c~d', '~1'])).toBe('/a~1b/c~0d/~01');
    expect(() => parsePointer('tasks')).toThrow(/starts with "\/"/);
    expect(() => parsePointer('/a~2')).toThrow(/"~" at position 2 .* followed by 0 or 1/);
  });
});

describe('copy-on-write application (RFC 6902)', () => {
  it('changes only the containers on the changed path and leaves the input intact', () => {
    const before = { a: { x: 1, list: [1, 2] }, b: { y: 2 } };
    const frozen = JSON.stringify(before);
    const after = applyOperations(before, [
      { op: 'add', path: '/a/list/-', value: 3 },
      { op: 'replace', path: '/a/x', value: 5 },
    ])!;
    expect(after).toEqual({ a: { x: 5, list: [1, 2, 3] }, b: { y: 2 } });
    expect(JSON.stringify(before)).toBe(frozen);
    expect(after).not.toBe(before);
    expect(after.a).not.toBe(before.a);
    expect(after.b).toBe(before.b); // untouched subtree shared
  });

  it('handles the root pointer, move, copy and test, and refuses what does not resolve', () => {
    expect(applyOperations<unknown>(undefined, [{ op: 'add', path: '', value: { a: 1 } }])).toEqual({ a: 1 });
    expect(applyOperations<unknown>({ a: 1 }, [{ op: 'remove', path: '' }])).toBeUndefined();
    expect(applyOperations<unknown>({ a: { b: 1 }, c: [] }, [{ op: 'move', from: '/a/b', path: '/c/0' }, { op: 'copy', from: '/c', path: '/d' }, { op: 'test', path: '/d', value: [1] }])).toEqual({ a: {}, c: [1], d: [1] });
    expect(() => applyOperations({ a: 1 }, [{ op: 'replace', path: '/b', value: 1 }])).toThrow(PatchFailure);
    expect(() => applyOperations({ a: [1] }, [{ op: 'add', path: '/a/5', value: 1 }])).toThrow(/out of range/);
    expect(() => applyOperations({ a: 1 }, [{ op: 'test', path: '/a', value: 2 }])).toThrow(/test failed/);
    expect(() => applyOperations({ a: 1 }, [{ op: 'add', path: '/x/y', value: 1 }])).toThrow(/no member "x"/);
  });
});

describe('StateDocument.update', () => {
  it('over random edits, each envelope turns the previous document into the current one exactly (the draft records every write)', async () => {
    const next = mulberry32(7);
    const doc = new StateDocument(emptyState());
    const seen = collect(doc);
    const reference = deepClone(emptyState()) as KernelState;
    const ids = ['t-00000001', 't-00000002', 't-00000003'];
    let applied = 0;
    for (let round = 0; round < 300; round++) {
      const id = ids[Math.floor(next() * ids.length)]!;
      const r = next();
      doc.update((d) => {
        const t = d.tasks[id];
        if (!t || r < 0.1) d.tasks[id] = task(id, { steps: { '1': { n: 1, component: 'c', step: 's', detail: 'd', ts: round } } });
        else if (r < 0.3) t.steps[String(Object.keys(t.steps).length + 1)] = { n: round, component: 'c', step: 's', detail: `d${round}`, ts: round };
        else if (r < 0.5) (t.turns ??= {})['1'] = t.turns?.['1'] ?? { n: 1, target: 'm', status: 'streaming', chunks: [], startedAt: round };
        else if (r < 0.7 && t.turns?.['1']) t.turns['1'].chunks.push(`chunk ${round}`);
        else if (r < 0.8) Object.assign(t, { status: 'succeeded', summary: `s${round}` });
        else if (r < 0.85) delete d.tasks[id];
        else if (r < 0.9) d.tasks = { ...d.tasks }; // a whole-map replacement with the same content (proxies copied in)
        else t.usage.promptTokens += 3;
      });
      // Several updates per envelope most of the time; after each envelope, its ops must turn the
      // previous document into the current one exactly.
      if (round % 3 === 0) {
        await new Promise((resolve) => setImmediate(resolve));
        for (const e of seen.slice(applied)) applyPatch(reference, deepClone(e.ops) as Operation[]);
        expect(reference).toEqual(JSON.parse(JSON.stringify(doc.current)));
        expect(doc.snapshot()).toEqual({ seq: seen.length, state: reference });
        applied = seen.length;
      }
    }
    // Contiguous sequence numbers.
    expect(seen.map((e) => e.seq)).toEqual(seen.map((_, i) => i + 1));
  });

  it('coalesces the updates of one tick from many sources into one envelope', async () => {
    const doc = new StateDocument(emptyState());
    const seen = collect(doc);
    doc.update((d) => (d.tasks['t-00000001'] = task('t-00000001')));
    doc.update((d) => (d.components['c'] = { name: 'c', kind: 'tool', version: '1', sha256: 'x', workers: 1, origin: 'builtin', status: 'loaded' }));
    for (let i = 0; i < 50; i++) doc.update((d) => (d.tasks['t-00000001']!.usage.promptTokens += 1));
    expect(seen).toHaveLength(0); // nothing published before the tick ends
    await new Promise((resolve) => setImmediate(resolve));
    expect(seen).toHaveLength(1);
    expect(seen[0]!.seq).toBe(1);
    expect(seen[0]!.ops.map((o) => `${o.op} ${o.path}`)).toEqual(['add /tasks/t-00000001', 'add /components/c', ...Array(50).fill('replace /tasks/t-00000001/usage/promptTokens')]);
  });

  it('turns a growing chunks array into appends, not a replacement of the array', () => {
    const doc = new StateDocument(emptyState());
    doc.update((d) => (d.tasks['t-00000001'] = task('t-00000001', { turns: { '1': { n: 1, target: 'm', status: 'streaming', chunks: ['a'], startedAt: 1 } } })));
    doc.flush();
    const seen = collect(doc);
    doc.update((d) => d.tasks['t-00000001']!.turns!['1']!.chunks.push('b'));
    doc.update((d) => d.tasks['t-00000001']!.turns!['1']!.chunks.push('c', 'd'));
    doc.flush();
    expect(seen[0]!.ops).toEqual([
      { op: 'add', path: '/tasks/t-00000001/turns/1/chunks/1', value: 'b' },
      { op: 'add', path: '/tasks/t-00000001/turns/1/chunks/2', value: 'c' },
      { op: 'add', path: '/tasks/t-00000001/turns/1/chunks/3', value: 'd' },
    ]);
    // The same holds for fast-json-patch's compare on its own.
    expect(fastJsonPatch.compare({ c: ['a'] }, { c: ['a', 'b'] })).toEqual([{ op: 'add', path: '/c/1', value: 'b' }]);
  });

  it('copies values in, so a value kept by the caller and changed later does not alter the document', () => {
    const doc = new StateDocument(emptyState());
    const mine = task('t-00000001');
    doc.update((d) => (d.tasks['t-00000001'] = mine));
    mine.status = 'failed';
    expect(doc.current.tasks['t-00000001']!.status).toBe('running');
  });

  it('replays from a seq in the retained log and refuses one that left it', () => {
    const doc = new StateDocument(emptyState(), 3);
    for (let i = 0; i < 5; i++) {
      doc.update((d) => (d.kernel.version = `v${i}`));
      doc.flush();
    }
    expect(doc.since(2)!.map((e) => e.seq)).toEqual([3, 4, 5]);
    expect(doc.since(1)).toBeNull();
    expect(doc.since(5)).toEqual([]);
    expect(doc.since(6)).toBeNull();
  });
});

describe('narrowing to a subtree', () => {
  const tokens = parsePointer('/tasks/t1');

  it('rebases operations inside, drops others, and turns ancestor operations into root operations', () => {
    const ops: Operation[] = [
      { op: 'replace', path: '/tasks/t1/status', value: 'succeeded' },
      { op: 'add', path: '/tasks/t2', value: { id: 't2' } },
      { op: 'replace', path: '/tasks/t10/status', value: 'x' },
      { op: 'replace', path: '/tasks', value: { t1: { id: 't1', status: 'new' } } },
      { op: 'remove', path: '/tasks/t1' },
      { op: 'add', path: '/tasks/t1', value: { id: 't1' } },
    ];
    expect(narrowOps(ops, tokens, true)).toEqual({
      ops: [
        { op: 'replace', path: '/status', value: 'succeeded' },
        { op: 'replace', path: '', value: { id: 't1', status: 'new' } },
        { op: 'remove', path: '' },
        { op: 'add', path: '', value: { id: 't1' } },
      ],
      exists: true,
      resnapshot: false,
    });
    // A whole-map replacement without the subtree removes it, once; without it existing, nothing.
    expect(narrowOps([{ op: 'replace', path: '/tasks', value: {} }], tokens, true).ops).toEqual([{ op: 'remove', path: '' }]);
    expect(narrowOps([{ op: 'replace', path: '/tasks', value: {} }], tokens, false).ops).toEqual([]);
    // A move into the subtree from outside needs the document: the subscriber gets a snapshot.
    expect(narrowOps([{ op: 'move', from: '/x', path: '/tasks/t1/y' }], tokens, true).resnapshot).toBe(true);
    expect(narrowOps([{ op: 'move', from: '/tasks/t1/a', path: '/tasks/t1/b' }], tokens, true).ops).toEqual([{ op: 'move', from: '/a', path: '/b' }]);
  });

  it('chains prev over the envelopes it delivers, skipping those that do not touch the subtree', () => {
    const view = new SubtreeView('/tasks/t1');
    view.resume(10, true);
    const env = (seq: number, path: string): Envelope => ({ seq, ts: seq, ops: [{ op: 'replace', path, value: seq }] });
    expect(view.narrow(env(11, '/tasks/t1/a'))).toEqual({ seq: 11, prev: 10, ts: 11, ops: [{ op: 'replace', path: '/a', value: 11 }] });
    expect(view.narrow(env(12, '/tasks/t2/a'))).toBeNull();
    expect(view.narrow(env(13, '/tasks/t1/a'))).toMatchObject({ seq: 13, prev: 11 });
  });

  it('knows whether the subtree existed before a run of envelopes', () => {
    const env = (op: Operation): Envelope => ({ seq: 1, ts: 1, ops: [op] });
    expect(existedBefore([env({ op: 'add', path: '/tasks/t1', value: {} })], tokens, true)).toBe(false);
    expect(existedBefore([env({ op: 'replace', path: '/tasks/t1/a', value: 1 })], tokens, false)).toBe(true);
    expect(existedBefore([env({ op: 'add', path: '/tasks/t2', value: {} })], tokens, false)).toBe(false);
  });
});

describe('AG-UI derivation', () => {
  it('replays a finished task in time order and closes what is open before RUN_FINISHED', () => {
    const t = task('t-00000001', {
      status: 'succeeded',
      summary: 'done',
      steps: { '1': { n: 1, component: 'supervisor', step: 'plan', detail: '', ts: 10 } },
      turns: { '1': { n: 1, target: 'm', status: 'streaming', chunks: ['Hel', '', 'lo'], startedAt: 20 } },
      toolCalls: { c1: { id: 'c1', caller: 'coder', target: 'read-file', method: 'call', input: '{"path":"a"}', status: 'ok', output: 'text', startedAt: 30, durationMs: 5 } },
    });
    const events = deriveEvents(undefined, t);
    expect(events.map((e) => e.type)).toEqual([
      'STEP_STARTED', 'STEP_FINISHED', 'TEXT_MESSAGE_START', 'TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_CONTENT',
      'TOOL_CALL_START', 'TOOL_CALL_ARGS', 'TOOL_CALL_END', 'TOOL_CALL_RESULT', 'TEXT_MESSAGE_END', 'RUN_FINISHED',
    ]);
    expect(events.find((e) => e.type === 'TOOL_CALL_START')).toMatchObject({ toolCallName: 'read-file', parentMessageId: 't-00000001-turn-1' });
    expect(events.at(-1)).toMatchObject({ threadId: 't-00000001', runId: 't-00000001', result: 'done' });
  });

  it('derives only the change between two versions: appended chunks and a call ending', () => {
    const before = task('t-00000001', {
      turns: { '1': { n: 1, target: 'm', status: 'streaming', chunks: ['a'], startedAt: 1 } },
      toolCalls: { c1: { id: 'c1', caller: 'coder', target: 'grep', method: 'call', input: '', status: 'running', startedAt: 2 } },
    });
    const after = applyOperations(before, [
      { op: 'add', path: '/turns/1/chunks/1', value: 'b' },
      { op: 'replace', path: '/toolCalls/c1/status', value: 'error' },
      { op: 'add', path: '/toolCalls/c1/outcome', value: 'failed' },
    ])!;
    expect(deriveEvents(before, after)).toEqual([
      { type: 'TEXT_MESSAGE_CONTENT', messageId: 't-00000001-turn-1', delta: 'b' },
      { type: 'TOOL_CALL_END', timestamp: 2, toolCallId: 'c1' },
      { type: 'TOOL_CALL_RESULT', timestamp: 2, messageId: 'c1-result', toolCallId: 'c1', content: 'failed', role: 'tool' },
    ]);
    expect(deriveEvents(after, { ...after, status: 'failed', error: 'boom' }).at(-1)).toMatchObject({ type: 'RUN_ERROR', message: 'boom', code: 'failed' });
  });
});
