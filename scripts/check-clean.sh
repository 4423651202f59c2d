#!/usr/bin/env bash
# After a test run: the embedded server must stop by itself (its keeper stops it a few
# seconds after the last engine is gone), no pgisolate postgres may be left, and
# `pgisolate ls` must show nothing.
set -euo pipefail
bin=${1:-target/debug/pgisolate}
# Same rule as the engine's server::home().
if [ -n "${PGISOLATE_HOME:-}" ]; then home=$PGISOLATE_HOME
elif [ -d /dev/shm ] && [ -w /dev/shm ]; then home=/dev/shm/pgisolate-$(id -u)
else home=${TMPDIR:-/tmp}/pgisolate-$(id -u); fi
for _ in $(seq 1 150); do
  if ! pgrep -f "postgres -D .*pgisolate" >/dev/null 2>&1 && [ ! -e "$home/data" ]; then
    break
  fi
  sleep 0.1
done
if pgrep -af "postgres -D .*pgisolate" >/dev/null 2>&1; then
  echo "check-clean: a pgisolate postgres is still running 15 s after the tests:" >&2
  pgrep -af "postgres -D .*pgisolate" >&2
  exit 1
fi
if [ -e "$home/data" ]; then
  echo "check-clean: the embedded server left its data directory $home/data" >&2
  exit 1
fi
# The hosts suite's network namespaces (and the veth links inside them) and matrix homes.
if command -v ip >/dev/null 2>&1 && ip netns list 2>/dev/null | grep -q '^pgih'; then
  echo "check-clean: network namespaces of the hosts suite left behind:" >&2
  ip netns list | grep '^pgih' >&2
  exit 1
fi
if ls -d /dev/shm/pgisolate-matrix-* >/dev/null 2>&1; then
  echo "check-clean: the version matrix left its homes:" >&2
  ls -d /dev/shm/pgisolate-matrix-* >&2
  exit 1
fi
out=$("$bin" ls)
echo "pgisolate ls: $out"
case "$out" in
  *"nothing to list"*|"no live schemas") ;;
  *) echo "check-clean: schemas left behind" >&2; exit 1 ;;
esac
echo "check-clean: no server, no schemas, no network namespaces left"
