# Seguro: `make run` starts the demo, `make test` runs every check CI runs.
# Both install what they need first (scripts/deps.sh; idempotent).

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
FUZZ_SECONDS ?= 20
# Tests and the demo start this etcd (scripts/deps.sh links etcd 3.5 here).
export SEGURO_ETCD ?= /usr/local/bin/etcd

.PHONY: help deps build test lint unit fuzz fuzz-smoke run failover bench bench-eventlog bench-gatekeeper bench-lb bench-failover

help:
	@echo "make run         a whole cluster in network namespaces with a live status view (root)"
	@echo "make failover    the same, killing the leader under load: failover time, loss check"
	@echo "make test        lint, unit and integration tests, a short fuzz run"
	@echo "make bench       every benchmark in bench/ (see docs/PERFORMANCE.md)"
	@echo "make bench-eventlog  event log events/s and commit latency vs etcd and the disk"
	@echo "make bench-gatekeeper  effects/s vs a plain UDP relay; election failover p50/p99"
	@echo "make bench-lb    edge fan-out: XDP/TC vs nftables dup vs the userspace relay"
	@echo "make bench-failover  20 leader kills under load: failover p50/p99, loss, answered/s"
	@echo "make fuzz        fuzz the Ames parser for FUZZ_SECONDS (default $(FUZZ_SECONDS))"
	@echo "make deps        install the toolchain and tools (Debian 12, root)"

deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build --release --locked
	$(CARGO) build --release --locked -p seguro-testkit --bin seguro-demo

# ebpf/ is a workspace of its own (bpfel-unknown-none, nightly): linted apart.
lint: deps
	$(CARGO) fmt --all --check
	cd ebpf && $(CARGO) fmt --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	cd ebpf && $(CARGO) +nightly clippy --locked -Z build-std=core --target bpfel-unknown-none \
		--release --target-dir ../target/ebpf-lint -- -D warnings

unit: deps
	$(CARGO) test --workspace --locked

# A short run on every `make test`; `make fuzz` runs longer.
fuzz-smoke: FUZZ_SECONDS = 20
fuzz-smoke fuzz: deps
	cd ames && $(CARGO) +nightly fuzz run classify_parse -- -max_total_time=$(FUZZ_SECONDS)

test: lint unit fuzz-smoke

run: build
	@scripts/run.sh

failover: build
	@scripts/run.sh --failover

bench: bench-eventlog bench-gatekeeper bench-lb bench-failover

# Each benchmark is a release binary of bench/ that starts what it needs
# (etcd, event log nodes, namespaces) and prints its results as Markdown tables.
bench-eventlog: deps
	$(CARGO) build --release --locked -p seguro -p seguro-bench --bin seguro --bin eventlog
	./target/release/eventlog

bench-gatekeeper: deps
	$(CARGO) build --release --locked -p seguro-bench --bin gatekeeper
	./target/release/gatekeeper

# Needs root: network namespaces, eBPF programs, nftables (about 3 minutes).
bench-lb: deps
	$(CARGO) build --release --locked -p seguro -p seguro-bench --bin seguro --bin lb
	./target/release/lb

# Needs root: the whole cluster in namespaces, 20 leader kills (about 4 minutes).
bench-failover: deps
	$(CARGO) build --release --locked -p seguro -p seguro-bench --bin seguro --bin failover
	./target/release/failover
