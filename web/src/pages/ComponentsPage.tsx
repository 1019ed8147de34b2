/**
 * `/components`: every component with its pin (sha256, origin, version), generation and reload
 * status and workers, live from `/components` in the state document, and its effective grants
 * and limits from `GET /api/components` (fetched again when a component's version changes).
 */
import { useEffect, useState } from 'preact/hooks';
import { useDocument, type ComponentState } from '../state/index.ts';
import { api, ApiError } from '../lib/api.ts';
import { useNow } from '../lib/store.ts';
import { formatAge, formatMs, shortHash } from '../lib/format.ts';
import { Badge, Cell } from '../components/Badge.tsx';

/** What `GET /api/components` adds to a component's state: effective grants (env by name) and limits. */
interface ComponentInfo extends ComponentState {
  grants?: {
    filesystem: string;
    sql: { scope: string; mode: string } | null;
    mesh: string[];
    inference: string[];
    session: boolean;
    env: string[];
    http: string[];
    sockets: string[];
  };
  limits?: { timeoutMs: number; memoryMb: number; outputBytes: number };
  explain?: Array<{ capability: string; source: string }>;
  pinnedAt?: string;
}

export function ComponentsPage() {
  const live = useDocument<Record<string, ComponentState>>('/components');
  const now = useNow(10_000);
  const [info, setInfo] = useState<Record<string, ComponentInfo>>({});
  const [error, setError] = useState('');
  const list = Object.values(live.state ?? {}).sort((a, b) => kindRank(a.kind) - kindRank(b.kind) || a.name.localeCompare(b.name));
  // Grants change only with a component's version: refetch when a name, hash or generation changes.
  const versionKey = list.map((c) => `${c.name}:${c.sha256}:${c.generation ?? 0}`).join(',');
  useEffect(() => {
    if (!live.loaded) return;
    let cancelled = false;
    api<ComponentInfo[]>('/api/components').then(
      (all) => !cancelled && setInfo(Object.fromEntries(all.map((c) => [c.name, c]))),
      (err) => !cancelled && setError(err instanceof ApiError ? err.message : String(err)),
    );
    return () => {
      cancelled = true;
    };
  }, [versionKey, live.loaded]);

  return (
    <div class="page">
      <section class="panel" aria-labelledby="components-title">
        <header class="panel-head">
          <h2 id="components-title">Components</h2>
          <span class="muted">{live.loaded ? `${list.length} loaded or pinned` : 'loading…'}</span>
        </header>
        {error && <p class="error-text pad">{error}</p>}
        <table class="table cards" id="components">
          <thead>
            <tr>
              <th>Component</th>
              <th>Pin</th>
              <th>Status</th>
              <th class="num">Workers</th>
              <th>Effective grants</th>
              <th>Limits</th>
            </tr>
          </thead>
          <tbody>
            {list.map((c) => (
              <ComponentRow key={c.name} component={c} info={info[c.name]} now={now} />
            ))}
          </tbody>
        </table>
      </section>
    </div>
  );
}

function ComponentRow({ component: c, info, now }: { component: ComponentState; info: ComponentInfo | undefined; now: number }) {
  return (
    <tr data-component={c.name}>
      <Cell label="Component">
        <span class="comp-name">{c.name}</span>
        <span class="muted small block">
          {c.kind} · v{c.version}
        </span>
      </Cell>
      <Cell label="Pin">
        <code class="hash" title={`sha256 ${c.sha256}`}>
          {shortHash(c.sha256)}
        </code>
        <span class="block">
          <Badge status={c.origin} tone={`origin-${c.origin}`} />
          {info?.pinnedAt && <span class="muted small"> pinned {info.pinnedAt.slice(0, 10)}</span>}
        </span>
      </Cell>
      <Cell label="Status">
        <Badge status={c.status} tone={c.status === 'loaded' ? 'ok' : 'error'} />
        {c.generation !== undefined && <span class="muted small"> gen {c.generation}</span>}
        {c.reloadedAt !== undefined && <span class="muted small block">reloaded {formatAge(c.reloadedAt, now)}</span>}
        {c.reason && <span class="error-text small block">{c.reason}</span>}
        {c.reloadError && <span class="error-text small block">reload failed: {c.reloadError}</span>}
      </Cell>
      <Cell label="Workers" class="num">
        {c.workers}
      </Cell>
      <Cell label="Grants">{info?.grants ? <Grants grants={info.grants} explain={info.explain ?? []} /> : <span class="muted">…</span>}</Cell>
      <Cell label="Limits">
        {info?.limits ? (
          <span class="limits">
            <span title="wall-clock deadline per call">{formatMs(info.limits.timeoutMs)}</span>
            <span title="memory cap">{info.limits.memoryMb} MiB</span>
            <span title="output cap">{formatBytes(info.limits.outputBytes)} out</span>
          </span>
        ) : (
          <span class="muted">…</span>
        )}
      </Cell>
    </tr>
  );
}

/** Each granted capability as a chip; capabilities not granted are left out. */
function Grants({ grants, explain }: { grants: NonNullable<ComponentInfo['grants']>; explain: Array<{ capability: string; source: string }> }) {
  const source = (capability: string) => explain.find((e) => e.capability === capability)?.source ?? '';
  const chips: Array<[string, string]> = [];
  if (grants.filesystem !== 'none') chips.push(['filesystem', grants.filesystem]);
  if (grants.session) chips.push(['session', 'session']);
  if (grants.sql) chips.push(['sql', `sql ${grants.sql.scope}:${grants.sql.mode}`]);
  for (const m of grants.mesh) chips.push(['mesh', `mesh ${m}`]);
  for (const i of grants.inference) chips.push(['inference', `inference ${i}`]);
  for (const h of grants.http) chips.push(['http', `http ${h}`]);
  for (const e of grants.env) chips.push(['env', `env ${e}`]);
  if (chips.length === 0) return <span class="muted">none</span>;
  return (
    <span class="chips">
      {chips.map(([capability, label]) => (
        <code key={label} class={`chip chip-${capability}`} title={source(capability)}>
          {label}
        </code>
      ))}
    </span>
  );
}

function kindRank(kind: string): number {
  return kind === 'supervisor' ? 0 : kind === 'agent' ? 1 : 2;
}

function formatBytes(n: number): string {
  if (n >= 2 ** 20) return `${Math.round(n / 2 ** 20)} MiB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KiB`;
  return `${n} B`;
}
