'use strict'
// 24 tests run 6 at a time, each registering the same unique email: only isolation lets them pass.
const { describe, test, after } = require('node:test')
const assert = require('node:assert/strict')
const { Client } = require('pg')
const { isolatedSchema, engine } = require('pgisolate/test')

after(async () => (await engine()).close())

describe('registration collides without isolation', { concurrency: 6 }, () => {
  for (let i = 0; i < 24; i++) {
    test(`alice registers #${i}`, async (t) => {
      const schema = await isolatedSchema(t) // released when the test ends
      const c = new Client({ connectionString: schema.url })
      await c.connect()
      try {
        const { rows } = await c.query("insert into users (email) values ('alice@example.com') returning id")
        assert.equal(rows[0].id, '1')
        await new Promise((r) => setTimeout(r, 20))
        const count = await c.query('select count(*)::int as n from users')
        assert.equal(count.rows[0].n, 1)
      } finally {
        await c.end()
      }
    })
  }
})
