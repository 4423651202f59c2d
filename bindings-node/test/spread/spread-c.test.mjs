// One of eight files, so that four workers each run some (test/spread/run.sh).
import { spreadTests } from './spread.mjs'

spreadTests()
