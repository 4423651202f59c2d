'use strict'
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const pgi = require('pgisolate')

const dir = path.join(__dirname, '..', '..', '..', 'tests', 'vectors')
const cases = (name) => {
  const c = JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8')).cases
  assert.ok(c.length > 0, name)
  return c
}
const text = (v) => (typeof v === 'string' ? v : v.repeat.repeat(v.times))

test('naming vectors', () => {
  for (const c of cases('naming.json')) {
    const id = { feature: text(c.feature), scenario: text(c.scenario) }
    if ('discriminator' in c) id.discriminator = text(c.discriminator)
    if (c.error) {
      assert.throws(() => pgi.schemaName(c.prefix, c.hash_len, id), (e) => e instanceof pgi.ConfigError && e.code === 'config', c.name)
      continue
    }
    const name = pgi.schemaName(c.prefix, c.hash_len, id)
    assert.equal(name, c.expected_schema, c.name)
    assert.equal(pgi.cachePrefix(c.prefix, name), c.expected_cache_prefix, c.name)
  }
})

test('conninfo, prisma and cache key vectors', () => {
  for (const c of cases('conninfo.json')) {
    if (c.error) {
      assert.throws(() => pgi.scopedUrl(c.input, c.schema, c.tail), pgi.ConnInfoError, c.name)
    } else {
      assert.equal(pgi.scopedUrl(c.input, c.schema, c.tail), c.expected, c.name)
    }
  }
  for (const c of cases('prisma.json')) {
    if (c.error) assert.throws(() => pgi.prismaUrl(c.input, c.schema), pgi.ConnInfoError)
    else assert.equal(pgi.prismaUrl(c.input, c.schema), c.expected)
  }
  for (const c of cases('cache_key.json')) assert.equal(pgi.cacheKey(c.cache_prefix, c.key), c.expected)
})

test('config vectors: every setting by key, through checkSetting', () => {
  for (const c of cases('config.json')) {
    if (c.ok) {
      pgi.checkSetting(c.key, c.value)
      continue
    }
    const Cls = c.code === 'conninfo' ? pgi.ConnInfoError : pgi.ConfigError
    assert.throws(() => pgi.checkSetting(c.key, c.value), (e) => e instanceof Cls && e.message.includes(c.error), `${c.key}=${c.value}`)
  }
  // JavaScript values and camelCase keys, as Engine.start takes them.
  pgi.checkSetting('gcGrace', 0.5)
  pgi.checkSetting('loginRole', true)
  pgi.checkSetting('extensions', ['uuid-ossp', 'pgcrypto'])
  assert.throws(() => pgi.checkSetting('poolSise', 3), /unknown setting/)
})

// The types and classes come from the core's tables: index.d.ts must say the same.
const dts = fs.readFileSync(path.join(__dirname, '..', '..', 'index.d.ts'), 'utf8')
const camel = (k) => k.replace(/_([a-z])/g, (_, c) => c.toUpperCase())

test("EngineOptions in index.d.ts names every setting of the core's table, no more", () => {
  const block = dts.match(/export interface EngineOptions \{([\s\S]*?)\n\}/)
  assert.ok(block, 'index.d.ts has no EngineOptions interface')
  const typed = [...block[1].matchAll(/^ {2}(\w+)\?:/gm)].map((m) => m[1]).sort()
  const keys = pgi.settings().map((s) => camel(s.key)).sort()
  assert.ok(keys.length > 20, `the core lists ${keys.length} settings`)
  assert.deepEqual(typed, keys)
})

test("error classes are the core's kinds, and index.d.ts declares each, no more", () => {
  const kinds = pgi.errorKinds()
  const vectors = JSON.parse(fs.readFileSync(path.join(dir, 'errors.json'), 'utf8')).kinds
  assert.deepEqual(kinds.map((k) => k.name).sort(), vectors.map((k) => k.node).sort())
  for (const k of kinds) {
    const cls = pgi[k.name]
    assert.equal(cls.name, k.name)
    assert.ok(new cls('x') instanceof pgi.PgIsolateError, k.name)
    assert.equal(cls.kind, k.kind)
    if (k.parent != null) {
      const parent = pgi[kinds.find((p) => p.kind === k.parent).name]
      assert.ok(new cls('x') instanceof parent, `${k.name} extends ${parent.name}`)
    }
  }
  const declared = [...dts.matchAll(/^export declare class (\w+) extends (?!Error\b)/gm)].map((m) => m[1]).sort()
  assert.deepEqual(declared, kinds.map((k) => k.name).sort())
})
