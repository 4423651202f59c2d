exports.up = (knex) =>
  knex.schema.createTable('orders', (t) => {
    t.increments('id')
    t.uuid('account_id').notNullable().references('accounts.id').onDelete('CASCADE')
    t.integer('cents').notNullable().checkPositive()
  })
exports.down = (knex) => knex.schema.dropTable('orders')
