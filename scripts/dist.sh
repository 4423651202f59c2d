#!/usr/bin/env bash
# make dist: every artifact of one version into dist/ (layout in DESIGN.md, "Distribution"):
#   dist/python  abi3 manylinux2014 wheel (with the pgisolate command) and sdist
#   dist/c       pgisolate-<v>-<platform>.tar.gz: lib/ (static, shared with SONAME),
#                include/ (header, module map), lib/pkgconfig/pgisolate.pc
#   dist/npm     npm pack tarballs: pgisolate (loader, types, test helper, bin) and one
#                pgisolate-<platform> package per target with the addon
#   dist/go      the Go module tree (go.mod at its root) with the static library inside it,
#                cgo flags pointing only inside the module; godog support in godogisolate/,
#                the testing.TB helper in pgisolatetest/
#   dist/rust    the packaged crates (pgisolate, pgisolate-macros)
# Platforms come from packaging/targets; only the build machine's line can be built here.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
version=$(scripts/version.sh)
scripts/version.sh check >/dev/null

host=$(rustc -vV | sed -n 's/^host: //p')
read -r rust_target napi_platform go_dir wheel_tag < <(grep -v '^#' packaging/targets | awk -v h="$host" '$1 == h')
if [ -z "${rust_target:-}" ]; then
  echo "dist: this machine ($host) has no line in packaging/targets" >&2
  exit 1
fi
export NAPI_PLATFORM=$napi_platform GO_DIR=$go_dir

# maturin, zig (the ziglang package), cargo-zigbuild and auditwheel live in .venv. Every
# release build targets $rust_target through zig (glibc 2.17), so they share one target dir
# and build the dependencies once.
.venv/bin/python -m pip install -q --disable-pip-version-check -r packaging/requirements-dist.txt
export PATH=$root/.venv/bin:$PATH
rm -rf dist && mkdir -p dist/python dist/npm dist/go dist/rust dist/c
step() { printf '\n== dist: %s\n' "$*"; start=$SECONDS; }
took() { printf '== dist: %s in %ss\n' "$1" $((SECONDS - start)); }

step "Python wheel ($wheel_tag) and sdist"
maturin build --release --zig --compatibility manylinux2014 --target "$rust_target" \
  -m bindings-python/Cargo.toml -o dist/python
maturin sdist -m bindings-python/Cargo.toml -o dist/python
auditwheel show dist/python/*.whl | tee target/auditwheel.txt
grep -q 'manylinux_2_17_x86_64' target/auditwheel.txt || { echo "dist: the wheel is not manylinux2014" >&2; exit 1; }
took "Python"

step "npm packages"
cargo zigbuild --release --target "$rust_target.2.17" -p pgisolate-node
npmroot=target/dist-npm
rm -rf "$npmroot" && mkdir -p "$npmroot/main" "$npmroot/platform"
addon=pgisolate.$napi_platform.node
cp "target/$rust_target/release/libpgisolate_node.so" "$npmroot/platform/$addon"
cp LICENSE-MIT LICENSE-APACHE "$npmroot/platform/"
(cd bindings-node && cp -r index.js index.d.ts native.js native.d.ts test.js test.d.ts bin README.md \
  "$root/$npmroot/main/")
cp LICENSE-MIT LICENSE-APACHE "$npmroot/main/"
# The platforms come from packaging/targets: optionalDependencies of the main package, one
# platform package each (os/cpu/libc from the napi platform name).
node - "$version" "$addon" "$napi_platform" "$npmroot" <<'JS'
const fs = require('fs')
const [version, addon, platform, out] = process.argv.slice(2)
const platforms = fs.readFileSync('packaging/targets', 'utf8').split('\n')
  .filter((l) => l.trim() && !l.startsWith('#')).map((l) => l.trim().split(/\s+/)[1])
const main = JSON.parse(fs.readFileSync('bindings-node/package.json', 'utf8'))
for (const k of ['devDependencies', 'scripts', 'overrides']) delete main[k]
main.files = main.files.filter((f) => f !== '*.node').concat(['LICENSE-MIT', 'LICENSE-APACHE'])
main.optionalDependencies = Object.fromEntries(platforms.map((p) => [`pgisolate-${p}`, version]))
fs.writeFileSync(`${out}/main/package.json`, JSON.stringify(main, null, 2) + '\n')
const [os, cpu, abi] = platform.split('-')
const pkg = {
  name: `pgisolate-${platform}`,
  version,
  description: `The pgisolate engine for ${platform} (the native addon of the pgisolate package)`,
  license: main.license,
  repository: main.repository,
  os: [os],
  cpu: [cpu],
  ...(abi ? { libc: [abi === 'gnu' ? 'glibc' : abi] } : {}),
  main: addon,
  files: [addon, 'LICENSE-MIT', 'LICENSE-APACHE'],
  engines: main.engines,
}
fs.writeFileSync(`${out}/platform/package.json`, JSON.stringify(pkg, null, 2) + '\n')
JS
(cd "$npmroot/platform" && npm pack --silent --pack-destination "$root/dist/npm" >/dev/null)
(cd "$npmroot/main" && npm pack --silent --pack-destination "$root/dist/npm" >/dev/null)
took "npm"

step "C library"
cargo zigbuild --release --target "$rust_target.2.17" -p pgisolate-ffi
lib=target/$rust_target/release
major=$(echo "$version" | cut -d. -f1)
minor=$(echo "$version" | cut -d. -f2)
soname=$(if [ "$major" = 0 ]; then echo "libpgisolate.so.0.$minor"; else echo "libpgisolate.so.$major"; fi)
if ! readelf -d "$lib/libpgisolate.so" | grep -q "SONAME.*\[$soname\]"; then
  echo "dist: libpgisolate.so has no SONAME $soname" >&2
  exit 1
fi
ctree=target/dist-c/pgisolate-$version-$napi_platform
rm -rf target/dist-c && mkdir -p "$ctree/lib/pkgconfig" "$ctree/include"
cp "$lib/libpgisolate.a" "$ctree/lib/"
cp "$lib/libpgisolate.so" "$ctree/lib/libpgisolate.so.$version"
ln -s "libpgisolate.so.$version" "$ctree/lib/$soname"
ln -s "$soname" "$ctree/lib/libpgisolate.so"
cp include/pgisolate.h include/module.modulemap "$ctree/include/"
sed "s/@VERSION@/$version/" packaging/pgisolate.pc.in > "$ctree/lib/pkgconfig/pgisolate.pc"
cp LICENSE-MIT LICENSE-APACHE CHANGELOG.md "$ctree/"
tar -C target/dist-c -czf "dist/c/pgisolate-$version-$napi_platform.tar.gz" "pgisolate-$version-$napi_platform"
took "C"

step "Go module"
gotree=dist/go
mkdir -p "$gotree/include" "$gotree/godogisolate" "$gotree/pgisolatetest"
cp bindings-go/go.mod bindings-go/go.sum bindings-go/pgisolate.go bindings-go/native.go bindings-go/context.go "$gotree/"
cp bindings-go/godogisolate/godogisolate.go "$gotree/godogisolate/"
cp bindings-go/pgisolatetest/pgisolatetest.go "$gotree/pgisolatetest/"
cp include/pgisolate.h "$gotree/include/"
cp LICENSE-MIT LICENSE-APACHE "$gotree/"
# link.go: one line per platform of packaging/targets (go dir os_arch -> #cgo os,arch).
{
  printf 'package pgisolate\n\n// The static library of each platform, inside this module (written by make dist).\n\n/*\n'
  printf '#cgo CFLAGS: -I${SRCDIR}/include\n'
  grep -v '^#' packaging/targets | while read -r _ _ dir _; do
    [ -n "$dir" ] || continue
    printf '#cgo %s LDFLAGS: ${SRCDIR}/lib/%s/libpgisolate.a -lpthread -ldl -lm -lutil -lrt\n' "${dir/_/,}" "$dir"
  done
  printf '*/\nimport "C"\n'
} > "$gotree/link.go"
mkdir -p "$gotree/lib/$go_dir"
cp "$lib/libpgisolate.a" "$gotree/lib/$go_dir/"
for d in $(grep -v '^#' packaging/targets | awk 'NF {print $3}'); do
  [ -f "$gotree/lib/$d/libpgisolate.a" ] || echo "dist: lib/$d is listed in packaging/targets but needs its own build machine" >&2
done
cp bindings-go/README.md "$gotree/"
took "Go"

step "Rust crates"
# pgisolate and the #[pgisolate::test] macro it re-exports, packaged together.
cargo package -q -p pgisolate-macros -p pgisolate --no-verify --allow-dirty
cp "target/package/pgisolate-$version.crate" "target/package/pgisolate-macros-$version.crate" dist/rust/
took "Rust"

printf '\n== dist: artifacts (version %s)\n' "$version"
find dist -type f -printf '%10s  %p\n' | sort -k2
