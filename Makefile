# Seguro: `make run` starts the demo, `make test` runs every check CI runs.
# Both install what they need first (scripts/deps.sh; idempotent).

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
FUZZ_SECONDS ?= 60
# Tests and the demo start this etcd (scripts/deps.sh links etcd 3.5 here).
export SEGURO_ETCD ?= /usr/local/bin/etcd
# The pinned nightly (eBPF, fuzzing): ebpf/rust-toolchain.toml names it.
NIGHTLY := $(shell sed -n 's/^channel = "\(.*\)"$$/\1/p' ebpf/rust-toolchain.toml)

.PHONY: help deps bare-check build test lint unit fuzz fuzz-smoke promtool systemd-verify run failover chaos bench bench-eventlog bench-gatekeeper bench-lb bench-failover bench-pier

help:
	@echo "make run         a whole cluster in network namespaces with a live status view (root)"
	@echo "make failover    the same, killing the leader under load: failover time, loss check"
	@echo "make test        lint, unit and integration tests, a short fuzz run, promtool, systemd units"
	@echo "make promtool    check the alert rules and run their unit tests (docs/prometheus)"
	@echo "make systemd-verify  systemd-analyze verify the units in deploy/systemd"
	@echo "make chaos       the nemesis suite: ROUNDS faults (default 100) in at most SECONDS, seeded (SEED=N replays)"
	@echo "make bench       every benchmark in bench/ (see docs/PERFORMANCE.md)"
	@echo "make bench-eventlog  event log events/s and commit latency vs etcd and the disk"
	@echo "make bench-gatekeeper  effects/s vs a plain UDP relay; election failover p50/p99"
	@echo "make bench-lb    edge fan-out: XDP/TC vs nftables dup vs the userspace relay"
	@echo "make bench-failover  20 leader kills under load: failover p50/p99, loss, answered/s"
	@echo "make bench-pier  seguro pier import of 1,000,000 events vs a plain Python LMDB read"
	@echo "make fuzz        fuzz every decoder for FUZZ_SECONDS each (default $(FUZZ_SECONDS))"
	@echo "make deps        install the toolchain and tools (Debian 12, root)"
	@echo "make bare-check  make test in a fresh clone of HEAD on a bare Debian 12 (root, 30-40 min)"

deps:
	@scripts/deps.sh

# What a new machine sees: the committed HEAD, cloned into a bare Debian 12
# that has only Rust, gcc, make, git and python3 (../shared/tools). Run it
# before landing a change to a dependency, deps.sh, this file or .ci/run.
BARE_CHECK ?= ../shared/tools/bare-debian-check
bare-check:
	$(BARE_CHECK) -- make test

# The commit goes into every daemon's seguro_build_info (telemetry/).
build: deps
	SEGURO_COMMIT=$$(git describe --always --dirty --abbrev=12 2>/dev/null || echo unknown) \
		$(CARGO) build --release --locked
	$(CARGO) build --release --locked -p seguro-testkit --bin seguro-demo

# ebpf/ is a workspace of its own (bpfel-unknown-none, on the nightly its
# rust-toolchain.toml pins): linted apart.
lint: deps
	$(CARGO) fmt --all --check
	cd ebpf && $(CARGO) fmt --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	# `make run` and the benchmarks build in release, where cfg(debug_assertions)
	# code is compiled out: check that build too (a release-only break landed once).
	$(CARGO) check --workspace --release --locked
	cd ebpf && $(CARGO) clippy --locked -Z build-std=core --target bpfel-unknown-none \
		--release --target-dir ../target/ebpf-lint -- -D warnings

# Every unit and integration test, through cargo-nextest: a process per test,
# as many at once as there are CPUs, in the groups .config/nextest.toml sets
# for tests that must run alone. nextest does not run doctests; cargo does.
unit: deps
	$(CARGO) nextest run --workspace --locked --no-fail-fast
	$(CARGO) test --workspace --locked --doc

# Every decoder of input from the network or a disk: the Ames parser, the
# effect envelope, the agent's checkpoint, the event log's snapshot and Raft
# messages (crate:target). A short run of each on every `make test`; `make
# fuzz` runs each longer. One target directory: they share most of a build.
FUZZ_TARGETS = ames:classify_parse leadership:envelope_open replica:checkpoint_decode replica:vere_cue eventlog:snapshot_decode eventlog:raft_message
# The short run builds without optimisation (--dev): the decoders' crates
# pull in tonic, openraft and rustls, and an optimised sanitizer build of
# them would cost `make test` more minutes than the 15 s it runs.
fuzz-smoke: FUZZ_SECONDS = 15
fuzz-smoke: FUZZ_BUILD = --dev
fuzz-smoke fuzz: deps
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
		(cd $${t%%:*} && $(CARGO) +$(NIGHTLY) fuzz run $(FUZZ_BUILD) --target-dir $(CURDIR)/target/fuzz$(FUZZ_BUILD) $${t#*:} -- -max_total_time=$(FUZZ_SECONDS)); \
	done

test: lint unit fuzz-smoke promtool systemd-verify

# The alert rules parse, and each alert fires (and stays quiet) as its unit
# tests in docs/prometheus/alerts_test.yml say. promtool: Debian's prometheus.
promtool: deps
	promtool check rules docs/prometheus/alerts.yml
	cd docs/prometheus && promtool test rules alerts_test.yml
	promtool check config --syntax-only docs/prometheus/prometheus.yml

# The systemd units in deploy/systemd load, with every directive known to
# this systemd: any diagnostic about a unit file fails (systemd-analyze
# itself only warns). They run the binary just built, not an installed one.
UNITS := seguro-lb.service seguro-gatekeeper.service seguro-eventlog@1.service seguro-replica@1.service
systemd-verify: deps
	$(CARGO) build --locked --bin seguro
	@set -euo pipefail; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	for f in deploy/systemd/*.service; do \
		sed "s|/usr/local/bin/seguro|$(CURDIR)/target/debug/seguro|" "$$f" > "$$tmp/$${f##*/}"; \
	done; \
	ln -s seguro-eventlog@.service "$$tmp/seguro-eventlog@1.service"; \
	ln -s seguro-replica@.service "$$tmp/seguro-replica@1.service"; \
	out=$$(cd "$$tmp" && systemd-analyze verify --man=no $(UNITS) 2>&1) || { echo "$$out"; exit 1; }; \
	if grep -E '\.service(:[0-9]+)?: ' <<<"$$out"; then exit 1; fi; \
	echo "systemd-analyze verify: $(UNITS) OK"

# The nemesis suite (docs/RELIABILITY.md): a debug build, as the negative
# control's switch that skips fdatasync exists only there. `make test` runs
# a short round of it (tests/it/chaos.rs).
ROUNDS ?= 100
SECONDS ?= 1500
chaos: deps
	$(CARGO) build --locked -p seguro --bin seguro
	$(CARGO) build --locked -p seguro-testkit --bin seguro-chaos
	./target/debug/seguro-chaos --seguro target/debug/seguro --rounds $(ROUNDS) --seconds $(SECONDS) $(if $(SEED),--seed $(SEED))

run: build
	@scripts/run.sh

failover: build
	@scripts/run.sh --failover

bench: bench-eventlog bench-gatekeeper bench-lb bench-failover bench-pier

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

# Needs root: the whole cluster in namespaces, 20 leader kills (about 5 minutes).
bench-failover: deps
	$(CARGO) build --release --locked -p seguro -p seguro-bench --bin seguro --bin failover
	./target/release/failover

# seguro pier import of 1,000,000 events of 200 bytes into 3 event log
# nodes, against a plain read of the same LMDB by Python (about a minute).
bench-pier: deps
	$(CARGO) build --release --locked -p seguro -p seguro-bench --bin seguro --bin pier
	./target/release/pier
