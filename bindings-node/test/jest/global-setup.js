const path = require('node:path')
const { globalSetup } = require('pgisolate/test')

module.exports = async () => {
  await globalSetup({ migrations: path.join(__dirname, '..', '..', '..', 'examples', 'migrations') })
}
