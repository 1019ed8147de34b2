/** `warden config check`: validate the configuration without starting the kernel. */
import { Option, type Command } from 'commander';
import { resolve } from 'node:path';
import { isWardenError } from '../errors.js';
import type { ConfigIssue, ConfigReport } from '../config/index.js';

/** One issue as a line: `FILE: field.path: message`, or `FILE:LINE:COLUMN: message` for syntax. */
function formatIssue(file: string, issue: ConfigIssue): string {
  return issue.line !== undefined ? `${file}:${issue.line}:${issue.column}: ${issue.message}` : `${file}: ${issue.path || '(root)'}: ${issue.message}`;
}

/** The report for FILE, or for the data directory's file (none: defaults). @throws WardenError `E_CONFIG` other than two files */
async function report(file: string | undefined, dataDir: string): Promise<ConfigReport> {
  // The schemas (zod) are loaded by this command only.
  const { checkConfig, configFile } = await import('../config/index.js');
  if (file) return checkConfig(resolve(file));
  try {
    return checkConfig(configFile(resolve(dataDir)));
  } catch (err) {
    // Both warden.config.json and warden.config.toml exist.
    if (!isWardenError(err, 'E_CONFIG')) throw err;
    return { ok: false, file: resolve(dataDir), errors: (err.detail?.['issues'] as ConfigIssue[]) ?? [{ path: '', message: err.message }], warnings: [], effective: null };
  }
}

/** Add the `config` commands to `program`. */
export function registerConfigCommands(program: Command): void {
  const config = program.command('config').description('the configuration file (warden.config.json or warden.config.toml)');
  config
    .command('check [file]')
    .description('validate the configuration (default: the data directory\'s); exit 1 when invalid')
    .addOption(new Option('--data-dir <dir>', 'data directory whose configuration to check').default('.warden'))
    .option('--print', 'also print the effective configuration (defaults applied, secrets masked)')
    .option('--json', 'print {ok, file, errors, warnings, effective} as JSON')
    .action(async (file: string | undefined, opts: { dataDir: string; print?: boolean; json?: boolean }) => {
      const result = await report(file, opts.dataDir);
      const name = result.file ?? `${resolve(opts.dataDir)} (no config file: defaults)`;
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      } else if (result.ok) {
        const lines = [`ok: ${name}`, ...result.warnings.map((w) => `warning: ${formatIssue(name, w)}`)];
        if (opts.print) lines.push(JSON.stringify(result.effective, null, 2));
        process.stdout.write(`${lines.join('\n')}\n`);
      } else {
        process.stdout.write(`${result.errors.map((e) => formatIssue(name, e)).join('\n')}\n`);
      }
      if (!result.ok) process.exitCode = 1;
    });
}
