'use strict'
// The recipe: Knex builds the template once per server, keyed by the migrations' contents.
const path = require('node:path')
const knex = require('knex')
const config = require('../knexfile')

const migrations = path.join(__dirname, '..', 'migrations')

/** `knex migrate:latest` against `url` (the build URL: its search_path is the build schema). */
async function migrateLatest(url) {
  const db = knex(config(url))
  try {
    await db.migrate.latest()
  } finally {
    await db.destroy()
  }
}

module.exports = { migrations, migrateLatest, template: { inputs: [migrations, require.resolve('../knexfile')], build: migrateLatest } }
