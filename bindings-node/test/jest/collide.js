const { Client } = require('pg')
const { useIsolatedSchema, engine, workerId } = require('pgisolate/test')

/** Eight tests that each register alice, with hook-style schemas (names from expect.getState()). */
module.exports = function collide(label) {
  const db = useIsolatedSchema({ beforeEach, afterEach })
  afterAll(async () => (await engine()).close())

  describe(label, () => {
    for (let i = 0; i < 8; i++) {
      test(`alice registers #${i}`, async () => {
        const c = new Client({ connectionString: db.schema.url })
        await c.connect()
        try {
          const { rows } = await c.query("insert into users (email) values ('alice@example.com') returning id")
          expect(rows[0].id).toBe('1')
          expect(db.schema.name).toMatch(/^test_[0-9a-f]{8}/)
          expect(workerId()).toMatch(/^\d+$/)
        } finally {
          await c.end()
        }
      })
    }
  })
}
