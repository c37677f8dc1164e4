#!/usr/bin/env bash
# Resident memory of `subscribe` idle and after 1,000 messages, against the Python fakes.
#   scripts/edge-footprint.sh target/release/teams-presence
#   RUNNER=qemu-arm scripts/edge-footprint.sh "$(scripts/build-armv7.sh)"
# Prints VmRSS (and the peak, VmHWM; RssAnon is the heap and stacks, RssFile the mapped
# binary and libraries), the thread count from /proc/PID/status and the CPU time used so far. Under a RUNNER the
# process is the emulator with the program inside it; then the line after splits its RSS
# (from /proc/PID/smaps) into the program's (its binary, heap and stacks, which live in the
# emulator's guest address space) and the emulator's own (its binary, libraries, translated
# code cache and heap).
set -euo pipefail
BIN=${1:?usage: $0 path/to/teams-presence}
RUNNER=${RUNNER-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
trap 'kill $SUB $FAKES 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

python3 "$ROOT/tests/fakes/edge_fakes.py" --ready-file "$WORK/ports.json" --key 'k=' --hue-key hk &
FAKES=$!
for _ in $(seq 50); do [ -f "$WORK/ports.json" ] && break; sleep 0.1; done
SB=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["servicebus"])' "$WORK/ports.json")
HUE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hue"])' "$WORK/ports.json")

env -i PATH="$PATH" RUST_LOG=warn \
  ServiceBusConnection="Endpoint=sb://fake.servicebus.windows.net/;SharedAccessKeyName=edge;SharedAccessKey=k=" \
  SERVICEBUS_ENDPOINT="http://127.0.0.1:$SB" PRESENCE_SUBSCRIPTION=pi \
  HUE_BRIDGE="http://127.0.0.1:$HUE" HUE_APPLICATION_KEY=hk HUE_TARGETS=light:1,light:2,group:1 \
  $RUNNER "$BIN" subscribe --data-dir "$WORK/data" 2>"$WORK/sub.log" &
SUB=$!
rss() {
  echo "$(grep -E '^(VmRSS|VmHWM|RssAnon|RssFile|Threads)' /proc/$SUB/status | tr -s ' \t' ' ' | paste -sd' ')" \
    "CPU: $(awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f s", ($14 + $15) / hz}' /proc/$SUB/stat)"
  [ -z "$RUNNER" ] || python3 - "$SUB" "$(basename "$BIN")" <<'PY'
import sys
# A 32-bit guest lives in one 4 GiB window of the emulator's address space: the mappings of
# the program's binary mark it; every mapping inside the window is the program's.
pid, name = sys.argv[1], sys.argv[2]
maps, cur = [], None
for line in open("/proc/%s/smaps" % pid):
    f = line.split()
    if "-" in f[0] and len(f) >= 5 and ":" in f[3]:
        lo, hi = (int(x, 16) for x in f[0].split("-"))
        cur = [lo, hi, f[5] if len(f) > 5 else "", 0]
        maps.append(cur)
    elif f[0] == "Rss:":
        cur[3] = int(f[1])
base = min(m[0] for m in maps if m[2].endswith("/" + name))
lo = base & ~((1 << 32) - 1)
guest = [m for m in maps if lo <= m[0] < lo + (1 << 32)]
ours = sum(m[3] for m in maps) - sum(m[3] for m in guest)
binary = sum(m[3] for m in guest if m[2].endswith("/" + name))
print("  program %d kB (binary %d kB, heap and stacks %d kB); emulator %d kB"
      % (sum(m[3] for m in guest), binary, sum(m[3] for m in guest) - binary, ours))
PY
}
sleep 5
echo "idle:          $(rss)"

# 1,000 messages: 10 users, states rotating, in bursts of 20 every 0.2 s.
python3 - "$SB" <<'PY'
import json, sys, time, urllib.request
states = [("Available","Available"),("Busy","InACall"),("Busy","InAMeeting"),("Away","Away"),("DoNotDisturb","Presenting")]
url = "http://127.0.0.1:%s/_control/enqueue" % sys.argv[1]
n = 0
for burst in range(50):
    msgs = []
    for _ in range(20):
        n += 1
        av, ac = states[n % len(states)]
        msgs.append({"type":"presence.changed","version":1,"userId":"user-%d" % (n % 10),"tenantId":"t",
                     "availability":av,"activity":ac,"source":"poll",
                     "observedAt":"2026-11-22T10:00:00.000Z","sequence":"%020d-000000" % n})
    urllib.request.urlopen(urllib.request.Request(url, json.dumps(msgs).encode(), method="POST"))
    time.sleep(0.2)
deadline = time.time() + 300
while time.time() < deadline:
    s = json.load(urllib.request.urlopen("http://127.0.0.1:%s/_control/stats" % sys.argv[1]))
    if s["completed"] == 1000:
        break
    time.sleep(0.5)
print("completed:", s)
PY
echo "after 1,000:   $(rss)"
echo "hue PUTs:      $(python3 -c 'import json,sys,urllib.request; print(len(json.load(urllib.request.urlopen("http://127.0.0.1:%s/_control/puts" % sys.argv[1]))))' "$HUE")"
