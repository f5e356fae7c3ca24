#!/usr/bin/env bash
# `make run` / `make failover`: a whole Seguro cluster on this machine, in
# network namespaces (seguro-peer, seguro-edge, seguro-r1..r3, seguro-router,
# seguro-backend): etcd, the edge box (seguro lb in XDP mode + seguro
# gatekeeper), three replicas (event log node + agent with the reference
# ship) and a peer sending Ames packets at a steady rate.
#
#   scripts/run.sh             status view (seguro status --watch 1) until Ctrl-C
#   scripts/run.sh --failover  kill the leader under load, print the failover
#                              time and the loss check, then stop
#
# The work is done by seguro-demo (testkit/src/bin/seguro-demo.rs), on the
# same harness as the cluster tests. It cleans up what a previous run left,
# and removes namespaces, processes and .run/cluster on the way out; the trap
# below repeats that if it is itself killed. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
    echo "make run needs root (network namespaces, XDP): run it as root or with sudo" >&2
    exit 77
fi

seguro=target/release/seguro
demo=target/release/seguro-demo
for bin in "$seguro" "$demo"; do
    if [[ ! -x $bin ]]; then
        echo "$bin is missing: run \`make run\` (it builds first)" >&2
        exit 1
    fi
done

cleanup() {
    local ns
    for ns in seguro-peer seguro-edge seguro-router seguro-backend seguro-r1 seguro-r2 seguro-r3; do
        if ip netns list | grep -qw "$ns"; then
            ip netns pids "$ns" | xargs -r kill -9 2>/dev/null || true
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
}
trap cleanup EXIT
# Ctrl-C reaches seguro-demo (and the status view) directly; the script
# waits for it to tear down.
trap '' INT TERM

mkdir -p .run
"$demo" --seguro "$seguro" --dir .run "$@"
