// teams-presence: the cloud part on Azure.
//
// One resource group holding:
//   - a Flex Consumption (FC1) Linux Function App running the `teams-presence` binary
//     as a custom handler, with one always-ready instance for the HTTP group so Graph's
//     3 s (notifications) and 10 s (validation handshake) deadlines are met without a
//     cold start;
//   - its storage account (host state, timer locks, the deployment package container,
//     and the app's own tables), reached with the managed identity only;
//   - a Service Bus namespace with the `presence` topic and, per edge, a subscription
//     filtered on the edge's users that forwards into the edge's own queue;
//   - a Key Vault (RBAC) for the client certificate, the notification certificate and
//     the token encryption key;
//   - a user-assigned managed identity with least-privilege role assignments;
//   - Log Analytics + Application Insights.
//
// Deployed by `azd up` (see azure.yaml and docs/deploy.md). Setting names are the app's
// own (README, "Settings") plus the Functions host's identity-based connection settings
// (AzureWebJobsStorage__*, ServiceBusConnection__*), listed in docs/deploy.md.
targetScope = 'subscription'

@minLength(1)
@maxLength(48)
@description('azd environment name; used for the resource group name and the resource token.')
param environmentName string

@minLength(1)
@description('Region for every resource. It must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('The app registration\'s application (client) id; becomes AZURE_CLIENT_ID. See docs/app-registration.md.')
@minLength(36)
@maxLength(36)
param appClientId string

@description('Tenant used for sign-in (AZURE_TENANT_ID). Empty (the default): the tenant you deploy into, matching the single-tenant app scripts/register-app.sh creates. Set organizations only for an app registered as multi-tenant (register-app.sh --multi-tenant); a single-tenant app on organizations fails sign-in with AADSTS50194.')
param signInTenant string = ''

// Edge devices and the users each may see are declared in TEAMS_PRESENCE_EDGES
// ([{ "name": "pi-home", "users": ["<Entra object id>", ...] }, ...]; "users": ["*"] for
// everyone). The preprovision hook checks that list and renders it into this plan
// (infra/hooks/edge_plan.py, the one place the per-edge filters are written, which the tests
// run too); main.parameters.json passes it from TEAMS_PRESENCE_EDGE_PLAN. Unset: no edges.
@description('Rendered by infra/hooks/preprovision.sh from TEAMS_PRESENCE_EDGES; do not write by hand. { edges: [{ name, existing }], rules: [{ edgeIndex, edge, name, sqlExpression }] }. Each edge gets its own queue, fed by a topic subscription whose rules match its users, and a listen-only key on that queue alone (docs/deploy.md, "Add an edge").')
param edgePlan object = {
  edges: []
  rules: []
}

@description('How the cloud part publishes: rest (default; straight to Service Bus with userId as an application property, which the per-edge filters need) or binding (the Functions output binding; its messages carry no properties and reach no edge queue).')
@allowed([
  'rest'
  'binding'
])
param publishMode string = 'rest'

@description('Seconds between presence polls of a user without a live change-notification subscription (POLL_INTERVAL).')
@minValue(10)
param pollInterval int = 30

@description('NCRONTAB schedule of the presence-refresh timer function (six fields, seconds first).')
param presenceRefreshSchedule string = '*/15 * * * * *'

@description('NCRONTAB schedule of the subscriptions-renew timer function. Graph presence subscriptions live at most 60 minutes.')
param subscriptionsRenewSchedule string = '0 */10 * * * *'

@description('Always-ready instances for the HTTP function group (0 saves money but brings cold starts back).')
@minValue(0)
param httpAlwaysReady int = 1

// 40: the lowest maximum every region and stack accepts. Today's Flex Consumption docs allow
// 1 to 1000, but the preview's rule was 40 to 1000 ("The lowest maximum scale in preview is
// 40", articles/azure-functions/flex-consumption-plan.md before GA), the official sample
// still declares @minValue(40) ("Range: 40-1000", Azure-Samples/
// azure-functions-flex-consumption-samples IaC/bicep/main.bicep and main.bicepparam), and
// the Functions stacks catalog reports a per-runtime lowestMaximumInstanceCount that has been
// 40. A value below a region's lowest maximum fails the deployment; 40 cannot. It is a cap,
// not a reservation: instances are billed only while they run, the always-ready HTTP
// instance aside. This app needs about 3 at once (the HTTP group and the two timers, each
// scaled on its own), and 40 x 2048 MB stays far inside the region's 512,000 MB quota.
// Lower it (docs/deploy.md) where your region accepts less and you want a tighter cost cap.
@description('Maximum instances of the Flex Consumption app. Default 40, the lowest maximum every region accepts (docs/deploy.md). The app needs about 3 at once; below 3 the timer functions can wait for an instance.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Object id of the person running azd (azd fills AZURE_PRINCIPAL_ID). Gets Key Vault Secrets Officer and Certificates Officer so the certificates and the token key can be put in. Leave empty to skip.')
param deployerPrincipalId string = ''

@description('Principal type of deployerPrincipalId.')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param deployerPrincipalType string = 'User'

@description('Mail address for Key Vault certificate and secret expiry alerts, 30 days ahead (Azure Monitor alert through Event Grid). Empty: no alert.')
param alertEmail string = ''

@description('Names of the Key Vault items the app reads.')
param clientCertificateName string = 'graph-client'
param notificationCertificateName string = 'graph-notifications'
param tokenEncryptionSecretName string = 'token-encryption-key'

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  app: 'teams-presence'
}

resource rg 'Microsoft.Resources/resourceGroups@2022-09-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-tp-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-tp-${resourceToken}'
    appInsightsName: 'appi-tp-${resourceToken}'
    location: location
    tags: tags
    publisherPrincipalId: identity.outputs.principalId
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'sttp${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: 'app-package'
    hostPrincipalId: identity.outputs.principalId
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    name: 'sb-tp-${resourceToken}'
    location: location
    tags: tags
    topicName: 'presence'
    edgePlan: edgePlan
    senderPrincipalId: identity.outputs.principalId
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    // Key Vault names are at most 24 characters: 'kv-tp-' + 13 = 19.
    name: 'kv-tp-${resourceToken}'
    location: location
    tags: tags
    readerPrincipalId: identity.outputs.principalId
    deployerPrincipalId: deployerPrincipalId
    deployerPrincipalType: deployerPrincipalType
    alertEmail: alertEmail
  }
}

module publisherKey 'modules/publisherkey.bicep' = if (publishMode == 'rest') {
  name: 'publisherkey'
  scope: rg
  params: {
    namespaceName: serviceBus.outputs.name
    topicName: serviceBus.outputs.topicName
    vaultName: keyVault.outputs.name
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    planName: 'plan-tp-${resourceToken}'
    appName: 'func-tp-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    appInsightsConnectionString: monitoring.outputs.connectionString
    serviceBusNamespaceFqdn: serviceBus.outputs.fullyQualifiedNamespace
    topicName: serviceBus.outputs.topicName
    // A conditional module's outputs may be null: read them with the safe dereference.
    publisherSecretName: publisherKey.?outputs.secretName ?? ''
    keyVaultUrl: keyVault.outputs.url
    appClientId: appClientId
    signInTenant: empty(signInTenant) ? tenant().tenantId : signInTenant
    clientCertificateName: clientCertificateName
    notificationCertificateName: notificationCertificateName
    tokenEncryptionSecretName: tokenEncryptionSecretName
    pollInterval: pollInterval
    presenceRefreshSchedule: presenceRefreshSchedule
    subscriptionsRenewSchedule: subscriptionsRenewSchedule
    httpAlwaysReady: httpAlwaysReady
    maximumInstanceCount: maximumInstanceCount
  }
  // No explicit dependsOn: the outputs used above already order this module after
  // storage, servicebus and keyvault, whose role assignments the host needs on its
  // first start.
}

// azd stores every output in .azure/<env>/.env; the hooks and docs/deploy.md use them.
output AZURE_LOCATION string = location
output SIGN_IN_TENANT string = empty(signInTenant) ? tenant().tenantId : signInTenant
output AZURE_RESOURCE_GROUP string = rg.name
output FUNCTION_APP_NAME string = functionApp.outputs.name
output FUNCTION_APP_HOSTNAME string = functionApp.outputs.defaultHostName
output PUBLIC_BASE_URL string = 'https://${functionApp.outputs.defaultHostName}'
output SERVICE_BUS_NAMESPACE string = serviceBus.outputs.name
output PRESENCE_TOPIC string = serviceBus.outputs.topicName
output EDGE_QUEUES array = serviceBus.outputs.edgeQueues
output KEY_VAULT_NAME string = keyVault.outputs.name
output KEY_VAULT_URL string = keyVault.outputs.url
output KEY_VAULT_CLIENT_CERTIFICATE string = clientCertificateName
output KEY_VAULT_NOTIFICATION_CERTIFICATE string = notificationCertificateName
output TOKEN_ENCRYPTION_SECRET_NAME string = tokenEncryptionSecretName
output STORAGE_ACCOUNT_NAME string = storage.outputs.name
// The principal given Key Vault Secrets Officer and Certificates Officer: the postprovision
// hook writes the secrets only as this principal (it checks the Azure CLI's sign-in).
output AZURE_DEPLOYER_PRINCIPAL_ID string = deployerPrincipalId
