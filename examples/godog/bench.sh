#!/usr/bin/env bash
# Wall time of the godog suite: sequential (go test -p 1, one scenario at a time) against
# parallel (go test -p 3, 4 scenarios at a time per package), on one shared embedded server.
set -euo pipefail
cd "$(dirname "$0")"
go test -count=1 -run xxx ./... >/dev/null # build once, outside the timings
wall() {
  local start end
  start=$(date +%s.%N)
  GODOG_CONCURRENCY=$2 go test -count=1 -p "$1" ./... >/dev/null
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}
seq=$(wall 1 1)
par=$(wall 3 4)
printf 'sequential (-p 1, Concurrency 1): %.2f s\nparallel   (-p 3, Concurrency 4): %.2f s\nspeed-up: %.2fx\n' \
  "$seq" "$par" "$(echo "$seq / $par" | bc -l)"
