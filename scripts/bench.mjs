#!/usr/bin/env node
// Runs one benchmark of bench/: `npm run bench -- NAME [ARGS...]` runs bench/NAME.{ts,mts,mjs,js}
// in a fresh Node process (TypeScript through tsx) with ARGS passed on. Without NAME, or with an
// unknown one, lists the benchmarks and exits 2. Builds first (scripts/build.mjs) when dist/ or
// the built components are missing. Exits with the benchmark's status.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const benchDir = join(root, 'bench');
const EXTENSIONS = ['.ts', '.mts', '.mjs', '.js'];

function available() {
  if (!existsSync(benchDir)) return [];
  const names = new Set();
  for (const file of readdirSync(benchDir)) {
    const ext = EXTENSIONS.find((e) => file.endsWith(e));
    if (ext && !file.endsWith('.d.ts')) names.add(file.slice(0, -ext.length));
  }
  return [...names].sort();
}

const [name, ...args] = process.argv.slice(2);
const file = name && !name.startsWith('-') ? EXTENSIONS.map((e) => join(benchDir, `${name}${e}`)).find(existsSync) : undefined;
if (!file) {
  if (name) console.error(`unknown benchmark: ${name}`);
  const names = available();
  console.error(`usage: npm run bench -- NAME [ARGS...]\navailable: ${names.length ? names.join(', ') : '(none in bench/)'}`);
  process.exit(2);
}

if (!existsSync(join(root, 'dist/kernel/mesh/worker.js')) || !existsSync(join(root, 'build/components'))) {
  console.log('[bench] dist/ or build/components/ missing: building first');
  const build = spawnSync(process.execPath, [join(root, 'scripts/build.mjs')], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) process.exit(build.status ?? 1);
}

const loader = /\.m?ts$/.test(file) ? ['--import', 'tsx'] : [];
const run = spawnSync(process.execPath, [...loader, file, ...args], { cwd: root, stdio: 'inherit' });
process.exit(run.status ?? 1);
