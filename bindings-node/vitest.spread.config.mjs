import { defineConfig } from 'vitest/config'

// Two servers listed in PGISOLATE_DATABASE_URL, four workers (test/spread/run.sh).
export default defineConfig({
  test: {
    include: ['test/spread/**/*.test.mjs'],
    globalSetup: ['test/vitest/global-setup.mjs'],
    pool: 'forks',
    poolOptions: { forks: { minForks: 4, maxForks: 4 } },
    fileParallelism: true,
    testTimeout: 30000,
  },
})
