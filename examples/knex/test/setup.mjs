// Preloaded by `node --import ./test/setup.mjs --test` (node:test has no global setup on
// Node 20): in the runner's process, Knex builds the template once; the test files' processes
// find it through the environment.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const { setupRun } = require('pgisolate/test')
const { template } = require('./migrate.js')

await setupRun(template)
