import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Every kernel the suite starts (in-process or as a child `warden` process) shares one
    // transpile cache: a cold start transpiles every component again (~7 s instead of ~3 s).
    env: { WARDEN_TRANSPILE_CACHE: join(import.meta.dirname, 'build', 'transpile-cache') },
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two test files at a time: most of a file's time is spent waiting on child processes,
    // sockets and workers, so two overlap well on two cores; each kernel starts several workers,
    // so more would only queue for the CPU.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
