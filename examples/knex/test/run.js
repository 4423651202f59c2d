'use strict'
// node:test has no global setup on Node 20: build the template once here with Knex, then run
// the test files (each in its own process); they find the template through the environment.
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const { globalSetup } = require('pgisolate/test')
const { template } = require('./migrate')

globalSetup(template).then(async (teardown) => {
  const files = ['accounts.test.js', 'devdb.test.js'].map((f) => path.join(__dirname, f))
  const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', ...files], { stdio: 'inherit' })
  const unreleased = await teardown()
  process.exit(r.status === null ? 1 : r.status || (unreleased ? 1 : 0))
})
