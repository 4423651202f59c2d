import fs from 'node:fs'
import { test, expect } from 'vitest'
import pg from 'pg'
import { isolatedSchema } from 'pgisolate/test'

/** Four tests that note which server their worker's schemas are on (test/spread/run.sh checks
 * each worker used one server and the run used both). */
export function spreadTests() {
  for (let i = 0; i < 4; i++) {
    test(`a test on its worker's server ${i}`, async (ctx) => {
      const schema = await isolatedSchema(ctx)
      const client = new pg.Client({ connectionString: schema.url })
      await client.connect()
      try {
        const { rows } = await client.query('select current_schema() as s, current_setting($1) as port', ['port'])
        expect(rows[0].s).toBe(schema.name)
        fs.appendFileSync(process.env.SPREAD_LOG, `${process.env.VITEST_POOL_ID} ${rows[0].port}\n`)
      } finally {
        await client.end()
      }
    })
  }
}
