#!/usr/bin/env bash
# The webhook's user-space instructions per notification, end to end, against the
# instructions of one RSA private-key operation of `openssl speed rsa2048`: counted by
# valgrind (Debian: `apt-get install valgrind`), so a shared machine's noise does not move
# them the way it moves `scripts/webhook-e2e.sh`'s timings. The kernel's share (TCP,
# SQLite's file locks and WAL writes) is not in these counts: see docs/performance.md.
#
#   scripts/webhook-instructions.sh            # the four shapes
#   SHAPES="serve/1" scripts/webhook-instructions.sh
#
# The server is the release binary run under cachegrind by `examples/webhook_e2e` (a wrapper
# script as its BIN); each shape runs with 100 and with 300 notifications and the difference
# is divided by 200, so starting, seeding and stopping cancel out.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
cd "$ROOT"
command -v valgrind >/dev/null || { echo "webhook-instructions: needs valgrind" >&2; exit 2; }
cargo build --release --bin teams-presence --example webhook_e2e >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The floor: EVP_PKEY_sign's inclusive instructions over the private-key operations counted.
valgrind --tool=callgrind --callgrind-out-file="$work/speed.out" \
    openssl speed -seconds 2 -mr rsa2048 >"$work/speed.txt" 2>&1
ops=$(awk -F: '/^\+R1:/ {print $2}' "$work/speed.txt")
sign=$(callgrind_annotate --inclusive=yes "$work/speed.out" 2>/dev/null |
    awk '/EVP_PKEY_sign /{gsub(",", "", $1); print $1; exit}')
[[ -n "$ops" && -n "$sign" ]] || { echo "webhook-instructions: no openssl speed figure" >&2; exit 1; }
floor=$((sign / ops))

cat >"$work/bin" <<EOF
#!/bin/sh
exec valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=$work/cg.%p $TARGET/release/teams-presence "\$@"
EOF
chmod +x "$work/bin"

echo "openssl speed rsa2048: $ops private-key operations, $floor instructions each (callgrind)"
echo "| path/notifications per request | instructions per notification | floor / ours |"
echo "|---|---|---|"
for shape in ${SHAPES:-handler/10 handler/1 serve/10 serve/1}; do
    declare -A ir=()
    for n in 100 300; do
        rm -f "$work"/cg.*
        WEBHOOK_E2E_ONLY=$shape "$TARGET/release/examples/webhook_e2e" "$work/bin" "$n" >/dev/null
        ir[$n]=$(awk '/^summary:/ {print $2}' "$work"/cg.*)
    done
    per=$(((ir[300] - ir[100]) / 200))
    awk -v s="$shape" -v p="$per" -v f="$floor" 'BEGIN {printf "| %s | %d | %.3f |\n", s, p, f / p}'
done
