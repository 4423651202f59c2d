'use strict'
// Every test registers the same email: without isolation the second one fails on the unique
// constraint. Each gets its own schema, made from the template Knex built.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const knex = require('knex')
const { isolatedSchema } = require('pgisolate/test')
const config = require('../knexfile')
const { register, placeOrder } = require('../accounts')

// node:test runs after hooks in the order they were added: close the pool before the schema is
// released (release terminates leaked sessions, which node-postgres reports as errors).
async function scopedKnex(t) {
  let db
  t.after(() => db && db.destroy())
  const schema = await isolatedSchema(t)
  db = knex(config(schema.url))
  return { schema, db }
}

for (const name of ['alice registers', 'alice registers again', 'alice orders']) {
  test(name, async (t) => {
    const { schema, db } = await scopedKnex(t)
    const account = await register(db, 'alice@example.com')
    assert.match(account.id, /^[0-9a-f-]{36}$/, 'uuid_generate_v4() from the extension the migration created')
    if (name === 'alice orders') await placeOrder(db, account.id, 1250)
    const [{ current_schema: current }] = (await db.raw('select current_schema()')).rows
    assert.equal(current, schema.name)
    const applied = await db('knex_migrations').count({ n: '*' })
    assert.equal(Number(applied[0].n), 3, 'knex_migrations is in the test schema, at the last migration')
  })
}
