/**
 * `warden test-component`: a conformance run of one component in a real kernel, started for the
 * run by `warden/testing` ({@link startKernelWith}) on a temporary data directory: the component
 * pinned with its manifest (as `warden component add` does) and granted what it requests, a
 * session open on the workspace. The run calls it through the mesh like any caller: `describe`,
 * each example input of its schema, then malformed inputs that must come back as the tool's `err`
 * case, not a trap or a timeout. Agents and supervisors get a smoke run when they can run
 * without a model.
 *
 * Memory per call: the linear memory of the instance that served the call when it ended (the
 * worker reports it with the reply; memory only grows, so it is the call's high-water mark); the
 * memory a component starts with is read from its core modules ({@link inspectComponent}) and the
 * cap is `limits.memoryMb` per core memory.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { WASM_PAGE_BYTES } from '../engine/index.js';
import { WardenError, messageOf } from '../errors.js';
import { KERNEL_GRANTS, readManifest, type Limits, type Manifest } from '../grants/index.js';
import type { Kernel } from '../kernel.js';
import type { CallContext, CallReply } from '../mesh/index.js';
import { BUILT_COMPONENTS } from '../paths.js';
import { builtinManifests } from '../registry/index.js';
import { shareTranspileCache, startKernelWith, type ComponentUnderTest } from '../testing.js';
import { inspectComponent, type Inspection } from './inspect.js';
import { exampleInputs, malformedInputs, type JsonSchema } from './conformance-inputs.js';

/** What {@link testComponent} takes. */
export interface ConformanceOptions {
  /** Path of the component `.wasm`. */
  file: string;
  /** Manifest to add it with; default: `manifest.json` next to the file, else one derived from its exports. */
  manifestPath?: string;
  /** Workspace the component sees through a session discarded afterwards; default: a temporary one holding `example.txt`. */
  workspace?: string;
  /** Deadline of each call, ms; default: the component's effective `limits.timeoutMs`. */
  timeoutMs?: number;
}

/** One check of the run. */
export interface ConformanceCheck {
  name: string;
  /** Passed (or skipped). */
  ok: boolean;
  /** Not run, for the reason in `detail`; counts as passing. */
  skipped?: boolean;
  /** Wall time, ms: of the call through the mesh (its fresh instance's instantiation included), or of adding the component. */
  ms: number;
  /** Linear memory of the instance that served the call when it ended, bytes (absent when no instance was reached). */
  memoryBytes?: number;
  detail: string;
}

/** What {@link testComponent} reports. */
export interface ConformanceReport {
  component: {
    file: string;
    /** The name it was added under (the manifest's, suffixed `-under-test` when a built-in has it). */
    name: string;
    kind: Manifest['kind'] | null;
    sha256: string;
    size: number;
    /** The manifest's path, or how it was derived. */
    manifest: string;
    /** The workspace's real path. */
    workspace: string;
    /** Where the example inputs came from (tools). */
    inputs: string;
    memory: { initialBytes: number; capBytes: number | null; note: string };
  };
  checks: ConformanceCheck[];
  /** Every check passed (or was skipped). */
  ok: boolean;
}

/** `example.txt` of the default workspace: synthesized string inputs name it or quote its first line. */
const EXAMPLE_FILE = 'example\nsecond line\nthird line\n';

const MEMORY_NOTE = 'per call: the linear memory of the instance that served it, when the call ended';

/** A tool's `describe` answer (a guest's JSON payload: parsed at the boundary). */
const toolInfo = z.object({ name: z.string().min(1, 'empty'), description: z.string().min(1, 'empty'), inputSchema: z.string() });

/**
 * How one call ended: `ok`; `err`, the component's own error case (a tool's `invalid-input` or
 * `failed`; an agent's or supervisor's error string: tag `error`); or a failure — a trap, the
 * deadline, or the kernel's own error (`E_…`: the worker crashed, the queue was full).
 */
type Outcome =
  | { kind: 'ok'; output: string }
  | { kind: 'err'; tag: string; message: string }
  | { kind: 'trap' | 'timeout' | 'kernel'; message: string };
type Failure = Extract<Outcome, { kind: 'trap' | 'timeout' | 'kernel' }>;

function outcomeOf(method: string, reply: CallReply): Outcome {
  if (reply.ok) {
    const text = (reply.payload as { val: string }).val;
    if (method !== 'call') return { kind: 'ok', output: text };
    const value = JSON.parse(text) as { output?: unknown };
    return { kind: 'ok', output: String(value.output) };
  }
  if (reply.error.tag === 'timeout') return { kind: 'timeout', message: reply.error.message };
  if (reply.trapped) return { kind: 'trap', message: reply.error.message };
  if (/^E_[A-Z_]+: /.test(reply.error.message)) return { kind: 'kernel', message: reply.error.message };
  const toolError = /^(invalid-input|failed): ([\s\S]*)$/.exec(reply.error.message);
  return toolError ? { kind: 'err', tag: toolError[1]!, message: toolError[2]! } : { kind: 'err', tag: 'error', message: reply.error.message };
}

/** `1 property`, `3 properties`. */
function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** One line, at most `max` characters. */
function brief(text: string, max = 100): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

function failure(o: Failure): string {
  // The worker's message starts `NAME trapped: `; the check's name already says which component.
  if (o.kind === 'trap') return `trapped: ${brief(o.message.replace(/^\S+ trapped: /, ''))}`;
  if (o.kind === 'timeout') return `no answer before the deadline: ${brief(o.message)}`;
  return `the call failed: ${brief(o.message)}`;
}

/** A name the registry accepts and no built-in has. */
function registeredName(wanted: string, builtins: Set<string>): string {
  const clean = wanted.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^[^a-z]+/, '') || 'component';
  return builtins.has(clean) ? `${clean}-under-test` : clean;
}

/** The manifest to add the component with, and where it came from. */
function chooseManifest(options: ConformanceOptions, inspection: Inspection, scratch: string): { path: string; manifest: Manifest; source: string; derived: boolean } {
  const beside = join(dirname(resolve(options.file)), 'manifest.json');
  const given = options.manifestPath ?? (existsSync(beside) ? beside : undefined);
  if (given) return { path: resolve(given), manifest: readManifest(given), source: given, derived: false };
  // Minimal: the kind its exports make it, and the session read-only when it imports wasi:filesystem.
  const derived = {
    name: registeredName(basename(options.file).replace(/\.wasm$/, ''), new Set()),
    version: inspection.sha256.slice(0, 12),
    kind: inspection.kind ?? 'tool',
    description: `derived by warden test-component from ${basename(options.file)}`,
    requests: { filesystem: inspection.grants.some((g) => g.field === 'filesystem') ? 'session:ro' : 'none' },
  };
  const path = join(scratch, 'manifest.json');
  writeFileSync(path, JSON.stringify(derived, null, 2));
  return { path, manifest: readManifest(path), source: `derived from its exports: kind ${derived.kind}, filesystem ${derived.requests.filesystem} (pass --manifest for more)`, derived: true };
}

/**
 * The data directory's config: the component granted what its manifest requests (env values
 * from this process's environment), the deadline when given, and one worker per component with
 * no spare instances (the kernel loads only the component and those its `mesh` requests name).
 */
function writeConfig(dataDir: string, name: string, manifest: Manifest, timeoutMs: number | undefined): void {
  const { env, ...requests } = manifest.requests;
  const pools = Object.fromEntries([...builtinManifests().map((m) => m.name), name].map((n) => [n, { min: 1, spares: 0 }]));
  const grant = { ...requests, env: Object.fromEntries(env.map((key) => [key, `$${key}`])), ...(timeoutMs ? { limits: { timeoutMs } } : {}) };
  writeFileSync(join(dataDir, 'warden.config.json'), JSON.stringify({ grants: { [name]: grant }, pools }, null, 2));
}

/** What the checks need to call the component. */
interface Harness {
  kernel: Kernel;
  name: string;
  limits: Limits;
  sessionId: string;
  capBytes: number;
  checks: ConformanceCheck[];
}

/**
 * Call `method` once. @returns the wall time in ms, how it ended, and the linear memory of the
 * instance that served it when it ended (bytes; absent when no instance was reached)
 */
async function callOnce(h: Harness, method: string, input: string): Promise<{ ms: number; outcome: Outcome; memoryBytes?: number }> {
  const ctx: CallContext = { taskId: '', sessionId: h.sessionId, chain: [], deadline: Date.now() + h.limits.timeoutMs, grants: KERNEL_GRANTS };
  const started = performance.now();
  const reply = await h.kernel.mesh.call(h.name, method, { tag: 'json', val: input }, ctx);
  const ms = Math.round(performance.now() - started);
  return reply.memoryBytes === undefined ? { ms, outcome: outcomeOf(method, reply) } : { ms, outcome: outcomeOf(method, reply), memoryBytes: reply.memoryBytes };
}

/** Why a `describe` answer is not usable, or null. */
function describeProblem(outcome: Outcome): string | null {
  if (outcome.kind === 'err') return `answered err ${outcome.tag}: ${brief(outcome.message)}`;
  if (outcome.kind !== 'ok') return failure(outcome);
  return null;
}

/**
 * `describe` must give a name (the manifest's: agents call a tool by it), a description and an
 * input schema that parses as JSON and is an object schema. @returns the schema, or null
 */
async function checkDescribe(h: Harness, manifest: Manifest, derived: boolean): Promise<JsonSchema | null> {
  const { ms, outcome, memoryBytes } = await callOnce(h, 'describe', 'null');
  const result = (ok: boolean, detail: string, schema: JsonSchema | null = null) => {
    h.checks.push({ name: 'describe', ok, ms, ...(memoryBytes === undefined ? {} : { memoryBytes }), detail });
    return schema;
  };
  const problem = describeProblem(outcome);
  if (problem || outcome.kind !== 'ok') return result(false, problem ?? '');
  const parsed = toolInfo.safeParse(JSON.parse(outcome.output));
  if (!parsed.success) return result(false, parsed.error.issues.map((i) => `tool-info.${i.path.join('.')}: ${i.message}`).join('; '));
  const info = parsed.data;
  let schema: unknown;
  try {
    schema = JSON.parse(info.inputSchema);
  } catch (err) {
    return result(false, `inputSchema is not JSON: ${brief(messageOf(err))}`);
  }
  if (!schema || typeof schema !== 'object' || Array.isArray(schema) || (schema as JsonSchema)['type'] !== 'object') {
    return result(false, `inputSchema must be an object schema ("type": "object"); got ${brief(JSON.stringify(schema), 60)}`);
  }
  const s = schema as JsonSchema;
  const required = Array.isArray(s['required']) ? ` (required: ${(s['required'] as unknown[]).join(', ')})` : '';
  const summary = `name "${info.name}", ${info.description.length}-character description, ${plural(Object.keys((s['properties'] as object | undefined) ?? {}).length, 'property', 'properties')}${required}`;
  if (!derived && info.name !== manifest.name) {
    return result(false, `describe calls it "${info.name}" but its manifest "${manifest.name}": agents call a tool by the name describe gives, so they must agree`, s);
  }
  return result(true, derived && info.name !== h.name ? `${summary}; add it with --name ${info.name}: agents call a tool by that name` : summary, s);
}

/** A tool: describe, its example inputs, then malformed inputs. @returns where the examples came from */
async function checkTool(h: Harness, manifest: Manifest, derived: boolean): Promise<string> {
  const schema = await checkDescribe(h, manifest, derived);
  const examples = exampleInputs(schema ?? { type: 'object' });
  for (const [i, input] of examples.inputs.entries()) {
    const { ms, outcome, memoryBytes } = await callOnce(h, 'call', JSON.stringify(input));
    const push = (ok: boolean, detail: string) =>
      h.checks.push({ name: `example ${i + 1} (${examples.source})`, ok, ms, ...(memoryBytes === undefined ? {} : { memoryBytes }), detail: `${brief(JSON.stringify(input), 60)} → ${detail}` });
    if (outcome.kind === 'ok') {
      const cut = /\[warden: output truncated at \d+ bytes\]\n$/.test(outcome.output);
      push(!cut, cut ? 'its output passed limits.outputBytes and was cut' : `ok, ${Buffer.byteLength(outcome.output)} bytes: ${brief(outcome.output, 60)}`);
    } else if (outcome.kind === 'err' && outcome.tag === 'failed' && examples.source === 'synthesized') {
      push(true, `err failed: ${brief(outcome.message, 60)} (handled; a synthesized input may name nothing in the workspace: add "examples" to the schema for a real check)`);
    } else if (outcome.kind === 'err') {
      push(false, `err ${outcome.tag}: ${brief(outcome.message, 80)} (${outcome.tag === 'invalid-input' ? 'it rejects an input its own schema accepts' : 'give --dir a workspace holding what the example names'})`);
    } else push(false, failure(outcome));
  }
  for (const bad of malformedInputs(schema, examples.inputs[0])) {
    const { ms, outcome, memoryBytes } = await callOnce(h, 'call', bad.input);
    const check = { name: `malformed: ${bad.what}`, ms, ...(memoryBytes === undefined ? {} : { memoryBytes }) };
    if (outcome.kind === 'err') h.checks.push({ ...check, ok: true, detail: `err ${outcome.tag}: ${brief(outcome.message, 80)}` });
    else if (outcome.kind === 'ok') h.checks.push({ ...check, ok: false, detail: `answered ok (${brief(outcome.output, 50)}): bad input must get the err case (invalid-input)` });
    else h.checks.push({ ...check, ok: false, detail: `${failure(outcome)}; bad input must get the err case (invalid-input), not a ${outcome.kind}` });
  }
  return examples.note;
}

/** An agent or supervisor: its world has no describe; a smoke run unless it needs a model. */
async function checkLongLived(h: Harness, kind: 'agent' | 'supervisor', inspection: Inspection, workspace: string): Promise<void> {
  const method = kind === 'agent' ? 'run' : 'handle-task';
  h.checks.push({ name: 'describe', ok: true, skipped: true, ms: 0, detail: `the ${kind}-component world (wit/kernel.wit) exports only ${method}: there is no describe` });
  if (inspection.imports.some((i) => i.interface === 'warden:kernel/inference')) {
    h.checks.push({ name: method, ok: true, skipped: true, ms: 0, detail: 'it imports warden:kernel/inference: a run needs a model backend; run it in a task (`warden run`) against one' });
    return;
  }
  const task = { id: 't-conformance', prompt: 'conformance smoke run', workspace, model: 'none', sessionId: h.sessionId, maxTurns: 1, history: null };
  const { ms, outcome, memoryBytes } = await callOnce(h, method, JSON.stringify(task));
  const check = { name: `${method} (smoke)`, ms, ...(memoryBytes === undefined ? {} : { memoryBytes }) };
  if (outcome.kind === 'ok') h.checks.push({ ...check, ok: true, detail: `ok: ${brief(outcome.output, 80)}` });
  else if (outcome.kind === 'err') h.checks.push({ ...check, ok: true, detail: `answered its error case: ${brief(outcome.message, 80)}` });
  else h.checks.push({ ...check, ok: false, detail: failure(outcome) });
}

/**
 * Run the conformance checks of one component.
 *
 * @throws WardenError from {@link inspectComponent} (not a file, not a component), `E_BAD_INPUT`
 *   (a `wasi:cli/command`; a manifest that does not parse), `E_NOT_FOUND` (no such manifest or
 *   workspace). A component the registry or the kernel refuses is a failed `load` check.
 */
export async function testComponent(options: ConformanceOptions): Promise<ConformanceReport> {
  const inspection = await inspectComponent(options.file);
  if (inspection.kind === 'command') {
    throw new WardenError('E_BAD_INPUT', `${options.file} is a wasi:cli/command: test-component tests tools, agents and supervisors; run it with \`warden tool run ${options.file}\``);
  }
  if (options.workspace && !existsSync(options.workspace)) throw new WardenError('E_NOT_FOUND', `--dir ${options.workspace}: no such directory`);
  const scratch = mkdtempSync(join(tmpdir(), 'warden-conformance-'));
  try {
    const report = await run(options, inspection, scratch);
    report.ok = report.checks.length > 0 && report.checks.every((c) => c.ok);
    return report;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** The run in `scratch` (data directory, default workspace, derived manifest). */
async function run(options: ConformanceOptions, inspection: Inspection, scratch: string): Promise<ConformanceReport> {
  const dataDir = join(scratch, 'data');
  mkdirSync(dataDir);
  const chosen = chooseManifest(options, inspection, scratch);
  const wasm = resolve(options.file);
  // A built-in's own build runs as the kernel loads it; any other file is pinned, under a name no built-in has.
  const builtins = new Set(builtinManifests().map((m) => m.name));
  const isBuiltin = builtins.has(chosen.manifest.name) && wasm === join(BUILT_COMPONENTS, `${chosen.manifest.name}.wasm`);
  const name = isBuiltin ? chosen.manifest.name : registeredName(chosen.manifest.name, builtins);
  const workspace = options.workspace ?? join(scratch, 'workspace');
  if (!options.workspace) {
    mkdirSync(workspace);
    writeFileSync(join(workspace, 'example.txt'), EXAMPLE_FILE);
  }
  writeConfig(dataDir, name, chosen.manifest, options.timeoutMs);
  shareTranspileCache(dataDir);
  const report: ConformanceReport = {
    component: {
      file: options.file, name, kind: inspection.kind, sha256: inspection.sha256, size: inspection.size, manifest: chosen.source,
      workspace: resolve(workspace), inputs: '', memory: { initialBytes: inspection.initialMemory.bytes, capBytes: null, note: MEMORY_NOTE },
    },
    checks: [],
    ok: false,
  };
  const started = performance.now();
  let cut: ComponentUnderTest;
  try {
    cut = await startKernelWith({ wasm, manifest: { ...chosen.manifest, name }, dataDir, workspace });
  } catch (err) {
    const reason = err instanceof WardenError ? `${err.code}: ${err.message}` : messageOf(err);
    report.checks.push({ name: 'load', ok: false, ms: Math.round(performance.now() - started), detail: `refused: ${brief(reason, 400)}` });
    return report;
  }
  try {
    const target = cut.kernel.mesh.component(name)!;
    const { limits } = target;
    const h: Harness = { kernel: cut.kernel, name, limits, sessionId: cut.sessionId, capBytes: target.compiled.maxPages * WASM_PAGE_BYTES, checks: report.checks };
    report.component.memory.capBytes = h.capBytes;
    report.checks.push({
      name: 'load', ok: true, ms: Math.round(performance.now() - started),
      detail: `${isBuiltin ? 'the built-in' : `pinned as ${chosen.manifest.kind}`} "${name}" loaded by a kernel started for the run; limits per call: ${limits.timeoutMs} ms, ${limits.memoryMb} MiB, ${limits.outputBytes} output bytes`,
    });
    const kind = chosen.manifest.kind;
    if (kind === 'tool') report.component.inputs = await checkTool(h, chosen.manifest, chosen.derived);
    else if (kind === 'agent' || kind === 'supervisor') await checkLongLived(h, kind, inspection, cut.workspace);
    return report;
  } finally {
    await cut.close();
  }
}

/** `1.63 MiB` for people. */
function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(bytes % 2 ** 20 === 0 ? 0 : 2)} MiB`;
}

/** The table `warden test-component` prints: one line per check and a summary line. */
export function formatConformance(report: ConformanceReport): string {
  const c = report.component;
  const rows = report.checks.map((k) => [k.name, k.skipped ? 'SKIP' : k.ok ? 'PASS' : 'FAIL', String(k.ms), k.memoryBytes === undefined ? '-' : mib(k.memoryBytes), k.detail]);
  const header = ['check', 'result', 'ms', 'memory', 'detail'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (i < 4 ? r[i]!.length : 0))));
  const line = (cells: string[]) => cells.map((cell, i) => (i === 2 ? cell.padStart(widths[i]!) : i < 4 ? cell.padEnd(widths[i]!) : cell)).join('  ');
  const failed = report.checks.filter((k) => !k.ok).length;
  const skipped = report.checks.filter((k) => k.skipped).length;
  return [
    `${c.file}: ${c.kind ?? 'component'} "${c.name}", ${mib(c.size)}, sha256 ${c.sha256}`,
    `manifest: ${c.manifest}`,
    `workspace: ${c.workspace} (through a session discarded afterwards)`,
    ...(c.inputs ? [`inputs: ${c.inputs}`] : []),
    `memory: ${mib(c.memory.initialBytes)} of linear memory at start${c.memory.capBytes ? `, capped at ${mib(c.memory.capBytes)} per core memory` : ''}; ${c.memory.note}`,
    `ms: wall time of each call through the kernel's mesh, instantiation of its fresh instance included (load: pinning it and starting a kernel, transpiling included)`,
    '',
    line(header),
    ...rows.map(line),
    '',
    `${report.checks.length} checks: ${report.checks.length - failed - skipped} passed, ${failed} failed, ${skipped} skipped — ${report.ok ? 'PASS' : 'FAIL'}`,
  ].join('\n');
}
