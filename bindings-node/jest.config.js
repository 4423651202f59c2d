module.exports = {
  testMatch: ['<rootDir>/test/jest/**/*.test.js'],
  globalSetup: '<rootDir>/test/jest/global-setup.js',
  globalTeardown: '<rootDir>/test/jest/global-teardown.js',
  maxWorkers: 2,
  testTimeout: 30000,
}
