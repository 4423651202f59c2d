import { defineConfig } from 'vitest/config'

// scripts/kept-check.sh only: a deliberately failing test whose schema must be kept.
export default defineConfig({
  test: {
    include: ['test/kept/*.test.mjs'],
    globalSetup: ['test/vitest/global-setup.mjs'],
  },
})
