'use strict'
const { test, after } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { Client } = require('pg')
const pgi = require('pgisolate')
const { engine, template } = require('pgisolate/test')

after(async () => (await engine()).close())

async function query(url, sql, params) {
  const c = new Client({ connectionString: url })
  await c.connect()
  try {
    return (await c.query(sql, params)).rows
  } finally {
    await c.end()
  }
}

test('node-postgres lands in the schema (R14) and the event loop keeps running', async () => {
  const e = await engine()
  const s = await e.acquire(await template(), { feature: 'node.feature', scenario: 'r14' })
  let ticks = 0
  const timer = setInterval(() => ticks++, 1)
  try {
    const rows = await query(s.url, 'select current_schema() as s, current_setting($1) as app', ['application_name'])
    assert.deepEqual(rows[0], { s: s.name, app: `pgisolate/${s.name}` })
    assert.ok(!s.url.includes('+') && s.url.includes('%3D'))
    assert.equal(s.cacheKey('user:1'), `${s.name.slice(5)}_user:1`)
  } finally {
    assert.equal(await s.release(), false)
    assert.equal(await s.release(), false)
    clearInterval(timer)
  }
  assert.ok(ticks > 0, 'the event loop was blocked')
})

test('loginRole: each schema logs in as its own role and cannot read another', async () => {
  const e = await pgi.Engine.start({ loginRole: true, gcOnStart: false })
  try {
    const tpl = await e.template({ migrations: path.join(__dirname, '..', '..', '..', 'examples', 'migrations') })
    const s = await e.acquire(tpl, { feature: 'node.feature', scenario: 'login role' })
    const other = await (await engine()).acquire(await template(), { feature: 'node.feature', scenario: 'other' })
    assert.ok(!s.url.includes('options='), s.url)
    const rows = await query(s.url, 'select current_user as u, current_schema() as s')
    assert.equal(rows[0].s, s.name)
    assert.match(rows[0].u, /^pgir_/)
    await assert.rejects(query(s.url, `select count(*) from "${other.name}".users`), /permission denied/)
    await s.release()
    await other.release()
  } finally {
    await e.close()
  }
})

test('errors are PgIsolateError subclasses with a code', async () => {
  await assert.rejects(pgi.Engine.start({ hashLen: 99 }), (e) => e instanceof pgi.ConfigError && e.code === 'config')
  await assert.rejects(
    pgi.Engine.start({ url: 'postgres://u:hunter2@127.0.0.1:1/db' }),
    (e) => e instanceof pgi.ConnectError && e instanceof pgi.PgIsolateError && !e.message.includes('hunter2'),
  )
  const e = await engine()
  await assert.rejects(e.template({ migrations: '/nonexistent/dir' }), pgi.FileError)
  await assert.rejects(e.template({}), pgi.ConfigError)
})

test('a template built once by the caller\'s own migration', async () => {
  const e = await engine()
  const fingerprint = `node-${process.pid}-${Date.now()}`
  let calls = 0
  const build = async (url) => {
    calls++
    await query(url, 'create table widgets (id serial primary key, label text unique not null)')
  }
  const tpl = await e.template({ fingerprint, build })
  const again = await e.template({ fingerprint, build })
  assert.equal(calls, 1)
  assert.ok(tpl.builtHere && !again.builtHere && tpl.name === again.name)
  const s = await e.acquire(tpl, { feature: 'node.feature', scenario: 'widgets' })
  assert.deepEqual(await query(s.url, "insert into widgets (label) values ('x') returning id"), [{ id: 1 }])
  await s.release()
  await assert.rejects(
    e.template({ fingerprint: fingerprint + '-bad', build: () => { throw new Error('exploded') } }),
    (err) => err instanceof pgi.MigrationError && err.cause.message === 'exploded',
  )
})

test('a closed engine refuses work; close is idempotent', async () => {
  const e = await pgi.Engine.start({ gcOnStart: false })
  const tpl = await e.template({ migrations: path.join(__dirname, '..', '..', '..', 'examples', 'migrations') })
  await e.close()
  await e.close()
  await assert.rejects(e.acquire(tpl, { feature: 'f', scenario: 's' }), pgi.ClosedError)
})

test('caller builds keyed by their inputs cannot go stale; a failed build publishes nothing', async () => {
  const fs = require('node:fs')
  const os = require('node:os')
  const e = await engine()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgi-node-inputs-'))
  const file = path.join(dir, '001_gadgets.sql')
  fs.writeFileSync(file, 'create table gadgets (id int);')
  let calls = 0
  const build = async (url) => {
    calls++
    await query(url, fs.readFileSync(file, 'utf8'))
  }
  try {
    const first = await e.template({ inputs: [dir], build })
    const same = await e.template({ inputs: [dir], build })
    assert.equal(calls, 1)
    assert.equal(same.name, first.name)
    fs.writeFileSync(file, 'create table gadgets (id int, label text);')
    const changed = await e.template({ inputs: [dir], build })
    assert.equal(calls, 2)
    assert.notEqual(changed.name, first.name)
    await assert.rejects(e.template({ inputs: [path.join(dir, 'missing')], build }), pgi.FileError)
    await assert.rejects(e.template({ build }), pgi.ConfigError)
    fs.writeFileSync(file, 'select no_such_function();')
    await assert.rejects(
      e.template({ fingerprint: 'gadgets', inputs: [dir], build }),
      (err) => err instanceof pgi.MigrationError && /no_such_function/.test(err.message) && /no_such_function/.test(err.cause.message),
    )
    await assert.rejects(e.template({ fingerprint: 'gadgets', inputs: [dir], build }), pgi.MigrationError)
    assert.equal(calls, 4, 'a failed build must not be published')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('warnings reach process.emitWarning as PgIsolateWarning', async () => {
  const e = await pgi.Engine.start({ gcOnStart: false, searchPathTail: ['public'] })
  const table = `node_shadow_${process.pid}`
  const seen = []
  const listener = (w) => seen.push(w)
  process.on('warning', listener)
  try {
    const tpl = await e.template({ sql: `create table ${table} (id int)` })
    await query(e.url, `create table public.${table} (id int)`)
    const s = await e.acquire(tpl, { feature: 'node.feature', scenario: 'shadowed' })
    await s.release()
    await new Promise((r) => setImmediate(r)) // warnings are emitted on the next tick
    const w = seen.find((x) => x.name === 'PgIsolateWarning' && x.message.includes(`public.${table}`))
    assert.ok(w, `no PgIsolateWarning named public.${table}: ${seen.map((x) => x.message).join(' | ')}`)
  } finally {
    process.off('warning', listener)
    await query(e.url, `drop table if exists public.${table}`)
    await e.close()
  }
})

test('a Prisma migrations directory builds its template; prismaUrl names the schema', async () => {
  const fs = require('node:fs')
  const os = require('node:os')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgi-prisma-'))
  const write = (rel, text) => {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true })
    fs.writeFileSync(path.join(dir, rel), text)
  }
  // What `prisma migrate dev` writes (two migrations, the lock file).
  write('migration_lock.toml', 'provider = "postgresql"\n')
  write('20240101120000_init/migration.sql',
    'CREATE TABLE "User" ("id" SERIAL NOT NULL, "email" TEXT NOT NULL, CONSTRAINT "User_pkey" PRIMARY KEY ("id"));\n' +
    'CREATE UNIQUE INDEX "User_email_key" ON "User"("email");\n')
  write('20240315093000_posts/migration.sql',
    'CREATE TABLE "Post" ("id" SERIAL NOT NULL, "authorId" INTEGER NOT NULL, CONSTRAINT "Post_pkey" PRIMARY KEY ("id"));\n' +
    'ALTER TABLE "Post" ADD CONSTRAINT "Post_authorId_fkey" FOREIGN KEY ("authorId") REFERENCES "User"("id") ON DELETE RESTRICT ON UPDATE CASCADE;\n')
  const e = await engine()
  try {
    const tpl = await e.template({ migrations: dir })
    const s = await e.acquire(tpl, { feature: 'prisma', scenario: 'layout' })
    try {
      const rows = await query(s.url, `insert into "User" (email) values ('a@example.com') returning id`)
      await query(s.url, `insert into "Post" ("authorId") values (${rows[0].id})`)
      const u = new URL(s.prismaUrl)
      assert.equal(u.searchParams.get('schema'), s.name)
    } finally {
      await s.release()
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('the pgisolate bin runs a command that can write to its stdout and stderr', () => {
  const { spawnSync } = require('node:child_process')
  const bin = path.join(__dirname, '..', '..', 'bin', 'pgisolate.js')
  const r = spawnSync(process.execPath, [bin, 'run', '--', 'sh', '-c', 'echo out; echo err >&2'], { encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  assert.match(r.stdout, /^out$/m)
  assert.match(r.stderr, /^err$/m)
  const v = spawnSync(process.execPath, [bin, '--version'], { encoding: 'utf8' })
  assert.equal(v.stdout.trim(), `pgisolate ${pgi.version()}`)
})

const ERRORS = require('../../../tests/vectors/errors.json')

test('every error kind has its class, number and name', () => {
  for (const k of ERRORS.kinds) {
    const Cls = pgi[k.node]
    assert.ok(Cls && Cls.prototype instanceof pgi.PgIsolateError, k.node)
    assert.equal(Cls.kind, k.number, k.node)
    assert.equal(Cls.code, k.code, k.node)
    const e = new Cls('x')
    assert.equal(e.kind, k.number)
    assert.equal(e.sqlstate, null)
  }
})

function withUser(url, user) {
  const [scheme, rest] = url.split('://')
  const slash = rest.indexOf('/') < 0 ? rest.length : rest.indexOf('/')
  const host = rest.slice(0, slash).split('@').pop()
  return `${scheme}://${user}@${host}${rest.slice(slash)}`
}

for (const f of ERRORS.failures) {
  test(`${f.name} gives its kind and the server's SQLSTATE`, async () => {
    const e = await engine()
    const kind = ERRORS.kinds.find((k) => k.number === f.kind)
    let holder
    try {
      let err
      try {
        if (f.user) {
          await pgi.Engine.start({ url: withUser(e.url, f.user), gcOnStart: false })
        } else {
          if (f.lock) {
            holder = new Client({ connectionString: e.url })
            await holder.connect()
            await holder.query('select pg_advisory_lock($1)', [f.lock])
          }
          await e.template({ sql: f.sql })
        }
      } catch (caught) {
        err = caught
      }
      assert.ok(err instanceof pgi[kind.node], `${f.name}: ${err}`)
      assert.equal(err.kind, f.kind)
      assert.equal(err.code, kind.code)
      assert.equal(err.sqlstate, f.sqlstate, String(err))
    } finally {
      if (holder) await holder.end()
    }
  })
}

test('a build that reaches outside its schema is refused, naming each object, and leaves nothing', async () => {
  const e = await pgi.Engine.start({ gcOnStart: false })
  try {
    const audit = path.join(__dirname, '..', '..', '..', 'tests', 'outside', 'audit')
    await assert.rejects(e.template({ migrations: audit }), (err) => {
      assert.ok(err instanceof pgi.MigrationError, String(err))
      for (const what of [
        'schema audit: created by the build; dropped',
        'table audit.events: created by the build; dropped',
        'table public.settings: created by the build; dropped',
        'function audit.log_user(): created by the build; dropped',
        'PGISOLATE_ISOLATION=database',
      ]) {
        assert.ok(err.message.includes(what), `${what} missing from: ${err.message}`)
      }
      return true
    })
    const u = `${process.pid}_${Date.now()}`
    const build = async (url) => {
      await query(url, 'create table users (id int)')
      await query(url, `create schema audit_${u}`)
    }
    await assert.rejects(
      e.template({ fingerprint: `node-outside-${u}`, build }),
      (err) => err instanceof pgi.MigrationError && err.message.includes(`schema audit_${u}: created by the build; dropped`),
    )
    const left = await query(
      e.url,
      "select nspname from pg_namespace where nspname in ('audit', $1) union all select 'public.settings' where to_regclass('public.settings') is not null",
      [`audit_${u}`],
    )
    assert.deepEqual(left, [])
  } finally {
    await e.close()
  }
})

test('isolation: database gives the audit app a database per test', async () => {
  const e = await pgi.Engine.start({ isolation: 'database', gcOnStart: false })
  try {
    const audit = path.join(__dirname, '..', '..', '..', 'tests', 'outside', 'audit')
    const tpl = await e.template({ migrations: audit })
    const seen = await Promise.all(
      [0, 1, 2, 3, 4, 5].map(async (i) => {
        const db = await e.acquire(tpl, { feature: 'node.database', scenario: `registers alice ${i}` })
        assert.ok(!db.url.includes('search_path'), db.url)
        const c = new Client({ connectionString: db.url })
        await c.connect()
        await c.query("insert into users (email) values ('alice@example.com')")
        await c.query("insert into public.settings (k, v) values ('node', $1)", [String(i)])
        const row = (
          await c.query(
            'select current_database() as db, (select count(*)::int from audit.events) as audit, ' +
              '(select string_agg(v, \',\') from public.settings) as settings',
          )
        ).rows[0]
        await c.end()
        const name = db.name
        await db.release()
        return { name, ...row, i }
      }),
    )
    for (const s of seen) {
      assert.equal(s.db, s.name)
      assert.equal(s.audit, 1, `${s.name}: its own audit row`)
      assert.equal(s.settings, String(s.i), `${s.name}: its own public.settings`)
    }
    const admin = new Client({ connectionString: e.url })
    await admin.connect()
    const left = (
      await admin.query('select count(*)::int as n from pg_database where datname = any($1)', [seen.map((s) => s.name)])
    ).rows[0].n
    await admin.end()
    assert.equal(left, 0, 'released databases are dropped')
  } finally {
    await e.close()
  }
})
