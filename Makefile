# pgisolate: a newcomer needs only `make demo` and `make test`.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:/usr/local/go/bin:$(PATH)
CARGO ?= cargo
BIN := target/debug/pgisolate
VENV := .venv
PY := $(CURDIR)/$(VENV)/bin/python

LIB := target/debug/libpgisolate.a
CTEST := target/c-test
NATIVE_LIBS := -lpthread -ldl -lm -lutil -lrt
VALGRIND := valgrind --quiet --child-silent-after-fork=yes --leak-check=full --show-leak-kinds=definite,indirect \
	--errors-for-leak-kinds=definite,indirect --error-exitcode=3

.PHONY: warm-bench dist dist-test version-check help deps build demo test check lint fmt clean header header-check c-test go-test godog-bench build-python py-test build-node node-test bench matrix

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

deps: ## Install what the build and tests need (PostgreSQL binaries, tools)
	@scripts/ensure-deps.sh

build: deps ## Build every crate
	$(CARGO) build --workspace --all-targets
	$(CARGO) build -p pgisolate-ffi

demo: build ## 8 concurrent scenarios, each in its own schema, on the embedded server
	$(BIN) demo

lint: ## rustfmt, clippy, gofmt and go vet, warnings as errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p pgisolate --no-default-features -- -D warnings
	@out=$$(gofmt -l bindings-go examples/godog examples/go-migrations tests/dist/go); if [ -n "$$out" ]; then echo "gofmt needed: $$out" >&2; exit 1; fi
	cd bindings-go && go vet ./...
	cd examples/godog && go vet ./...
	cd examples/go-migrations && go vet ./...

fmt: ## Format the code
	$(CARGO) fmt --all

header: ## Regenerate include/pgisolate.h from ffi/ with the pinned cbindgen
	cbindgen --config ffi/cbindgen.toml --crate pgisolate-ffi --output include/pgisolate.h ffi

header-check: deps ## Fail if include/pgisolate.h is not what cbindgen generates now
	@tmp=$$(mktemp) && cbindgen --quiet --config ffi/cbindgen.toml --crate pgisolate-ffi --output $$tmp ffi && \
	  if ! cmp -s $$tmp include/pgisolate.h; then diff -u include/pgisolate.h $$tmp | head -40; rm -f $$tmp; \
	  echo "include/pgisolate.h is stale: run 'make header' and commit it" >&2; exit 1; fi; rm -f $$tmp
	@echo "header-check: include/pgisolate.h is up to date"

c-test: build ## The C test (vectors + an acquire/release cycle) under valgrind
	cc -Wall -Wextra -Werror -g -o $(CTEST) tests/c/test_pgisolate.c -Iinclude -I/usr/include/postgresql \
	  $(LIB) -ljansson -lpq $(NATIVE_LIBS)
	$(VALGRIND) $(CTEST) tests/vectors examples/migrations
	clang -fmodules -fmodules-cache-path=target/clang-modules -fmodule-map-file=include/module.modulemap \
	  -Wall -Werror -o target/c-module-test tests/c/module_import.c $(LIB) $(NATIVE_LIBS)
	target/c-module-test

go-test: build ## Go binding tests (-race), the godog example (4 packages in parallel), goose and golang-migrate recipes
	cd bindings-go && go test -race -count=1 ./...
	cd examples/godog && go test -count=1 -p 4 ./...
	cd examples/go-migrations && go test -count=1 ./...

warm-bench: build build-python ## Cold vs warm (PGISOLATE_REUSE) runs of the pytest suite and the godog example
	scripts/warm-bench.sh $(BIN)

bench: deps ## Every isolation strategy side by side (release build); writes docs/bench/bench.csv and .svg
	$(CARGO) build --release -p pgisolate-cli
	target/release/pgisolate bench --out docs/bench

godog-bench: build ## Wall time of the godog example, sequential against parallel
	examples/godog/bench.sh

build-python: deps ## Build the Python wheel (maturin) into a virtualenv at .venv
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r bindings-python/requirements-test.txt
	rm -f target/wheels/pgisolate-*.whl
	$(VENV)/bin/maturin build -q --profile dev -m bindings-python/Cargo.toml -o target/wheels -i $(PY)
	$(PY) -m pip install -q --disable-pip-version-check --force-reinstall --no-deps target/wheels/pgisolate-*.whl

py-test: build-python ## Python: binding and plugin tests, the 200-test suite with -n 2 three times, the pytest, Alembic and Django examples, the connection budget (tests/budget)
	cd bindings-python && $(PY) -m pytest -q
	for run in 1 2 3; do (cd bindings-python && $(PY) -m pytest -q -n 2 suite) || exit 1; done
	cd examples/pytest && $(PY) -m pytest -q -n 2
	cd examples/alembic && $(PY) -m pytest -q -n 2
	cd examples/django && $(PY) -m pytest -q -n 2
	tests/budget/run.sh $(PY)

build-node: deps ## Build the Node addon (napi-rs) after npm ci
	cd bindings-node && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build
	@git diff --quiet -- bindings-node/native.js bindings-node/native.d.ts || { git diff --stat -- bindings-node/native.js \
	  bindings-node/native.d.ts; echo "bindings-node/native.js or native.d.ts changed: the loader and types napi generates are committed; commit them" >&2; exit 1; }

node-test: build-node ## Node: vectors, engine, node:test and Vitest suites (pg), Vitest workers over two servers, the examples (pg, Knex)
	cd bindings-node && npm test
	bindings-node/test/spread/run.sh
	cd examples/node && npm ci --no-audit --no-fund --loglevel=error && npm test
	cd examples/knex && npm ci --no-audit --no-fund --loglevel=error && npm test

check: build build-python build-node ## The fast loop: formatting, clippy, go vet, the header, versions; unit and vector tests of Rust, Python, Node and Go; the C test compiled (no server suites, no matrix, no dist)
	$(MAKE) --no-print-directory lint header-check version-check
	$(CARGO) test -q --workspace --lib --bins
	$(CARGO) test -q -p pgisolate --test vectors --test structure
	cd bindings-python && $(PY) -m pytest -q -p no:cacheprovider tests/test_binding.py -k 'vectors or core_kinds or stubs_take'
	cd bindings-node && node --test test/node/vectors.test.js
	cd bindings-go && go test -count=1 -run 'Vectors$$|CoresSettings$$' .
	cc -Wall -Wextra -Werror -g -o $(CTEST) tests/c/test_pgisolate.c -Iinclude -I/usr/include/postgresql \
	  $(LIB) -ljansson -lpq $(NATIVE_LIBS)

test: build lint header-check version-check ## Every suite: Rust (with the hosts suite), C (valgrind), Go, Python, Node, PostgreSQL 13 and 17, the demo; then check nothing is left
	$(CARGO) test --workspace
	$(MAKE) --no-print-directory c-test
	$(MAKE) --no-print-directory go-test
	$(MAKE) --no-print-directory py-test
	$(MAKE) --no-print-directory node-test
	$(MAKE) --no-print-directory dist-test
	$(BIN) bench --tests 20 --suite-tests 40 --schema-tables 30 --out target/bench-smoke
	scripts/matrix.sh 13 17
	$(CARGO) run -q -p pgisolate --example quickstart
	$(BIN) demo
	scripts/kept-check.sh $(BIN)
	scripts/check-clean.sh $(BIN)

matrix: build ## The core and reliability suites on PostgreSQL 12, 13, 14, 15, 16 and 17 (scripts/matrix.sh)
	scripts/matrix.sh

dist: build-python ## Release artifacts of one version into dist/ (wheel + sdist, C tarball, crate)
	scripts/dist.sh

dist-test: dist ## Install each artifact into a clean directory (no Rust on PATH) and run a consumer suite
	scripts/dist-test.sh

version-check: ## Fail unless every package carries the same version (scripts/version.sh X.Y.Z sets it)
	@scripts/version.sh check

clean: ## Remove build output
	$(CARGO) clean
	rm -rf dist
