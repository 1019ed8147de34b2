/**
 * The crash-safe commit of a session into its workspace: a redo journal in the style of a
 * database's write-ahead log (see ARIES, Mohan et al. 1992, for the idea; this is its simplest
 * form: whole-commit redo, no undo).
 *
 * 1. **Stage.** Every new file and symlink is copied into `<workspace>/.warden-commit-<session>/`
 *    (the same filesystem as the workspace, so it can be linked and renamed into place) and
 *    synced. A crash here leaves the workspace untouched; recovery deletes the staging directory.
 * 2. **Journal.** The plan (paths to remove, directories to create, staged entries to put) is
 *    written to `<session>/commit.journal.tmp`, synced, and renamed to `commit.journal`; the
 *    session directory is synced. That rename is the commit point.
 * 3. **Apply.** Removals, then directories, then puts: each staged entry is hard-linked to a
 *    second name inside the staging directory and that name is renamed over its target, so the
 *    staged copy survives and the whole plan can be applied again from the start. Recovery after a
 *    crash here re-applies the plan: the result is the new state, whatever had been applied.
 * 4. **Finish.** Target directories are synced, the session is closed (`closed` says `committed`,
 *    `meta.json` is removed), then the journal and the staging directory go, the workspace's commit
 *    lock is released, and last the session's area goes. The lock goes before the area because the
 *    area is how recovery finds the workspace and its lock: a crash between the two leaves an area
 *    whose `closed` record names the workspace, never a lock nobody will remove.
 *
 * After a crash the workspace is therefore wholly the old state (no journal: roll back) or, once
 * recovered, wholly the new state (journal: roll forward). Commits on one workspace are serialised
 * by a lock file, `<workspace>/.warden-commit-lock`, that names its owner's pid.
 */
import {
  closeSync, copyFileSync, existsSync, fsyncSync, linkSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync,
  readlinkSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync, writeSync, chmodSync, type Stats,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { WardenError } from '../errors.js';
import { RESERVED_PREFIX, type Overlay } from './overlay.js';

/** Version of the journal format; a journal of another version is refused, not guessed at. */
const JOURNAL_VERSION = 1;

/** Name of the committed journal in a session's area. */
export const JOURNAL_FILE = 'commit.journal';

/** Name of the lock file that serialises commits on one workspace. */
export const LOCK_FILE = `${RESERVED_PREFIX}lock`;

/** The plan of one commit, as written to the journal. Paths are relative to the workspace. */
export interface CommitPlan {
  version: number;
  session: string;
  /** Real host path of the workspace. */
  workspace: string;
  /** Name of the staging directory at the workspace root. */
  stage: string;
  /** Entries removed (recursively) first: every whiteout of the session. */
  remove: string[];
  /** Directories created when missing, parents first, with their permission bits. */
  mkdir: Array<{ path: string; mode: number }>;
  /** Files and symlinks put in place from the staging directory (`stage/<index>`). */
  put: Array<{ path: string; index: number }>;
}

/**
 * Points between the commit's filesystem changes. Tests use them to kill the process at each
 * point; nothing else should.
 */
export interface CommitHooks {
  /** Called before each change of the commit with a label such as `stage 3` or `put a/b.txt`. */
  step?: (label: string) => void;
}

/** sha256 of a string, hex. */
function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** fsync a file or directory by path (directories make renames and unlinks in them durable). */
function syncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function lstatOrNull(path: string): Stats | null {
  return lstatSync(path, { throwIfNoEntry: false }) ?? null;
}

/** Every directory, file and symlink of the session's upper layer, parents before children. */
function walkUpper(upper: string, rel: string, dirs: Array<{ path: string; mode: number }>, entries: string[]): void {
  for (const name of readdirSync(join(upper, rel)).sort()) {
    const child = rel === '' ? name : `${rel}/${name}`;
    const st = lstatSync(join(upper, child));
    if (st.isDirectory()) {
      dirs.push({ path: child, mode: st.mode & 0o7777 });
      walkUpper(upper, child, dirs, entries);
    } else {
      entries.push(child);
    }
  }
}

/**
 * Take the workspace's commit lock. A lock left by a process that no longer runs is taken over.
 * @returns the release: it removes the lock only while the lock still names this process, so
 *   calling it again, after {@link applyPlan} released the lock and another process took it,
 *   leaves that process's lock alone
 * @throws WardenError `E_SESSION_BUSY` when another live process is committing to the workspace
 */
export function lockWorkspace(workspace: string): () => void {
  const path = join(workspace, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => {
        if (lockOwner(path) === process.pid) rmSync(path, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = lockOwner(path);
      if (owner !== null && owner > 0 && owner !== process.pid && alive(owner)) {
        throw new WardenError('E_SESSION_BUSY', `another commit to ${workspace} is running (pid ${owner}); retry when it has finished`);
      }
      rmSync(path, { force: true });
    }
  }
  throw new WardenError('E_SESSION_BUSY', `could not take the commit lock ${path}; remove it if no Warden process is running`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Stage the session's new contents and write the journal: steps 1 and 2. Returns the plan; the
 * commit point has passed when this returns.
 */
export function stageAndJournal(overlay: Overlay, session: string, hooks: CommitHooks = {}): CommitPlan {
  const step = hooks.step ?? (() => {});
  const stageName = `${RESERVED_PREFIX}${session}`;
  const stage = join(overlay.base, stageName);
  const dirs: Array<{ path: string; mode: number }> = [];
  const entries: string[] = [];
  walkUpper(overlay.upper, '', dirs, entries);
  const plan: CommitPlan = {
    version: JOURNAL_VERSION,
    session,
    workspace: overlay.base,
    stage: stageName,
    remove: overlay.whiteoutPaths().sort(),
    mkdir: dirs,
    put: entries.map((path, index) => ({ path, index })),
  };
  step('stage begin');
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage);
  for (const { path, index } of plan.put) {
    step(`stage ${path}`);
    const source = join(overlay.upper, path);
    const staged = join(stage, String(index));
    if (lstatSync(source).isSymbolicLink()) {
      symlinkSync(readlinkSync(source), staged);
    } else {
      // copyFile keeps the permission bits and copies in the kernel (no buffer of the whole file).
      copyFileSync(source, staged);
      syncPath(staged);
    }
  }
  syncPath(stage);
  const body = JSON.stringify(plan);
  const text = `${JSON.stringify({ sha256: sha256(body) })}\n${body}\n`;
  const tmp = join(overlay.dir, `${JOURNAL_FILE}.tmp`);
  step('journal write');
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  step('journal commit');
  renameSync(tmp, join(overlay.dir, JOURNAL_FILE));
  syncPath(overlay.dir);
  return plan;
}

/** Remove what {@link stageAndJournal} left when it failed before the commit point. */
export function discardStage(overlay: Overlay, session: string): void {
  rmSync(join(overlay.base, `${RESERVED_PREFIX}${session}`), { recursive: true, force: true });
  rmSync(join(overlay.dir, `${JOURNAL_FILE}.tmp`), { force: true });
}

/**
 * Read a session's journal.
 * @returns the plan, or null when the journal is missing or torn (its checksum does not match:
 *   it was never committed)
 * @throws WardenError `E_SESSION_STATE` for a journal of an unknown version
 */
export function readJournal(sessionDir: string): CommitPlan | null {
  const path = join(sessionDir, JOURNAL_FILE);
  if (!existsSync(path)) return null;
  const [head, body] = readFileSync(path, 'utf8').split('\n');
  let expected: string | undefined;
  try {
    expected = (JSON.parse(head ?? '') as { sha256?: string }).sha256;
  } catch {
    return null;
  }
  if (!body || sha256(body) !== expected) return null;
  const plan = JSON.parse(body) as CommitPlan;
  if (plan.version !== JOURNAL_VERSION) {
    throw new WardenError('E_SESSION_STATE', `${path} has journal version ${plan.version}; this kernel reads version ${JOURNAL_VERSION}`);
  }
  return plan;
}

/**
 * Apply a journaled plan to its workspace (step 3) and finish the commit (step 4). Safe to run
 * again from the start after a crash at any point: every staged entry stays in the staging
 * directory until the very end.
 * @param release releases the workspace's commit lock; called after the staging directory is
 *   gone and before the session's area goes (the release of {@link lockWorkspace} for a commit,
 *   {@link releaseStaleLock} for recovery)
 */
export function applyPlan(plan: CommitPlan, sessionDir: string, release: () => void, hooks: CommitHooks = {}): void {
  const step = hooks.step ?? (() => {});
  const ws = plan.workspace;
  const stage = join(ws, plan.stage);
  const touchedDirs = new Set<string>();
  for (const rel of plan.remove) {
    step(`remove ${rel}`);
    rmSync(join(ws, rel), { recursive: true, force: true });
    touchedDirs.add(dirname(join(ws, rel)));
  }
  for (const { path, mode } of plan.mkdir) {
    const target = join(ws, path);
    const existing = lstatOrNull(target);
    if (existing?.isDirectory()) continue;
    step(`mkdir ${path}`);
    if (existing) rmSync(target, { force: true });
    mkdirSync(target);
    chmodSync(target, mode);
    touchedDirs.add(dirname(target));
  }
  for (const { path, index } of plan.put) {
    const target = join(ws, path);
    const staged = join(stage, String(index));
    const second = `${staged}.put`;
    step(`put ${path}`);
    rmSync(second, { force: true });
    try {
      linkSync(staged, second);
    } catch {
      // A filesystem without hard links: a second copy keeps the staged one for a re-apply.
      if (lstatSync(staged).isSymbolicLink()) symlinkSync(readlinkSync(staged), second);
      else copyFileSync(staged, second);
    }
    const existing = lstatOrNull(target);
    if (existing?.isDirectory()) rmSync(target, { recursive: true, force: true });
    renameSync(second, target);
    touchedDirs.add(dirname(target));
  }
  step('sync');
  for (const dir of touchedDirs) if (existsSync(dir)) syncPath(dir);
  finish(plan, sessionDir, release, step);
}

/**
 * Step 4: the session is closed first (its meta), then the journal and the staging area go, the
 * lock is released, and the session's area goes last (see the module's comment for why).
 */
function finish(plan: CommitPlan, sessionDir: string, release: () => void, step: (label: string) => void): void {
  step('close session');
  closeSession(sessionDir, 'committed', plan.workspace);
  step('journal remove');
  unlinkIfPresent(join(sessionDir, JOURNAL_FILE));
  syncPath(sessionDir);
  step('stage remove');
  rmSync(join(plan.workspace, plan.stage), { recursive: true, force: true });
  step('release lock');
  release();
  step('area remove');
  rmSync(sessionDir, { recursive: true, force: true });
}

function unlinkIfPresent(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Name of the file that says how a closed session's area was closed (until the area is gone). */
export const CLOSED_FILE = 'closed';

/** Content of {@link CLOSED_FILE}. */
export interface ClosedRecord {
  how: 'committed' | 'discarded';
  workspace: string;
}

/**
 * Close a session's area: record how (`closed`), then remove `meta.json`, so the area is no
 * longer an open session even if a crash stops the removal of the rest.
 */
export function closeSession(sessionDir: string, how: ClosedRecord['how'], workspace: string): void {
  writeFileSync(join(sessionDir, CLOSED_FILE), JSON.stringify({ how, workspace } satisfies ClosedRecord));
  rmSync(join(sessionDir, 'meta.json'), { force: true });
}

/** How a closed area was closed, or null when that was not recorded (or the record is torn). */
export function readClosed(sessionDir: string): ClosedRecord | null {
  try {
    const record = JSON.parse(readFileSync(join(sessionDir, CLOSED_FILE), 'utf8')) as ClosedRecord;
    return record.how === 'committed' || record.how === 'discarded' ? record : null;
  } catch {
    return null;
  }
}

/** The pid a lock file names; 0 when it names none (torn, empty) and null when there is no lock. */
function lockOwner(path: string): number | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return null;
  }
  const owner = Number(text);
  return Number.isInteger(owner) && owner > 0 ? owner : 0;
}

/** Remove the workspace's commit lock when the process that took it no longer runs. */
export function releaseStaleLock(workspace: string): void {
  const path = join(workspace, LOCK_FILE);
  const owner = lockOwner(path);
  if (owner === null) return;
  if (!(owner > 0 && owner !== process.pid && alive(owner))) rmSync(path, { force: true });
}
