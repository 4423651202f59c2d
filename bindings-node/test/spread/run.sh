#!/usr/bin/env bash
# Vitest workers spread over two servers listed in PGISOLATE_DATABASE_URL (issue 25): 8 files
# of 4 tests on 4 workers; every test runs, each worker on one server, both servers used, one
# template on each, nothing left on either. Servers: scripts/pg-private.sh, stopped at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
node_dir=$(cd "$here/../.." && pwd)
root=$(cd "$node_dir/.." && pwd)
work=$(mktemp -d)
chmod 755 "$work"
cleanup() {
  for d in "$work"/s*; do [ -d "$d" ] && "$root/scripts/pg-private.sh" stop "$d"; done
  rm -rf "$work"
}
trap cleanup EXIT
u1=$("$root/scripts/pg-private.sh" start "$work/s1")
u2=$("$root/scripts/pg-private.sh" start "$work/s2")
cd "$node_dir"
NO_COLOR=1 FORCE_COLOR=0 SPREAD_LOG="$work/spread" PGISOLATE_DATABASE_URL="$u1 $u2" npx vitest run -c vitest.spread.config.mjs 2>&1 | tee "$work/out"
sed -E 's/\x1b\[[0-9;]*m//g' "$work/out" | grep -Eq "Tests +32 passed" || { echo "spread: FAILED: not 32 tests passed" >&2; exit 1; }
node - "$work/spread" "$u1" "$u2" <<'EOF'
const fs = require('node:fs')
const pg = require('pg')
const [log, ...urls] = process.argv.slice(2)
const seen = new Map()
for (const line of fs.readFileSync(log, 'utf8').trim().split('\n')) {
  const [worker, port] = line.split(' ')
  if (!seen.has(worker)) seen.set(worker, new Set())
  seen.get(worker).add(port)
}
const ports = new Set([...seen.values()].flatMap((s) => [...s]))
for (const [w, ps] of [...seen].sort()) console.log(`worker ${w}: server port ${[...ps].join(' ')}`)
const fail = (m) => { console.error(`spread: FAILED: ${m}`); process.exit(1) }
if ([...seen.values()].some((s) => s.size !== 1)) fail('a worker used two servers')
if (ports.size !== 2) fail(`tests ran on ${ports.size} server(s), not both`)
;(async () => {
  for (const url of urls) {
    const c = new pg.Client({ connectionString: url })
    await c.connect()
    const t = (await c.query('select count(*)::int as n from pgisolate.templates')).rows[0].n
    const left = (await c.query(
      "select count(*)::int as n from pg_namespace where nspname not in ('public', 'pgisolate', 'information_schema') " +
        "and nspname not like 'pg\\_%' and nspname not like 'tpl\\_%'")).rows[0].n
    const live = (await c.query("select count(*)::int as n from pgisolate.leases where state <> 'released'")).rows[0].n
    await c.end()
    if (t !== 1) fail(`${t} templates on ${url}`)
    if (left || live) fail(`left on ${url}: ${left} schemas, ${live} registry rows`)
  }
  console.log('spread: each worker on one server, both servers used, one template on each, nothing left')
})().catch((e) => fail(e.message))
EOF
