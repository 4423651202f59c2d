// Fails on purpose, for scripts/kept-check.sh (Jest, hook style): with PGISOLATE_KEEP=failed
// its schema is kept and the line naming it is printed.
const { Client } = require('pg')
const { useIsolatedSchema } = require('pgisolate/test')

const db = useIsolatedSchema({ beforeEach, afterEach })

test('deliberately fails under Jest', async () => {
  const c = new Client({ connectionString: db.schema.url })
  await c.connect()
  await c.query("insert into users (email) values ('same@example.com')")
  await c.end()
  throw new Error('deliberate failure: the schema must be kept')
})
