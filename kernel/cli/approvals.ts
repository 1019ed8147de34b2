/**
 * `warden approve ID [--deny] [--reason TEXT] [--json]` and `warden approvals [--all] [--json]`:
 * decide and list policy approvals in a data directory's store, whether or not a kernel runs on
 * it (a running kernel polls the store and lets the waiting call go on). Also what `warden run`
 * does while its task waits for an approval: a prompt on a terminal, instructions otherwise.
 */
import type { Command } from 'commander';
import { createInterface } from 'node:readline';
import { join, resolve } from 'node:path';
import { Option } from 'commander';
import { decideInStore, listApprovals } from '../approvals/index.js';
import { isWardenError, messageOf } from '../errors.js';
import type { Kernel } from '../kernel.js';
import type { Approval } from '../state/index.js';
import { Store } from '../store/index.js';

const dataDirOption = () => new Option('--data-dir <dir>', 'data directory: database, sessions, caches').default('.warden');

function fail(err: unknown): never {
  process.stderr.write(`warden: ${messageOf(err)}\n`);
  process.exit(isWardenError(err, 'E_APPROVAL_DECIDED') ? 2 : 1);
}

/** `3m12s`-style time until `ms` since the epoch (or `past`). */
function until(ms: number): string {
  const s = Math.round((ms - Date.now()) / 1000);
  if (s <= 0) return 'past';
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

/** One line per approval, for people. */
export function formatApproval(a: Approval): string {
  const when = a.status === 'pending' ? `expires in ${until(a.expiresAt)}` : `by ${a.decidedBy ?? '?'}${a.reason ? ` (${a.reason})` : ''}`;
  return `${a.id}  ${a.status.padEnd(8)}  ${a.taskId ?? '-'}  ${a.component}  ${a.subject}  [${a.rule}]  ${when}`;
}

function openStore(dataDir: string): Store {
  try {
    return new Store(join(resolve(dataDir), 'warden.db'));
  } catch (err) {
    fail(err);
  }
}

/** Register `approve` and `approvals` on the `warden` program. */
export function registerApprovalCommands(program: Command): void {
  program
    .command('approve')
    .description('approve (or with --deny, deny) a pending policy approval; works while a kernel runs in another process, or with none')
    .argument('<id>', 'approval id (a-…), see `warden approvals`')
    .option('--deny', 'deny instead of approving')
    .option('--reason <text>', 'why (recorded with the decision and in the audit log)')
    .option('--json', 'print the decided approval as JSON')
    .addOption(dataDirOption())
    .action((id: string, opts: { deny?: boolean; reason?: string; json?: boolean; dataDir: string }) => {
      const store = openStore(opts.dataDir);
      try {
        const approval = decideInStore(store, id, opts.deny ? 'deny' : 'approve', 'cli', opts.reason);
        process.stdout.write(opts.json ? `${JSON.stringify(approval, null, 2)}\n` : `${approval.status} ${approval.id}: ${approval.subject}${approval.taskId ? ` (task ${approval.taskId})` : ''}\n`);
      } catch (err) {
        store.close();
        fail(err);
      }
      store.close();
    });
  program
    .command('approvals')
    .description('policy approvals waiting for a decision (with --all, decided and expired ones too)')
    .option('--all', 'include approved, denied and expired approvals')
    .option('--json', 'print JSON')
    .addOption(dataDirOption())
    .action((opts: { all?: boolean; json?: boolean; dataDir: string }) => {
      const store = openStore(opts.dataDir);
      const rows = listApprovals(store, { all: opts.all ?? false });
      store.close();
      if (opts.json) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      else if (rows.length === 0) process.stdout.write(opts.all ? 'no approvals\n' : 'no pending approvals\n');
      else for (const a of rows) process.stdout.write(`${formatApproval(a)}\n`);
    });
}

/**
 * While `warden run` follows task `taskId`: announce each approval it waits for on stderr. On a
 * terminal, ask `approve? [y/N]` and decide with the answer (`cli`); otherwise say how to decide
 * it from another shell. @returns stop watching
 */
export function watchApprovals(kernel: Kernel, taskId: string, dataDir: string): () => void {
  const seen = new Set<string>();
  const queue: Approval[] = [];
  const tty = Boolean(process.stdin.isTTY && process.stderr.isTTY);
  // Opened only while asking: an open readline interface would swallow Ctrl-C.
  let asking: { approval: Approval; prompt: ReturnType<typeof createInterface> } | null = null;
  const next = () => {
    if (asking) return;
    const a = queue.shift();
    if (!a) return;
    if (kernel.state.current.approvals[a.id]?.status !== 'pending') return next();
    const prompt = createInterface({ input: process.stdin, output: process.stderr });
    asking = { approval: a, prompt };
    prompt.on('SIGINT', () => process.kill(process.pid, 'SIGINT'));
    const detail = a.detail.split('\n').slice(0, 8).map((l) => `  ${l.slice(0, 160)}`).join('\n');
    prompt.question(`warden: ${a.component} wants ${a.subject} (${a.rule})\n${detail}\napprove? [y/N] `, (answer) => {
      prompt.close();
      asking = null;
      try {
        kernel.approvals.decide(a.id, /^y(es)?$/i.test(answer.trim()) ? 'approve' : 'deny', 'cli');
      } catch (err) {
        // Decided meanwhile (another shell, the UI) or expired: nothing to do.
        if (!isWardenError(err, 'E_APPROVAL_DECIDED')) process.stderr.write(`warden: ${messageOf(err)}\n`);
      }
      next();
    });
  };
  const unsubscribe = kernel.state.subscribe(() => {
    const shown = asking && kernel.state.current.approvals[asking.approval.id];
    if (asking && shown && shown.status !== 'pending') {
      // Decided elsewhere (another shell, the UI) or expired while the prompt was open.
      process.stderr.write(`\nwarden: approval ${shown.id} ${shown.status === 'expired' ? 'expired at the call\'s deadline' : `was ${shown.status} by ${shown.decidedBy ?? '?'}`}\n`);
      asking.prompt.close();
      asking = null;
    }
    for (const a of Object.values(kernel.state.current.approvals)) {
      if (a.taskId !== taskId || a.status !== 'pending' || seen.has(a.id)) continue;
      seen.add(a.id);
      if (tty) queue.push(a);
      else {
        const dir = resolve(dataDir);
        process.stderr.write(`warden: waiting for approval ${a.id}: ${a.component} wants ${a.subject} (${a.rule}); expires in ${until(a.expiresAt)}\n`
          + `  approve from another shell: warden approve ${a.id} --data-dir ${dir}   (deny: add --deny)\n`);
      }
    }
    next();
  });
  return () => {
    unsubscribe();
    asking?.prompt.close();
  };
}
