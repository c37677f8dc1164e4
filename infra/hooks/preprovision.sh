#!/bin/sh
# azd preprovision hook: check TEAMS_PRESENCE_EDGES and write the per-edge Service Bus plan
# (infra/hooks/edge_plan.py) into the azd environment as TEAMS_PRESENCE_EDGE_PLAN, which
# infra/main.parameters.json passes to the deployment as `edgePlan`. azd reloads its
# environment after every hook (pkg/ext/hooks_runner.go, RunHooks) and loads the parameters
# file after the preprovision hooks, so the deployment sees what this writes.
#
# An edge counts as existing only when az lists its subscription on the topic: Bicep
# creates every other one without forwarding and turns forwarding on only once its rules are
# in place (infra/modules/servicebus.bicep). On the first provision there is no namespace yet
# (SERVICE_BUS_NAMESPACE unset) and az is not asked.
#
# Stops, changing nothing, on a problem in TEAMS_PRESENCE_EDGES (each line names the edge)
# and on any az failure other than "the resource group or namespace does not exist".
set -eu

cd "$(dirname "$0")/../.."

say() { echo "preprovision: $*"; }
fail() { echo "preprovision: $*" >&2; exit 1; }

command -v python3 >/dev/null 2>&1 || fail "python3 is required (it checks TEAMS_PRESENCE_EDGES and writes the Service Bus rules)"
command -v azd >/dev/null 2>&1 || fail "azd is required (this runs as an azd hook)"

existing=""
topic=${PRESENCE_TOPIC:-presence}
if [ -n "${SERVICE_BUS_NAMESPACE:-}" ] && [ -n "${AZURE_RESOURCE_GROUP:-}" ]; then
    command -v az >/dev/null 2>&1 || fail "the Azure CLI (az) is required: it lists the edges' existing subscriptions"
    err=$(mktemp)
    trap 'rm -f "$err"' EXIT
    if existing=$(az servicebus topic subscription list --resource-group "$AZURE_RESOURCE_GROUP" \
        --namespace-name "$SERVICE_BUS_NAMESPACE" --topic-name "$topic" \
        --query "[].name" -o tsv 2>"$err"); then
        :
    else
        rc=$?
        # az exits 3 for a 404 (azure-cli, azure/cli/core/util.py: ResourceNotFoundError).
        # A resource group or namespace that is gone (after `azd down`) has no subscriptions;
        # anything else (no login, throttling, the network) stops here.
        if [ "$rc" = 3 ] && grep -Eq 'ResourceGroupNotFound|ResourceNotFound|ParentResourceNotFound|EntityNotFound' "$err"; then
            existing=""
        else
            fail "cannot list the subscriptions of topic $topic in $SERVICE_BUS_NAMESPACE (az exit $rc): $(head -n 1 "$err"); sign in with 'az login' to the subscription azd uses and run 'azd provision' again"
        fi
    fi
fi

plan=$(python3 infra/hooks/edge_plan.py --existing "$existing") || fail "TEAMS_PRESENCE_EDGES has the problems above; fix it with 'azd env set TEAMS_PRESENCE_EDGES ...' (docs/deploy.md, \"Add an edge\")"
azd env set TEAMS_PRESENCE_EDGE_PLAN "$plan" >/dev/null || fail "cannot store TEAMS_PRESENCE_EDGE_PLAN with 'azd env set'"
python3 - "$plan" <<'PY'
import json, sys
p = json.loads(sys.argv[1])
for i, e in enumerate(p["edges"]):
    rules = [r for r in p["rules"] if r["edgeIndex"] == i]
    state = "existing" if e["existing"] else "new: created without forwarding until its rules exist"
    print(f"preprovision: edge {e['name']}: {len(rules)} rule(s) ({state})")
if not p["edges"]:
    print("preprovision: no edges (TEAMS_PRESENCE_EDGES is empty)")
PY
