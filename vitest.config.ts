import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Tests that start real agents and servers listen on loopback ports the kernel picks (`freePort` in
    // test/helpers/ports.ts), never fixed ones, so that files can run in parallel, with other runs on the machine.
    fileParallelism: true,
  },
});
