#!/usr/bin/env bash
# One version for every package.
#   scripts/version.sh          print the version (Cargo.toml [workspace.package])
#   scripts/version.sh check    fail unless every package carries it
#   scripts/version.sh X.Y.Z    set it everywhere and open its CHANGELOG.md section
set -euo pipefail
cd "$(dirname "$0")/.."

current() { sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml; }

# Every place a version is written: file, and what it holds now.
places() {
  local v
  v=$(sed -n 's/^pgisolate = { path = "core", version = "\(.*\)" }/\1/p' Cargo.toml); echo "Cargo.toml workspace.dependencies.pgisolate $v"
  v=$(sed -n 's/^pgisolate-macros = { path = "macros", version = "\(.*\)" }/\1/p' Cargo.toml); echo "Cargo.toml workspace.dependencies.pgisolate-macros $v"
  v=$(node -p 'require("./bindings-node/package.json").version'); echo "bindings-node/package.json version $v"
  v=$(sed -n 's/^## \[\([0-9][^]]*\)\].*/\1/p' CHANGELOG.md | head -1); echo "CHANGELOG.md latest $v"
}

case "${1:-}" in
  "") current ;;
  check)
    want=$(current)
    bad=0
    while read -r file what v; do
      if [ "$v" != "$want" ]; then echo "version: $file $what is $v, want $want (scripts/version.sh $want)" >&2; bad=1; fi
    done < <(places)
    [ $bad = 0 ] && echo "version: $want everywhere"
    exit $bad ;;
  [0-9]*.[0-9]*.[0-9]*)
    new=$1
    old=$(current)
    sed -i "/^\[workspace.package\]/,/^\[/s/^version = \".*\"/version = \"$new\"/" Cargo.toml
    sed -i "s/^pgisolate = { path = \"core\", version = \".*\" }/pgisolate = { path = \"core\", version = \"$new\" }/" Cargo.toml
    sed -i "s/^pgisolate-macros = { path = \"macros\", version = \".*\" }/pgisolate-macros = { path = \"macros\", version = \"$new\" }/" Cargo.toml
    node -e '
      const fs = require("fs"); const f = "bindings-node/package.json"
      const p = JSON.parse(fs.readFileSync(f, "utf8")); p.version = process.argv[1]
      for (const k of Object.keys(p.optionalDependencies || {})) p.optionalDependencies[k] = process.argv[1]
      fs.writeFileSync(f, JSON.stringify(p, null, 2) + "\n")' "$new"
    if ! grep -q "^## \[$new\]" CHANGELOG.md; then
      sed -i "0,/^## \[/s//## [$new] - Unreleased\n\n## [/" CHANGELOG.md
    fi
    cargo update -q -w 2>/dev/null || true
    (cd bindings-node && npm install --package-lock-only --no-audit --no-fund --loglevel=error >/dev/null)
    echo "version: $old -> $new (review CHANGELOG.md)" ;;
  *) echo "usage: scripts/version.sh [check | X.Y.Z]" >&2; exit 2 ;;
esac
