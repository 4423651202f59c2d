// Fails on purpose, for scripts/kept-check.sh (vitest.kept.config.mjs): with
// PGISOLATE_KEEP=failed its schema is kept and the line naming it is printed.
import { test } from 'vitest'
import pg from 'pg'
import { isolatedSchema } from 'pgisolate/test'

test('deliberately fails', async (ctx) => {
  const schema = await isolatedSchema(ctx)
  const c = new pg.Client({ connectionString: schema.url })
  await c.connect()
  await c.query("insert into users (email) values ('same@example.com')")
  await c.end()
  throw new Error('deliberate failure: the schema must be kept')
})
