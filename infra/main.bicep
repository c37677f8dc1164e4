// teams-presence: the cloud part on Azure.
//
// One resource group holding:
//   - a Flex Consumption (FC1) Linux Function App running the `teams-presence` binary
//     as a custom handler, with one always-ready instance for the HTTP group so Graph's
//     3 s (notifications) and 10 s (validation handshake) deadlines are met without a
//     cold start;
//   - its storage account (host state, timer locks, the deployment package container,
//     and the app's own tables), reached with the managed identity only;
//   - a Service Bus namespace with the `presence` topic and one subscription per edge;
//   - a Key Vault (RBAC) for the client certificate, the notification certificate and
//     the token encryption key;
//   - a user-assigned managed identity with least-privilege role assignments;
//   - Log Analytics + Application Insights.
//
// Deployed by `azd up` (see azure.yaml and docs/deploy.md). Setting names follow
// CONTRACT.md plus the Functions host's identity-based connection settings
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

@description('Tenant used for sign-in: a tenant id, or organizations / common for multi-tenant apps. Becomes AZURE_TENANT_ID.')
param signInTenant string = 'organizations'

@description('One topic subscription (and one listen-only key) per edge device, e.g. [\'pi-home\', \'pi-office\'].')
param edgeSubscriptions array = []

@description('Seconds between presence polls of a user without a live change-notification subscription (POLL_INTERVAL).')
@minValue(10)
param pollInterval int = 30

@description('NCRONTAB schedule of the presence-refresh timer function (six fields, seconds first).')
param presenceRefreshSchedule string = '0 */5 * * * *'

@description('NCRONTAB schedule of the subscriptions-renew timer function. Graph presence subscriptions live at most 60 minutes.')
param subscriptionsRenewSchedule string = '0 */10 * * * *'

@description('Always-ready instances for the HTTP function group (0 saves money but brings cold starts back).')
@minValue(0)
param httpAlwaysReady int = 1

@description('Maximum instances of the Flex Consumption app (40 is the lowest value the plan accepts).')
@minValue(40)
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
    edgeSubscriptions: edgeSubscriptions
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
    keyVaultUrl: keyVault.outputs.url
    appClientId: appClientId
    signInTenant: signInTenant
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
output AZURE_RESOURCE_GROUP string = rg.name
output FUNCTION_APP_NAME string = functionApp.outputs.name
output FUNCTION_APP_HOSTNAME string = functionApp.outputs.defaultHostName
output PUBLIC_BASE_URL string = 'https://${functionApp.outputs.defaultHostName}'
output SERVICE_BUS_NAMESPACE string = serviceBus.outputs.name
output PRESENCE_TOPIC string = serviceBus.outputs.topicName
output KEY_VAULT_NAME string = keyVault.outputs.name
output KEY_VAULT_URL string = keyVault.outputs.url
output KEY_VAULT_CLIENT_CERTIFICATE string = clientCertificateName
output KEY_VAULT_NOTIFICATION_CERTIFICATE string = notificationCertificateName
output TOKEN_ENCRYPTION_SECRET_NAME string = tokenEncryptionSecretName
output STORAGE_ACCOUNT_NAME string = storage.outputs.name
