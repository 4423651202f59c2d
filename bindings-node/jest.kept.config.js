// scripts/kept-check.sh only: a deliberately failing Jest test whose schema must be kept.
module.exports = {
  testMatch: ['<rootDir>/test/kept/fails.jest.js'],
  globalSetup: '<rootDir>/test/jest/global-setup.js',
  globalTeardown: '<rootDir>/test/jest/global-teardown.js',
  testTimeout: 30000,
}
