#!/usr/bin/env bash
# `make run`: shows what Seguro can do so far. The full cluster demo (edge box,
# gatekeeper, three replicas and a peer in network namespaces) replaces this
# once those parts exist; until then it runs the parts that do.
set -euo pipefail
cd "$(dirname "$0")/.."
seguro=target/release/seguro
example=config/examples/seguro.toml

echo "== seguro config check $example"
"$seguro" config check "$example"
echo
# An Ames packet from ~zod to ~nec carrying 0xdeadbeef (header, life ticks,
# ships, content; the header's 20-bit mug matches the prelude and body).
packet=00f050bb2100000100deadbeef
echo "== seguro ames decode $packet"
"$seguro" ames decode "$packet"
echo
echo "The cluster itself (edge fan-out, event log, gatekeeper, replicas) is not"
echo "built yet: see the open issues and docs/SPEC.md for what is coming."
