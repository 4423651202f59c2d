'use strict'
// node:test has no global setup on Node 20: start the server and build the template once here,
// then run the tests (each file in its own process) with the environment pgisolate/test set.
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const { globalSetup } = require('pgisolate/test')

globalSetup({ migrations: path.join(__dirname, '..', '..', 'migrations') }).then(async (teardown) => {
  const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', path.join(__dirname, 'signup.test.js')], {
    stdio: 'inherit',
  })
  const unreleased = await teardown()
  process.exit(r.status || (unreleased ? 1 : 0))
})
