/**
 * The `warden` command line: `serve`, `run`, `task`, `session`, `migrate`, `backup`, `restore`,
 * `sql`, `component`, `tool run`. Errors print one line (`warden: …`) and set a non-zero exit
 * code; `--json` prints machine-readable results.
 */
import { Command, Option } from 'commander';
import type { FastifyInstance } from 'fastify';
import { resolve } from 'node:path';
import type { Kernel } from '../kernel.js';
import { DEFAULT_MODEL } from '../inference/types.js';
import { messageOf, isWardenError } from '../errors.js';
import { SessionFs, type ChangeKind, type FileChange } from '../vfs/index.js';
import { DEFAULT_ORPHAN_DAYS, discardOrphans, findOrphans, recoverSessions } from '../session-policy.js';
import { Store, SCHEMA_VERSION, restoreStore } from '../store/index.js';
import { listScopes, scopeFile, ScopedSql, type SqlValue } from '../store/scoped-sql.js';
import { existsSync } from 'node:fs';
import type { DataDir } from './component.js';
import { join } from 'node:path';
import { isLoopbackAddress, registerKeysCommands, serveBanner } from './keys.js';
import { registerAuditCommands } from './audit.js';
import { registerConfigCommands } from './config.js';
import { registerDevkitCommands } from './devkit.js';
import { registerInspectCommands } from './inspect.js';
import { registerApprovalCommands, watchApprovals } from './approvals.js';
import { POLICY_MODES, type PolicyMode } from '../policy/index.js';
import { parseBudgetFlags, registerTranscriptCommands, replayTask, type BudgetFlags, type ReplayTask } from './replay.js';

const program = new Command();
program
  .name('warden')
  .description('A WebAssembly-sandboxed agent kernel: runs supervisor, agent and tool components under deny-by-default grants.')
  .version('0.1.0')
  .showHelpAfterError();

// The kernel, the HTTP server, the component registry and the tool runner are loaded by the
// commands that use them: `warden --help` and the light commands start without them (~1 s of CPU).
const kernelModule = () => import('../kernel.js');
const serverModule = () => import('../server/index.js');
const componentModule = () => import('./component.js');
const toolRunModule = () => import('./tool-run.js');

const dataDirOption = () => new Option('--data-dir <dir>', 'data directory: database, sessions, caches').default('.warden');

function fail(err: unknown, code = 1): never {
  process.stderr.write(`warden: ${messageOf(err)}\n`);
  process.exit(code);
}

/** One letter per change kind, as `git status --short` prints them. */
const CHANGE_LETTER: Record<ChangeKind, string> = { added: 'A', modified: 'M', deleted: 'D', renamed: 'R' };

/** `1.2 MiB`-style sizes for people. */
function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1 << 20) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
}

function summary(changes: FileChange[]): string {
  if (changes.length === 0) return 'no changes';
  return changes
    .map((c) => `  ${CHANGE_LETTER[c.kind]} ${c.from ? `${c.from} → ` : ''}${c.path}${c.added !== undefined ? `  (+${c.added} -${c.removed})` : ''}`)
    .join('\n');
}

program
  .command('serve')
  .description('run the kernel with its HTTP API and web UI')
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .option('--port <port>', 'port to listen on', '8787')
  .addOption(dataDirOption())
  .option('--base-url <url>', 'base URL of the default OpenAI-compatible backend (default: $OPENAI_BASE_URL or local Ollama)')
  .action(async (opts: { host: string; port: string; dataDir: string; baseUrl?: string }) => {
    const started = Date.now();
    const [{ Kernel }, { buildServer }] = await Promise.all([kernelModule(), serverModule()]);
    const kernel = await Kernel.start({ dataDir: opts.dataDir, ...(opts.baseUrl ? { baseURL: opts.baseUrl } : {}) }).catch((e) => fail(e));
    if (!kernel.config.server.auth && !isLoopbackAddress(opts.host)) {
      await kernel.close();
      fail(`refusing to listen on ${opts.host} with server.auth false: without API keys only a loopback address (127.0.0.1, ::1, localhost) may listen; set server.auth to true in the config file or use --host 127.0.0.1`);
    }
    const app = await buildServer(kernel);
    try {
      await app.listen({ host: opts.host, port: Number(opts.port) });
    } catch (err) {
      await kernel.close();
      fail(`cannot listen on ${opts.host}:${opts.port}: ${messageOf(err)}`);
    }
    process.stdout.write(`warden: ready on http://${opts.host}:${opts.port} in ${Date.now() - started} ms (data: ${resolve(opts.dataDir)})\n`);
    if (kernel.config.server.auth) process.stdout.write(serveBanner(kernel, opts.host, (app.server.address() as { port: number }).port));
    // The first signal starts a graceful shutdown; a second one ends its grace period at once.
    const skipGrace = new AbortController();
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (!stopping) {
        stopping = true;
        void stopServing(app, kernel, signal, skipGrace.signal);
      } else if (!skipGrace.signal.aborted) {
        process.stderr.write(`warden: ${signal} again: interrupting running tasks now\n`);
        skipGrace.abort();
      }
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });

/** How long in-flight requests and closing WebSockets may hold up a shutdown, in ms. */
const SERVER_CLOSE_MS = 2000;

/**
 * Graceful shutdown of `serve`: stop listening at once (new work on open connections gets
 * `E_SHUTTING_DOWN`), drain the kernel within `server.shutdownGraceMs`, close the server and
 * the kernel (audit `kernel.stop`, WAL checkpoint, pid file), one stderr line per phase, exit 0.
 */
async function stopServing(app: FastifyInstance, kernel: Kernel, signal: NodeJS.Signals, skipGrace: AbortSignal): Promise<never> {
  const started = Date.now();
  const say = (line: string) => process.stderr.write(`warden: ${line}\n`);
  const graceMs = kernel.config.server.shutdownGraceMs;
  try {
    kernel.stopAccepting();
    // Node also closes idle keep-alive connections here; busy ones and WebSockets stay until the drain ends.
    app.server.close();
    const interrupted = await kernel.drain({ reason: signal, graceMs, skipGrace, onPhase: say });
    await Promise.race([app.close(), new Promise((resolve) => setTimeout(resolve, SERVER_CLOSE_MS).unref())]);
    await kernel.close({ reason: signal, graceMs, interrupted });
  } catch (err) {
    say(`shutdown failed: ${messageOf(err)}`);
    process.exit(1);
  }
  say(`stopped in ${Date.now() - started} ms`);
  process.exit(0);
}

program
  .command('run')
  .description('run one task in-process and print the diff summary; --replay runs a recorded task again against its recorded model responses')
  .argument('[task...]', 'what the agent should do (with --replay: taken from the transcript)')
  .option('--workspace <dir>', 'repository to work on (with --replay: default the recorded one)', '.')
  .option('--model <target>', 'model@backend or a model of the default backend', DEFAULT_MODEL)
  .option('--commit', 'commit the session into the workspace when the task succeeds')
  .option('--max-turns <n>', 'inference turns before the agent stops', '30')
  .option('--max-tokens <n>', 'token budget (prompt + completion) of the task (default: config budgets.maxTokens)')
  .option('--max-cost <usd>', 'cost budget of the task in US dollars (default: config budgets.maxCostUsd)')
  .option('--max-wall <duration>', 'wall-time budget of the task: 500ms, 90s, 10m, 1h, or ms (default: config budgets.maxWallMs)')
  .option('--replay <transcript>', 'run the task recorded in TRANSCRIPT (<data-dir>/transcripts/<id>.jsonl) again, served by its recorded model responses (no model server needed)')
  .option('--base-url <url>', 'base URL of the default backend (default: $OPENAI_BASE_URL or http://127.0.0.1:11434/v1)')
  .addOption(new Option('--mode <mode>', 'permission mode of this run instead of the config\'s policy.mode (rules still apply)').choices([...POLICY_MODES]))
  .option('--json', 'print the final task as JSON')
  .addOption(dataDirOption())
  .action(async (words: string[], opts: {
    workspace: string; model: string; commit?: boolean; maxTurns: string; maxTokens?: string; maxCost?: string; maxWall?: string; replay?: string;
    baseUrl?: string; json?: boolean; dataDir: string; mode?: PolicyMode;
  }, command: Command) => {
    let budgets: BudgetFlags;
    let replay: ReplayTask | undefined;
    try {
      budgets = parseBudgetFlags(opts);
      if (opts.replay) replay = replayTask(opts.replay, command.getOptionValueSource('workspace') === 'cli' ? opts.workspace : undefined);
      else if (words.length === 0) throw new Error('say what the agent should do: warden run "TASK" (or --replay TRANSCRIPT)');
    } catch (err) {
      fail(err);
    }
    const { Kernel } = await kernelModule();
    const kernel = await Kernel.start({
      dataDir: opts.dataDir, quiet: true, ...(opts.baseUrl ? { baseURL: opts.baseUrl } : {}), ...(replay ? { replay: replay.transcript } : {}),
      ...(opts.mode ? { policyMode: opts.mode } : {}),
    }).catch((e) => fail(e));
    let id: string;
    try {
      const maxTurns = replay?.maxTurns !== undefined && command.getOptionValueSource('maxTurns') !== 'cli' ? replay.maxTurns : Number(opts.maxTurns);
      id = kernel.submitTask({
        prompt: replay ? replay.prompt : words.join(' '), workspace: replay ? replay.workspace : opts.workspace, model: replay ? replay.model : opts.model,
        maxTurns, ...budgets, ...(opts.mode ? { mode: opts.mode } : {}),
      });
    } catch (err) {
      await kernel.close();
      fail(err);
    }
    await followToEnd(kernel, id, opts);
  });

/** Options shared by `run` and `task resume`. */
interface FollowOptions {
  commit?: boolean;
  json?: boolean;
}

/**
 * Print a task's steps and tool calls as they happen (stderr), wait for its end, commit its
 * session with `--commit`, print the outcome, close the kernel and exit: 0 when it succeeded
 * (and committed), 1 otherwise.
 */
async function followToEnd(kernel: Kernel, id: string, opts: FollowOptions): Promise<never> {
  const seen = new Set<string>();
  const unsubscribe = kernel.state.subscribe(() => {
    if (opts.json) return;
    const task = kernel.state.current.tasks[id];
    if (!task) return;
    for (const step of Object.values(task.steps)) {
      const key = `s${step.n}`;
      if (!seen.has(key)) process.stderr.write(`· ${step.component}: ${step.step} ${step.detail.split('\n')[0]!.slice(0, 120)}\n`);
      seen.add(key);
    }
    for (const call of Object.values(task.toolCalls)) {
      const key = `c${call.id}${call.status}`;
      if (call.status !== 'running' && !seen.has(key)) {
        process.stderr.write(`  ${call.status === 'ok' ? '✓' : '✗'} ${call.target} ${call.input.slice(0, 100)} (${call.durationMs} ms)\n`);
      }
      seen.add(key);
    }
  });
  // Approvals the task waits for: a prompt on a terminal, else how to approve from another shell.
  const stopApprovals = watchApprovals(kernel, id, kernel.dataDir);
  const task = await kernel.waitForTask(id);
  stopApprovals();
  unsubscribe();
  let committed = false;
  let commitError: string | undefined;
  if (task.status === 'succeeded' && opts.commit && task.sessionId) {
    try {
      kernel.commitSession(task.sessionId);
      committed = true;
    } catch (err) {
      commitError = messageOf(err);
    }
  }
  const finalTask = kernel.state.current.tasks[id]!;
  await kernel.close();
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ ...finalTask, committed, ...(commitError ? { commitError } : {}) }, null, 2)}\n`);
  } else if (task.status === 'succeeded') {
    process.stdout.write(`${task.summary}\n\n${summary(task.diff ?? [])}\n`);
    if (committed) process.stdout.write(`committed session ${task.sessionId} into ${task.workspace}\n`);
    else if (task.sessionId) process.stdout.write(`session ${task.sessionId} is open: \`warden session diff ${task.sessionId}\`, then \`warden session commit ${task.sessionId}\` or \`warden session discard ${task.sessionId}\`\n`);
  } else {
    process.stderr.write(`warden: task ${id} failed: ${task.error}\n`);
  }
  if (commitError) process.stderr.write(`warden: commit failed: ${commitError}\n`);
    process.exit(task.status === 'succeeded' && !commitError ? 0 : 1);
}

const task = program.command('task').description('list tasks, resume an interrupted one');
task
  .command('list')
  .description('tasks and their status, newest last')
  .addOption(dataDirOption())
  .option('--json', 'print JSON')
  .action((opts: { dataDir: string; json?: boolean }) => {
    const store = openStore(opts.dataDir);
    const rows = store.tasks();
    if (opts.json) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    else if (rows.length === 0) process.stdout.write('no tasks\n');
    else for (const r of rows) process.stdout.write(`${r.id}  ${r.status.padEnd(11)}  ${r.created_at}  ${r.prompt.split('\n')[0]!.slice(0, 60)}${r.session_id ? `  (session ${r.session_id})` : ''}\n`);
    store.close();
  });
task
  .command('resume')
  .description('run an interrupted task again from its recorded conversation, in the session it had')
  .argument('<id>', 'task id (t-…)')
  .option('--commit', 'commit the session into the workspace when the task succeeds')
  .option('--base-url <url>', 'base URL of the default backend (default: $OPENAI_BASE_URL or http://127.0.0.1:11434/v1)')
  .option('--json', 'print the final task as JSON')
  .addOption(dataDirOption())
  .action(async (id: string, opts: { commit?: boolean; baseUrl?: string; json?: boolean; dataDir: string }) => {
    const { Kernel } = await kernelModule();
    const kernel = await Kernel.start({ dataDir: opts.dataDir, quiet: true, ...(opts.baseUrl ? { baseURL: opts.baseUrl } : {}) }).catch((e) => fail(e));
    try {
      kernel.resumeTask(id);
    } catch (err) {
      await kernel.close();
      fail(err);
    }
    await followToEnd(kernel, id, opts);
  });

/** Open (and migrate) the kernel store of a data directory. */
function openStore(dataDir: string): Store {
  try {
    return new Store(join(resolve(dataDir), 'warden.db'));
  } catch (err) {
    fail(err);
  }
}

program
  .command('migrate')
  .description('apply the kernel store\'s migrations (the kernel also does at start) and report its schema version')
  .addOption(dataDirOption())
  .option('--json', 'print JSON')
  .action((opts: { dataDir: string; json?: boolean }) => {
    const store = openStore(opts.dataDir);
    const report = { file: store.file, from: store.openedAtVersion, schemaVersion: store.schemaVersion, latest: SCHEMA_VERSION };
    store.close();
    if (opts.json) process.stdout.write(`${JSON.stringify(report)}\n`);
    else if (report.from === report.schemaVersion) process.stdout.write(`schema version ${report.schemaVersion} (up to date) in ${report.file}\n`);
    else process.stdout.write(`schema version ${report.schemaVersion} (migrated from ${report.from}) in ${report.file}\n`);
  });

program
  .command('backup')
  .description('copy the kernel store to FILE with SQLite\'s online backup (safe while the kernel runs)')
  .argument('<file>', 'where to write the copy')
  .addOption(dataDirOption())
  .option('--json', 'print JSON')
  .action(async (file: string, opts: { dataDir: string; json?: boolean }) => {
    const store = openStore(opts.dataDir);
    try {
      const started = Date.now();
      const pages = await store.backup(resolve(file));
      const report = { file: resolve(file), pages, schemaVersion: store.schemaVersion, ms: Date.now() - started };
      process.stdout.write(opts.json ? `${JSON.stringify(report)}\n` : `backed up ${pages} pages (schema version ${report.schemaVersion}) to ${report.file} in ${report.ms} ms\n`);
    } catch (err) {
      fail(err);
    } finally {
      store.close();
    }
  });

program
  .command('restore')
  .description('replace the kernel store with a backup, after checking that it opens, passes an integrity check and migrates')
  .argument('<file>', 'a file written by `warden backup`')
  .addOption(dataDirOption())
  .option('--json', 'print JSON')
  .action((file: string, opts: { dataDir: string; json?: boolean }) => {
    try {
      const report = restoreStore(resolve(file), resolve(opts.dataDir));
      process.stdout.write(opts.json ? `${JSON.stringify(report)}\n` : `restored ${report.file} (schema version ${report.schemaVersion}, ${report.tasks} tasks); the previous store is kept as ${report.previous ?? '(none)'}\n`);
    } catch (err) {
      fail(err);
    }
  });

/**
 * Session commands work on the data directory directly; no kernel needs to run. Commits a crash
 * interrupted are finished (or rolled back) first, as the kernel does at start.
 */
function sessionStore(dataDir: string): { sessions: SessionFs; store: Store } {
  const sessions = new SessionFs(join(resolve(dataDir), 'sessions'));
  const store = openStore(dataDir);
  for (const action of recoverSessions(sessions, store)) {
    process.stderr.write(`warden: session ${action.session}: interrupted commit ${action.action}${action.error ? ` (${action.error})` : ''}\n`);
  }
  return { sessions, store };
}

const session = program.command('session').description('list, inspect, commit or discard sessions');
session
  .command('list')
  .description('sessions and their status')
  .addOption(dataDirOption())
  .option('--all', 'include committed and discarded sessions')
  .option('--orphaned', 'only open sessions no queued or running task uses, with why, age and size')
  .option('--json', 'print JSON')
  .action((opts: { dataDir: string; all?: boolean; orphaned?: boolean; json?: boolean }) => {
    const { sessions, store } = sessionStore(opts.dataDir);
    if (opts.orphaned) {
      const orphans = findOrphans(sessions, store);
      if (opts.json) process.stdout.write(`${JSON.stringify(orphans, null, 2)}\n`);
      else if (orphans.length === 0) process.stdout.write('no orphaned sessions\n');
      else for (const o of orphans) process.stdout.write(`${o.id}  ${o.ageDays.toFixed(1)} days  ${formatBytes(o.upperBytes)}  ${o.workspace}  (${o.reason})\n`);
      return;
    }
    const rows = store.sessions(opts.all ? undefined : 'open');
    if (opts.json) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    else if (rows.length === 0) process.stdout.write(opts.all ? 'no sessions\n' : 'no open sessions\n');
    else for (const r of rows) process.stdout.write(`${r.id}  ${r.status.padEnd(9)}  ${r.created_at}  ${r.workspace}${r.task_id ? `  (task ${r.task_id})` : ''}\n`);
  });
session
  .command('diff')
  .argument('<id>', 'session id')
  .description('the changes of an open session (unified diff)')
  .addOption(dataDirOption())
  .option('--json', 'print JSON')
  .action((id: string, opts: { dataDir: string; json?: boolean }) => {
    try {
      const changes = sessionStore(opts.dataDir).sessions.diff(id);
      if (opts.json) process.stdout.write(`${JSON.stringify(changes, null, 2)}\n`);
      else process.stdout.write(`${summary(changes)}\n\n${changes.map((c) => c.unified ?? `(binary) ${c.path}\n`).join('')}`);
    } catch (err) {
      fail(err);
    }
  });
session
  .command('gc')
  .description('discard orphaned sessions (no queued or running task uses them) older than a number of days')
  .addOption(dataDirOption())
  .option('--older-than <days>', 'minimum age in days (the kernel applies config sessions.orphanDays at start)', String(DEFAULT_ORPHAN_DAYS))
  .option('--dry-run', 'list what would be discarded, discard nothing')
  .option('--json', 'print JSON')
  .action((opts: { dataDir: string; olderThan: string; dryRun?: boolean; json?: boolean }) => {
    const days = Number(opts.olderThan);
    if (!Number.isFinite(days) || days < 0) fail(new Error(`--older-than must be a number of days ≥ 0, not ${JSON.stringify(opts.olderThan)}`));
    const { sessions, store } = sessionStore(opts.dataDir);
    const gone = discardOrphans(sessions, store, days, opts.dryRun);
    if (opts.json) process.stdout.write(`${JSON.stringify({ dryRun: Boolean(opts.dryRun), sessions: gone }, null, 2)}\n`);
    else if (gone.length === 0) process.stdout.write(`no orphaned sessions older than ${days} days\n`);
    else for (const o of gone) process.stdout.write(`${opts.dryRun ? 'would discard' : 'discarded'} ${o.id}  ${o.ageDays.toFixed(1)} days  ${formatBytes(o.upperBytes)}  (${o.reason})\n`);
  });
for (const [name, verb] of [['commit', 'commit the session into its workspace'], ['discard', 'discard the session']] as const) {
  session
    .command(name)
    .argument('<id>', 'session id')
    .description(verb)
    .addOption(dataDirOption())
    .action((id: string, opts: { dataDir: string }) => {
      const { sessions, store } = sessionStore(opts.dataDir);
      try {
        if (name === 'commit') {
          const changes = sessions.commit(id);
          store.finishSession(id, 'committed');
          store.audit('session.commit', { session: id, files: changes.length });
          process.stdout.write(`committed ${id}:\n${summary(changes)}\n`);
        } else {
          sessions.rollback(id);
          store.finishSession(id, 'discarded');
          store.audit('session.discard', { session: id });
          process.stdout.write(`discarded ${id}\n`);
        }
      } catch (err) {
        fail(err, isWardenError(err, 'E_SESSION_CONFLICT') ? 2 : 1);
      }
    });
}

const component = program.command('component').description('add, list, inspect the grants of, or remove components');
component
  .command('add')
  .description('copy a component into the registry, pinned by sha256 with its manifest (bytes changed later are refused)')
  .argument('<file>', 'COMPONENT.wasm')
  .requiredOption('--name <name>', 'name to register it under (lower-case letters, digits, dashes)')
  .option('--manifest <file>', 'manifest.json declaring what it requests (default: a manifest requesting nothing)')
  .option('--json', 'print JSON')
  .addOption(dataDirOption())
  .action(async (file: string, opts: { name: string; manifest?: string; json?: boolean; dataDir: string }) => {
    let data: DataDir | undefined;
    try {
      const { effectiveOf, formatAdded, openDataDir } = await componentModule();
      data = openDataDir(opts.dataDir);
      const result = await data.registry.add(resolve(file), { name: opts.name, ...(opts.manifest ? { manifestPath: resolve(opts.manifest) } : {}) });
      const effective = effectiveOf(data, result.component);
      process.stdout.write(opts.json ? `${JSON.stringify({ ...result, effective }, null, 2)}\n` : `${formatAdded(result, effective)}\n`);
    } catch (err) {
      fail(err);
    } finally {
      data?.close();
    }
  });
component
  .command('list')
  .description('list built-in and added components, checking every pin')
  .option('--json', 'print JSON')
  .addOption(dataDirOption())
  .action(async (opts: { json?: boolean; dataDir: string }) => {
    let data: DataDir | undefined;
    try {
      const { openDataDir } = await componentModule();
      data = openDataDir(opts.dataDir);
      const registry = data.registry;
      const rows = registry.list().map((c) => ({
        name: c.name, kind: c.manifest.kind, version: c.manifest.version, origin: c.builtin ? 'builtin' : 'pinned',
        sha256: c.sha256 ?? null, file: c.file, problem: registry.verify(c),
      }));
      if (opts.json) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      else {
        for (const r of rows) {
          process.stdout.write(`${r.name.padEnd(16)} ${r.kind.padEnd(10)} ${r.origin.padEnd(8)} ${r.sha256 ? r.sha256.slice(0, 16) : '-'.padEnd(16)}  ${r.problem ?? 'ok'}\n`);
        }
      }
    } catch (err) {
      fail(err);
    } finally {
      data?.close();
    }
  });
component
  .command('grants')
  .description('print the effective grants and limits of a component and where each came from')
  .argument('<name>', 'component name')
  .option('--json', 'print JSON')
  .addOption(dataDirOption())
  .action(async (name: string, opts: { json?: boolean; dataDir: string }) => {
    let data: DataDir | undefined;
    try {
      const { effectiveOf, formatGrants, openDataDir } = await componentModule();
      data = openDataDir(opts.dataDir);
      const found = data.registry.get(name);
      const effective = effectiveOf(data, found);
      // Env values can be secrets: print names only.
      const printable = { ...effective, grants: { ...effective.grants, env: Object.keys(effective.grants.env) } };
      process.stdout.write(opts.json ? `${JSON.stringify({ name, builtin: found.builtin, sha256: found.sha256 ?? null, ...printable }, null, 2)}\n` : `${formatGrants(found, effective)}\n`);
    } catch (err) {
      fail(err);
    } finally {
      data?.close();
    }
  });
component
  .command('remove')
  .description('unpin and delete an added component')
  .argument('<name>', 'component name')
  .addOption(dataDirOption())
  .action(async (name: string, opts: { dataDir: string }) => {
    let data: DataDir | undefined;
    try {
      const { openDataDir } = await componentModule();
      data = openDataDir(opts.dataDir);
      data.registry.remove(name);
      process.stdout.write(`removed ${name}\n`);
    } catch (err) {
      fail(err);
    } finally {
      data?.close();
    }
  });

program
  .command('sql')
  .description('run one SQL statement in a component\'s scope, read-only unless --rw, with the refusals a component gets')
  .argument('<scope>', 'scope name: the database <data-dir>/scopes/<scope>.db')
  .argument('<statement>', 'one SQL statement, e.g. "SELECT name, sql FROM sqlite_schema"')
  .option('--rw', 'open the scope read-write (writes need it)')
  .option('--json', 'print JSON: {columns, rows} with each row an object by column name (blobs as {"base64": …}), or {changes, lastInsertRowid}')
  .addOption(dataDirOption())
  .action((scope: string, statement: string, opts: { rw?: boolean; json?: boolean; dataDir: string }) => {
    const sqlDir = join(resolve(opts.dataDir), 'scopes');
    let db: ScopedSql | undefined;
    try {
      const file = scopeFile(sqlDir, scope);
      if (!existsSync(file)) {
        const known = listScopes(sqlDir);
        fail(`no scope "${scope}" in ${sqlDir} (${known.length ? `scopes: ${known.join(', ')}` : 'no scope has been written yet'})`);
      }
      db = new ScopedSql(file, opts.rw ? 'rw' : 'ro', { mustExist: true, name: scope, writeHint: 'run it with --rw' });
      // JSON numbers for integers that fit, strings for the rest of s64.
      const int = (n: bigint) => (Number.isSafeInteger(Number(n)) ? Number(n) : String(n));
      const plain = (v: SqlValue) => (v.tag === 'null' ? null : v.tag === 'blob' ? { base64: Buffer.from(v.val).toString('base64') } : v.tag === 'integer' ? int(v.val) : v.val);
      if (!db.returnsRows(statement)) {
        const result = db.execute(statement, []);
        process.stdout.write(opts.json ? `${JSON.stringify({ changes: int(result.changes), lastInsertRowid: int(result.lastInsertRowid) })}\n` : `${result.changes} row(s) changed\n`);
        return;
      }
      const { columns, values } = db.query(statement, []);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ columns, rows: values.map((row) => Object.fromEntries(row.map((v, i) => [columns[i], plain(v)]))) }, null, 2)}\n`);
        return;
      }
      const cell = (v: SqlValue) => (v.tag === 'null' ? 'NULL' : v.tag === 'blob' ? `x'${Buffer.from(v.val.subarray(0, 32)).toString('hex')}${v.val.length > 32 ? '…' : ''}'` : String(v.val).replace(/\n/g, '\\n'));
      const cells = values.map((row) => row.map(cell));
      const widths = columns.map((c, i) => cells.reduce((w, r) => Math.max(w, r[i]!.length), c.length));
      const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join(' | ').trimEnd();
      process.stdout.write(`${[line(columns), widths.map((w) => '-'.repeat(w)).join('-+-'), ...cells.map(line)].join('\n')}\n(${values.length} row${values.length === 1 ? '' : 's'})\n`);
    } catch (err) {
      fail(err);
    } finally {
      db?.close();
    }
  });

const tool = program.command('tool').description('run single components');
const collect = (value: string, previous: string[]) => [...previous, value];
tool
  .command('run')
  .description('run a wasi:cli/command or a Warden tool component with only what the flags grant')
  .argument('<component>', 'COMPONENT.wasm, or the name of a built-in or added component (then at most its effective grants apply)')
  .argument('[args...]', 'program arguments (a tool takes its input JSON as the first, or from stdin)')
  .option('--dir <HOST[::GUEST]>', 'preopen a host directory read-only', collect, [])
  .option('--dir-rw <HOST[::GUEST]>', 'preopen a host directory through a session (writes reach HOST only with --commit)', collect, [])
  .option('--commit', 'commit --dir-rw sessions when the guest exits 0')
  .option('--env <NAME[=VALUE]>', 'pass one environment variable', collect, [])
  .option('--allow-http <HOST>', 'allow outbound HTTP to HOST, HOST:PORT or *.SUFFIX (repeatable)', collect, [])
  .option('--timeout-ms <n>', 'wall-clock limit in ms, exit 124 when hit (default 300000, or the component\'s limit)')
  .option('--max-memory-mb <n>', 'memory cap per core memory in MiB, exit 125 when hit (default 256, or the component\'s limit)')
  .option('--max-output-bytes <n>', 'cap on stdout + stderr; the rest is cut with a marker (default 1048576)')
  .option('--json', 'print a JSON result instead of the guest output summary')
  .addOption(dataDirOption())
  .action(async (component: string, args: string[], opts: {
    dir: string[]; dirRw: string[]; commit?: boolean; env: string[]; allowHttp: string[]; timeoutMs?: string; maxMemoryMb?: string;
    maxOutputBytes?: string; json?: boolean; dataDir: string;
  }) => {
    const number = (value: string | undefined, flag: string): number | undefined => {
      if (value === undefined) return undefined;
      const n = Number(value);
      if (!Number.isInteger(n) || n <= 0) fail(`${flag} ${value}: expected a positive integer`, 125);
      return n;
    };
    const timeoutMs = number(opts.timeoutMs, '--timeout-ms');
    const maxMemoryMb = number(opts.maxMemoryMb, '--max-memory-mb');
    const outputBytes = number(opts.maxOutputBytes, '--max-output-bytes');
    const stdout: Buffer[] = [];
    const { readStdin, runTool } = await toolRunModule();
    const result = await runTool({
      component, args, dirs: opts.dir, dirsRw: opts.dirRw, commit: opts.commit ?? false, env: opts.env, allowHttp: opts.allowHttp,
      ...(timeoutMs ? { timeoutMs } : {}), ...(maxMemoryMb ? { maxMemoryMb } : {}), ...(outputBytes ? { outputBytes } : {}),
      dataDir: resolve(opts.dataDir),
      stdin: readStdin,
      stdout: (b) => (opts.json ? stdout.push(Buffer.from(b)) : process.stdout.write(b)),
      stderr: (b) => process.stderr.write(b),
    });
    if (opts.json) {
      process.stdout.write(`${JSON.stringify({ ...result, stdout: Buffer.concat(stdout).toString('utf8') }, null, 2)}\n`);
    } else {
      if (result.output !== undefined) process.stdout.write(`${result.output}\n`);
      for (const m of result.changes) {
        process.stderr.write(`${m.committed ? 'committed' : 'discarded (use --commit to keep)'} ${m.mount}:\n${summary(m.changes)}\n`);
      }
      if (result.reason) process.stderr.write(`warden: ${result.reason.split('\n')[0]}\n`);
    }
    process.exit(result.exitCode);
  });

registerKeysCommands(program);
registerAuditCommands(program);
registerConfigCommands(program);
registerDevkitCommands(program);
registerInspectCommands(program);
registerApprovalCommands(program);
registerTranscriptCommands(program);

await program.parseAsync(process.argv);
