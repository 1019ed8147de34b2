/**
 * Hot reload of pinned components. A running kernel notices when a pin in its data directory is
 * added, changed (new sha256 or manifest) or removed — by any process: `warden component add`,
 * `warden component remove`, `warden build --watch` — and loads, replaces or unloads that
 * component without a restart. The new version is compiled and instantiated first; when that
 * fails the old one keeps serving and the failure is recorded (`reloadError`, audit, log).
 *
 * Only pinned components reload. Built-in ones are files under `build/components/` that
 * `npm run build` rewrites; the kernel loads them at start and a restart picks up a rebuild.
 */
import { watch, type FSWatcher } from 'node:fs';
import type { Logger } from 'pino';
import { WardenError, messageOf } from './errors.js';
import type { Mesh, MeshComponent } from './mesh/index.js';
import type { ComponentRegistry, RegisteredComponent } from './registry/index.js';
import type { StateDocument } from './state/index.js';
import type { PinRow, Store } from './store/index.js';

/** What the reloader needs of the kernel. */
export interface ReloadHost {
  readonly dataDir: string;
  readonly store: Store;
  readonly registry: ComponentRegistry;
  readonly mesh: Mesh;
  readonly state: StateDocument;
  readonly log: Logger;
  /** Compile a component and describe it for the mesh (effective grants, limits, pool). */
  prepareComponent(component: RegisteredComponent): Promise<MeshComponent>;
  /** Load a component not yet in the mesh, recording it as start-up does. */
  loadComponent(component: RegisteredComponent): Promise<void>;
}

/** Options of {@link PinReloader}. */
export interface ReloadOptions {
  /** Delay between the first file event and the check, ms (later events in it are folded in). Default 100. */
  debounceMs?: number;
  /** Interval of the fallback poll, ms, for filesystems without change events. Default 2000. */
  pollMs?: number;
}

/** A pin as last acted on: what is loaded, or what was tried and refused. */
interface Seen {
  sha256: string;
  manifest: string;
  addedAt: string;
}

/**
 * Watches the pins of one data directory and applies their changes to the running kernel.
 *
 * Trigger: `fs.watch` on the data directory, for writes to `warden.db` and its WAL (every pin
 * change is a committed write there, from whichever process), plus a slow poll in case the
 * filesystem sends no events. A trigger only schedules a check; the check re-reads the `pins`
 * table (a cheap query) and diffs it against what was loaded, so spurious triggers — the
 * kernel's own writes — change nothing. Checks run one at a time, in order.
 */
export class PinReloader {
  private readonly seen = new Map<string, Seen>();
  private watcher: FSWatcher | null = null;
  private poll: NodeJS.Timeout | null = null;
  private timer: NodeJS.Timeout | null = null;
  private chain: Promise<void> = Promise.resolve();
  private queued = false;
  private closed = false;
  private readonly debounceMs: number;
  private readonly pollMs: number;

  constructor(private readonly host: ReloadHost, options: ReloadOptions = {}) {
    this.debounceMs = options.debounceMs ?? 100;
    this.pollMs = options.pollMs ?? 2000;
  }

  /**
   * Start watching, after start-up loaded the pinned components: what start-up loaded or
   * refused is the baseline (so nothing changes now), and a first check catches a pin changed
   * while the kernel was starting.
   */
  start(): void {
    const shown = this.host.state.current.components;
    for (const pin of this.host.store.pins()) {
      const entry = shown[pin.name];
      if (entry?.origin === 'pinned') this.seen.set(pin.name, { sha256: entry.sha256, manifest: pin.manifest, addedAt: pin.added_at });
    }
    try {
      this.watcher = watch(this.host.dataDir, (_event, file) => {
        if (!file || file.startsWith('warden.db')) this.schedule();
      });
      this.watcher.on('error', (err) => this.host.log.warn({ err: messageOf(err) }, 'watching the data directory for pin changes failed; polling only'));
      this.watcher.unref();
    } catch (err) {
      this.host.log.warn({ err: messageOf(err) }, 'cannot watch the data directory for pin changes; polling only');
    }
    this.poll = setInterval(() => this.schedule(), this.pollMs);
    this.poll.unref();
    this.schedule();
  }

  /** Stop watching and wait for a check in progress to finish. */
  async close(): Promise<void> {
    this.closed = true;
    this.watcher?.close();
    if (this.poll) clearInterval(this.poll);
    if (this.timer) clearTimeout(this.timer);
    await this.chain;
  }

  /**
   * Re-read the pins now and apply what changed (one check at a time; a request made while one
   * waits joins it). Never rejects: failures are recorded per component.
   */
  check(): Promise<void> {
    if (this.queued) return this.chain;
    this.queued = true;
    this.chain = this.chain
      .then(async () => {
        this.queued = false;
        if (!this.closed) await this.apply();
      })
      .catch((err: unknown) => this.host.log.error({ err: messageOf(err) }, 'checking pins for changes failed'));
    return this.chain;
  }

  /** Check once after `debounceMs`, however many triggers arrive meanwhile (a bound, not a reset: steady writes cannot starve it). */
  private schedule(): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.check();
    }, this.debounceMs);
  }

  private async apply(): Promise<void> {
    const pins = new Map(this.host.store.pins().map((pin) => [pin.name, pin]));
    for (const name of [...this.seen.keys()]) if (!pins.has(name)) this.unload(name);
    for (const pin of pins.values()) {
      if (this.closed) return;
      const seen = this.seen.get(pin.name);
      const entry = this.host.state.current.components[pin.name];
      const healthy = entry?.status === 'loaded' && !entry.reloadError;
      // Unchanged; a refused or failed pin is tried again when it is added again, even with the same bytes.
      if (seen && seen.sha256 === pin.sha256 && seen.manifest === pin.manifest && (healthy || seen.addedAt === pin.added_at)) continue;
      this.seen.set(pin.name, { sha256: pin.sha256, manifest: pin.manifest, addedAt: pin.added_at });
      if (this.host.mesh.component(pin.name)) await this.replace(pin);
      else await this.load(pin);
    }
  }

  /** A pin the mesh does not serve (new, or refused before): loaded as at start-up. */
  private async load(pin: PinRow): Promise<void> {
    try {
      await this.host.loadComponent(this.host.registry.get(pin.name));
      this.host.log.info({ component: pin.name, sha256: pin.sha256 }, 'component loaded while running');
    } catch (err) {
      if (this.closed) return;
      const reason = reasonOf(err);
      this.host.log.error({ component: pin.name, reason }, 'component refused');
      this.host.store.audit('component.refused', { name: pin.name, sha256: pin.sha256, reason }, pin.name);
      this.host.state.update((d) => {
        d.components[pin.name] = { name: pin.name, kind: pin.kind, version: pin.version, sha256: pin.sha256, workers: 0, origin: 'pinned', status: 'refused', reason };
      });
    }
  }

  /** A served pin with new bytes or manifest: the new version replaces the old, or the old keeps serving. */
  private async replace(pin: PinRow): Promise<void> {
    const before = this.host.state.current.components[pin.name];
    const from = before?.sha256 ?? this.host.mesh.component(pin.name)?.compiled.sha256 ?? null;
    let next: MeshComponent;
    try {
      next = await this.host.prepareComponent(this.host.registry.get(pin.name));
      await this.host.mesh.replace(next);
    } catch (err) {
      if (this.closed) return;
      const reason = reasonOf(err);
      this.host.log.error({ component: pin.name, from, to: pin.sha256, reason }, 'component reload failed; the previous version keeps serving');
      this.host.store.audit('component.reload', { name: pin.name, from, to: pin.sha256, version: pin.version, outcome: 'failed', reason }, pin.name);
      this.host.state.update((d) => {
        const entry = d.components[pin.name];
        if (entry) entry.reloadError = `sha256 ${pin.sha256}: ${reason}`;
      });
      return;
    }
    const { compiled, grants, limits } = next;
    const generation = (before?.generation ?? 1) + 1;
    const workers = this.host.mesh.pools().find((p) => p.name === pin.name)?.workers.length ?? 0;
    this.host.store.upsertComponent(pin.name, pin.kind, pin.version, compiled.sha256, grants, limits);
    this.host.store.audit('component.reload', { name: pin.name, from, to: compiled.sha256, version: pin.version, generation, outcome: 'ok' }, pin.name);
    this.host.log.info({ component: pin.name, from, to: compiled.sha256, version: pin.version, generation }, 'component reloaded');
    this.host.state.update((d) => {
      d.components[pin.name] = {
        name: pin.name, kind: pin.kind, version: pin.version, sha256: compiled.sha256, workers, origin: 'pinned', status: 'loaded',
        generation, reloadedAt: Date.now(),
      };
    });
  }

  /** A pin that is gone: new calls get `E_MESH_UNKNOWN_TARGET`, calls in flight finish, then its workers stop. */
  private unload(name: string): void {
    const sha256 = this.host.state.current.components[name]?.sha256 ?? this.seen.get(name)?.sha256 ?? null;
    this.seen.delete(name);
    const drained = this.host.mesh.remove(name);
    this.host.store.audit('component.unload', { name, sha256 }, name);
    this.host.log.info({ component: name, sha256 }, 'component unloaded; calls in flight finish first');
    this.host.state.update((d) => {
      delete d.components[name];
    });
    void drained.then(() => this.host.log.debug({ component: name }, 'unloaded component\'s workers stopped'));
  }
}

function reasonOf(err: unknown): string {
  return err instanceof WardenError ? `${err.code}: ${err.message}` : messageOf(err);
}
