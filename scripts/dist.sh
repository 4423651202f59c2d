#!/usr/bin/env bash
# make dist: every artifact of one version into dist/ (layout in DESIGN.md, "Distribution"):
#   dist/python  abi3 manylinux2014 wheel (with the pgisolate command) and sdist
#   dist/c       pgisolate-<v>-<platform>.tar.gz: lib/ (static, shared with SONAME),
#                include/ (header, module map), lib/pkgconfig/pgisolate.pc
#   dist/rust    the packaged crate
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

step "Rust crate"
cargo package -q -p pgisolate --no-verify --allow-dirty
cp "target/package/pgisolate-$version.crate" dist/rust/
took "Rust"

printf '\n== dist: artifacts (version %s)\n' "$version"
find dist -type f -printf '%10s  %p\n' | sort -k2
