'use strict'
// Prints the version of the server `pgisolate run` started (PGISOLATE_DATABASE_URL).
const { Client } = require('pg')

;(async () => {
  const c = new Client({ connectionString: process.env.PGISOLATE_DATABASE_URL })
  await c.connect()
  const { rows } = await c.query('show server_version')
  console.log(`server_version ${rows[0].server_version}`)
  await c.end()
})()
