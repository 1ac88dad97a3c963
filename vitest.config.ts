import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Integration tests start brokers, emulators and node processes: two cores, so run files two at a time.
    maxWorkers: 2,
    fileParallelism: true,
    env: { METADATA_SERVER_DETECTION: 'none' },
  },
});
