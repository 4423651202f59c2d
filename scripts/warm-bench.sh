#!/usr/bin/env bash
# Cold run vs warm run (PGISOLATE_REUSE) of the Python 200-test suite (pytest -n 2) and the
# godog example (3 packages in parallel): a cold run starts the embedded server (initdb) and
# builds its template; a warm run finds both. Prints one line per suite; `make warm-bench`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=${1:-target/debug/pgisolate}
unset PGISOLATE_DATABASE_URL PGISOLATE_REUSE
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
run_py() { (cd bindings-python && "$root/.venv/bin/python" -m pytest -q -n 2 -p no:cacheprovider suite >/dev/null); }
run_godog() { (cd examples/godog && go test -count=1 -p 4 ./... >/dev/null); }
bench() { # name, function
  local name=$1 fn=$2 t0 cold warm
  "$bin" server stop >/dev/null 2>&1 || true
  sleep 1
  t0=$(now); "$fn"; cold=$(secs "$t0" "$(now)")
  # Warm: the same suite again, with the server (and its template) kept from a first run.
  "$bin" server stop >/dev/null 2>&1 || true
  PGISOLATE_REUSE=5m "$fn"
  t0=$(now); PGISOLATE_REUSE=5m "$fn"; warm=$(secs "$t0" "$(now)")
  "$bin" server stop >/dev/null 2>&1 || true
  printf 'warm-bench: %-28s cold %6.2f s   warm %6.2f s   (%.1fx)\n' "$name" "$cold" "$warm" "$(awk -v c="$cold" -v w="$warm" 'BEGIN { print c / w }')"
}
bench "pytest -n 2 (200 tests)" run_py
bench "godog (4 packages, -p 4)" run_godog
