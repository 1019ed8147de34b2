/**
 * The kernel's own database (better-sqlite3, WAL): tasks, sessions, components and audit
 * events, with versioned migrations applied at open. Separate from every component's SQL scope.
 */
import Database from 'better-sqlite3';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { WardenError } from '../errors.js';
import type { Grants, Limits } from '../grants/index.js';
import { AuditChain, AUDIT_KEY_FILE, readHead, type AuditRow } from '../audit/index.js';

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
  // 3: everything a task shows, persisted as it happens, so a restart rebuilds the state document;
  // the conversation of each task, so an interrupted one can be resumed.
  `ALTER TABLE tasks ADD COLUMN prompt_tokens INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE tasks ADD COLUMN completion_tokens INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE tasks ADD COLUMN diff TEXT;
   ALTER TABLE tasks ADD COLUMN max_turns INTEGER;
   CREATE TABLE task_steps (
     task_id TEXT NOT NULL REFERENCES tasks(id),
     n INTEGER NOT NULL,
     component TEXT NOT NULL,
     step TEXT NOT NULL,
     detail TEXT NOT NULL,
     ts INTEGER NOT NULL,
     PRIMARY KEY (task_id, n)
   );
   CREATE TABLE tool_calls (
     task_id TEXT NOT NULL REFERENCES tasks(id),
     id TEXT NOT NULL,
     caller TEXT NOT NULL,
     target TEXT NOT NULL,
     method TEXT NOT NULL,
     input TEXT NOT NULL,
     output TEXT,
     status TEXT NOT NULL,
     outcome TEXT,
     started_at INTEGER NOT NULL,
     duration_us INTEGER,
     PRIMARY KEY (task_id, id)
   );
   CREATE TABLE conversations (
     task_id TEXT PRIMARY KEY REFERENCES tasks(id),
     messages TEXT NOT NULL,
     turns INTEGER NOT NULL,
     updated_at TEXT NOT NULL
   );`,
  // 4: the effective grants and limits each component was loaded with (env values masked).
  `ALTER TABLE components ADD COLUMN grants TEXT;
   ALTER TABLE components ADD COLUMN limits TEXT;`,
  // 5: API keys (sha256 of the key only; the key itself is shown once) and web UI logins (sha256
  // of the cookie's token); tasks remember the key that submitted them.
  `CREATE TABLE api_keys (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     hash TEXT NOT NULL UNIQUE,
     prefix TEXT NOT NULL,
     created_at TEXT NOT NULL,
     last_used_at TEXT,
     revoked_at TEXT
   );
   CREATE TABLE web_logins (
     hash TEXT PRIMARY KEY,
     key_id TEXT NOT NULL,
     created_at TEXT NOT NULL,
     expires_at TEXT NOT NULL
   );
   ALTER TABLE tasks ADD COLUMN key_id TEXT;`,
  // 6: the audit log becomes a hash chain (HMAC-SHA256 over the previous hash and the canonical
  // entry; rows written before it are chained when the store is opened); kernel facts such as
  // the digest of the last configuration seen.
  `ALTER TABLE audit ADD COLUMN prev_hash TEXT;
   ALTER TABLE audit ADD COLUMN hash TEXT;
   CREATE TABLE meta (
     key TEXT PRIMARY KEY,
     value TEXT NOT NULL
   );`,
  // 7: policy approvals (kernel/approvals), kept across restarts and decided from another
  // process; the permission mode a task was submitted with (a cap on its calls' modes).
  `CREATE TABLE approvals (
     id TEXT PRIMARY KEY,
     task_id TEXT,
     component TEXT NOT NULL,
     kind TEXT NOT NULL,
     subject TEXT NOT NULL,
     detail TEXT NOT NULL,
     rule TEXT NOT NULL,
     status TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     expires_at INTEGER NOT NULL,
     decided_at INTEGER,
     decided_by TEXT,
     reason TEXT
   );
   CREATE INDEX approvals_by_status ON approvals (status);
   CREATE INDEX approvals_by_task ON approvals (task_id, subject);
   ALTER TABLE tasks ADD COLUMN mode TEXT;`,
  // 8: what the agent runtime records on a task beyond tokens (cost per target, turns, fallbacks,
  // privacy, category, stop reason, its own budgets), JSON (`TaskRuntime` in kernel.ts).
  `ALTER TABLE tasks ADD COLUMN runtime TEXT;`,
];

/** The schema version this kernel migrates to. */
export const SCHEMA_VERSION = MIGRATIONS.length;

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
  prompt_tokens?: number;
  completion_tokens?: number;
  /** The session diff at the end of the task, JSON (`FileChange[]`). */
  diff?: string | null;
  max_turns?: number | null;
  /** Id of the API key that submitted the task (`env` for `WARDEN_API_KEY`); null when none was needed. */
  key_id?: string | null;
  /** The permission mode the task was submitted with (a cap on its calls' modes); null: none. */
  mode?: 'default' | 'acceptEdits' | 'bypassPermissions' | null;
  /** The agent runtime's record of the task (cost per target, turns, fallbacks, privacy, category, stop reason, budgets), JSON. */
  runtime?: string | null;
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

/** A step of a task (progress reported by a component, a denial, a limit hit). `ts` in ms since the epoch. */
export interface StepRow {
  task_id: string;
  n: number;
  component: string;
  step: string;
  detail: string;
  ts: number;
}

/** A mesh call made for a task. `started_at` in ms since the epoch, `duration_us` in µs. */
export interface ToolCallRow {
  task_id: string;
  id: string;
  caller: string;
  target: string;
  method: string;
  input: string;
  output: string | null;
  status: 'running' | 'ok' | 'error' | 'interrupted';
  outcome: string | null;
  started_at: number;
  duration_us: number | null;
}

/** Options of {@link Store}. */
export interface StoreOptions {
  /**
   * Keep the data directory's audit head anchor (`audit.head`) at this store's last entry
   * (default true); false for a copy that is not (yet) the data directory's store.
   */
  auditAnchor?: boolean;
}

/** Schema version whose migration made the audit log a hash chain. */
const AUDIT_CHAIN_VERSION = 6;

/** The kernel store. */
export class Store {
  readonly db: Database.Database;
  /** Schema version found when the file was opened (before migrations). */
  readonly openedAtVersion: number;
  /** The audit hash chain; its key and head anchor live in the store's directory. */
  private readonly auditChain: AuditChain;

  /**
   * Open (creating when missing) and migrate the database at `file`: WAL, `synchronous = NORMAL`
   * (a committed transaction survives a crash of the process; see sqlite.org/wal.html),
   * foreign keys on.
   * Audit rows written before the chain existed are chained here, in seq order.
   * @throws WardenError `E_STORE` when the file is newer than this kernel (a later schema) or not
   *   a database, or the audit key cannot be read or created
   */
  constructor(readonly file: string, options: StoreOptions = {}) {
    mkdirSync(dirname(file), { recursive: true });
    try {
      this.db = new Database(file, { timeout: 5000 });
      this.db.pragma('journal_mode = WAL');
    } catch (err) {
      throw new WardenError('E_STORE', `cannot open the kernel store ${file}: ${(err as Error).message}; restore a backup with \`warden restore FILE\``);
    }
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.openedAtVersion = this.schemaVersion;
    if (this.openedAtVersion > SCHEMA_VERSION) {
      this.db.close();
      throw new WardenError('E_STORE', `${file} has schema version ${this.openedAtVersion}, newer than this kernel's ${SCHEMA_VERSION}; run a newer Warden or restore an older backup`);
    }
    this.migrate();
    this.auditChain = new AuditChain(this.db, dirname(file), { anchor: options.auditAnchor ?? true });
    // Only rows from before the chain (or before any key existed) are chained at open; an
    // unchained row in a chained log was slipped in and must stay visible to `audit verify`.
    if (this.openedAtVersion < AUDIT_CHAIN_VERSION || !existsSync(join(dirname(file), AUDIT_KEY_FILE))) this.auditChain.chainUnchained();
  }

  /** Schema version after migration (`PRAGMA user_version`). */
  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  /** Apply every migration past the file's version, each in its own transaction. */
  private migrate(): void {
    const version = this.schemaVersion;
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  /**
   * Copy the database to `file` with SQLite's online backup API, while the kernel keeps running
   * (sqlite.org/backup.html). The copy is written next to `file` and renamed into place.
   * @returns pages copied
   */
  async backup(file: string): Promise<number> {
    const tmp = `${file}.partial`;
    rmSync(tmp, { force: true });
    const { totalPages } = await this.db.backup(tmp);
    renameSync(tmp, file);
    return totalPages;
  }

  // ---- task history ----------------------------------------------------------------------------

  insertStep(row: StepRow): void {
    this.db.prepare('INSERT OR REPLACE INTO task_steps (task_id, n, component, step, detail, ts) VALUES (@task_id, @n, @component, @step, @detail, @ts)').run(row);
  }

  steps(taskId: string): StepRow[] {
    return this.db.prepare('SELECT * FROM task_steps WHERE task_id = ? ORDER BY n').all(taskId) as StepRow[];
  }

  upsertToolCall(row: ToolCallRow): void {
    this.db
      .prepare(`INSERT INTO tool_calls (task_id, id, caller, target, method, input, output, status, outcome, started_at, duration_us)
                VALUES (@task_id, @id, @caller, @target, @method, @input, @output, @status, @outcome, @started_at, @duration_us)
                ON CONFLICT(task_id, id) DO UPDATE SET output = excluded.output, status = excluded.status,
                  outcome = excluded.outcome, duration_us = excluded.duration_us`)
      .run(row);
  }

  toolCalls(taskId: string): ToolCallRow[] {
    return this.db.prepare('SELECT * FROM tool_calls WHERE task_id = ? ORDER BY started_at, id').all(taskId) as ToolCallRow[];
  }

  /** Calls still `running` of tasks that are no longer running become `interrupted`. @returns how many */
  interruptToolCalls(taskId: string): number {
    return this.db.prepare("UPDATE tool_calls SET status = 'interrupted', outcome = 'interrupted' WHERE task_id = ? AND status = 'running'").run(taskId).changes;
  }

  addUsage(taskId: string, promptTokens: number, completionTokens: number): void {
    this.db.prepare('UPDATE tasks SET prompt_tokens = prompt_tokens + ?, completion_tokens = completion_tokens + ? WHERE id = ?').run(promptTokens, completionTokens, taskId);
  }

  /**
   * Record a task's conversation as of its latest inference request: the messages sent (JSON
   * array) and the turn count. Replaces the previous record.
   */
  saveConversation(taskId: string, messages: unknown[], turns: number): void {
    this.db
      .prepare(`INSERT INTO conversations (task_id, messages, turns, updated_at) VALUES (?, ?, ?, ?)
                ON CONFLICT(task_id) DO UPDATE SET messages = excluded.messages, turns = excluded.turns, updated_at = excluded.updated_at`)
      .run(taskId, JSON.stringify(messages), turns, new Date().toISOString());
  }

  /** The recorded conversation of a task, or undefined when it never reached inference. */
  conversation(taskId: string): { messages: unknown[]; turns: number } | undefined {
    const row = this.db.prepare('SELECT messages, turns FROM conversations WHERE task_id = ?').get(taskId) as { messages: string; turns: number } | undefined;
    return row ? { messages: JSON.parse(row.messages) as unknown[], turns: row.turns } : undefined;
  }

  insertTask(row: TaskRow): void {
    this.db
      .prepare(`INSERT INTO tasks (id, prompt, workspace, model, status, session_id, summary, error, created_at, finished_at, max_turns, key_id, mode)
                VALUES (@id, @prompt, @workspace, @model, @status, @session_id, @summary, @error, @created_at, @finished_at, @max_turns, @key_id, @mode)`)
      .run({ max_turns: null, key_id: null, mode: null, ...row });
  }

  /** How many tasks submitted with `keyId` (null: without a key) are queued or running. */
  activeTasks(keyId: string | null): number {
    return (this.db.prepare("SELECT count(*) AS n FROM tasks WHERE key_id IS ? AND status IN ('queued', 'running')").get(keyId) as { n: number }).n;
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

  /**
   * Record a loaded component with the effective grants and limits it got. Granted environment
   * values are stored as names only: they may be secrets.
   */
  upsertComponent(name: string, kind: string, version: string, sha256: string, grants: Grants, limits: Limits): void {
    const recorded = { ...grants, env: Object.keys(grants.env).sort() };
    this.db
      .prepare(`INSERT INTO components (name, kind, version, sha256, loaded_at, grants, limits) VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, version = excluded.version, sha256 = excluded.sha256,
                  loaded_at = excluded.loaded_at, grants = excluded.grants, limits = excluded.limits`)
      .run(name, kind, version, sha256, new Date().toISOString(), JSON.stringify(recorded), JSON.stringify(limits));
  }

  /** Components as last loaded, with their recorded grants (env by name) and limits. */
  components(): Array<{ name: string; kind: string; version: string; sha256: string; loaded_at: string; grants: string | null; limits: string | null }> {
    return this.db.prepare('SELECT * FROM components ORDER BY name').all() as never;
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

  /**
   * Append an event to the hash-chained audit log (grants, denials, limit hits, commits, key and
   * configuration changes) in one IMMEDIATE transaction, safe against other processes appending
   * to the same store. `detail` names things and never holds a secret value (keys, tokens,
   * environment values): the log is kept forever and shown by `warden audit list`.
   * @returns the entry's seq
   * @throws WardenError `E_STORE` when the audit key cannot be read or created
   */
  audit(kind: string, detail: Record<string, unknown>, component?: string, taskId?: string): number {
    return this.auditChain.append(kind, JSON.stringify(detail), component ?? null, taskId ?? null);
  }

  /** The newest `limit` audit entries (of one `kind` when given), newest first. */
  auditEvents(limit = 100, filter: { kind?: string } = {}): AuditRow[] {
    return this.db
      .prepare('SELECT * FROM audit WHERE (@kind IS NULL OR kind = @kind) ORDER BY seq DESC LIMIT @limit')
      .all({ kind: filter.kind ?? null, limit }) as AuditRow[];
  }

  /**
   * Record that this store was put in place by `warden restore` and anchor the audit log at that
   * entry: the entries after the backup's last one are gone by the operator's hand, and the
   * entry says so (`detail` names the backup and the seq the previous anchor named).
   */
  auditRestored(detail: Record<string, unknown>): number {
    return this.auditChain.appendAndReanchor('store.restore', JSON.stringify(detail));
  }

  /** HMAC-SHA256 of `text` under the audit key (hex): a digest that cannot be reversed by guessing. */
  auditMac(text: string): string {
    return this.auditChain.mac(text);
  }

  /** A kernel fact from the `meta` table (such as the digest of the last configuration seen). */
  metaValue(key: string): string | undefined {
    return (this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value;
  }

  /** Set a kernel fact in the `meta` table. */
  setMeta(key: string, value: string): void {
    this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  /** Close the database, then make the audit head anchor durable if this store appended. */
  close(): void {
    this.db.close();
    this.auditChain.close();
  }
}

/** Name of the file a running kernel keeps in its data directory, holding its pid. */
export const KERNEL_PID_FILE = 'kernel.pid';

/** The pid of a live kernel process (not this one) using `dataDir`, or null. */
export function kernelOwner(dataDir: string): number | null {
  let pid: number;
  try {
    pid = Number(readFileSync(join(dataDir, KERNEL_PID_FILE), 'utf8'));
  } catch {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return null;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? pid : null;
  }
}

/** What {@link restoreStore} did. */
export interface RestoreReport {
  /** The kernel store now in place. */
  file: string;
  schemaVersion: number;
  tasks: number;
  /** Where the replaced store was kept, or null when there was none. */
  previous: string | null;
}

/**
 * Replace `<dataDir>/warden.db` with the backup `backup`: the backup is copied beside the store,
 * opened, checked (`PRAGMA integrity_check`) and migrated there first, so a bad file never
 * replaces a good one; the old store is kept as `warden.db.before-restore-<time>`.
 * @throws WardenError `E_NOT_FOUND` (no such file), `E_STORE` (a kernel is using the data
 *   directory, or the backup does not open, fails the check or cannot migrate)
 */
export function restoreStore(backup: string, dataDir: string): RestoreReport {
  if (!existsSync(backup)) throw new WardenError('E_NOT_FOUND', `no backup file ${backup}`);
  const owner = kernelOwner(dataDir);
  if (owner !== null) throw new WardenError('E_STORE', `a kernel (pid ${owner}) is using ${dataDir}; stop it before restoring`);
  mkdirSync(dataDir, { recursive: true });
  const target = join(dataDir, 'warden.db');
  const candidate = `${target}.restoring`;
  const removeCandidate = () => ['', '-wal', '-shm'].forEach((suffix) => rmSync(candidate + suffix, { force: true }));
  removeCandidate();
  copyFileSync(backup, candidate);
  let report: Omit<RestoreReport, 'previous'>;
  let restoredLastSeq = 0;
  try {
    // Not the data directory's store yet: it must not move the audit anchor.
    const store = new Store(candidate, { auditAnchor: false });
    try {
      const check = store.db.pragma('integrity_check', { simple: true });
      if (check !== 'ok') throw new Error(`it fails SQLite's integrity check: ${String(check)}`);
      const tasks = (store.db.prepare('SELECT count(*) AS n FROM tasks').get() as { n: number }).n;
      report = { file: target, schemaVersion: store.schemaVersion, tasks };
      restoredLastSeq = (store.db.prepare('SELECT max(seq) AS m FROM audit').get() as { m: number | null }).m ?? 0;
      store.db.pragma('wal_checkpoint(TRUNCATE)');
    } finally {
      store.close();
    }
  } catch (err) {
    removeCandidate();
    throw new WardenError('E_STORE', `${backup} is not a usable kernel store: ${(err as Error).message}`);
  }
  let previous: string | null = null;
  if (existsSync(target)) {
    previous = `${target}.before-restore-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    for (const suffix of ['', '-wal', '-shm']) if (existsSync(target + suffix)) renameSync(target + suffix, previous + suffix);
  }
  const head = readHead(dataDir);
  renameSync(candidate, target);
  removeCandidate();
  const restored = new Store(target);
  try {
    restored.auditRestored({ backup, restoredLastSeq, previousHeadSeq: head.state === 'present' ? head.seq : null });
  } finally {
    restored.close();
  }
  return { ...report, previous };
}
