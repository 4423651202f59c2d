#!/usr/bin/env bash
# A throwaway PostgreSQL for suites that need server settings of their own (max_connections):
#   scripts/pg-private.sh start DIR [-c name=value ...]   prints its URL
#   scripts/pg-private.sh stop DIR                        stops it and deletes DIR
# As root, initdb and postgres run as the postgres user (they refuse to run as root).
set -euo pipefail
cmd=$1 dir=$2; shift 2
bin=${PGISOLATE_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
start)
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  as "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1
  port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  as "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start -o \
    "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
     -c max_locks_per_transaction=1024 $*" >/dev/null
  echo "postgres://postgres@127.0.0.1:$port/postgres";;
stop)
  [ -d "$dir/data" ] && as "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir";;
*) echo "usage: $0 start|stop DIR [-c name=value ...]" >&2; exit 2;;
esac
