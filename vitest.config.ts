import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Tests start kernels with several workers each; two cores cannot run many at once.
    fileParallelism: false,
  },
});
