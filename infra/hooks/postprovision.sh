#!/bin/sh
# azd postprovision hook: put the two secrets the app cannot create itself into Key
# Vault, if they are not there yet, and print what is left to do by hand.
#
#   - TOKEN_ENCRYPTION_KEY: 32 random bytes, base64, as the secret named by
#     TOKEN_ENCRYPTION_SECRET_NAME (the app setting is a Key Vault reference to it);
#   - the notification certificate (KEY_VAULT_NOTIFICATION_CERTIFICATE): self-signed,
#     RSA 2048, PEM, auto-renewed by Key Vault. Graph does not check its issuer.
#
# Never overwrites: a new token key would make every stored refresh token unreadable.
# azd passes the infra outputs (KEY_VAULT_NAME, ...) as environment variables.
set -eu

cd "$(dirname "$0")/../.."

need() {
    eval "v=\${$1:-}"
    # shellcheck disable=SC2154 # v is set by the eval above
    if [ -z "$v" ]; then
        echo "postprovision: $1 is not set (is this running under azd after provisioning?)" >&2
        exit 1
    fi
}
need KEY_VAULT_NAME
need TOKEN_ENCRYPTION_SECRET_NAME
need KEY_VAULT_NOTIFICATION_CERTIFICATE

command -v az >/dev/null 2>&1 || { echo "postprovision: the Azure CLI (az) is required" >&2; exit 1; }
command -v openssl >/dev/null 2>&1 || { echo "postprovision: openssl is required" >&2; exit 1; }

vault=$KEY_VAULT_NAME

# Role assignments made by the deployment can take a few minutes to reach Key Vault's
# data plane; retry forbidden calls instead of failing the first `azd up`.
retry() {
    n=0
    until "$@"; do
        n=$((n + 1))
        if [ "$n" -ge 20 ]; then
            echo "postprovision: giving up after $n tries: $*" >&2
            return 1
        fi
        echo "postprovision: not allowed yet (role assignment still propagating?); retrying in 15 s" >&2
        sleep 15
    done
}

exists_secret() {
    az keyvault secret show --vault-name "$vault" --name "$1" --query id -o tsv >/dev/null 2>&1
}
exists_certificate() {
    az keyvault certificate show --vault-name "$vault" --name "$1" --query id -o tsv >/dev/null 2>&1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
umask 077

if exists_secret "$TOKEN_ENCRYPTION_SECRET_NAME"; then
    echo "postprovision: secret $TOKEN_ENCRYPTION_SECRET_NAME exists; left as it is"
else
    echo "postprovision: creating secret $TOKEN_ENCRYPTION_SECRET_NAME (32 random bytes, base64)"
    # Through a 0600 file so the key never appears on a command line.
    openssl rand -base64 32 | tr -d '\n' >"$tmp/key"
    retry az keyvault secret set --vault-name "$vault" --name "$TOKEN_ENCRYPTION_SECRET_NAME" \
        --file "$tmp/key" --encoding utf-8 --content-type "text/plain; base64 32 bytes" \
        --query id -o tsv >/dev/null
fi

if exists_certificate "$KEY_VAULT_NOTIFICATION_CERTIFICATE"; then
    echo "postprovision: certificate $KEY_VAULT_NOTIFICATION_CERTIFICATE exists; left as it is"
else
    echo "postprovision: creating self-signed certificate $KEY_VAULT_NOTIFICATION_CERTIFICATE"
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
    retry az keyvault certificate create --vault-name "$vault" \
        --name "$KEY_VAULT_NOTIFICATION_CERTIFICATE" --policy "@$tmp/policy.json" \
        --query status -o tsv >/dev/null
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
