#!/bin/sh
# Fallback deploy of dist/cloud that keeps the executable's run bit.
#
# azd zips dist/cloud itself; if the deployed host logs "Permission denied" starting
# teams-presence, its zip lost the Unix mode. This script zips with the modes kept
# (Python's zipfile, external attributes set from the files) and deploys the zip with
# the Azure CLI's zip deploy, which the Flex Consumption plan accepts.
#
# Usage: infra/hooks/deploy-zip.sh [RESOURCE_GROUP FUNCTION_APP]
#   (defaults: AZURE_RESOURCE_GROUP and FUNCTION_APP_NAME from `azd env get-values`)
set -eu

cd "$(dirname "$0")/../.."

rg=${1:-${AZURE_RESOURCE_GROUP:-}}
app=${2:-${FUNCTION_APP_NAME:-}}
if [ -z "$rg" ] || [ -z "$app" ]; then
    if command -v azd >/dev/null 2>&1; then
        eval "$(azd env get-values | grep -E '^(AZURE_RESOURCE_GROUP|FUNCTION_APP_NAME)=')"
        rg=${rg:-${AZURE_RESOURCE_GROUP:-}}
        app=${app:-${FUNCTION_APP_NAME:-}}
    fi
fi
if [ -z "$rg" ] || [ -z "$app" ]; then
    echo "usage: $0 RESOURCE_GROUP FUNCTION_APP (or run inside an azd environment)" >&2
    exit 2
fi

[ -x dist/cloud/teams-presence ] || infra/hooks/package-cloud.sh

python3 - <<'PY'
import os, stat, zipfile

root = "dist/cloud"
with zipfile.ZipFile("dist/cloud.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for base, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(base, name)
            info = zipfile.ZipInfo.from_file(path, os.path.relpath(path, root))
            info.compress_type = zipfile.ZIP_DEFLATED
            # from_file already stores st_mode in the high 16 bits; say so explicitly.
            info.external_attr = (os.stat(path).st_mode & 0xFFFF) << 16
            info.create_system = 3  # Unix, so readers honour the mode bits
            with open(path, "rb") as f:
                z.writestr(info, f.read())
exe = zipfile.ZipFile("dist/cloud.zip").getinfo("teams-presence")
assert (exe.external_attr >> 16) & stat.S_IXUSR, "run bit lost"
print("deploy-zip: dist/cloud.zip written; teams-presence mode", oct(exe.external_attr >> 16))
PY

az functionapp deployment source config-zip --resource-group "$rg" --name "$app" --src dist/cloud.zip
