/**
 * `warden component add|list|grants|remove`: the operator's view of the component registry —
 * third-party components pinned by sha256, and the effective grants of every component with
 * where each capability came from.
 */
import { join, resolve } from 'node:path';
import { Engine } from '../engine/index.js';
import { transpileCacheDir } from '../paths.js';
import { configFile, loadConfig, type Config } from '../config/index.js';
import { effectiveGrants, type Effective } from '../grants/effective.js';
import { Store } from '../store/index.js';
import { ComponentRegistry, type AddResult, type RegisteredComponent } from '../registry/index.js';

/** An opened data directory: store, registry, config. Close it when done. */
export interface DataDir {
  store: Store;
  registry: ComponentRegistry;
  config: Config;
  close(): void;
}

/**
 * Open a data directory the way the kernel does, without starting workers.
 * @throws WardenError `E_CONFIG` for an invalid `warden.config.json` / `.toml`
 */
export function openDataDir(dataDir: string): DataDir {
  const dir = resolve(dataDir);
  const config = loadConfig(configFile(dir));
  const store = new Store(join(dir, 'warden.db'));
  const registry = new ComponentRegistry(dir, store, new Engine(transpileCacheDir(dir)));
  return { store, registry, config, close: () => store.close() };
}

/** Effective grants of a registered component under a data directory's config. */
export function effectiveOf(data: DataDir, component: RegisteredComponent, env: NodeJS.ProcessEnv = process.env): Effective {
  return effectiveGrants(component.manifest, data.config.grants[component.name], { builtin: component.builtin, defaults: data.config.limits, env });
}

function show(value: unknown): string {
  if (value === null || value === undefined) return '-';
  if (Array.isArray(value)) return value.length ? value.join(', ') : '-';
  if (typeof value === 'object') {
    const o = value as Record<string, unknown>;
    return 'scope' in o ? `${String(o['scope'])} (${String(o['mode'])})` : JSON.stringify(value);
  }
  return String(value);
}

/** The table `warden component grants NAME` prints. */
export function formatGrants(component: RegisteredComponent, effective: Effective): string {
  const rows = effective.explain.map((e) => [e.capability, show(e.requested), show(e.granted), show(e.effective), e.source]);
  const header = ['capability', 'requested', 'granted', 'effective', 'source'];
  const widths = header.map((h, i) => Math.min(40, Math.max(h.length, ...rows.map((r) => r[i]!.length))));
  const line = (cells: string[]) => cells.map((c, i) => (i < cells.length - 1 ? c.padEnd(widths[i]!) : c)).join('  ');
  const origin = component.builtin ? 'built-in' : `pinned sha256 ${component.sha256}`;
  return [
    `${component.name} (${component.manifest.kind} ${component.manifest.version}, ${origin})`,
    'effective = requested ∩ granted; per call further ∩ the caller\'s effective grants',
    line(header),
    ...rows.map(line),
  ].join('\n');
}

/** The text `warden component add` prints. */
export function formatAdded(result: AddResult, effective: Effective): string {
  const c = result.component;
  const granted = effective.explain.filter((e) => !e.capability.startsWith('limits.') && show(e.effective) !== '-' && e.effective !== 'none' && e.effective !== false);
  return [
    `added ${c.name}: ${c.manifest.kind}, ${result.size} bytes, sha256 ${c.sha256}${result.replacedSha256 ? ` (replaces ${result.replacedSha256})` : ''}`,
    `imports: ${result.imports.join(', ') || 'nothing'}`,
    `exports: ${result.exports.join(', ') || 'nothing'}`,
    granted.length
      ? `effective grants: ${granted.map((e) => `${e.capability}=${show(e.effective)}`).join('; ')}`
      : `effective grants: none — it runs with nothing until grants.${c.name} in warden.config.json grants what it requests`,
    `see \`warden component grants ${c.name}\` for every capability and where it comes from`,
  ].join('\n');
}
