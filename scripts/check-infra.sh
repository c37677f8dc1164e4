#!/usr/bin/env bash
# Static checks of infra/ (no Azure access needed):
#   0. no Bicep file sets a site property or app setting that a Flex Consumption app
#      rejects or ignores (ftpsState, alwaysOn, linuxFxVersion, use32BitWorkerProcess,
#      netFrameworkVersion, FUNCTIONS_WORKER_RUNTIME, WEBSITE_RUN_FROM_PACKAGE): ARM fails
#      the deployment on some of them and checkov knows none of them. The check first
#      proves it works on a copy of infra/ with a planted `ftpsState` (self-test);
#   1. every .bicep file parses with pycep, the Bicep parser checkov uses. checkov
#      logs a file it cannot parse at debug level and scans the rest, so without this
#      step a syntax error would look like "fewer resources, all passed";
#   2. checkov over infra/ with the Bicep framework; any failed check fails this script.
#      Accepted exceptions are skipped inline in the Bicep with
#      `// checkov:skip=CKV_...:reason`;
#   3. infra/main.parameters.json loaded exactly as azd >= 1.26 loads it
#      (scripts/azd_parameters.py, a port of azd's loadParameters and drone/envsubst):
#      strict JSON first, then ${VAR} / ${VAR=default} inside string values, array and object
#      parameters given as a string parsed as JSON after substitution; then checked against
#      main.bicep's parameters (declared, right type, required ones given). Run with the
#      least azd sets and with an edge plan rendered by infra/hooks/edge_plan.py for two
#      edges (one with 300 users). It then proves it fails on a copy of the file with the
#      edgePlan value planted unquoted (self-test).
#
# checkov comes from PyPI into a venv under .venv-checkov (created on first run).
# A Bicep compiler is not used: none is published on PyPI or npm (the npm `bicep-node`
# package only wraps a binary it downloads from GitHub at run time).
#
# Usage: scripts/check-infra.sh            (from anywhere in the repository)
# Env:   CHECKOV_VENV   venv location (default: <repo>/.venv-checkov)
#        CHECKOV_VERSION pip requirement (default: checkov==3.3.30, the version checked)
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

venv=${CHECKOV_VENV:-$root/.venv-checkov}
requirement=${CHECKOV_VERSION:-checkov==3.3.30}

if [[ ! -x "$venv/bin/checkov" ]]; then
    echo "check-infra: installing $requirement into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$requirement"
fi

# Flex Consumption: properties of the classic plans that a Flex site must not carry.
# Comments are ignored (so the reasons below can name them); strings are not, since an
# app setting name is a key and a value can be one too. Usage: flex_check DIR
flex_check() {
    python3 - "$1" <<'PY'
import pathlib, re, sys

BANNED = ["ftpsState", "alwaysOn", "linuxFxVersion", "use32BitWorkerProcess",
          "netFrameworkVersion", "FUNCTIONS_WORKER_RUNTIME", "WEBSITE_RUN_FROM_PACKAGE"]
pattern = re.compile(r"\b(" + "|".join(BANNED) + r")\b")

def code_only(text):
    """The text with // and /* */ comments blanked out, strings kept."""
    out, i, n, quote = [], 0, len(text), False
    while i < n:
        c = text[i]
        if quote:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1]); i += 2; continue
            if c == "'":
                quote = False
            i += 1
        elif c == "'":
            quote = True; out.append(c); i += 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            end = n if j < 0 else j + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:end]))
            i = end
        else:
            out.append(c); i += 1
    return "".join(out)

root = pathlib.Path(sys.argv[1])
found = 0
for path in sorted(root.rglob("*.bicep")):
    for lineno, line in enumerate(code_only(path.read_text(encoding="utf-8")).splitlines(), 1):
        for m in pattern.finditer(line):
            found += 1
            print(f"check-infra: {path}:{lineno}: `{m.group(1)}` is not accepted on a "
                  "Flex Consumption app (set it through functionAppConfig, or drop it)",
                  file=sys.stderr)
print(f"check-infra: Flex Consumption property check: {found} forbidden "
      f"propert{'y' if found == 1 else 'ies'} in {root}")
sys.exit(1 if found else 0)
PY
}

echo "check-infra: Flex property check self-test (a copy of infra/ with a planted ftpsState)"
planted=$(mktemp -d)
trap 'rm -rf "$planted"' EXIT
cp -r infra "$planted/"
python3 - "$planted/infra/modules/functionapp.bicep" <<'PY'
import sys
path = sys.argv[1]
text = open(path, encoding="utf-8").read()
marker = "siteConfig: {"
assert marker in text, f"no `{marker}` in {path} to plant ftpsState into"
open(path, "w", encoding="utf-8").write(text.replace(marker, marker + "\n      ftpsState: 'Disabled'", 1))
PY
if flex_check "$planted/infra" 2>"$planted/err"; then
    echo "check-infra: self-test FAILED: the planted ftpsState was not detected" >&2
    exit 1
fi
grep -q 'ftpsState' "$planted/err" || { cat "$planted/err" >&2; echo "check-infra: self-test FAILED: wrong complaint" >&2; exit 1; }
echo "check-infra: self-test OK: $(head -n 1 "$planted/err" | sed "s|$planted/||")"

echo "check-infra: Flex property check of infra/"
flex_check infra

echo "check-infra: parsing infra/**/*.bicep with pycep"
"$venv/bin/python" - <<'PY'
import pathlib, sys
from pycep import BicepParser

parser = BicepParser()
bad = 0
files = sorted(pathlib.Path("infra").rglob("*.bicep"))
for path in files:
    try:
        parser.parse(text=path.read_text(encoding="utf-8"))
    except Exception as err:  # pycep raises lark errors of several kinds
        bad += 1
        first = str(err).strip().splitlines()[0]
        print(f"check-infra: {path}: does not parse: {first}", file=sys.stderr)
print(f"check-infra: {len(files) - bad}/{len(files)} Bicep files parse")
sys.exit(1 if bad or not files else 0)
PY

# infra/main.parameters.json as azd loads it, with `env -i` so nothing of this shell leaks in.
# Usage: azd_params FILE [VAR=value ...]
azd_params() {
    local file=$1
    shift
    env -i PATH="$PATH" AZURE_ENV_NAME=tp-check AZURE_LOCATION=swedencentral \
        TEAMS_PRESENCE_CLIENT_ID=11111111-2222-3333-4444-555555555555 "$@" \
        python3 scripts/azd_parameters.py --check "$file" infra/main.bicep
}

echo "check-infra: infra/main.parameters.json as azd loads it, with the least azd sets"
azd_params infra/main.parameters.json >"$planted/least.json"
python3 - "$planted/least.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert "edgePlan" in r["omitted"], r   # unset: Bicep's default, no edges
print(f"check-infra:   resolved {sorted(r['parameters'])}, omitted {r['omitted']}")
PY

echo "check-infra: infra/main.parameters.json as azd loads it, with a rendered edge plan"
edges=$(python3 - <<'PY'
import json, uuid
many = [str(uuid.UUID(int=i + 1)) for i in range(300)]
print(json.dumps([{"name": "pi-home", "users": many}, {"name": "pi-office", "users": ["*"]}]))
PY
)
plan=$(env -i PATH="$PATH" TEAMS_PRESENCE_EDGES="$edges" python3 infra/hooks/edge_plan.py)
azd_params infra/main.parameters.json TEAMS_PRESENCE_EDGE_PLAN="$plan" >"$planted/plan.json"
python3 - "$planted/plan.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p = r["parameters"]["edgePlan"]
assert [e["name"] for e in p["edges"]] == ["pi-home", "pi-office"], p["edges"]
assert all(len(x["sqlExpression"]) <= 1024 for x in p["rules"])
print(f"check-infra:   edgePlan: {len(p['edges'])} edges, {len(p['rules'])} rules, the longest "
      f"{max(len(x['sqlExpression']) for x in p['rules'])} characters")
PY

echo "check-infra: azd parameter loading self-test (a copy of main.parameters.json with an unquoted \${...})"
cp infra/main.parameters.json "$planted/main.parameters.json"
python3 - "$planted/main.parameters.json" <<'PY'
import sys
path = sys.argv[1]
text = open(path, encoding="utf-8").read()
quoted = '"${TEAMS_PRESENCE_EDGE_PLAN}"'
if quoted not in text:
    sys.exit(f"check-infra: self-test cannot run: no {quoted} in main.parameters.json to unquote")
open(path, "w", encoding="utf-8").write(text.replace(quoted, "${TEAMS_PRESENCE_EDGE_PLAN}", 1))
PY
if azd_params "$planted/main.parameters.json" >/dev/null 2>"$planted/err"; then
    echo "check-infra: self-test FAILED: the unquoted \${...} was accepted" >&2
    exit 1
fi
grep -q "invalid character '\$' looking for beginning of value" "$planted/err" || { cat "$planted/err" >&2; echo "check-infra: self-test FAILED: wrong complaint" >&2; exit 1; }
echo "check-infra: self-test OK: $(head -n 1 "$planted/err")"

echo "check-infra: checkov -d infra --framework bicep --quiet --compact"
# --skip-download: do not ask the Prisma Cloud API for guidelines (no network needed).
out=$("$venv/bin/checkov" -d infra --framework bicep --quiet --compact --skip-download 2>&1) && status=0 || status=$?
printf '%s\n' "$out"

summary=$(printf '%s\n' "$out" | grep -E '^Passed checks: [0-9]+, Failed checks: [0-9]+' | tail -n 1 || true)
if [[ -z "$summary" ]]; then
    echo "check-infra: checkov printed no summary line (exit $status)" >&2
    exit 1
fi
failed=$(sed -E 's/.*Failed checks: ([0-9]+).*/\1/' <<<"$summary")
if [[ "$summary" == *"Parsing errors"* ]]; then
    echo "check-infra: checkov could not parse some files: $summary" >&2
    exit 1
fi
if [[ "$status" -ne 0 || "$failed" -ne 0 ]]; then
    echo "check-infra: FAILED ($summary)" >&2
    exit 1
fi
echo "check-infra: OK ($summary)"
