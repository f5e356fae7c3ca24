# Seguro: `make run` starts the demo, `make test` runs every check CI runs.
# Both install what they need first (scripts/deps.sh; idempotent).

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
FUZZ_SECONDS ?= 20
# Tests and the demo start this etcd (scripts/deps.sh links etcd 3.5 here).
export SEGURO_ETCD ?= /usr/local/bin/etcd

.PHONY: help deps build test lint unit fuzz fuzz-smoke run bench bench-eventlog

help:
	@echo "make run         build and run the demo"
	@echo "make test        lint, unit and integration tests, a short fuzz run"
	@echo "make bench       every benchmark in bench/ (see docs/PERFORMANCE.md)"
	@echo "make bench-eventlog  event log events/s and commit latency vs etcd and the disk"
	@echo "make fuzz        fuzz the Ames parser for FUZZ_SECONDS (default $(FUZZ_SECONDS))"
	@echo "make deps        install the toolchain and tools (Debian 12, root)"

deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build --release --locked

lint: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit: deps
	$(CARGO) test --workspace --locked

# A short run on every `make test`; `make fuzz` runs longer.
fuzz-smoke: FUZZ_SECONDS = 20
fuzz-smoke fuzz: deps
	cd ames/fuzz && $(CARGO) +nightly fuzz run --release classify_parse -- -max_total_time=$(FUZZ_SECONDS)

test: lint unit fuzz-smoke

run: build
	@scripts/run.sh

bench: bench-eventlog

# Each benchmark is a release binary of bench/ that starts what it needs
# (etcd and the event log nodes on loopback) and prints Markdown tables.
bench-eventlog: deps
	$(CARGO) build --release --locked -p seguro -p seguro-bench --bin seguro --bin eventlog
	./target/release/eventlog
