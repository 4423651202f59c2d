import { collide } from './collide.mjs'

// Two files, so that Vitest runs them in two workers.
collide('file a')
