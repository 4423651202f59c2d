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

/** Once per run: start the server, build the template, export the environment for workers. Returns the teardown. */
export declare function globalSetup(options?: GlobalSetupOptions): Promise<() => Promise<number>>
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
