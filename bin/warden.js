#!/usr/bin/env node
// The `warden` command. The kernel is TypeScript compiled to dist/ by `npm install` (scripts/build.mjs).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/kernel/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  process.stderr.write('warden: the kernel is not built; run `npm install` (or `npm run build`) in the Warden folder\n');
  process.exit(125);
}
await import(main.href);
