'use strict'
const { describe, test, after } = require('node:test')
const assert = require('node:assert/strict')
const { Client } = require('pg')
const { isolatedSchema, engine } = require('pgisolate/test')
const { register } = require('../signup.js')

after(async () => (await engine()).close())

async function connect(t) {
  // node:test runs t.after hooks in the order they were added: close the connection first,
  // then let isolatedSchema's hook release the schema.
  let client
  t.after(() => client && client.end())
  const schema = await isolatedSchema(t) // a fresh schema, released when the test ends
  client = new Client({ connectionString: schema.url })
  await client.connect()
  return { schema, client }
}

describe('signup', { concurrency: 4 }, () => {
  test('alice can register', async (t) => {
    const { schema, client } = await connect(t)
    assert.deepEqual(await register(client, (k) => schema.cacheKey(k), 'alice@example.com'), { ok: true, id: 1 })
  })

  test('alice cannot register twice', async (t) => {
    const { schema, client } = await connect(t)
    await register(client, (k) => schema.cacheKey(k), 'alice@example.com')
    assert.equal((await register(client, (k) => schema.cacheKey(k), 'alice@example.com')).ok, false)
  })

  test('alice registers first in this test too', async (t) => {
    const { schema, client } = await connect(t)
    assert.deepEqual(await register(client, (k) => schema.cacheKey(k), 'alice@example.com'), { ok: true, id: 1 })
  })
})
