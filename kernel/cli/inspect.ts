/**
 * `warden inspect FILE.wasm` (a component's world, read without running it) and
 * `warden test-component FILE.wasm` (a conformance run in a real kernel). Errors print one line
 * (`warden: …`) and exit 1; `test-component` also exits 1 when a check fails.
 */
import type { Command } from 'commander';
import { messageOf } from '../errors.js';

function fail(err: unknown): never {
  process.stderr.write(`warden: ${messageOf(err)}\n`);
  process.exit(1);
}

/** `--timeout-ms` as a positive integer. */
function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) fail(`--timeout-ms ${value}: expected a positive whole number of milliseconds`);
  return n;
}

/** Add `inspect` and `test-component` to `program`. */
export function registerInspectCommands(program: Command): void {
  program
    .command('inspect <file>')
    .description('print a component\'s world without running it: imports (known to this kernel or not) and exports, its kind, the grants it would need, size and sha256')
    .option('--json', 'print {file, size, sha256, kind, imports, exports, unknownImports, loadable, verdict, grants, initialMemory} as JSON')
    .action(async (file: string, opts: { json?: boolean }) => {
      // Loaded by the command that uses it (the whole CLI starts without it).
      const { formatInspection, inspectComponent } = await import('../devkit/inspect.js');
      const inspection = await inspectComponent(file).catch(fail);
      process.stdout.write(`${opts.json ? JSON.stringify(inspection, null, 2) : formatInspection(inspection)}\n`);
    });

  program
    .command('test-component <file>')
    .description('conformance run in a real kernel on a temporary data directory: describe, example inputs, malformed inputs; time and memory per call; exit 1 when a check fails')
    .option('--manifest <file>', 'manifest to add it with (default: manifest.json next to FILE, else a minimal one derived from its exports)')
    .option('--dir <dir>', 'workspace the component sees, through a session that is discarded afterwards (default: a temporary directory holding example.txt)')
    .option('--timeout-ms <n>', 'deadline of each call, ms (default: the component\'s limits.timeoutMs)', positiveInt)
    .option('--json', 'print {component, checks: [{name, ok, ms, memoryBytes?, detail}], ok} as JSON')
    .action(async (file: string, opts: { manifest?: string; dir?: string; timeoutMs?: number; json?: boolean }) => {
      const { formatConformance, testComponent } = await import('../devkit/conformance.js');
      const report = await testComponent({
        file, ...(opts.manifest ? { manifestPath: opts.manifest } : {}), ...(opts.dir ? { workspace: opts.dir } : {}),
        ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
      }).catch(fail);
      process.stdout.write(`${opts.json ? JSON.stringify(report, null, 2) : formatConformance(report)}\n`);
      if (!report.ok) process.exitCode = 1;
    });
}
