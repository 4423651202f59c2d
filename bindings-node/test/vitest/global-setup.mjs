import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { globalSetup } from 'pgisolate/test'

const here = path.dirname(fileURLToPath(import.meta.url))

// Vitest passes its project: the workers get the server and template through provide/inject.
export default function setup(project) {
  return globalSetup(project, { migrations: path.join(here, '..', '..', '..', 'examples', 'migrations') })
}
