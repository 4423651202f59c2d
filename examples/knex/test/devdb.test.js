'use strict'
// The first setup most teams try: pgisolate pointed at the dev database that `knex
// migrate:latest` already migrated (tables, knex_migrations and uuid-ossp, all in public).
// Every way of building gives real isolation or a clear error, never an empty template.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const { Client } = require('pg')
const pgi = require('pgisolate')
const pgiTest = require('pgisolate/test')
const { migrateLatest, migrations } = require('./migrate')
const { register } = require('../accounts')
const knex = require('knex')
const config = require('../knexfile')

async function sql(url, text) {
  const c = new Client({ connectionString: url })
  await c.connect()
  try {
    return (await c.query(text)).rows
  } finally {
    await c.end()
  }
}

test('a migrated dev database gives isolation or a clear error', async (t) => {
  const admin = (await pgiTest.engine()).url // the server this run's tests share
  const name = `pgi_knex_dev_${process.pid}`
  await sql(admin, `create database ${name}`)
  t.after(() => sql(admin, `drop database ${name} with (force)`))
  const u = new URL(admin)
  u.pathname = `/${name}`
  const dev = u.toString()
  await migrateLatest(dev)

  const warnings = []
  const onWarning = (w) => w.name === 'PgIsolateWarning' && warnings.push(w.message)
  process.on('warning', onWarning)
  t.after(() => process.off('warning', onWarning))
  const e = await pgi.Engine.start({ url: dev, gcOnStart: false })
  t.after(() => e.close())
  const inputs = [migrations]

  // 1. A build that ignores its URL (Knex configured from the app's settings) finds
  //    public.knex_migrations and does nothing: refused, nothing published.
  await assert.rejects(
    e.template({ inputs, build: () => migrateLatest(dev) }),
    (err) => err instanceof pgi.MigrationError && /public\.knex_migrations/.test(err.message),
  )
  assert.deepEqual(await sql(dev, 'select count(*)::int as n from pgisolate.templates'), [{ n: 0 }])

  // 2. Knex with the build URL sees only the build schema: uuid_generate_v4() (in public) is
  //    missing, and the error says where the extension is and what to do.
  await assert.rejects(
    e.template({ inputs, build: migrateLatest }),
    (err) => err instanceof pgi.MigrationError && /uuid_generate_v4/.test(err.message) && /uuid-ossp \(in public\)/.test(err.message),
  )

  // 3. Following the hint, each test's schema holds the app's tables; the tables public also
  //    holds are named in a PgIsolateWarning.
  await sql(dev, 'create schema if not exists extensions; alter extension "uuid-ossp" set schema extensions')
  const tpl = await e.template({ inputs, build: migrateLatest })
  for (const scenario of ['a', 'b']) {
    const s = await e.acquire(tpl, { feature: 'devdb', scenario })
    const db = knex(config(s.url))
    try {
      await register(db, 'admin@example.com')
      const [{ current_schema: current }] = (await db.raw('select current_schema()')).rows
      assert.equal(current, s.name)
    } finally {
      await db.destroy()
      await s.release()
    }
  }
  assert.deepEqual(await sql(dev, 'select count(*)::int as n from public.accounts'), [{ n: 0 }])
  await new Promise((r) => setImmediate(r))
  assert.ok(
    warnings.some((w) => w.includes('public.accounts') && w.includes('public.knex_migrations')),
    `no warning named the tables shadowed in public: ${warnings.join(' | ')}`,
  )
})
