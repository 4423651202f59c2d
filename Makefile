# pgisolate: a newcomer needs only `make demo` and `make test`.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
BIN := target/debug/pgisolate

.PHONY: help deps build demo test lint fmt clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

deps: ## Install what the build and tests need (PostgreSQL binaries, tools)
	@scripts/ensure-deps.sh

build: deps ## Build every crate
	$(CARGO) build --workspace --all-targets

demo: build ## 8 concurrent scenarios, each in its own schema, on the embedded server
	$(BIN) demo

lint: ## rustfmt and clippy, warnings as errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

test: build lint ## Every suite: unit, vectors, engine, processes, the demo; then check nothing is left
	$(CARGO) test --workspace
	$(CARGO) run -q -p pgisolate --example quickstart
	$(BIN) demo
	scripts/check-clean.sh $(BIN)

clean: ## Remove build output
	$(CARGO) clean
