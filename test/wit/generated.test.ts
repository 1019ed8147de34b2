// wit/ is the single source of truth: the committed host and guest types must match what it generates.
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { PACKAGE_ROOT } from '../../kernel/paths.js';

const run = promisify(execFile);
const check = () =>
  run(process.execPath, [join(PACKAGE_ROOT, 'scripts/build.mjs'), '--check-gen'], { cwd: PACKAGE_ROOT }).then(
    () => 0,
    (e: { code: number }) => e.code,
  );

describe('generated types', () => {
  it('match wit/, and a hand edit is reported as drift', async () => {
    expect(await check()).toBe(0);
    const file = join(PACKAGE_ROOT, 'components/types/interfaces/warden-kernel-log.d.ts');
    const original = readFileSync(file, 'utf8');
    try {
      writeFileSync(file, `${original}// edited by hand\n`);
      expect(await check()).toBe(1);
    } finally {
      writeFileSync(file, original);
    }
  });
});
