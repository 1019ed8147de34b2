/**
 * The kernel's own database (better-sqlite3, WAL): tasks, sessions, components and audit
 * events, with versioned migrations applied at open. Separate from every component's SQL scope.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export { ScopedSql, type SqlValue, type SqlError } from './scoped-sql.js';

/** Ordered migrations; index + 1 is the schema version they lead to. Never edit one that shipped. */
const MIGRATIONS: string[] = [
  `CREATE TABLE tasks (
     id TEXT PRIMARY KEY,
     prompt TEXT NOT NULL,
     workspace TEXT NOT NULL,
     model TEXT NOT NULL,
     status TEXT NOT NULL,
     session_id TEXT,
     summary TEXT,
     error TEXT,
     created_at TEXT NOT NULL,
     finished_at TEXT
   );
   CREATE TABLE sessions (
     id TEXT PRIMARY KEY,
     workspace TEXT NOT NULL,
     task_id TEXT,
     status TEXT NOT NULL,
     created_at TEXT NOT NULL,
     finished_at TEXT
   );
   CREATE TABLE components (
     name TEXT PRIMARY KEY,
     kind TEXT NOT NULL,
     version TEXT NOT NULL,
     sha256 TEXT NOT NULL,
     loaded_at TEXT NOT NULL
   );
   CREATE TABLE audit (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     ts TEXT NOT NULL,
     kind TEXT NOT NULL,
     component TEXT,
     task_id TEXT,
     detail TEXT NOT NULL
   );`,
  // 2: third-party components pinned by sha256 (`warden component add`).
  `CREATE TABLE pins (
     name TEXT PRIMARY KEY,
     sha256 TEXT NOT NULL,
     kind TEXT NOT NULL,
     version TEXT NOT NULL,
     manifest TEXT NOT NULL,
     file TEXT NOT NULL,
     size INTEGER NOT NULL,
     added_at TEXT NOT NULL
   );`,
];

/** A pinned third-party component. */
export interface PinRow {
  name: string;
  /** sha256 of the component bytes (hex) as added; any other bytes are refused. */
  sha256: string;
  kind: string;
  version: string;
  /** The manifest, JSON. */
  manifest: string;
  /** Absolute path of the stored copy. */
  file: string;
  /** Size in bytes. */
  size: number;
  added_at: string;
}

/** A task row. Times are ISO 8601 strings. */
export interface TaskRow {
  id: string;
  prompt: string;
  workspace: string;
  model: string;
  status: 'queued' | 'running' | 'succeeded' | 'failed' | 'interrupted';
  session_id: string | null;
  summary: string | null;
  error: string | null;
  created_at: string;
  finished_at: string | null;
}

/** A session row. */
export interface SessionRow {
  id: string;
  workspace: string;
  task_id: string | null;
  status: 'open' | 'committed' | 'discarded';
  created_at: string;
  finished_at: string | null;
}

/** The kernel store. */
export class Store {
  readonly db: Database.Database;

  /** Open (creating when missing) and migrate the database at `file`. */
  constructor(file: string) {
    mkdirSync(dirname(file), { recursive: true });
    this.db = new Database(file, { timeout: 5000 });
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('foreign_keys = ON');
    this.migrate();
  }

  /** Schema version after migration. */
  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  private migrate(): void {
    const version = this.schemaVersion;
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  insertTask(row: TaskRow): void {
    this.db
      .prepare(`INSERT INTO tasks (id, prompt, workspace, model, status, session_id, summary, error, created_at, finished_at)
                VALUES (@id, @prompt, @workspace, @model, @status, @session_id, @summary, @error, @created_at, @finished_at)`)
      .run(row);
  }

  updateTask(id: string, fields: Partial<Omit<TaskRow, 'id'>>): void {
    const keys = Object.keys(fields);
    if (keys.length === 0) return;
    this.db.prepare(`UPDATE tasks SET ${keys.map((k) => `${k} = @${k}`).join(', ')} WHERE id = @id`).run({ ...fields, id });
  }

  tasks(): TaskRow[] {
    return this.db.prepare('SELECT * FROM tasks ORDER BY created_at').all() as TaskRow[];
  }

  task(id: string): TaskRow | undefined {
    return this.db.prepare('SELECT * FROM tasks WHERE id = ?').get(id) as TaskRow | undefined;
  }

  insertSession(row: SessionRow): void {
    this.db
      .prepare('INSERT INTO sessions (id, workspace, task_id, status, created_at, finished_at) VALUES (@id, @workspace, @task_id, @status, @created_at, @finished_at)')
      .run(row);
  }

  finishSession(id: string, status: 'committed' | 'discarded'): void {
    this.db.prepare('UPDATE sessions SET status = ?, finished_at = ? WHERE id = ?').run(status, new Date().toISOString(), id);
  }

  sessions(status?: SessionRow['status']): SessionRow[] {
    return (status
      ? this.db.prepare('SELECT * FROM sessions WHERE status = ? ORDER BY created_at').all(status)
      : this.db.prepare('SELECT * FROM sessions ORDER BY created_at').all()) as SessionRow[];
  }

  session(id: string): SessionRow | undefined {
    return this.db.prepare('SELECT * FROM sessions WHERE id = ?').get(id) as SessionRow | undefined;
  }

  upsertComponent(name: string, kind: string, version: string, sha256: string): void {
    this.db
      .prepare(`INSERT INTO components (name, kind, version, sha256, loaded_at) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, version = excluded.version, sha256 = excluded.sha256, loaded_at = excluded.loaded_at`)
      .run(name, kind, version, sha256, new Date().toISOString());
  }

  /** Pin (or re-pin) a component. */
  upsertPin(row: PinRow): void {
    this.db
      .prepare(`INSERT INTO pins (name, sha256, kind, version, manifest, file, size, added_at)
                VALUES (@name, @sha256, @kind, @version, @manifest, @file, @size, @added_at)
                ON CONFLICT(name) DO UPDATE SET sha256 = excluded.sha256, kind = excluded.kind, version = excluded.version,
                  manifest = excluded.manifest, file = excluded.file, size = excluded.size, added_at = excluded.added_at`)
      .run(row);
  }

  pins(): PinRow[] {
    return this.db.prepare('SELECT * FROM pins ORDER BY name').all() as PinRow[];
  }

  pin(name: string): PinRow | undefined {
    return this.db.prepare('SELECT * FROM pins WHERE name = ?').get(name) as PinRow | undefined;
  }

  /** @returns whether a pin was removed */
  removePin(name: string): boolean {
    return this.db.prepare('DELETE FROM pins WHERE name = ?').run(name).changes > 0;
  }

  /** Append an audit event (denials, limit hits, commits). `detail` must hold no secrets. */
  audit(kind: string, detail: Record<string, unknown>, component?: string, taskId?: string): void {
    this.db
      .prepare('INSERT INTO audit (ts, kind, component, task_id, detail) VALUES (?, ?, ?, ?, ?)')
      .run(new Date().toISOString(), kind, component ?? null, taskId ?? null, JSON.stringify(detail));
  }

  auditEvents(limit = 100): Array<{ seq: number; ts: string; kind: string; component: string | null; task_id: string | null; detail: string }> {
    return this.db.prepare('SELECT * FROM audit ORDER BY seq DESC LIMIT ?').all(limit) as never;
  }

  close(): void {
    this.db.close();
  }
}
