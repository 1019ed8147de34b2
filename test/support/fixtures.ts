/** Temporary workspaces and data directories for tests. */
import { cpSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import { shareTranspileCache } from '../../kernel/testing.js';

/** A fresh empty directory under the system temp dir. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `warden-${prefix}-`));
}

/** A fresh data directory for a kernel, sharing the checkout's transpile cache (a kernel starts in a fraction of the time). */
export function kernelDataDir(prefix: string): string {
  const dir = tempDir(prefix);
  shareTranspileCache(dir);
  return dir;
}

/** A workspace holding `files` (path → content). */
export function workspace(files: Record<string, string>): string {
  const dir = tempDir('ws');
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  return dir;
}

/** A copy of a real open-source source tree: commander's `lib/` and `index.js` from node_modules. */
export function realRepository(): string {
  const dir = tempDir('repo');
  cpSync(join(PACKAGE_ROOT, 'node_modules/commander/lib'), join(dir, 'lib'), { recursive: true });
  cpSync(join(PACKAGE_ROOT, 'node_modules/commander/index.js'), join(dir, 'index.js'));
  return dir;
}
