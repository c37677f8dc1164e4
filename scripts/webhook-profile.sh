#!/usr/bin/env bash
# Where each notification's CPU time goes in the webhook end to end: microseconds per
# notification by part (the RSA operation, the store, the HTTP exchange, parsing, ...),
# beside the same parts of the HTTP floor (docs/performance.md).
#
#   scripts/webhook-profile.sh                       # serve/1 handler/1 serve/10 floor/1
#   SHAPES="serve/1 floor/1" scripts/webhook-profile.sh 20000
#
# Needs `perf` (Debian: linux-perf) and python3. Builds the release binary and
# `examples/webhook_e2e` with symbols and line tables into target/profile-symbols (the
# stripped release build is left alone), runs each shape of the benchmark under
# `perf record --call-graph dwarf` on the server's core, keeps the server's threads and hands
# their call chains to webhook-profile.py.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
NOTIFICATIONS=${1:-20000}
HZ=1999
command -v perf >/dev/null || { echo "webhook-profile: needs perf" >&2; exit 2; }
export CARGO_TARGET_DIR=$ROOT/target/profile-symbols
CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
    cargo build --release --bin teams-presence --example webhook_e2e >&2
BIN=$CARGO_TARGET_DIR/release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
outputs=()
for shape in ${SHAPES:-serve/1 handler/1 serve/10 floor/1}; do
    name=${shape//\//-}
    echo "webhook-profile: $shape, $NOTIFICATIONS notifications..." >&2
    # The server runs on core 0 (webhook_e2e pins it there); record that core only.
    WEBHOOK_E2E_ONLY=$shape perf record -q -F $HZ -C 0 --call-graph dwarf,16384 \
        -o "$work/$name.data" -- taskset -c 1 "$BIN/examples/webhook_e2e" \
        "$BIN/teams-presence" "$NOTIFICATIONS" | grep '^| [a-z]' >&2
    # The server's runtime threads (openssl speed shares the core and is left out).
    perf script -i "$work/$name.data" --comm tokio-rt-worker -F comm,ip,sym,dso \
        >"$work/$name" 2>/dev/null
    rm "$work/$name.data"
    outputs+=("$work/$name")
done
# The warm-up of 200 notifications is recorded too.
python3 "$ROOT/scripts/webhook-profile.py" $((NOTIFICATIONS + 200)) $HZ "${outputs[@]}"
