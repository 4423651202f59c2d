'use strict'
// Runs a command between pgisolate/test's globalSetup and globalTeardown (node:test has no
// global setup hook on Node 20): `node test/with-global-setup.js node --test …`.
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const { globalSetup } = require('pgisolate/test')

async function main() {
  const teardown = await globalSetup({ migrations: path.join(__dirname, '..', '..', 'examples', 'migrations') })
  const [cmd, ...args] = process.argv.slice(2)
  const r = spawnSync(cmd, args, { stdio: 'inherit', env: process.env })
  const unreleased = await teardown()
  if (unreleased) console.error(`${unreleased} schema(s) were not released: failing the run`)
  process.exit(r.status === null ? 1 : r.status || (unreleased ? 1 : 0))
}
main().catch((e) => {
  console.error(e)
  process.exit(1)
})
