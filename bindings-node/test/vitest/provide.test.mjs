import { test, expect, inject } from 'vitest'
import { engine, isolatedSchema } from 'pgisolate/test'

test('workers get the server through provide/inject, not the environment', async (ctx) => {
  const provided = inject('pgisolate')
  expect(provided.url).toMatch(/^postgres/)
  expect(provided.runId).toBeTruthy()
  expect(process.env.PGISOLATE_RUN_ID).toBeUndefined()
  const e = await engine()
  expect(e.runId).toBe(provided.runId)
  const schema = await isolatedSchema(ctx)
  expect(schema.url).toContain(schema.name)
})
