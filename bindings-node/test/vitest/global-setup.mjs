import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { globalSetup } from 'pgisolate/test'

const here = path.dirname(fileURLToPath(import.meta.url))

export default function setup() {
  return globalSetup({ migrations: path.join(here, '..', '..', '..', 'examples', 'migrations') })
}
