import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two test files at a time: most of a file's time is spent waiting on child processes,
    // sockets and workers, so two overlap well on two cores; each kernel starts several workers,
    // so more would only queue for the CPU.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
