/**
 * Effective grants of a component, with where each capability came from.
 *
 * Effective = requested (manifest) ∩ granted (operator's config), deny by default. Built-in
 * components — the ones shipped in this repository's `components/` — are granted what they
 * request unless the config says otherwise; every other component gets only what the config
 * grants. Per call the kernel further intersects with the caller's effective grants
 * ({@link attenuate}).
 */
import type { GrantConfig } from '../config/index.js';
import { DEFAULT_LIMITS, intersect, NO_GRANTS, requested, type Grants, type Limits, type Manifest } from './index.js';

/** One line of `warden component grants NAME`. */
export interface GrantExplanation {
  /** `filesystem`, `sql`, `mesh`, `inference`, `session`, `env`, `http`, `sockets`, `limits.timeoutMs`, … */
  capability: string;
  /** What the manifest asks for. */
  requested: unknown;
  /** What the operator grants (for built-ins without a config entry: the request itself). */
  granted: unknown;
  /** requested ∩ granted. */
  effective: unknown;
  /** Where `granted` came from: `config grants.NAME`, `built-in default`, `not granted (deny by default)`, … */
  source: string;
}

/** What {@link effectiveGrants} returns. */
export interface Effective {
  grants: Grants;
  limits: Limits;
  explain: GrantExplanation[];
}

/**
 * Compute a component's effective grants and limits.
 *
 * @param manifest what the component requests
 * @param configured the operator's grant for it (`grants.<name>` in `warden.config.json`), if any
 * @param options.builtin whether it ships with this repository (trusted to get what it requests)
 * @param options.defaults the config's default limits (merged over {@link DEFAULT_LIMITS})
 * @param options.env the kernel's environment, for `$NAME` references in granted env values
 */
export function effectiveGrants(
  manifest: Manifest,
  configured: GrantConfig | undefined,
  options: { builtin: boolean; defaults: Partial<Limits>; env: NodeJS.ProcessEnv },
): Effective {
  const want = requested(manifest);
  let granted: Grants;
  let source: string;
  if (configured) {
    granted = {
      filesystem: configured.filesystem ?? 'none',
      sql: configured.sql ?? null,
      mesh: configured.mesh ?? [],
      inference: configured.inference ?? [],
      session: configured.session ?? false,
      env: Object.fromEntries(
        Object.entries(configured.env ?? {}).map(([key, value]) => [key, value.startsWith('$') ? options.env[value.slice(1)] ?? '' : value]),
      ),
      http: configured.http ?? [],
      sockets: configured.sockets ?? [],
    };
    source = `config grants.${manifest.name}`;
  } else if (options.builtin) {
    granted = want;
    source = 'built-in default (as requested)';
  } else {
    granted = NO_GRANTS;
    source = `not granted: add grants.${manifest.name} to warden.config.json`;
  }
  // Raw sockets are not implemented: every `wasi:sockets` call is denied, whatever is granted.
  const grants = { ...intersect(want, granted), sockets: [] };
  // Env values come from the grant only; a requested key the operator granted keeps the operator's value.
  const explain: GrantExplanation[] = (Object.keys(want) as Array<keyof Grants>).map((key) => ({
    capability: key,
    requested: key === 'env' ? Object.keys(want.env) : want[key],
    granted: key === 'env' ? Object.keys(granted.env) : granted[key],
    effective: key === 'env' ? Object.keys(grants.env) : grants[key],
    source: key === 'sockets'
      ? 'not available: raw wasi:sockets are always denied in this version (use http)'
      : configured && configured[key as keyof GrantConfig] === undefined ? `${source} (field absent: nothing)` : source,
  }));

  const defaults: Limits = { ...DEFAULT_LIMITS, ...options.defaults };
  const limits = { ...defaults };
  for (const key of Object.keys(DEFAULT_LIMITS) as Array<keyof Limits>) {
    const asked = manifest.limits[key];
    const override = configured?.limits?.[key];
    let from: string;
    if (override !== undefined) {
      limits[key] = override;
      from = `config grants.${manifest.name}.limits`;
    } else if (asked !== undefined && options.builtin) {
      limits[key] = asked;
      from = 'manifest (built-in)';
    } else if (asked !== undefined) {
      // A third-party manifest may lower a limit, never raise it above the operator's default.
      limits[key] = Math.min(asked, defaults[key]);
      from = asked > defaults[key] ? 'config default (manifest asked for more)' : 'manifest';
    } else {
      from = 'config default';
    }
    explain.push({ capability: `limits.${key}`, requested: asked ?? null, granted: override ?? defaults[key], effective: limits[key], source: from });
  }
  return { grants, limits, explain };
}
