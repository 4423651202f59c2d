'use strict'
// Fails on purpose, for scripts/kept-check.sh (node:test): with PGISOLATE_KEEP=failed its
// schema is kept and the line naming it is printed.
const { test } = require('node:test')
const { Client } = require('pg')
const { isolatedSchema } = require('pgisolate/test')

test('deliberately fails under node:test', async (t) => {
  const schema = await isolatedSchema(t)
  const c = new Client({ connectionString: schema.url })
  await c.connect()
  await c.query("insert into users (email) values ('same@example.com')")
  await c.end()
  throw new Error('deliberate failure: the schema must be kept')
})
