'use strict'
// pgisolate/test: one schema per test for node:test, Vitest and Jest.
//
//   globalSetup()     once per run, in the runner's main process: starts (or reuses) the server,
//                     builds the template, and hands the workers where to find them: through
//                     Vitest's provide/inject when Vitest calls it (its project's provide), else
//                     environment variables (PGISOLATE_DATABASE_URL, PGISOLATE_RUN_ID,
//                     PGISOLATE_MIGRATIONS) that node:test's and Jest's workers inherit. Returns
//                     the teardown (Vitest's globalSetup contract); globalTeardown() is the same.
//                     node:test without a wrapper: `node --import pgisolate/register --test`.
//   isolatedSchema(ctx?)  in a test: a fresh schema named from the test file and test name.
//                     With node:test's `t` or Vitest's test context it is released when the
//                     test finishes; otherwise call `await schema.release()`. node:test runs
//                     t.after hooks in the order they were added: add the hook that closes your
//                     connections before calling isolatedSchema(t) (release terminates leaked
//                     sessions, which node-postgres reports as an error event).
//   useIsolatedSchema({beforeEach, afterEach})  hooks for runners without a context (Jest).
//   workerSchema()    one schema per worker process, for suites that reset data themselves.

const path = require('node:path')
const { Engine, ConfigError, keptLine: nativeKeptLine } = require('./index.js')

let globalEngine
/** With several servers listed: the run's engines on the other servers (gc covers each). */
let otherEngines = []
let enginePromise
let templatePromise
let templateSource
let workerSchemaPromise
let providedPromise
/** Schemas isolatedSchema handed out in this process (setupRun checks they were released). */
const handedOut = new Set()

/** What globalSetup handed Vitest's workers (provide/inject), or undefined elsewhere. */
function provided() {
  if (!providedPromise) {
    providedPromise = process.env.VITEST
      ? import('vitest').then((v) => (typeof v.inject === 'function' ? v.inject('pgisolate') : undefined)).catch(() => undefined)
      : Promise.resolve(undefined)
  }
  return providedPromise
}

function workerId() {
  return process.env.VITEST_POOL_ID || process.env.JEST_WORKER_ID || process.env.NODE_TEST_WORKER_ID || String(process.pid)
}

function sourceFromEnv(state = {}) {
  if (templateSource) return templateSource
  const built = state.templateBuilt || process.env.PGISOLATE_TEMPLATE_BUILT
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
  const dir = state.migrations || process.env.PGISOLATE_MIGRATIONS
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

/** This process's engine (started on first use, on the server globalSetup provided, else the
 * one the environment names). */
function engine() {
  if (!enginePromise) {
    enginePromise = provided().then((state) =>
      Engine.start({ gcOnStart: false, url: state && state.url, runId: state && state.runId }),
    )
  }
  return enginePromise
}

/** This process's template (built once per server; other processes reuse it). */
function template() {
  if (!templatePromise) {
    templatePromise = (async () => (await engine()).template(sourceFromEnv((await provided()) || {})))()
    templatePromise.catch(() => {
      templatePromise = undefined
    })
  }
  return templatePromise
}

/**
 * Once per run. `globalSetup(options)` from a setup file of yours; `globalSetup(project,
 * options)` when Vitest calls it with its project (`export default (project) =>
 * globalSetup(project, {migrations})`, or `globalSetup: ['pgisolate/test']` with
 * PGISOLATE_MIGRATIONS set): the workers then get the server and template through
 * `project.provide` / `inject('pgisolate')` instead of the environment.
 */
async function globalSetup(first, second) {
  const project = first && typeof first === 'object' && typeof first.provide === 'function' ? first : undefined
  const candidate = project ? second : first
  // Vitest 1-2 pass an object with `config` and no provide: not options.
  const opts = candidate && typeof candidate === 'object' && !('config' in candidate) ? candidate : {}
  const migrations = opts.migrations ? path.resolve(opts.migrations) : process.env.PGISOLATE_MIGRATIONS
  const inputs = (opts.inputs || []).map((p) => path.resolve(p))
  if (opts.build) setTemplate({ fingerprint: opts.fingerprint, inputs, build: opts.build })
  // Several servers listed: an engine (and the template) on each, and the workers get the
  // whole list, each taking its own by its worker id (VITEST_POOL_ID, JEST_WORKER_ID: server N
  // modulo their count). One server: its URL (the embedded one's when none is configured).
  const configured = opts.url || process.env.PGISOLATE_DATABASE_URL
  const servers = serversOf(configured)
  const spread = servers.length > 1
  globalEngine = await Engine.start(spread ? { url: configured, worker: '0' } : { url: opts.url })
  otherEngines = spread
    ? await Promise.all(
        servers.slice(1).map((_, i) => Engine.start({ url: configured, worker: String(i + 1), runId: globalEngine.runId })),
      )
    : []
  await Promise.all([globalEngine, ...otherEngines].map((e) => e.template(sourceFromEnv({ migrations }))))
  const templateBuilt = opts.build ? JSON.stringify({ fingerprint: opts.fingerprint || '', inputs }) : undefined
  // The core's hand-over: the server list (several) or the one server's URL, and the run id.
  const env = globalEngine.workerEnv()
  if (project) {
    project.provide('pgisolate', {
      url: env.PGISOLATE_DATABASE_URL,
      runId: env.PGISOLATE_RUN_ID,
      migrations,
      templateBuilt,
    })
  } else {
    if (migrations) process.env.PGISOLATE_MIGRATIONS = migrations
    Object.assign(process.env, env)
    if (templateBuilt) process.env.PGISOLATE_TEMPLATE_BUILT = templateBuilt
  }
  return globalTeardown
}

/**
 * node:test without a wrapper script: call it from a module preloaded with `node --import
 * ./setup.mjs --test` (`--import pgisolate/register` does it with the migrations in
 * PGISOLATE_MIGRATIONS, else ./migrations). Node 20 runs a preload only in the test files'
 * processes: each sets the template source (the first to need the template builds it, once
 * per server; the others wait for it and reuse it), and when it exits it closes its engine
 * and fails the run if a test left a schema unreleased. Where the preload also runs in the
 * runner's process (newer Node, or a plain script), that process runs globalSetup(options)
 * first and the teardown at its exit.
 */
async function setupRun(options = {}) {
  if (process.env.NODE_TEST_CONTEXT) {
    const built = process.env.PGISOLATE_TEMPLATE_BUILT || process.env.PGISOLATE_MIGRATIONS
    if (!built) {
      setTemplate(options.build ? options : { migrations: path.resolve(options.migrations || 'migrations') })
    }
    let done = false
    process.on('beforeExit', async () => {
      if (done) return
      done = true
      const left = [...handedOut].filter((s) => !s.released)
      for (const s of left) await s.release(false)
      if (enginePromise) await (await enginePromise).close()
      if (left.length) {
        console.error(`pgisolate: ${left.length} schema(s) were not released by their tests: ${left.map((s) => s.name).join(', ')}`)
        if (!process.exitCode) process.exitCode = 1
      }
    })
    return
  }
  if (process.env.PGISOLATE_RUN_SET_UP) return
  process.env.PGISOLATE_RUN_SET_UP = '1'
  const teardown = await globalSetup(options)
  let done = false
  process.on('beforeExit', async () => {
    if (done) return
    done = true
    const unreleased = await teardown()
    if (unreleased && !process.exitCode) process.exitCode = 1
  })
}

/** Reaps what workers left (their leases are gone once they exit) and closes the engine.
 * Resolves to the number of schemas that no test released; warns when there were any. */
async function globalTeardown() {
  if (!globalEngine) return 0
  const engines = [globalEngine, ...otherEngines]
  globalEngine = undefined
  otherEngines = []
  const unreleased = []
  for (const e of engines) {
    // The core's end of run: what no test released, then reaped (workers are gone).
    unreleased.push(...(await e.endOfRun(true)).unreleased)
    await e.close()
  }
  if (unreleased.length) {
    console.warn(`pgisolate: ${unreleased.length} schema(s) were not released by their tests and were reaped: ` +
      unreleased.slice(0, 5).map((x) => x.identity).join('; '))
  }
  return unreleased.length
}

/** The servers a URL setting lists (several postgres:// URLs separated by spaces), as the
 * core reads it. */
function serversOf(url) {
  if (!url) return []
  const parts = url.split(/\s+/).filter(Boolean)
  const isUrl = (p) => p.startsWith('postgres://') || p.startsWith('postgresql://') || p.includes('+psycopg')
  return parts.length > 1 && parts.every(isUrl) ? parts : [url.trim()]
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
  handedOut.add(schema)
  if (ctx && typeof ctx.onTestFinished === 'function') {
    ctx.onTestFinished(async (result) => {
      if (await schema.release(isFailed(ctx, result))) console.log(keptLine(schema, testName(ctx)))
    })
  } else if (ctx && typeof ctx.after === 'function') {
    // node:test: in an after hook, `t.passed` is false once the test failed.
    ctx.after(async () => {
      if (await schema.release(ctx.passed === false)) console.log(keptLine(schema, testName(ctx)))
    })
  }
  return schema
}

function jestTestName() {
  const state = typeof expect !== 'undefined' && expect.getState ? expect.getState() : undefined
  return state && state.currentTestName
}

/** Whether the running Jest test has failed so far (jest-circus keeps its state on the global;
 * false when it cannot tell). */
function currentTestFailed() {
  const key = Object.getOwnPropertySymbols(globalThis).find((k) => k.description === 'JEST_STATE_SYMBOL')
  const state = key && globalThis[key]
  const running = state && state.currentlyRunningTest
  return Boolean(running && Array.isArray(running.errors) && running.errors.length > 0)
}

/** The line every runner prints for a kept schema: where it is and the command that opens it. */
function keptLine(schema, what) {
  return nativeKeptLine(schema.name, what, schema.url)
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
    if (s && (await s.release(currentTestFailed()))) console.log(keptLine(s, jestTestName() || s.name))
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
  setupRun,
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
