#!/usr/bin/env bash
# Installs what `make demo` and `make test` need on a fresh machine, and says what is missing
# when it cannot install it. Idempotent and quiet when everything is there.
set -euo pipefail

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "ensure-deps: $1 is missing; install it (as root: $2) and run again" >&2
    exit 1
  fi
}

apt_install() {
  need_root "$*" "apt-get install -y $*"
  if [ -z "${APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" </dev/null >/dev/null
}

if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] || { echo "ensure-deps: Rust (cargo) is missing: install it with rustup" >&2; exit 1; }
fi

command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ] || { echo "ensure-deps: Go is missing: install Go 1.25 or newer" >&2; exit 1; }
command -v bc >/dev/null 2>&1 || apt_install bc
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_install nodejs npm
command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv

have_pg() {
  [ -n "${PGISOLATE_PG_BIN:-}" ] && [ -x "$PGISOLATE_PG_BIN/initdb" ] && return 0
  command -v initdb >/dev/null 2>&1 && return 0
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}
if ! have_pg; then
  echo "ensure-deps: installing PostgreSQL server binaries" >&2
  apt_install postgresql
fi
command -v psql >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/psql >/dev/null 2>&1 || apt_install postgresql-client
# The C test: a compiler, libpq and jansson headers, valgrind.
command -v cc >/dev/null 2>&1 || apt_install gcc libc6-dev
[ -f /usr/include/postgresql/libpq-fe.h ] || apt_install libpq-dev
[ -f /usr/include/jansson.h ] || apt_install libjansson-dev
command -v valgrind >/dev/null 2>&1 || apt_install valgrind
# The module map check (include/module.modulemap, what Swift imports) needs Clang.
command -v clang >/dev/null 2>&1 || apt_install clang
# The header generator, pinned: the committed include/pgisolate.h must match its output.
CBINDGEN_VERSION=0.29.4
if ! cbindgen --version 2>/dev/null | grep -q " $CBINDGEN_VERSION$"; then
  echo "ensure-deps: installing cbindgen $CBINDGEN_VERSION" >&2
  cargo install --quiet --locked cbindgen --version "$CBINDGEN_VERSION"
fi
# The reliability suite starts its own Redis.
command -v redis-server >/dev/null 2>&1 || apt_install redis-server
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || apt_install pgbouncer
command -v setpriv >/dev/null 2>&1 || apt_install util-linux
for tool in setsid flock; do
  command -v "$tool" >/dev/null 2>&1 || apt_install util-linux
done
# The hosts suite (network namespaces, veth links) and the version matrix (Maven Central's
# PostgreSQL binaries come as a jar holding an xz tarball).
command -v ip >/dev/null 2>&1 || apt_install iproute2
command -v mvn >/dev/null 2>&1 || apt_install maven
command -v unzip >/dev/null 2>&1 || apt_install unzip
command -v xz >/dev/null 2>&1 || apt_install xz-utils
