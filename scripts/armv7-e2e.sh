#!/usr/bin/env bash
# End to end for the Pi binary: loopback fakes (tests/fakes/edge_fakes.py: Service Bus
# peek-lock + Hue v1 bridge), `subscribe` under qemu-arm against them, one presence.changed
# message in, the expected PUT out, the message completed, then a clean SIGTERM shutdown.
#
#   scripts/armv7-e2e.sh target/armv7-unknown-linux-gnueabihf/pi/teams-presence
#   RUNNER= scripts/armv7-e2e.sh target/debug/teams-presence     # same test, native binary
#
# Exit status 0 on success, 1 with a reason on failure.
set -euo pipefail

BIN=${1:?usage: $0 path/to/teams-presence}
RUNNER=${RUNNER-qemu-arm}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
FAKES_PID= SUB_PID=

cleanup() {
  [ -n "$SUB_PID" ] && kill "$SUB_PID" 2>/dev/null || true
  [ -n "$FAKES_PID" ] && kill "$FAKES_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "armv7-e2e: FAIL: $*" >&2; echo "--- subscriber log" >&2; cat "$WORK/sub.log" >&2 || true; exit 1; }

python3 "$ROOT/tests/fakes/edge_fakes.py" --ready-file "$WORK/ports.json" \
  --key-name edge --key 'e2e-sas-key=' --hue-key e2e-hue-key &
FAKES_PID=$!
for _ in $(seq 50); do [ -f "$WORK/ports.json" ] && break; sleep 0.1; done
[ -f "$WORK/ports.json" ] || fail "fakes did not start"
SB=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["servicebus"])' "$WORK/ports.json")
HUE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hue"])' "$WORK/ports.json")

# Only what `subscribe` needs; nothing from the caller's environment leaks in.
env -i PATH="$PATH" RUST_LOG=info \
  ServiceBusConnection="Endpoint=sb://fake.servicebus.windows.net/;SharedAccessKeyName=edge;SharedAccessKey=e2e-sas-key=" \
  SERVICEBUS_ENDPOINT="http://127.0.0.1:$SB" \
  PRESENCE_TOPIC=presence PRESENCE_SUBSCRIPTION=pi \
  HUE_BRIDGE="http://127.0.0.1:$HUE" HUE_APPLICATION_KEY=e2e-hue-key HUE_TARGETS=light:1 \
  $RUNNER "$BIN" subscribe --data-dir "$WORK/data" >"$WORK/sub.log" 2>&1 &
SUB_PID=$!

python3 - "$SB" <<'EOF'
import json, sys, urllib.request
msg = {"type": "presence.changed", "version": 1, "userId": "u-e2e", "tenantId": "t",
       "availability": "Busy", "activity": "InACall", "source": "notification",
       "observedAt": "2026-11-22T10:15:30.123Z", "sequence": "00000000000000000001-000000"}
urllib.request.urlopen(urllib.request.Request(
    "http://127.0.0.1:%s/_control/enqueue" % sys.argv[1], json.dumps(msg).encode(), method="POST"))
EOF

# Wait (up to 90 s: qemu start-up is slow) for the PUT and the completion.
python3 - "$SB" "$HUE" <<'EOF' || fail "no expected PUT / completion (see log)"
import json, sys, time, urllib.request
sb, hue = sys.argv[1:]
get = lambda port, p: json.load(urllib.request.urlopen("http://127.0.0.1:%s%s" % (port, p)))
deadline = time.time() + 90
while time.time() < deadline:
    puts = get(hue, "/_control/puts")
    stats = get(sb, "/_control/stats")
    if puts and stats["completed"] == 1 and stats["pending"] == 0:
        assert len(puts) == 1, puts
        p = puts[0]
        assert p["path"] == "/lights/1/state", p
        b = p["body"]
        assert b["on"] is True and b["bri"] == 254, b
        assert abs(b["xy"][0] - 0.7006) < 0.001 and abs(b["xy"][1] - 0.2993) < 0.001, b
        print("armv7-e2e: PUT", json.dumps(p), "and message completed")
        sys.exit(0)
    time.sleep(0.5)
print("timed out; puts=%s stats=%s" % (get(hue, "/_control/puts"), get(sb, "/_control/stats")))
sys.exit(1)
EOF

kill -TERM "$SUB_PID"
for _ in $(seq 100); do kill -0 "$SUB_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$SUB_PID" 2>/dev/null; then fail "subscriber did not stop on SIGTERM"; fi
wait "$SUB_PID" && rc=0 || rc=$?
SUB_PID=
[ "$rc" = 0 ] || fail "subscriber exited with $rc after SIGTERM"
grep -q 'e2e-sas-key\|e2e-hue-key' "$WORK/sub.log" && fail "a secret appeared in the log"
[ -f "$WORK/data/edge-state.json" ] || fail "no state file written"
echo "armv7-e2e: OK"
