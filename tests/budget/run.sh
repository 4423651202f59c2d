#!/usr/bin/env bash
# The connection budget against servers of few slots (issue 25), with the real wheel and
# pytest-xdist: 96 tests, each holding a connection of its own for 50 ms.
#   1. max_connections = 100 (the default), pytest -n 24: all pass; prints the peak of
#      pgisolate's own connections (the target is at most 2 per worker).
#   2. max_connections = 20, pytest -n 12: passes, or fails with the budget's error (naming
#      max_connections) and no test on "too many clients already"; nothing left.
#   3. Two runs of pytest -n 12 at once on one default server: both pass.
#   4. Two servers listed in PGISOLATE_DATABASE_URL, pytest -n 4: tests run on both, each
#      worker on one, one template on each, nothing left on either.
# Each server is private (scripts/pg-private.sh) and stopped at the end; each case ends with
# the server holding no pgisolate schema but the templates.
#   tests/budget/run.sh [PYTHON]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=${1:-$root/.venv/bin/python}
work=$(mktemp -d)
chmod 755 "$work" # the server runs as postgres when we are root
cleanup() {
  for d in "$work"/s*; do [ -d "$d" ] && "$root/scripts/pg-private.sh" stop "$d"; done
  rm -rf "$work"
}
trap cleanup EXIT

start() { # DIR max_connections -> URL
  "$root/scripts/pg-private.sh" start "$1" -c max_connections="$2" || { cat "$1"/*.log >&2; exit 1; }
}

# Runs pytest -n N on URL with the sampler; OUT gets pytest's output and the sampler's peak.
run() { # URL N OUT
  local url=$1 n=$2 out=$3
  (cd "$here/suite" && PGISOLATE_DATABASE_URL=$url "$py" -m pytest -q --color=no -n "$n" -p no:randomly . >"$out" 2>&1) && rc=0 || rc=$?
  echo "$rc" >"$out.rc"
}

# The sampler runs in the background of this shell ($sampler) until stop_sample.
sample() { "$py" "$here/sample.py" "$1" >"$2" & sampler=$!; }
stop_sample() { kill -TERM "$sampler"; wait "$sampler" || true; }

# Nothing of pgisolate's left but the templates (and the registry), no connection of its own.
leftovers() { # URL
  "$py" - "$1" <<'EOF'
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as c:
    left = c.execute(
        "select string_agg(nspname, ' ') from pg_namespace where nspname not in "
        "('public', 'pgisolate', 'information_schema') and nspname not like 'pg\\_%' and nspname not like 'tpl\\_%'"
    ).fetchone()[0]
    live = c.execute("select count(*) from pgisolate.leases where state <> 'released'").fetchone()[0]
    left = (left.split() if left else []) + [f"{live} registry rows"] * bool(live)
    conns = c.execute(
        "select count(*) from pg_stat_activity where application_name like 'pgisolate%'"
    ).fetchone()[0]
    print(f"left: schemas {left}, {conns} connections")
    sys.exit(1 if left or conns else 0)
EOF
}

fail() { echo "budget: FAILED: $*" >&2; exit 1; }

# Waits (10 s at most) for the run's connections to end: engines close as their worker exits.
settle() { # URL
  for _ in $(seq 50); do leftovers "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done
  leftovers "$1" || fail "the run left schemas or connections on the server"
}

echo "== 1. max_connections = 100, pytest -n 24"
url=$(start "$work/s1" 100)
sample "$url" "$work/peak1"
run "$url" 24 "$work/out1"
stop_sample
tail -3 "$work/out1"
[ "$(cat "$work/out1.rc")" = 0 ] || { cat "$work/out1"; fail "pytest -n 24 on 100 slots"; }
grep -q "96 passed" "$work/out1" || fail "not 96 passed"
peak=$(cat "$work/peak1"); echo "$peak"
own=$(sed -n 's/.*own=\([0-9]*\).*/\1/p' "$work/peak1")
echo "pgisolate's own connections at the peak: $own for 25 engines (24 workers and the controller): $(python3 -c "print(round($own/25, 2))") per engine"
[ "$own" -le 50 ] || fail "more than 2 connections per engine at the peak"
settle "$url"

echo "== 2. max_connections = 20, pytest -n 12"
url=$(start "$work/s2" 20)
run "$url" 12 "$work/out2"
tail -3 "$work/out2"
if grep -q "too many clients" "$work/out2"; then cat "$work/out2"; fail "a test met 'too many clients already'"; fi
if [ "$(cat "$work/out2.rc")" = 0 ]; then
  grep -q "96 passed" "$work/out2" || fail "not 96 passed"
  echo "passed on 20 slots"
else
  grep -q "max_connections = 20" "$work/out2" || { cat "$work/out2"; fail "failed without the budget's error"; }
  echo "refused with the budget's error:"; grep -m1 -o "the server cannot fit[^|]*max_connections = 20[^.]*\." "$work/out2" || true
fi
settle "$url"

echo "== 3. two runs of pytest -n 12 at once, max_connections = 100"
url=$(start "$work/s3" 100)
sample "$url" "$work/peak3"
run "$url" 12 "$work/out3a" & a=$!
run "$url" 12 "$work/out3b" & b=$!
wait "$a" "$b"
stop_sample
for o in out3a out3b; do
  tail -1 "$work/$o"
  [ "$(cat "$work/$o.rc")" = 0 ] && grep -q "96 passed" "$work/$o" || { cat "$work/$o"; fail "a concurrent run failed"; }
done
cat "$work/peak3"
settle "$url"
echo "== 4. two servers listed, pytest -n 4"
u1=$(start "$work/s4" 100)
u2=$(start "$work/s5" 100)
(cd "$here/suite" && BUDGET_SPREAD_LOG="$work/spread" PGISOLATE_DATABASE_URL="$u1 $u2" \
  "$py" -m pytest -q -n 4 -p no:randomly . >"$work/out4" 2>&1) || { cat "$work/out4"; fail "pytest -n 4 on two servers"; }
tail -1 "$work/out4"
grep -q "96 passed" "$work/out4" || fail "not 96 passed"
"$py" - "$work/spread" "$u1" "$u2" <<'EOF' || fail "the run did not spread over both servers"
import collections, sys, psycopg
seen = collections.defaultdict(set)
for line in open(sys.argv[1]):
    worker, port = line.split()
    seen[worker].add(port)
ports = collections.Counter(p for ps in seen.values() for p in ps)
for w, ps in sorted(seen.items()):
    print(f"{w}: server port {' '.join(sorted(ps))}")
assert all(len(ps) == 1 for ps in seen.values()), "a worker used two servers"
assert len(ports) == 2, f"tests ran on {len(ports)} server(s), not both"
for url in sys.argv[2:]:
    with psycopg.connect(url) as c:
        n = c.execute("select count(*) from pgisolate.templates").fetchone()[0]
        assert n == 1, f"{n} templates on {url}"
print("each worker on one server, both servers used, one template on each")
EOF
settle "$u1"
settle "$u2"
echo "budget: ok"
