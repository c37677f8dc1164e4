#!/bin/sh
# azd postprovision hook: put the two secrets the app cannot create itself into Key Vault
# if they are really missing, have App Service resolve its Key Vault references again, drop
# per-edge topic rules the plan no longer has, and print what is left to do by hand.
#
#   - TOKEN_ENCRYPTION_KEY: 32 random bytes, base64, as the secret named by
#     TOKEN_ENCRYPTION_SECRET_NAME (the app setting is a Key Vault reference to it);
#   - the notification certificate (KEY_VAULT_NOTIFICATION_CERTIFICATE): self-signed,
#     RSA 2048, PEM, auto-renewed by Key Vault. Graph does not check its issuer.
#
# Never overwrites, and never takes a failure for "missing": a new token key makes every
# stored refresh token unreadable, so only Key Vault's own "not found" (az exit code 3 with
# SecretNotFound / CertificateNotFound; azure-cli maps a 404 to ResourceNotFoundError, exit
# 3, everything else to 1: azure/cli/core/util.py, handle_exception) leads to a write.
# Throttling (429), a network error or a 5xx is retried a few times and then stops the hook;
# a refusal (403) is retried only while the role assignment this deployment just made may
# still be propagating; anything else stops at once with az's first line.
#
# Who writes: the Azure CLI's signed-in account. The deployment gave the Key Vault roles to
# azd's account (AZURE_PRINCIPAL_ID, output as AZURE_DEPLOYER_PRINCIPAL_ID), so the hook
# first checks that both are the same principal (the `oid` of an az access token) and
# stops with the fix when they are not, instead of retrying a 403 that cannot go away.
#
# azd passes the infra outputs (KEY_VAULT_NAME, ...) as environment variables.
# Env for tests: TP_HOOK_RETRIES (default 8), TP_HOOK_RETRY_SLEEP (seconds, default 15).
set -eu

cd "$(dirname "$0")/../.."

retries=${TP_HOOK_RETRIES:-8}
pause=${TP_HOOK_RETRY_SLEEP:-15}

say() { echo "postprovision: $*"; }
fail() { echo "postprovision: $*" >&2; exit 1; }

need() {
    eval "v=\${$1:-}"
    # shellcheck disable=SC2154 # v is set by the eval above
    [ -n "$v" ] || fail "$1 is not set (is this running under azd after provisioning?)"
}
need KEY_VAULT_NAME
need TOKEN_ENCRYPTION_SECRET_NAME
need KEY_VAULT_NOTIFICATION_CERTIFICATE
need AZURE_SUBSCRIPTION_ID
need AZURE_RESOURCE_GROUP
need FUNCTION_APP_NAME

command -v az >/dev/null 2>&1 || fail "the Azure CLI (az) is required"
command -v openssl >/dev/null 2>&1 || fail "openssl is required"
command -v python3 >/dev/null 2>&1 || fail "python3 is required"

vault=$KEY_VAULT_NAME
sub=$AZURE_SUBSCRIPTION_ID
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
umask 077

# What az's failure in $tmp/err was: notfound, forbidden, conflict-deleted, transient, other.
classify() {
    rc=$1
    if [ "$rc" = 3 ] && grep -Eq 'SecretNotFound|CertificateNotFound' "$tmp/err"; then
        echo notfound
    elif grep -Eq 'deleted but recoverable|ObjectIsDeletedButRecoverable' "$tmp/err"; then
        echo conflict-deleted
    elif grep -Eq 'Forbidden|ForbiddenByRbac|AuthorizationFailed|does not have (secrets|certificates) ' "$tmp/err"; then
        echo forbidden
    elif grep -Eiq 'Throttled|429|Too Many Requests|Failed to establish a new connection|Connection (aborted|reset|refused)|timed out|Max retries exceeded|Name or service not known|Temporary failure in name resolution|ServiceUnavailable|InternalServerError|\(5[0-9][0-9]\)' "$tmp/err"; then
        echo transient
    else
        echo other
    fi
}

first_line() { grep -v '^[[:space:]]*$' "$tmp/err" | head -n 1 | cut -c1-300; }

# run WHAT CMD...: runs an az command, retrying throttling, network errors, 5xx and (the role
# may still be propagating) refusals; prints its stdout. Returns 0, or 10 for a real "not
# found"; stops the hook on anything else.
run() {
    what=$1
    shift
    n=0
    while :; do
        if "$@" >"$tmp/out" 2>"$tmp/err"; then
            cat "$tmp/out"
            return 0
        else
            rc=$?
        fi
        kind=$(classify "$rc")
        case $kind in
            notfound) return 10 ;;
            conflict-deleted)
                fail "$what: Key Vault holds a deleted $item that can still be recovered; recover it rather than create a new one (a new token key makes every stored sign-in unreadable): az keyvault ${item%% *} recover --vault-name $vault --name $name, then run 'azd hooks run postprovision'" ;;
            other)
                fail "$what failed (az exit $rc): $(first_line)" ;;
        esac
        n=$((n + 1))
        if [ "$n" -ge "$retries" ]; then
            case $kind in
                forbidden)
                    fail "$what: still refused after $n tries: $(first_line). The deployment gave Key Vault Secrets Officer and Certificates Officer on $vault to principal $deployer; check that the assignments exist (az role assignment list --assignee $deployer --scope <vault id>) and run 'azd hooks run postprovision' again" ;;
                *)
                    fail "$what: gave up after $n tries: $(first_line). Nothing was written; run 'azd hooks run postprovision' again later" ;;
            esac
        fi
        say "$what: $(first_line | cut -c1-120); retrying in ${pause} s ($n/$retries)" >&2
        sleep "$pause"
    done
}

# 1. The identity that writes is the one the deployment gave the Key Vault roles to.
deployer=${AZURE_DEPLOYER_PRINCIPAL_ID:-}
[ -n "$deployer" ] || fail "the deployment gave no one the Key Vault roles to write secrets (AZURE_PRINCIPAL_ID was empty when azd provisioned). Sign in with 'azd auth login' and run 'azd provision' again"
if token=$(az account get-access-token --resource https://vault.azure.net --query accessToken -o tsv 2>"$tmp/err"); then
    :
else
    fail "the Azure CLI cannot get a Key Vault token: $(first_line). Sign in with 'az login' as the account azd uses (principal $deployer)"
fi
signed_in=$(printf '%s' "$token" | python3 -c '
import base64, json, sys
try:
    part = sys.stdin.read().strip().split(".")[1]
    print(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))).get("oid", ""))
except Exception:
    print("")
')
token=
lower() { printf '%s' "$1" | tr '[:upper:]' '[:lower:]'; }
if [ "$(lower "$signed_in")" != "$(lower "$deployer")" ]; then
    fail "the Azure CLI is signed in as principal ${signed_in:-<unknown>}, but the deployment gave the Key Vault roles on $vault to azd's principal $deployer. Sign in to az as the same account ('az login'; check with 'az ad signed-in-user show --query id'), or let azd use the Azure CLI's login ('azd config set auth.useAzCliAuth true') and run 'azd provision' again"
fi
say "writing as principal $deployer (the one holding the Key Vault roles)"

# 2. The token encryption key, only if Key Vault says it is not there.
item="secret"
name=$TOKEN_ENCRYPTION_SECRET_NAME
wrote_secret=0
if run "reading secret $name" az keyvault secret show --vault-name "$vault" --name "$name" --query id -o tsv >/dev/null; then
    say "secret $name exists; left as it is"
else
    [ $? = 10 ] || exit 1
    say "creating secret $name (32 random bytes, base64)"
    # Through a 0600 file so the key never appears on a command line.
    openssl rand -base64 32 | tr -d '\n' >"$tmp/key"
    run "writing secret $name" az keyvault secret set --vault-name "$vault" --name "$name" \
        --file "$tmp/key" --encoding utf-8 --content-type "text/plain; base64 32 bytes" \
        --query id -o tsv >/dev/null
    rm -f "$tmp/key"
    wrote_secret=1
fi

# 3. The notification certificate, the same way.
item="certificate"
name=$KEY_VAULT_NOTIFICATION_CERTIFICATE
if run "reading certificate $name" az keyvault certificate show --vault-name "$vault" --name "$name" --query id -o tsv >/dev/null; then
    say "certificate $name exists; left as it is"
else
    [ $? = 10 ] || exit 1
    say "creating self-signed certificate $name"
    cat >"$tmp/policy.json" <<'POLICY'
{
  "issuerParameters": { "name": "Self" },
  "keyProperties": { "exportable": true, "keyType": "RSA", "keySize": 2048, "reuseKey": false },
  "secretProperties": { "contentType": "application/x-pem-file" },
  "x509CertificateProperties": {
    "subject": "CN=teams-presence notifications",
    "keyUsage": ["keyEncipherment", "dataEncipherment", "digitalSignature"],
    "validityInMonths": 12
  },
  "lifetimeActions": [
    { "trigger": { "lifetimePercentage": 80 }, "action": { "actionType": "AutoRenew" } }
  ]
}
POLICY
    run "creating certificate $name" az keyvault certificate create --vault-name "$vault" \
        --name "$name" --policy "@$tmp/policy.json" --query status -o tsv >/dev/null
fi

# 4. App Service resolves Key Vault references when the settings change and then about once
# a day; the token key did not exist when this deployment wrote the settings. Ask it to
# resolve them now (learn.microsoft.com/azure/app-service/app-service-key-vault-references,
# "Understand rotation") and report what it says. The secret is safely written by now, so a
# failure here only warns: the app answers 503 naming the setting until it resolves.
site="/subscriptions/$sub/resourceGroups/$AZURE_RESOURCE_GROUP/providers/Microsoft.Web/sites/$FUNCTION_APP_NAME"
refresh="https://management.azure.com$site/config/configreferences/appsettings/refresh?api-version=2022-03-01"
status_url="https://management.azure.com$site/config/configreferences/appsettings?api-version=2022-03-01"
n=0
while :; do
    if ! az rest --method post --url "$refresh" >/dev/null 2>"$tmp/err"; then
        echo "postprovision: WARNING: cannot ask App Service to refresh its Key Vault references: $(first_line). Run: az rest --method post --url '$refresh'" >&2
        break
    fi
    if ! az rest --method get --url "$status_url" -o json >"$tmp/refs.json" 2>"$tmp/err"; then
        echo "postprovision: WARNING: cannot read the references' status: $(first_line)" >&2
        break
    fi
    unresolved=$(python3 - "$tmp/refs.json" <<'PY'
import json, sys
refs = json.load(open(sys.argv[1])).get("value", [])
print(" ".join(f"{r.get('name', '?').split('/')[-1]}={r.get('properties', {}).get('status', '?')}"
               for r in refs if r.get("properties", {}).get("status") != "Resolved"))
PY
)
    if [ -z "$unresolved" ]; then
        say "App Service resolved every Key Vault reference"
        break
    fi
    n=$((n + 1))
    if [ "$n" -ge "$retries" ]; then
        echo "postprovision: WARNING: Key Vault references still unresolved: $unresolved. The app answers 503 naming each such setting until they resolve; when the role assignments have propagated, run: az rest --method post --url '$refresh'" >&2
        break
    fi
    say "Key Vault references not resolved yet ($unresolved); the app identity's role may still be propagating; retrying in ${pause} s ($n/$retries)"
    sleep "$pause"
done
if [ "$wrote_secret" = 1 ]; then
    say "wrote $TOKEN_ENCRYPTION_SECRET_NAME and asked App Service to resolve its references"
fi

# 5. Per-edge rules the plan no longer has (an edge with fewer users needs fewer rules):
# deployments only add and update, and a left-over rule would keep forwarding a removed
# user's presence to that edge.
if [ -n "${SERVICE_BUS_NAMESPACE:-}" ] && [ -n "${TEAMS_PRESENCE_EDGE_PLAN:-}" ]; then
    topic=${PRESENCE_TOPIC:-presence}
    printf '%s' "$TEAMS_PRESENCE_EDGE_PLAN" | python3 -c '
import json, sys
p = json.load(sys.stdin)
for i, e in enumerate(p["edges"]):
    print(e["name"], *[r["name"] for r in p["rules"] if r["edgeIndex"] == i])
' >"$tmp/plan.txt" || fail "TEAMS_PRESENCE_EDGE_PLAN is not the preprovision hook's JSON; run 'azd provision' again"
    while read -r edge keep; do
        [ -n "$edge" ] || continue
        item="rule"
        rules=$(run "listing the rules of edge $edge" az servicebus topic subscription rule list \
            --subscription "$sub" --resource-group "$AZURE_RESOURCE_GROUP" \
            --namespace-name "$SERVICE_BUS_NAMESPACE" --topic-name "$topic" \
            --subscription-name "$edge" --query "[].name" -o tsv) || fail "cannot list the rules of edge $edge"
        for rule in $rules; do
            case " \$Default $keep " in
                *" $rule "*) continue ;;
            esac
            say "edge $edge: deleting rule $rule (not in the plan any more)"
            run "deleting rule $rule of edge $edge" az servicebus topic subscription rule delete \
                --subscription "$sub" --resource-group "$AZURE_RESOURCE_GROUP" \
                --namespace-name "$SERVICE_BUS_NAMESPACE" --topic-name "$topic" \
                --subscription-name "$edge" --name "$rule" >/dev/null || fail "cannot delete rule $rule of edge $edge"
        done
    done <"$tmp/plan.txt"
fi

client_cert=${KEY_VAULT_CLIENT_CERTIFICATE:-graph-client}
cat <<NEXT

postprovision: done. Still to do (docs/deploy.md, steps 4 and 6):
  - the app registration's client credential, if not done yet:
      scripts/register-app.sh --app-id "\$TEAMS_PRESENCE_CLIENT_ID" \\
        --redirect-base "${PUBLIC_BASE_URL:-https://<function app host>}" \\
        --keyvault "$vault" --cert-name "$client_cert"
  - after 'azd deploy': curl -fsS "${PUBLIC_BASE_URL:-https://<function app host>}/api/health"
NEXT
