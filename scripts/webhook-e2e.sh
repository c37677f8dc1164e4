#!/usr/bin/env bash
# The webhook end to end against the RSA floor (docs/performance.md):
#   scripts/webhook-e2e.sh [NOTIFICATIONS]
# Builds the release binary and the load tool, then runs the load tool on core 1; it starts
# `teams-presence handler`, `teams-presence serve` and a server that only answers and unwraps
# each `dataKey` (the floor of any HTTP webhook) under `taskset -a -c 0` and runs
# `openssl speed -seconds 5 rsa2048` on core 0 before and after, so the ratios it prints
# compare figures taken on the same core under the same load.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
cd "$ROOT"
cargo build --release --bin teams-presence --example webhook_e2e
exec taskset -c 1 "$TARGET/release/examples/webhook_e2e" "$TARGET/release/teams-presence" "$@"
