#!/usr/bin/env node
'use strict'
// The pgisolate command (ls, gc, run, url, templates, demo, bench): the same program as the
// Rust binary and the wheel's console script, carried by the native addon.
const { cliMain } = require('../native.js')

process.exitCode = cliMain(['pgisolate', ...process.argv.slice(2)])
