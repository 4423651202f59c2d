// Two files, so that Jest runs them in two workers.
require('./collide.js')('jest file a')
