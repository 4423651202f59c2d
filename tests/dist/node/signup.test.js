'use strict'
// A user's node:test suite against the installed npm packages: every test registers the same
// email, which only passes if each test has a schema of its own.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const { Client } = require('pg')
const pgi = require('pgisolate')
const { isolatedSchema } = require('pgisolate/test')

for (let i = 0; i < 6; i++) {
  test(`alice registers ${i}`, async (t) => {
    let client
    t.after(() => client && client.end())
    const schema = await isolatedSchema(t)
    client = new Client({ connectionString: schema.url })
    await client.connect()
    await client.query("insert into users (email) values ('alice@example.com')")
    const { rows } = await client.query('select current_schema() as s, count(*)::int as n from users')
    assert.deepEqual(rows[0], { s: schema.name, n: 1 })
  })
}

test('the installed packages are used', () => {
  assert.match(require.resolve('pgisolate'), /node_modules\/pgisolate\/index\.js$/)
  assert.match(require.resolve('pgisolate-linux-x64-gnu'), /node_modules\/pgisolate-linux-x64-gnu\//)
  assert.equal(pgi.version(), process.env.EXPECTED_VERSION)
})
