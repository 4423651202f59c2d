const { globalTeardown } = require('pgisolate/test')

module.exports = async () => {
  const unreleased = await globalTeardown()
  if (unreleased) throw new Error(`${unreleased} schema(s) were not released by their tests`)
}
