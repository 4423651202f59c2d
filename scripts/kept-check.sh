#!/usr/bin/env bash
# A deliberately failing test in each language (Node: Vitest, node:test and Jest), with
# PGISOLATE_KEEP=failed, on the embedded server: each run prints
# "pgisolate: kept schema <name> (…); open it with: psql '<url>'". After every run has ended
# (and the keeper's few idle seconds have passed), each printed psql command must open its
# schema and see the test's row; then `pgisolate gc --kept` drops them and the server stops
# (check-clean verifies).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=${1:-target/debug/pgisolate}
export PGISOLATE_KEEP=failed
unset PGISOLATE_DATABASE_URL
psql=$(command -v psql || ls -d /usr/lib/postgresql/*/bin/psql | sort -V | tail -1)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

expect_failure() { # name, command…
  local name=$1; shift
  if "$@" >"$out/$name.log" 2>&1; then
    cat "$out/$name.log"; echo "kept-check: the deliberately failing $name test passed" >&2; exit 1
  fi
  grep -o "pgisolate: kept schema .*" "$out/$name.log" | head -1 > "$out/$name.line" || true
  if ! [ -s "$out/$name.line" ]; then
    tail -30 "$out/$name.log"; echo "kept-check: $name printed no kept-schema line" >&2; exit 1
  fi
  echo "kept-check: $name: $(cut -c1-80 "$out/$name.line")…"
}

expect_failure rust cargo test -q -p pgisolate-example-cargo-test --test many -- --ignored --exact deliberately_fails
expect_failure go sh -c 'cd bindings-go/pgisolatetest && PGISOLATE_HELPER_FAIL=1 go test -count=1 -run "^TestDeliberateFailure$" -v .'
mkdir -p "$out/py"
cat > "$out/py/test_fails.py" <<'PY'
import psycopg

def test_deliberately_fails(isolated_schema):
    with psycopg.connect(isolated_schema.url) as conn:
        conn.execute("insert into users (email) values ('same@example.com')")
    assert False, "deliberate failure: the schema must be kept"
PY
expect_failure python sh -c "cd '$out/py' && '$root/.venv/bin/python' -m pytest -q -p no:cacheprovider --pgisolate-migrations='$root/examples/migrations' test_fails.py"
expect_failure vitest sh -c 'cd bindings-node && npx vitest run --config vitest.kept.config.mjs'
expect_failure node-test sh -c 'cd bindings-node && node --import pgisolate/register --test test/kept/fails.node.js'
expect_failure jest sh -c 'cd bindings-node && npx jest --config jest.kept.config.js'

# Every run has ended: only the kept schemas hold the server up now.
sleep 5
for lang in rust go python vitest node-test jest; do
  line=$(cat "$out/$lang.line")
  name=$(sed -E 's/^pgisolate: kept schema ([^ ]+) .*/\1/' <<<"$line")
  url=$(sed -E "s/.*open it with: psql '(.*)'$/\1/" <<<"$line")
  got=$("$psql" "$url" -XAtc "select current_schema() || ' ' || count(*) from users")
  if [ "$got" != "$name 1" ]; then
    echo "kept-check: $lang: psql on the printed URL gave '$got', want '$name 1'" >&2; exit 1
  fi
  echo "kept-check: $lang: psql opened $name after the run ended (1 row)"
done
"$bin" gc --kept --grace 0
