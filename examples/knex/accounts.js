// The app code under test: register an account, place an order.
async function register(db, email) {
  const [row] = await db('accounts').insert({ email }).returning(['id', 'email'])
  return row
}

async function placeOrder(db, accountId, cents) {
  const [row] = await db('orders').insert({ account_id: accountId, cents }).returning('id')
  return row.id
}

module.exports = { register, placeOrder }
