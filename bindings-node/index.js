'use strict'
// The public API: the native classes with errors mapped to PgIsolateError subclasses, and
// engine.template({fingerprint, build}) for migration tools driven from JavaScript.

const native = require('./native.js')

class PgIsolateError extends Error {
  constructor(message, code, options) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}
class ConfigError extends PgIsolateError {}
class ConnInfoError extends PgIsolateError {}
class ServerError extends PgIsolateError {}
class BinariesNotFoundError extends ServerError {}
class ConnectError extends PgIsolateError {}
class DatabaseError extends PgIsolateError {}
class MigrationError extends PgIsolateError {}
class OperationTimeoutError extends PgIsolateError {}
class NameExhaustedError extends PgIsolateError {}
class RefusedError extends PgIsolateError {}
class ClosedError extends PgIsolateError {}
class FileError extends PgIsolateError {}

const CLASSES = {
  config: ConfigError,
  conninfo: ConnInfoError,
  binaries: BinariesNotFoundError,
  server: ServerError,
  connect: ConnectError,
  db: DatabaseError,
  migration: MigrationError,
  timeout: OperationTimeoutError,
  name: NameExhaustedError,
  refused: RefusedError,
  closed: ClosedError,
  io: FileError,
}

function convert(e) {
  const m = e && typeof e.message === 'string' && /^\[pgisolate:(\w+)\] ([\s\S]*)$/.exec(e.message)
  if (!m) return e
  const Cls = CLASSES[m[1]] || PgIsolateError
  return new Cls(m[2], m[1], { cause: e })
}

function guard(fn) {
  return function guarded(...args) {
    try {
      const r = fn.apply(this, args)
      return r && typeof r.then === 'function'
        ? r.catch((e) => {
            throw convert(e)
          })
        : r
    } catch (e) {
      throw convert(e)
    }
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

/** The engine; `Engine.start(options)` resolves to one (native methods, mapped errors). */
class Engine extends native.Engine {
  static async start(options) {
    const engine = await nativeStart.call(native.Engine, options)
    Object.setPrototypeOf(engine, Engine.prototype)
    return engine
  }
}

const nativeTemplate = native.Engine.prototype.template
Object.defineProperty(native.Engine.prototype, 'template', {
  configurable: true,
  writable: true,
  value: async function template(source) {
    if (!source || typeof source.build !== 'function') return nativeTemplate.call(this, source)
    if (typeof source.fingerprint !== 'string' || !source.fingerprint) {
      throw new ConfigError('template({build}) needs a fingerprint: a string naming the migrations version', 'config')
    }
    const begun = await this.templateBegin(source.fingerprint)
    const ready = begun.template
    if (ready) return ready
    const build = begun.build
    try {
      await source.build(build.url)
    } catch (e) {
      await build.abort()
      throw new MigrationError(`template ${JSON.stringify(source.fingerprint)}: ${e && e.message}`, 'migration', { cause: e })
    }
    return build.commit()
  },
})

const pure = {}
for (const name of ['schemaName', 'cachePrefix', 'cacheKey', 'scopedUrl', 'prismaUrl', 'redact', 'version']) {
  pure[name] = guard(native[name])
}

module.exports = {
  Engine,
  Template: native.Template,
  TemplateBuild: native.TemplateBuild,
  Schema: native.Schema,
  ...pure,
  PgIsolateError,
  ConfigError,
  ConnInfoError,
  ServerError,
  BinariesNotFoundError,
  ConnectError,
  DatabaseError,
  MigrationError,
  OperationTimeoutError,
  NameExhaustedError,
  RefusedError,
  ClosedError,
  FileError,
}
