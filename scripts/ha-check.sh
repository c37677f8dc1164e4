#!/usr/bin/env bash
# Checks the MQTT discovery against a real Home Assistant: starts Home Assistant headless
# against a real mosquitto, sets up its MQTT integration and an access token through its own
# APIs (onboarding, config flow), publishes a scripted set of people through the library's
# MQTT sink (examples/ha_publish.rs), then reads what Home Assistant made of them (entity
# ids, states, attributes, device names) and fails on any warning or error in its log about
# our payloads.
#
#   bash scripts/ha-check.sh               # the check
#   bash scripts/ha-check.sh --plant-bad   # also publishes three bad configs: must fail
#
# Cached under ${XDG_CACHE_HOME:-~/.cache}/teams-presence: a Python built with pyenv's
# python-build from Debian's source package (Home Assistant 2026.x needs Python >= 3.13.2),
# and one virtualenv per Home Assistant version (Home Assistant installs the requirements
# of its default integrations into it on its first start). Needs root for apt-get only
# when build dependencies are missing. Settings: HA_VERSION, HA_PYTHON (an interpreter to
# use instead of building one), HA_KEEP=1 (keep the work directory).
set -euo pipefail

HA_VERSION="${HA_VERSION:-2026.2.3}"
PY_VERSION="3.13.15"
PY_SOURCE_VERSION="3.13.15-1"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/teams-presence"
VENV="$CACHE/ha-$HA_VERSION"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PLANT_BAD=0
if [[ "${1:-}" == "--plant-bad" ]]; then
    PLANT_BAD=1
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [[ "${HA_KEEP:-0}" == 1 ]]; then
        echo "work directory kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

log() { printf '%s ha-check: %s\n' "$(date +%T)" "$*" >&2; }
die() {
    log "FAIL: $*"
    exit 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Debian packages, installed only when missing.
ensure_tools() {
    local missing=()
    command -v mosquitto >/dev/null || missing+=(mosquitto)
    command -v mosquitto_pub >/dev/null || missing+=(mosquitto-clients)
    command -v curl >/dev/null || missing+=(curl)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# Debian packages needed to build Python, installed only when missing.
ensure_build_deps() {
    local missing=() p
    for p in build-essential libssl-dev libffi-dev libsqlite3-dev zlib1g-dev libbz2-dev \
        liblzma-dev libreadline-dev libncurses-dev uuid-dev; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# Python's source from Debian's source package (the orig tarball is upstream's), fetched with
# apt from the mirror this machine already uses, checked by apt against the signed index.
fetch_python_source() {
    local dir="$1" mirror
    mirror="$(apt-cache policy | grep -o 'http[^ ]*/debian ' | head -n 1 | tr -d ' ')"
    [[ -n "$mirror" ]] || die "no Debian mirror in apt's sources"
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    printf 'deb-src %s sid main\ndeb-src %s forky main\n' "$mirror" "$mirror" >"$dir/sources.list"
    local opts=(-o "Dir::Etc::SourceList=$dir/sources.list" -o "Dir::Etc::SourceParts=$dir/none"
        -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache" -o "APT::Sandbox::User=root")
    apt-get "${opts[@]}" update -qq
    (cd "$dir" && apt-get "${opts[@]}" source --download-only -qq "python3.13=$PY_SOURCE_VERSION")
    [[ -f "$dir/python3.13_$PY_VERSION.orig.tar.xz" ]] || die "no Python $PY_VERSION source"
}

python_bin() {
    if [[ -n "${HA_PYTHON:-}" ]]; then
        echo "$HA_PYTHON"
        return
    fi
    local prefix="$CACHE/python-$PY_VERSION"
    if [[ ! -x "$prefix/bin/python3" ]]; then
        log "building Python $PY_VERSION into $prefix (once)"
        ensure_build_deps
        local src="$WORK/python-src" build
        fetch_python_source "$src"
        build="$(command -v python-build || echo "${PYENV_ROOT:-$HOME/.pyenv}/plugins/python-build/bin/python-build")"
        [[ -x "$build" ]] || die "pyenv's python-build is needed to build Python"
        printf 'install_package "Python-%s" "file://%s" standard verify_py313 copy_python_gdb ensurepip\n' \
            "$PY_VERSION" "$src/python3.13_$PY_VERSION.orig.tar.xz" >"$WORK/definition"
        MAKE_OPTS="-j$(nproc)" "$build" "$WORK/definition" "$prefix.tmp" >"$WORK/python-build.log" 2>&1 ||
            { tail -n 30 "$WORK/python-build.log" >&2; die "Python build failed"; }
        mv "$prefix.tmp" "$prefix"
    fi
    echo "$prefix/bin/python3"
}

ensure_venv() {
    [[ -f "$VENV/.installed" ]] && return
    local py
    py="$(python_bin)"
    log "installing Home Assistant $HA_VERSION into $VENV (once)"
    rm -rf "$VENV"
    "$py" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    # The MQTT integration's requirement (its manifest.json), so nothing is installed later
    # for it; the default integrations' requirements Home Assistant installs on first start.
    "$VENV/bin/pip" install -q "homeassistant==$HA_VERSION" "paho-mqtt==2.1.0"
    touch "$VENV/.installed"
}

start_mosquitto() {
    MQTT_PORT="$(free_port)"
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$MQTT_PORT" >"$WORK/mosquitto.conf"
    mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
    PIDS+=("$!")
}

write_ha_config() {
    HA_PORT="$(free_port)"
    CONFIG="$WORK/ha"
    mkdir -p "$CONFIG"
    cat >"$CONFIG/configuration.yaml" <<EOF
homeassistant:
  name: ha-check
  latitude: 52.37
  longitude: 4.89
  elevation: 0
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: NL
  language: en
http:
  server_host: 127.0.0.1
  server_port: $HA_PORT
api:
config:
onboarding:
logger:
  default: warning
EOF
}

api() { # METHOD PATH [JSON]
    local args=(-sS --fail-with-body -X "$1" "http://127.0.0.1:$HA_PORT$2" -H 'Content-Type: application/json')
    [[ -n "${TOKEN:-}" ]] && args+=(-H "Authorization: Bearer $TOKEN")
    [[ $# -ge 3 ]] && args+=(-d "$3")
    curl "${args[@]}"
}

start_ha() {
    log "starting Home Assistant $HA_VERSION on port $HA_PORT"
    "$VENV/bin/hass" --config "$CONFIG" --log-no-color >"$WORK/hass.out" 2>&1 &
    HA_PID="$!"
    PIDS+=("$HA_PID")
    local i
    # The first start installs the default integrations' requirements: minutes.
    for ((i = 0; i < 900; i++)); do
        if curl -sf "http://127.0.0.1:$HA_PORT/api/onboarding" >/dev/null 2>&1; then
            return
        fi
        kill -0 "$HA_PID" 2>/dev/null || { tail -n 40 "$WORK/hass.out" >&2; die "Home Assistant exited"; }
        sleep 1
    done
    die "Home Assistant did not answer within 900 s"
}

# The owner through onboarding, an access token through the login code, and the MQTT
# integration through its config flow: Home Assistant's own APIs, no private files.
set_up_ha() {
    local client="http://127.0.0.1:$HA_PORT/" code flow step
    code="$(api POST /api/onboarding/users \
        "{\"client_id\":\"$client\",\"name\":\"Check\",\"username\":\"check\",\"password\":\"check-$RANDOM$RANDOM\",\"language\":\"en\"}" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["auth_code"])')"
    TOKEN="$(curl -sS --fail-with-body "http://127.0.0.1:$HA_PORT/auth/token" \
        -d grant_type=authorization_code -d "code=$code" --data-urlencode "client_id=$client" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
    flow="$(api POST /api/config/config_entries/flow '{"handler":"mqtt","show_advanced_options":false}')"
    step="$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["flow_id"], d.get("step_id"))' "$flow")"
    [[ "${step#* }" == broker ]] || die "unexpected MQTT config flow: $flow"
    flow="$(api POST "/api/config/config_entries/flow/${step% *}" "{\"broker\":\"127.0.0.1\",\"port\":$MQTT_PORT}")"
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(d.get("type") != "create_entry")' "$flow" ||
        die "MQTT integration not set up: $flow"
    log "MQTT integration set up against mosquitto on port $MQTT_PORT"
}

publish() {
    log "building the publisher"
    (cd "$ROOT" && cargo build --quiet --example ha_publish)
    MQTT_URL="mqtt://127.0.0.1:$MQTT_PORT" \
        MQTT_NAMES="00000000-0000-4000-8000-00000000a001=Adele Vance" \
        "$ROOT/target/debug/examples/ha_publish" >"$WORK/publisher.out" 2>"$WORK/publisher.err" &
    PIDS+=("$!")
    local i
    for ((i = 0; i < 120; i++)); do
        grep -qx ready "$WORK/publisher.out" && break
        sleep 0.5
    done
    grep -qx ready "$WORK/publisher.out" || { cat "$WORK/publisher.err" >&2; die "the publisher did not finish"; }
    log "published; retained on the broker:"
    mosquitto_sub -p "$MQTT_PORT" -t 'homeassistant/#' -t 'teams-presence/#' -v -W 2 2>/dev/null |
        sed 's/^/    /' >&2 || true
}

# Our payloads before they were fixed (the light's templates on "color": null, a sensor whose
# value is outside its options, object_id without default_entity_id), published beside ours:
# each must be reported.
plant_bad() {
    log "planting three bad payloads"
    mosquitto_pub -p "$MQTT_PORT" -r -t homeassistant/light/ha_check_planted/config -m \
        '{"name":"Planted","unique_id":"ha_check_planted","schema":"template","state_topic":"ha-check/planted","command_topic":"ha-check/planted/set","command_on_template":"on","command_off_template":"off","state_template":"{{ '"'"'off'"'"' if value_json.color in (none, '"'"'#000000'"'"') else '"'"'on'"'"' }}","red_template":"{{ value_json.color[1:3] | int(base=16) }}","green_template":"{{ value_json.color[3:5] | int(base=16) }}","blue_template":"{{ value_json.color[5:7] | int(base=16) }}"}'
    mosquitto_pub -p "$MQTT_PORT" -r -t homeassistant/sensor/ha_check_planted/config -m \
        '{"name":"Planted","unique_id":"ha_check_planted_sensor","state_topic":"ha-check/planted","value_template":"{{ value_json.activity }}","device_class":"enum","options":["Available","Busy"]}'
    mosquitto_pub -p "$MQTT_PORT" -r -t homeassistant/sensor/ha_check_planted_old/config -m \
        '{"name":"Planted old","unique_id":"ha_check_planted_old","object_id":"ha_check_planted_old","state_topic":"ha-check/planted","value_template":"{{ value_json.activity }}"}'
    sleep 2
    mosquitto_pub -p "$MQTT_PORT" -r -t ha-check/planted -m '{"activity":"SomethingNew","color":null}'
}

check() {
    local ids
    ids="$(cat "$WORK/publisher.out")"
    sleep 3
    api GET /api/states >"$WORK/states.json"
    # Stop Home Assistant cleanly: it writes its registries (device names) on the way out.
    kill -TERM "$HA_PID"
    wait "$HA_PID" || true
    python3 - "$WORK/states.json" "$CONFIG/.storage" "$CONFIG/home-assistant.log" "$PLANT_BAD" <<EOF
import json, re, sys
states, storage, log_file, planted = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
people = dict(reversed(line.split()) for line in """$ids""".splitlines() if " " in line)
by_id = {s["entity_id"]: s for s in json.load(open(states))}
ours = {k: v for k, v in by_id.items() if "teams_presence" in k}
print("Entities Home Assistant made of our discovery:")
for eid, s in sorted(ours.items()):
    a = s["attributes"]
    extra = {k: a[k] for k in ("device_class", "rgb_color", "brightness", "availability", "activity", "color") if k in a}
    if "options" in a:
        extra["options"] = len(a["options"])
    print(f"  {eid:60} {s['state']:16} {a.get('friendly_name')!r} {json.dumps(extra)}")
devices = json.load(open(f"{storage}/core.device_registry"))["data"]["devices"]
names = {i[1]: d["name"] for d in devices for i in d["identifiers"] if i[0] == "mqtt"}
print("Devices:", json.dumps({k: v for k, v in names.items() if k.startswith("teams_presence")}, indent=1))
fails = []
def expect(what, got, want):
    if got != want:
        fails.append(f"{what}: got {got!r}, want {want!r}")
def state(eid):
    return by_id.get(eid, {}).get("state")
def ent(domain, role, suffix=""):
    return f"{domain}.teams_presence_{people[role]}{suffix}".replace("-", "_")
expect("named activity", state(ent("sensor", "named")), "InACall")
expect("named availability", state(ent("sensor", "named", "_availability")), "Busy")
expect("named light", state(ent("light", "named", "_light")), "on")
expect("named light colour", by_id.get(ent("light", "named", "_light"), {}).get("attributes", {}).get("rgb_color"), [255, 0, 0])
expect("named friendly name", by_id.get(ent("sensor", "named"), {}).get("attributes", {}).get("friendly_name"), "Adele Vance Presence")
expect("named device", names.get("teams_presence_" + people["named"]), "Adele Vance")
expect("future activity", state(ent("sensor", "future")), "PresenceUnknown")
expect("future availability", state(ent("sensor", "future", "_availability")), "PresenceUnknown")
expect("keep activity", state(ent("sensor", "keep")), "Away")
expect("keep light (left as it was: never shown)", state(ent("light", "keep", "_light")), "unknown")
expect("keep device (named later)", names.get("teams_presence_" + people["keep"]), "Megan Bowen")
expect("signin activity", state(ent("sensor", "signin")), "SignInRequired")
expect("signin availability", state(ent("sensor", "signin", "_availability")), "PresenceUnknown")
for eid in (ent("sensor", "removed"), ent("sensor", "removed", "_availability"), ent("light", "removed", "_light")):
    expect(f"{eid} after removal", eid in by_id, False)
expect("removed device", ("teams_presence_" + people["removed"]) in names, False)
for s in ours.values():
    if s["state"] == "unavailable":
        fails.append(f"{s['entity_id']} is unavailable")
log = open(log_file).read()
# Every warning or error about MQTT, its entities or our topics, by its first line (a
# traceback's file paths may hold this cache's name).
entries = re.split(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", log)
bad = [e for e in entries if re.search(r" (WARNING|ERROR|CRITICAL) ", e.splitlines()[0]) and re.search(r"mqtt|teams.presence|ha.check|template", e.splitlines()[0], re.I)]
print(f"Home Assistant log: {len(entries)} entries, {len(bad)} warnings/errors about MQTT or templates")
for e in bad:
    print("  " + e.strip().replace("\n", "\n  ")[:1500])
fails += [f"log: {e.splitlines()[0][:200]}" for e in bad]
if fails:
    print("FAILED:\n  " + "\n  ".join(fails))
    sys.exit(1)
print("OK: every entity as expected, nothing about our payloads in the log")
EOF
}

main() {
    local started=$SECONDS
    ensure_tools
    ensure_venv
    start_mosquitto
    write_ha_config
    start_ha
    set_up_ha
    publish
    if ((PLANT_BAD)); then
        plant_bad
    fi
    check
    log "done in $((SECONDS - started)) s"
}

main "$@"
