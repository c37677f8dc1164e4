#!/usr/bin/env bash
# Static checks of infra/ (no Azure access needed):
#   1. every .bicep file parses with pycep, the Bicep parser checkov uses. checkov
#      logs a file it cannot parse at debug level and scans the rest, so without this
#      step a syntax error would look like "fewer resources, all passed";
#   2. checkov over infra/ with the Bicep framework; any failed check fails this script.
#      Accepted exceptions are skipped inline in the Bicep with
#      `// checkov:skip=CKV_...:reason`.
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
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
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
