import type { Engine, Schema, Template } from './index'

export interface GlobalSetupOptions {
  /** Server URL; default PGISOLATE_DATABASE_URL, else the embedded server. */
  url?: string
  /** Directory of *.sql migrations (exported to workers as PGISOLATE_MIGRATIONS). */
  migrations?: string
  /**
   * Your migration tool (Knex, Prisma, …): `build(url)` migrates the database at `url`, once per
   * server; workers reuse the template. Give `inputs` (the migration files or directories,
   * hashed so that a changed migration builds a new template), `fingerprint` (a version you
   * bump by hand), or both.
   */
  build?: (url: string) => unknown | Promise<unknown>
  inputs?: string[]
  fingerprint?: string
}

/** What globalSetup provides to Vitest's workers (`inject('pgisolate')`). */
export interface Provided {
  url: string
  runId: string
  migrations?: string
  templateBuilt?: string
}

/**
 * Once per run: start the server, build the template, hand the workers where they are.
 * Returns the teardown. Called by Vitest with its project (`export default (project) =>
 * globalSetup(project, options)`), the workers get them through provide/inject; otherwise
 * (Jest, a script of yours) through the environment.
 */
export declare function globalSetup(options?: GlobalSetupOptions): Promise<() => Promise<number>>
export declare function globalSetup(
  project: { provide: (key: 'pgisolate', value: Provided) => void },
  options?: GlobalSetupOptions,
): Promise<() => Promise<number>>
/**
 * node:test without a wrapper: call from a module preloaded with `node --import ./setup.mjs
 * --test` (`--import pgisolate/register` does it with PGISOLATE_MIGRATIONS or ./migrations).
 * Sets the run up in the runner's process, tears it down at its exit; nothing in the test
 * files' processes.
 */
export declare function setupRun(options?: GlobalSetupOptions): Promise<void>
export default globalSetup
export declare function globalTeardown(): Promise<number>
/** A fresh schema for the current test; released when the test finishes when `ctx` is node:test's `t` or Vitest's context. */
export declare function isolatedSchema(ctx?: unknown, discriminator?: string): Promise<Schema>
export declare function useIsolatedSchema(hooks: {
  beforeEach: (fn: (ctx?: any) => unknown) => unknown
  afterEach: (fn: (ctx?: any) => unknown) => unknown
}): { readonly schema: Schema }
export declare function workerSchema(): Promise<Schema>
export declare function workerId(): string
export declare function engine(): Promise<Engine>
export declare function template(): Promise<Template>
export declare function setTemplate(
  source: { migrations: string } | { fingerprint?: string; inputs?: string[]; build: (url: string) => unknown },
): void
