#!/usr/bin/env bash
# Register (or update) the Microsoft Entra app that teams-presence signs users in with,
# using the Azure CLI. Does what docs/app-registration.md describes by hand:
#
#   - Web redirect URIs {PUBLIC_BASE_URL}/api/auth/end and, for `serve`,
#     http://localhost:7071/api/auth/end;
#   - "Allow public client flows" on, for the device-code `teams-presence login`;
#   - delegated Microsoft Graph permissions Presence.Read.All, offline_access, openid,
#     profile (presence change-notification subscriptions need delegated
#     Presence.Read.All; offline_access yields the refresh token);
#   - a client credential: a certificate created in Key Vault (--keyvault), an existing
#     PEM certificate (--cert-file), or a client secret (--secret);
#   - with --tenant-mode: the *application* permission Presence.Read.All (app-only
#     presence polling of every followed user); with --pbx: the application permissions
#     Presence.ReadWrite.All and User.ReadBasic.All (the PBX sync sets presence and
#     resolves users with the app credential). Application permissions always need admin
#     consent, by a Privileged Role Administrator or Global Administrator;
#   - optionally admin consent (--admin-consent).
#
# It is safe to run again: with --app-id it updates that app, adding (never removing)
# redirect URIs and permissions.
#
# Usage: scripts/register-app.sh [options]
#   --name NAME           display name of a new app (default: teams-presence)
#   --app-id ID           update this existing app instead of creating one
#   --multi-tenant        accounts in any organisation (AzureADMultipleOrgs); prints
#                         AZURE_TENANT_ID=organizations. Default: this tenant only.
#   --redirect-base URL   public https origin of the cloud app (PUBLIC_BASE_URL); adds
#                         URL/api/auth/end. Repeatable. Without it only localhost is added.
#   --no-localhost        do not add http://localhost:7071/api/auth/end
#   --keyvault VAULT      create (if missing) a self-signed certificate in this Key Vault
#                         and upload its public part to the app
#   --cert-name NAME      name of that certificate (default: graph-client)
#   --cert-file PEM       upload the certificate in this PEM file instead
#   --secret              create a client secret (printed once) instead of a certificate
#   --tenant-mode         add the application permission Presence.Read.All
#   --pbx                 add the application permissions Presence.ReadWrite.All and
#                         User.ReadBasic.All
#   --admin-consent       grant tenant-wide admin consent (needs an admin role; for
#                         application permissions a Privileged Role Administrator or
#                         Global Administrator)
#   --dry-run             print the az commands that change something instead of running them
#   -h, --help            this text
set -euo pipefail

GRAPH_APP_ID=00000003-0000-0000-c000-000000000000
SCOPES=(Presence.Read.All offline_access openid profile)
APP_ROLES=()   # application permissions, filled by --tenant-mode / --pbx
LOCAL_REDIRECT=http://localhost:7071/api/auth/end

name=teams-presence
app_id=
audience=AzureADMyOrg
redirect_bases=()
localhost=1
keyvault=
cert_name=graph-client
cert_file=
secret=0
admin_consent=0
dry_run=0

usage() { sed -n '2,/^set -euo pipefail$/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "register-app: $*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --name) name=${2:?--name needs a value}; shift 2 ;;
        --app-id) app_id=${2:?--app-id needs a value}; shift 2 ;;
        --multi-tenant) audience=AzureADMultipleOrgs; shift ;;
        --redirect-base) redirect_bases+=("${2:?--redirect-base needs a value}"); shift 2 ;;
        --no-localhost) localhost=0; shift ;;
        --keyvault) keyvault=${2:?--keyvault needs a value}; shift 2 ;;
        --cert-name) cert_name=${2:?--cert-name needs a value}; shift 2 ;;
        --cert-file) cert_file=${2:?--cert-file needs a value}; shift 2 ;;
        --secret) secret=1; shift ;;
        --tenant-mode) APP_ROLES+=(Presence.Read.All); shift ;;
        --pbx) APP_ROLES+=(Presence.ReadWrite.All User.ReadBasic.All); shift ;;
        --admin-consent) admin_consent=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

credentials=0
[[ -n "$keyvault" ]] && credentials=$((credentials + 1))
[[ -n "$cert_file" ]] && credentials=$((credentials + 1))
[[ "$secret" == 1 ]] && credentials=$((credentials + 1))
[[ "$credentials" -le 1 ]] || die "choose one of --keyvault, --cert-file, --secret"
[[ -z "$cert_file" || -r "$cert_file" ]] || die "cannot read $cert_file"

redirects=()
for base in "${redirect_bases[@]+"${redirect_bases[@]}"}"; do
    base=${base%/}
    [[ "$base" == https://* ]] || die "--redirect-base must be an https origin, got $base"
    redirects+=("$base/api/auth/end")
done
[[ "$localhost" == 1 ]] && redirects+=("$LOCAL_REDIRECT")

# Read-only az calls always run (they need a signed-in az); changing ones go through
# `change`, which only prints them under --dry-run.
change() {
    if [[ "$dry_run" == 1 ]]; then
        printf 'dry-run:'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}
query() {
    if [[ "$dry_run" == 1 ]] && ! az account show >/dev/null 2>&1; then
        # Not signed in: stand-in values (none for lists) so the dry run can go on.
        [[ -n "$1" ]] && echo "<$1>"
        return 0
    else
        shift
        "$@"
    fi
}

command -v az >/dev/null 2>&1 || die "the Azure CLI (az) is required: https://aka.ms/azure-cli"
if [[ "$dry_run" != 1 ]]; then
    az account show >/dev/null 2>&1 || die "sign in first: az login"
fi

tenant_id=$(query tenant-id az account show --query tenantId -o tsv)

# 1. The app itself.
if [[ -z "$app_id" ]]; then
    echo "register-app: creating app '$name' ($audience)"
    if [[ "$dry_run" == 1 ]]; then
        change az ad app create --display-name "$name" --sign-in-audience "$audience" \
            --is-fallback-public-client true --web-redirect-uris "${redirects[@]}" \
            --query appId -o tsv
        app_id="<new app id>"
    else
        app_id=$(az ad app create --display-name "$name" --sign-in-audience "$audience" \
            --is-fallback-public-client true --web-redirect-uris "${redirects[@]}" \
            --query appId -o tsv)
    fi
else
    echo "register-app: updating app $app_id"
    # Keep the redirect URIs it has and add ours.
    existing=()
    while IFS= read -r uri; do
        [[ -n "$uri" ]] && existing+=("$uri")
    done < <(query "" az ad app show --id "$app_id" --query 'web.redirectUris[]' -o tsv)
    merged=()
    for uri in "${existing[@]+"${existing[@]}"}" "${redirects[@]+"${redirects[@]}"}"; do
        [[ -z "$uri" ]] && continue
        seen=0
        for m in "${merged[@]+"${merged[@]}"}"; do [[ "$m" == "$uri" ]] && seen=1; done
        [[ "$seen" == 0 ]] && merged+=("$uri")
    done
    change az ad app update --id "$app_id" --is-fallback-public-client true \
        --web-redirect-uris "${merged[@]}"
    if [[ "$audience" == AzureADMultipleOrgs ]]; then
        change az ad app update --id "$app_id" --sign-in-audience AzureADMultipleOrgs
    fi
fi

# 2. Delegated Graph permissions, looked up by name on Microsoft Graph's service
#    principal rather than hard-coded ids.
for scope in "${SCOPES[@]}"; do
    scope_id=$(query "$scope id" az ad sp show --id "$GRAPH_APP_ID" \
        --query "oauth2PermissionScopes[?value=='$scope'].id | [0]" -o tsv)
    [[ -n "$scope_id" ]] || die "Microsoft Graph has no delegated permission $scope"
    echo "register-app: delegated permission $scope ($scope_id)"
    change az ad app permission add --id "$app_id" --api "$GRAPH_APP_ID" \
        --api-permissions "$scope_id=Scope" --only-show-errors
done

# Application permissions (app-only Graph calls with the client credential), looked up
# by name among Microsoft Graph's app roles. Only an administrator can consent to them.
for role in "${APP_ROLES[@]+"${APP_ROLES[@]}"}"; do
    role_id=$(query "$role role id" az ad sp show --id "$GRAPH_APP_ID" \
        --query "appRoles[?value=='$role'].id | [0]" -o tsv)
    [[ -n "$role_id" ]] || die "Microsoft Graph has no application permission $role"
    echo "register-app: application permission $role ($role_id)"
    change az ad app permission add --id "$app_id" --api "$GRAPH_APP_ID" \
        --api-permissions "$role_id=Role" --only-show-errors
done

# A service principal in this tenant, needed for consent and sign-in.
if [[ "$dry_run" == 1 ]] || ! az ad sp show --id "$app_id" >/dev/null 2>&1; then
    change az ad sp create --id "$app_id" --only-show-errors
fi

# 3. The client credential.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
umask 077
if [[ -n "$keyvault" ]]; then
    if [[ "$dry_run" != 1 ]] && az keyvault certificate show --vault-name "$keyvault" --name "$cert_name" >/dev/null 2>&1; then
        echo "register-app: certificate $cert_name exists in $keyvault; uploading its current version"
    else
        echo "register-app: creating self-signed certificate $cert_name in $keyvault (PEM, RSA 2048, 12 months)"
        cat >"$tmp/policy.json" <<'POLICY'
{
  "issuerParameters": { "name": "Self" },
  "keyProperties": { "exportable": true, "keyType": "RSA", "keySize": 2048, "reuseKey": false },
  "secretProperties": { "contentType": "application/x-pem-file" },
  "x509CertificateProperties": {
    "subject": "CN=teams-presence client",
    "keyUsage": ["digitalSignature"],
    "validityInMonths": 12
  },
  "lifetimeActions": [
    { "trigger": { "daysBeforeExpiry": 30 }, "action": { "actionType": "EmailContacts" } }
  ]
}
POLICY
        change az keyvault certificate create --vault-name "$keyvault" --name "$cert_name" \
            --policy "@$tmp/policy.json" --query status -o tsv
    fi
    change az keyvault certificate download --vault-name "$keyvault" --name "$cert_name" \
        --file "$tmp/public.pem" --encoding PEM
    change az ad app credential reset --id "$app_id" --cert "@$tmp/public.pem" --append --only-show-errors
elif [[ -n "$cert_file" ]]; then
    # Upload only the certificate block, never a private key that may share the file.
    awk '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/' "$cert_file" >"$tmp/public.pem"
    [[ -s "$tmp/public.pem" ]] || die "$cert_file holds no PEM certificate"
    echo "register-app: uploading the certificate in $cert_file"
    change az ad app credential reset --id "$app_id" --cert "@$tmp/public.pem" --append --only-show-errors
elif [[ "$secret" == 1 ]]; then
    echo "register-app: creating a client secret (valid 1 year; shown once, store it now)"
    if [[ "$dry_run" == 1 ]]; then
        change az ad app credential reset --id "$app_id" --append --display-name teams-presence \
            --years 1 --query password -o tsv
        client_secret="<client secret>"
    else
        client_secret=$(az ad app credential reset --id "$app_id" --append \
            --display-name teams-presence --years 1 --query password -o tsv --only-show-errors)
    fi
fi

# 4. Admin consent (optional: Presence.Read.All is user-consentable unless the tenant
#    restricts user consent).
if [[ "$admin_consent" == 1 ]]; then
    echo "register-app: granting admin consent"
    change az ad app permission admin-consent --id "$app_id"
elif [[ ${#APP_ROLES[@]} -gt 0 ]]; then
    echo "register-app: the application permissions (${APP_ROLES[*]}) work only after admin consent:"
    echo "register-app:   a Privileged Role Administrator or Global Administrator runs"
    echo "register-app:   scripts/register-app.sh --app-id $app_id --admin-consent"
    echo "register-app:   (or grants it in the portal: App registrations > API permissions)"
fi

if [[ "$audience" == AzureADMultipleOrgs ]]; then
    sign_in_tenant=organizations
else
    sign_in_tenant=$tenant_id
fi

cat <<SETTINGS

register-app: done. Settings for teams-presence:
  AZURE_CLIENT_ID=$app_id
  AZURE_TENANT_ID=$sign_in_tenant
SETTINGS
if [[ -n "$keyvault" ]]; then
    echo "  KEY_VAULT_CLIENT_CERTIFICATE=$cert_name   (in $keyvault)"
elif [[ -n "$cert_file" ]]; then
    echo "  AZURE_CLIENT_CERTIFICATE_PATH=$cert_file   (for serve/login on this machine)"
elif [[ "$secret" == 1 ]]; then
    echo "  AZURE_CLIENT_SECRET=$client_secret"
fi
cat <<AZD

For azd (docs/deploy.md):
  azd env set TEAMS_PRESENCE_CLIENT_ID $app_id
  azd env set TEAMS_PRESENCE_SIGNIN_TENANT $sign_in_tenant
AZD
