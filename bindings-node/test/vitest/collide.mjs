import { describe, test, expect } from 'vitest'
import pg from 'pg'
import { isolatedSchema, workerId } from 'pgisolate/test'

// Process-wide cache, as an app would have: keys must carry the test's prefix.
const cache = new Map()

/** Twelve concurrent tests that each register alice: they collide without isolation. */
export function collide(label) {
  describe(`${label}: every test registers alice`, () => {
    for (let i = 0; i < 12; i++) {
      test.concurrent(`alice registers #${i}`, async (ctx) => {
        const schema = await isolatedSchema(ctx)
        const key = schema.cacheKey('user:alice')
        expect(cache.has(key)).toBe(false)
        const c = new pg.Client({ connectionString: schema.url })
        await c.connect()
        try {
          const { rows } = await c.query("insert into users (email) values ('alice@example.com') returning id")
          expect(rows[0].id).toBe('1')
          cache.set(key, rows[0].id)
          const count = await c.query('select count(*)::int as n from users')
          expect(count.rows[0].n).toBe(1)
        } finally {
          await c.end()
        }
        expect(workerId()).toMatch(/^\d+$/)
      })
    }
  })
}
