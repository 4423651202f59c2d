'use strict'
// pgisolate/test: one schema per test for node:test, Vitest and Jest.
//
//   globalSetup()     once per run, in the runner's main process: starts (or reuses) the server,
//                     builds the template, and hands the workers plain environment variables
//                     (PGISOLATE_DATABASE_URL, PGISOLATE_RUN_ID, PGISOLATE_MIGRATIONS). Returns
//                     the teardown (Vitest's globalSetup contract); globalTeardown() is the same.
//   isolatedSchema(ctx?)  in a test: a fresh schema named from the test file and test name.
//                     With node:test's `t` or Vitest's test context it is released when the
//                     test finishes; otherwise call `await schema.release()`. node:test runs
//                     t.after hooks in the order they were added: add the hook that closes your
//                     connections before calling isolatedSchema(t) (release terminates leaked
//                     sessions, which node-postgres reports as an error event).
//   useIsolatedSchema({beforeEach, afterEach})  hooks for runners without a context (Jest).
//   workerSchema()    one schema per worker process, for suites that reset data themselves.

const path = require('node:path')
const { Engine, ConfigError } = require('./index.js')

let globalEngine
let enginePromise
let templatePromise
let templateSource
let workerSchemaPromise

function workerId() {
  return process.env.VITEST_POOL_ID || process.env.JEST_WORKER_ID || process.env.NODE_TEST_WORKER_ID || String(process.pid)
}

function sourceFromEnv() {
  if (templateSource) return templateSource
  const built = process.env.PGISOLATE_TEMPLATE_BUILT
  if (built) {
    // globalSetup built the template with the caller's tool: workers find it by the same key
    // and inputs; they never run the tool themselves.
    const { fingerprint, inputs } = JSON.parse(built)
    return {
      fingerprint,
      inputs,
      build: () => {
        throw new ConfigError(
          'the template globalSetup built is gone (pruned or dropped while the run was going): run the tests again',
        )
      },
    }
  }
  const dir = process.env.PGISOLATE_MIGRATIONS
  if (!dir) {
    throw new ConfigError(
      'pgisolate/test needs migrations: call globalSetup({ migrations: "dir" }) or globalSetup({ inputs, build }) ' +
        'in the runner, set PGISOLATE_MIGRATIONS, or call setTemplate({ inputs, build }) in a setup file',
    )
  }
  return { migrations: dir }
}

/** Sets the template source for this process ({migrations} or {fingerprint?, inputs?, build}). */
function setTemplate(source) {
  templateSource = source
  templatePromise = undefined
}

/** This process's engine (started on first use, with the URL from the environment). */
function engine() {
  if (!enginePromise) enginePromise = Engine.start({ gcOnStart: false })
  return enginePromise
}

/** This process's template (built once per server; other processes reuse it). */
function template() {
  if (!templatePromise) {
    templatePromise = (async () => (await engine()).template(sourceFromEnv()))()
    templatePromise.catch(() => {
      templatePromise = undefined
    })
  }
  return templatePromise
}

async function globalSetup(options = {}) {
  const opts = options && typeof options === 'object' && !('config' in options) ? options : {}
  if (opts.migrations) process.env.PGISOLATE_MIGRATIONS = path.resolve(opts.migrations)
  const inputs = (opts.inputs || []).map((p) => path.resolve(p))
  if (opts.build) setTemplate({ fingerprint: opts.fingerprint, inputs, build: opts.build })
  globalEngine = await Engine.start({ url: opts.url })
  await globalEngine.template(sourceFromEnv())
  process.env.PGISOLATE_DATABASE_URL = globalEngine.url
  process.env.PGISOLATE_RUN_ID = globalEngine.runId
  if (opts.build) process.env.PGISOLATE_TEMPLATE_BUILT = JSON.stringify({ fingerprint: opts.fingerprint || '', inputs })
  return globalTeardown
}

/** Reaps what workers left (their leases are gone once they exit) and closes the engine.
 * Resolves to the number of schemas that no test released; warns when there were any. */
async function globalTeardown() {
  if (!globalEngine) return 0
  const e = globalEngine
  globalEngine = undefined
  const entries = await e.list()
  const unreleased = entries.filter((x) => x.runId === e.runId && !x.ownerAlive && x.state !== 'kept')
  await e.gc(0)
  await e.close()
  if (unreleased.length) {
    console.warn(`pgisolate: ${unreleased.length} schema(s) were not released by their tests and were reaped: ` +
      unreleased.slice(0, 5).map((x) => x.identity).join('; '))
  }
  return unreleased.length
}

function testFile(ctx) {
  const fromVitest = ctx && ctx.task && ctx.task.file && ctx.task.file.filepath
  if (fromVitest) return fromVitest
  const state = typeof expect !== 'undefined' && expect.getState ? expect.getState() : undefined
  if (state && state.testPath) return state.testPath
  return process.argv[1] || 'unknown'
}

function testName(ctx) {
  if (ctx && ctx.task && ctx.task.name) {
    // Vitest: the test's name under its describe blocks (the file itself is not a name).
    const names = []
    for (let t = ctx.task; t && t !== ctx.task.file; t = t.suite) {
      if (t.name) names.unshift(t.name)
    }
    return names.join(' > ')
  }
  if (ctx && typeof ctx.fullName === 'string') return ctx.fullName
  if (ctx && typeof ctx.name === 'string') return ctx.name
  const state = typeof expect !== 'undefined' && expect.getState ? expect.getState() : undefined
  if (state && state.currentTestName) return state.currentTestName
  throw new ConfigError('isolatedSchema(ctx): pass the test context (node:test `t`, Vitest `ctx`) outside Jest')
}

/** A fresh schema for the current test. */
async function isolatedSchema(ctx, discriminator) {
  const [e, tpl] = await Promise.all([engine(), template()])
  const schema = await e.acquire(tpl, { feature: path.relative(process.cwd(), testFile(ctx)), scenario: testName(ctx), discriminator })
  if (ctx && typeof ctx.onTestFinished === 'function') {
    ctx.onTestFinished((result) => schema.release(isFailed(ctx, result)))
  } else if (ctx && typeof ctx.after === 'function') {
    ctx.after(() => schema.release(false))
  }
  return schema
}

function isFailed(ctx, result) {
  const state = (result && result.task && result.task.result && result.task.result.state) || (ctx.task && ctx.task.result && ctx.task.result.state)
  return state === 'fail'
}

/** beforeEach/afterEach hooks giving each test a schema; `.schema` in the test. */
function useIsolatedSchema({ beforeEach, afterEach }) {
  let current
  // `...args` keeps the function's length 0: Jest treats a declared parameter as `done`.
  beforeEach(async (...args) => {
    const ctx = args[0]
    current = await isolatedSchema(ctx && (ctx.task || ctx.name) ? { task: ctx.task, name: ctx.name } : undefined)
  })
  afterEach(async () => {
    const s = current
    current = undefined
    if (s) await s.release(false)
  })
  return {
    get schema() {
      if (!current) throw new ConfigError('no schema: read .schema inside a test')
      return current
    },
  }
}

/** One schema per worker process (released by globalTeardown's gc after the worker exits). */
function workerSchema() {
  if (!workerSchemaPromise) {
    workerSchemaPromise = (async () => {
      const [e, tpl] = await Promise.all([engine(), template()])
      return e.acquire(tpl, { feature: 'worker', scenario: workerId() })
    })()
  }
  return workerSchemaPromise
}

module.exports = {
  globalSetup,
  globalTeardown,
  isolatedSchema,
  useIsolatedSchema,
  workerSchema,
  workerId,
  engine,
  template,
  setTemplate,
}
module.exports.default = globalSetup
