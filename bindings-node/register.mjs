// node:test without a wrapper script: `node --import pgisolate/register --test`, with the
// migrations in PGISOLATE_MIGRATIONS, else ./migrations. (A migration tool of your own: a
// module of yours calling `setupRun({ inputs, build })` from pgisolate/test, preloaded the
// same way.) See setupRun in test.js for what runs where.
import { createRequire } from 'node:module'
import fs from 'node:fs'

const require = createRequire(import.meta.url)
const { setupRun } = require('./test.js')

const migrations = process.env.PGISOLATE_MIGRATIONS || 'migrations'
if (!process.env.PGISOLATE_TEMPLATE_BUILT && !fs.existsSync(migrations)) {
  throw new Error(
    `pgisolate/register: no migrations directory ${JSON.stringify(migrations)} (PGISOLATE_MIGRATIONS, else ./migrations): ` +
      'set PGISOLATE_MIGRATIONS, or preload a module of yours that calls setupRun() from pgisolate/test',
  )
}
await setupRun({ migrations })
