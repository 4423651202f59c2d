// What `npx knex migrate:latest` reads; the tests reuse it with the URL pgisolate hands out.
const path = require('node:path')

module.exports = (connection = process.env.DATABASE_URL) => ({
  client: 'pg',
  connection,
  migrations: { directory: path.join(__dirname, 'migrations') },
  pool: { min: 0, max: 4 },
})
