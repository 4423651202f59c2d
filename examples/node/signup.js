'use strict'
// The code under test: registers users and caches them in a process-wide map.
const cache = new Map()

async function register(client, cacheKey, email) {
  const key = cacheKey(`user:${email}`)
  if (cache.has(key)) return { ok: false, reason: 'exists (cached)' }
  try {
    const { rows } = await client.query('insert into users (email) values ($1) returning id', [email])
    cache.set(key, rows[0].id)
    return { ok: true, id: Number(rows[0].id) }
  } catch (e) {
    if (e.code === '23505') return { ok: false, reason: 'exists' }
    throw e
  }
}

module.exports = { register }
