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

@description('Edge devices and the users each may see: [{ "name": "pi-home", "users": ["<Entra object id>", ...] }, ...]; "users": ["*"] for everyone. Each edge gets its own queue, fed by a topic subscription filtered on userId, and a listen-only key on that queue alone (docs/deploy.md, "Add an edge").')
param edges array = []

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

// Flex scales each timer function on its own instances and the HTTP functions as one
// group, so the two timers and the always-ready HTTP instance can need 3 instances at
// once; 10 leaves room for a burst of notifications while capping what a runaway loop or
// a flood of requests can cost. The plan accepts 1 to 1000.
@description('Maximum instances of the Flex Consumption app. Default 10: room for the HTTP group and both timers at once plus bursts, with a cap on cost. Values below 3 can delay the timer functions.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 10

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
    edges: edges
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
    publisherSecretName: publishMode == 'rest' ? publisherKey.outputs.secretName : ''
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
