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
