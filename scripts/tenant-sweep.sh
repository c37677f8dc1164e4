#!/usr/bin/env bash
# A 100,000-user tenant against the real handler (examples/tenant_sweep.rs): builds the
# release binary and the example, then runs it. Arguments go to the example:
#   scripts/tenant-sweep.sh [USERS] [SYNC_ACCOUNTS] [CHANGED]     (100000 20 1000)
# Needs Azurite (npm ci --prefix tests/azurite). Takes a few minutes, most of it seeding
# the store with every user's presence (not measured).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --release --bin teams-presence --example tenant_sweep
exec target/release/examples/tenant_sweep target/release/teams-presence "$@"
