/**
 * A kernel for the mesh suites: the operator's `warden.config.json` (grants and pools) is written
 * into a fresh data directory before `Kernel.start` reads it, the actor guest is built once
 * (alongside the start), and every test component is loaded from it under its own name with its
 * own manifest — the path a third-party component takes (effective = requested ∩ granted).
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Kernel } from '../../kernel/kernel.js';
import { KERNEL_GRANTS, parseManifest } from '../../kernel/grants/index.js';
import type { CallReply, PoolSettings } from '../../kernel/mesh/index.js';
import { tempDir } from '../support/fixtures.js';
import { buildActor } from './actor.js';

/** One test component: what its manifest requests (the config grants the same) and its pool. */
export interface ActorSpec {
  mesh?: string[];
  sql?: { scope: string; mode: 'ro' | 'rw' };
  /** Manifest limits (a third-party manifest may lower the defaults). */
  limits?: { timeoutMs?: number };
  pool?: Partial<PoolSettings>;
  subscribe?: string[];
  /** Requested but not granted: the config grants only `mesh` minus these. */
  withheld?: string[];
}

export interface ActorKernel {
  kernel: Kernel;
  dataDir: string;
}

/** Start a kernel with `actors` loaded (all from the one actor build). */
export async function startActorKernel(actors: Record<string, ActorSpec>, options: { baseURL?: string } = {}): Promise<ActorKernel> {
  const dataDir = tempDir('data');
  const grants: Record<string, object> = {};
  const pools: Record<string, object> = {};
  for (const [name, spec] of Object.entries(actors)) {
    const mesh = (spec.mesh ?? []).filter((m) => !(spec.withheld ?? []).includes(m));
    grants[name] = { mesh, ...(spec.sql ? { sql: spec.sql } : {}) };
    if (spec.pool) pools[name] = spec.pool;
  }
  writeFileSync(join(dataDir, 'warden.config.json'), JSON.stringify({ grants, pools }));
  const [kernel, wasm] = await Promise.all([
    Kernel.start({ dataDir, quiet: true, ...(options.baseURL ? { baseURL: options.baseURL } : {}) }),
    buildActor(),
  ]);
  await Promise.all(Object.entries(actors).map(([name, spec]) => kernel.loadComponent({
    name,
    manifest: parseManifest({
      name, version: '0.0.1', kind: 'tool',
      requests: { mesh: spec.mesh ?? [], sql: spec.sql ?? null },
      limits: spec.limits ?? {},
      subscribe: spec.subscribe ?? [],
    }, `test:${name}`),
    file: wasm,
    builtin: false,
  })));
  return { kernel, dataDir };
}

/** A call context from the kernel (the main thread) with `ms` left. */
export function kernelCtx(ms: number, taskId = '') {
  return { taskId, sessionId: null, chain: [] as string[], deadline: Date.now() + ms, grants: KERNEL_GRANTS };
}

/** `{tag:'json'}` payload of `value`. */
export function json(value: unknown) {
  return { tag: 'json' as const, val: JSON.stringify(value) };
}

/** The tool output text of an ok reply (throws the error message otherwise). */
export function outputOf(reply: CallReply): string {
  if (!reply.ok) throw new Error(`call failed: ${reply.error.message}`);
  return (JSON.parse((reply.payload as { val: string }).val) as { output: string }).output;
}

/** What the actor's `call` op reports: one mesh call made by a guest. */
export interface GuestAttempt {
  ok: boolean;
  /** Reply payload text (JSON) when ok. */
  value?: string;
  error?: { tag: string; val: string };
  /** Wall-clock ms the guest waited for the answer. */
  ms: number;
}

/** The output of a tool reply as the guest saw it: the `output` inside a guest attempt's value. */
export function innerOutput(attempt: GuestAttempt): string {
  if (!attempt.ok) throw new Error(`guest call failed: ${JSON.stringify(attempt.error)}`);
  return (JSON.parse(attempt.value!) as { output: string }).output;
}

/** Rows of a scope database, read-only (the scope's owner writes it from its worker). */
export function scopeRows<T>(dataDir: string, scope: string, sql: string, ...params: unknown[]): T[] {
  const file = join(dataDir, 'scopes', `${scope}.db`);
  if (!existsSync(file)) return [];
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).all(...params) as T[];
  } catch (err) {
    if (/no such table/.test((err as Error).message)) return [];
    throw err;
  } finally {
    db.close();
  }
}

/** Poll `check` every `everyMs` until it returns a value other than undefined, or `ms` pass. */
export async function until<T>(check: () => T | undefined | Promise<T | undefined>, ms: number, everyMs = 50): Promise<T | undefined> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() >= end) return undefined;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Prometheus exposition text → samples of one metric, each as its labels and value.
 * (Parsed rather than matched as text: label order is prom-client's business.)
 */
export function samples(text: string, name: string): Array<{ labels: Record<string, string>; value: number }> {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const match = /^[^{]+\{(.*)\}\s+(\S+)$/.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const [, key, value] of match[1]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key!] = value!;
    out.push({ labels, value: Number(match[2]) });
  }
  return out;
}
