// The Function App: a Linux Flex Consumption (FC1) app whose worker is the
// `teams-presence` binary running as a custom handler (host.json `customHandler`,
// started as `teams-presence handler`).
//
// Why Flex Consumption with one always-ready instance: Graph gives a notification
// endpoint 3 s to answer and 10 s to echo the validation token when a subscription is
// created or renewed. A scaled-to-zero app pays a cold start (host start + handler
// start) that can exceed those windows. One always-ready instance for the `http`
// group keeps the webhook warm while the timer functions still scale from zero.
// docs/deploy.md compares this with Elastic Premium (EP1).
param planName string
param appName string
param location string
param tags object
param identityId string
param identityClientId string
param storageAccountName string
param storageBlobEndpoint string
param deploymentContainerName string
param appInsightsConnectionString string
param serviceBusNamespaceFqdn string
param topicName string
@description('Key Vault secret holding the REST publisher\'s Send-only connection string; empty: publish through the output binding.')
param publisherSecretName string
param keyVaultUrl string
param appClientId string
param signInTenant string
param clientCertificateName string
param notificationCertificateName string
param tokenEncryptionSecretName string
param pollInterval int
param presenceRefreshSchedule string
param subscriptionsRenewSchedule string
param httpAlwaysReady int
param maximumInstanceCount int

@description('Flex Consumption instance size; 2048 MB is the default and plenty for a small Rust binary.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048


resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Zone redundancy on Flex Consumption is a separate opt-in per region; a presence light can tolerate a zone outage.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17:Client certificates cannot be required: Graph's webhook calls and users' browsers present none.
  // checkov:skip=CKV_AZURE_222:The app must be publicly reachable: Microsoft Graph delivers notifications to it and users' browsers sign in through it.
  // checkov:skip=CKV_AZURE_212:Flex Consumption has no fixed instance count to raise for failover: one instance is kept always ready and the platform adds instances on demand.
  // checkov:skip=CKV_AZURE_78:ftpsState cannot be set on a Flex Consumption site (ARM rejects it); FTP and basic-auth publishing are off through the basicPublishingCredentialsPolicies `ftp` and `scm` below.
  // checkov:skip=CKV_AZURE_213:No App Service health check: it evicts instances only when there are several fixed ones, which a Flex Consumption app does not have. GET /api/health is there for probes and for the deployment check in docs/deploy.md.
  name: appName
  location: location
  // azd finds the deployment target of service `api` by this tag.
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    // Key Vault references (TOKEN_ENCRYPTION_KEY) resolve with the user-assigned identity.
    keyVaultReferenceIdentity: identityId
    // Only site settings Flex Consumption keeps. ARM rejects ftpsState on a Flex site
    // (FTP is off through the publishing-credential policies below instead), and the
    // others of the classic plans (alwaysOn, linuxFxVersion, ...) live in
    // functionAppConfig; scripts/check-infra.sh fails on any of them.
    siteConfig: {
      minTlsVersion: '1.2'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        // `http` is the group every HTTP-triggered function scales in.
        alwaysReady: httpAlwaysReady > 0 ? [
          {
            name: 'http'
            instanceCount: httpAlwaysReady
          }
        ] : []
      }
      // The custom handler stack. On Flex the runtime lives here, not in
      // FUNCTIONS_WORKER_RUNTIME / linuxFxVersion (both deprecated for Flex).
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    }
  }
}

// No FTP and no basic-auth (publishing profile) deployments: azd deploys with Entra ID.
resource ftpPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

// App settings in their own resource so PUBLIC_BASE_URL can use the host name the
// platform assigned (Flex apps may get a unique, not name-derived, default host name).
// Names are the app's settings (README); see docs/deploy.md for what each one does.
//
// checkov reads every sites/config resource as the `web` (site configuration) one; this
// is the `appsettings` one, which has none of the properties the skipped checks look
// for. (At most 9 comment lines in a row inside a resource: pycep, checkov's Bicep
// parser, rejects longer runs and checkov then silently skips the whole file.)
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13:Not a site configuration resource (app settings only). EasyAuth cannot front this app anyway: Graph posts notifications anonymously and the OAuth callback is a browser form_post; the app checks clientState, validation tokens and OAuth state itself.
  // checkov:skip=CKV_AZURE_63:Not a site configuration resource (app settings only). HTTP logs of a Function App go to Application Insights.
  // checkov:skip=CKV_AZURE_65:Not a site configuration resource (app settings only); detailed error pages are an IIS/Windows feature.
  // checkov:skip=CKV_AZURE_66:Not a site configuration resource (app settings only); failed request tracing is an IIS/Windows feature.
  // checkov:skip=CKV_AZURE_80:Not a site configuration resource (app settings only); no .NET Framework is used (custom handler).
  // checkov:skip=CKV_AZURE_88:Not a site configuration resource (app settings only); Flex Consumption has no Azure Files content share.
  // checkov:skip=CKV_AZURE_222:Not a site configuration resource (app settings only); see CKV_AZURE_222 on `site`.
  parent: site
  name: 'appsettings'
  properties: union({
    // Functions host storage, identity-based (no connection string, no key). The app's
    // own store (STORE=table) reads the same three settings: it derives
    // https://<account>.table.core.windows.net from __accountName and gets tokens for
    // the user-assigned identity named by __clientId.
    AzureWebJobsStorage__accountName: storageAccountName
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId

    // Telemetry with Entra auth (the component has local auth disabled).
    APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'

    // Sign-in and Graph.
    AZURE_TENANT_ID: signInTenant
    AZURE_CLIENT_ID: appClientId
    KEY_VAULT_URL: keyVaultUrl
    KEY_VAULT_CLIENT_CERTIFICATE: clientCertificateName
    KEY_VAULT_NOTIFICATION_CERTIFICATE: notificationCertificateName
    PUBLIC_BASE_URL: 'https://${site.properties.defaultHostName}'
    // Versionless reference: follows the newest version of the secret (refreshed by
    // the platform within 24 h, or at once on restart / settings change).
    TOKEN_ENCRYPTION_KEY: '@Microsoft.KeyVault(SecretUri=${keyVaultUrl}/secrets/${tokenEncryptionSecretName}/)'

    // The app's store: Azure Table Storage over Entra ID (see AzureWebJobsStorage__*).
    STORE: 'table'

    // Presence flow.
    PRESENCE_TOPIC: topicName
    POLL_INTERVAL: string(pollInterval)
    // Read by the timer functions' function.json as %PresenceRefreshSchedule% and
    // %SubscriptionsRenewSchedule%.
    PresenceRefreshSchedule: presenceRefreshSchedule
    SubscriptionsRenewSchedule: subscriptionsRenewSchedule

    // The Service Bus output binding's `connection: ServiceBusConnection`, identity-based.
    ServiceBusConnection__fullyQualifiedNamespace: serviceBusNamespaceFqdn
    ServiceBusConnection__credential: 'managedidentity'
    ServiceBusConnection__clientId: identityClientId

    // The binary is statically linked with its own OpenSSL, whose compiled-in CA path is
    // not the image's: point it at the system bundle of the Functions Linux image.
    SSL_CERT_FILE: '/etc/ssl/certs/ca-certificates.crt'
    SSL_CERT_DIR: '/etc/ssl/certs'
  }, empty(publisherSecretName) ? {
    PUBLISH_MODE: 'binding'
  } : {
    // Straight to the topic with userId as an application property, so each edge's
    // subscription filter works. ServiceBusConnection (a Send-only SAS connection string
    // from Key Vault) is what the REST publisher signs with; as a plain value it also
    // takes precedence over the ServiceBusConnection__* settings for the output binding.
    PUBLISH_MODE: 'rest'
    ServiceBusConnection: '@Microsoft.KeyVault(SecretUri=${keyVaultUrl}/secrets/${publisherSecretName}/)'
  })
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
