#!/usr/bin/env bash
# Wall time of the godog suite (4 packages, 62 HTTP-level scenarios) on one shared embedded
# server: sequential against parallel, two ways.
# 1. `go test`: -p 1 with one scenario at a time, against -p 4 with 4 scenarios at a time per
#    package. This includes linking each package's test binary (the Rust library is linked
#    into every one, about 2.5 s each), which -p 1 also does one at a time.
# 2. The prebuilt test binaries (go test -c): one after another, one scenario at a time,
#    against all at once, 4 scenarios at a time each: the tests alone.
set -euo pipefail
cd "$(dirname "$0")"
go test -count=1 -run xxx ./... >/dev/null # compile once, outside the timings
now() { date +%s.%N; }
wall() {
  local start
  start=$(now)
  GODOG_CONCURRENCY=$2 go test -count=1 -p "$1" ./... >/dev/null
  echo "$(now) - $start" | bc
}
seq=$(wall 1 1)
par=$(wall 4 4)
printf 'go test, sequential (-p 1, Concurrency 1): %.2f s\ngo test, parallel   (-p 4, Concurrency 4): %.2f s\nspeed-up: %.2fx\n' \
  "$seq" "$par" "$(echo "$seq / $par" | bc -l)"
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
pkgs=$(go list ./features/...)
for p in $pkgs; do go test -c -o "$bin/$(basename "$p").test" "$p"; done
start=$(now)
for t in "$bin"/*.test; do (cd "features/$(basename "$t" .test)" && GODOG_CONCURRENCY=1 "$t" >/dev/null); done
seq=$(echo "$(now) - $start" | bc)
start=$(now)
pids=()
for t in "$bin"/*.test; do (cd "features/$(basename "$t" .test)" && GODOG_CONCURRENCY=4 "$t" >/dev/null) & pids+=($!); done
for p in "${pids[@]}"; do wait "$p"; done
par=$(echo "$(now) - $start" | bc)
printf 'test binaries, one after another (Concurrency 1): %.2f s\ntest binaries, all at once    (Concurrency 4): %.2f s\nspeed-up: %.2fx\n' \
  "$seq" "$par" "$(echo "$seq / $par" | bc -l)"
