#!/usr/bin/env bash
# The N longest functions of the crate, as clippy's `too_many_lines` counts them (lines of
# code: blank lines and comments do not count), longest first:
#
#   bash scripts/longest-functions.sh            # the 15 longest in the library
#   bash scripts/longest-functions.sh 30         # the 30 longest
#   bash scripts/longest-functions.sh 15 --all-targets --features busylight
#
# Everything after N goes to `cargo clippy` (default: `--lib`, the library without its tests).
# It runs clippy with only that lint on and its threshold at 0 (a clippy.toml in a temporary
# CLIPPY_CONF_DIR), so every function is reported with its length, then sorts. The lint is
# not on in the normal build; this only measures.
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-15}
shift || true
[ $# -gt 0 ] || set -- --lib

conf=$(mktemp -d)
trap 'rm -rf "$conf"' EXIT
echo 'too-many-lines-threshold = 0' > "$conf/clippy.toml"

CLIPPY_CONF_DIR="$conf" cargo clippy --locked --quiet --message-format=json "$@" -- \
  -A clippy::all -W clippy::too_many_lines |
  python3 -c '
import json, re, sys
n = int(sys.argv[1])
seen = {}
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    msg = m.get("message") or {}
    if (msg.get("code") or {}).get("code") != "clippy::too_many_lines":
        continue
    lines = int(re.search(r"\((\d+)/\d+\)", msg["message"]).group(1))
    span = next(s for s in msg["spans"] if s["is_primary"])
    text = "".join(t["text"] for t in span.get("text", [])[:3])
    name = re.search(r"\bfn\s+(\w+)", text)
    where = "%s:%d" % (span["file_name"], span["line_start"])
    seen[where] = (lines, where, name.group(1) if name else "?")
for lines, where, name in sorted(seen.values(), key=lambda r: (-r[0], r[1]))[:n]:
    print("%5d  %-45s %s" % (lines, where, name))
' "$n"
