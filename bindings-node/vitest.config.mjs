import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/vitest/**/*.test.mjs'],
    globalSetup: ['test/vitest/global-setup.mjs'],
    pool: 'forks',
    poolOptions: { forks: { minForks: 2, maxForks: 2 } },
    fileParallelism: true,
    testTimeout: 30000,
  },
})
