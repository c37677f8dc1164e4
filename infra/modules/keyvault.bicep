// Key Vault for the app's secrets: the certificate it signs client assertions with
// (KEY_VAULT_CLIENT_CERTIFICATE), the certificate Graph encrypts rich notifications to
// (KEY_VAULT_NOTIFICATION_CERTIFICATE), and the token encryption key (a secret,
// referenced from the TOKEN_ENCRYPTION_KEY app setting).
//
// RBAC authorization (no access policies), soft delete and purge protection on.
param name string
param location string
param tags object
param readerPrincipalId string
param deployerPrincipalId string = ''
param deployerPrincipalType string = 'User'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109:The Function App has no VNet, so the vault cannot deny public network access; every request still needs an Entra token with a data-plane role (RBAC).
  // checkov:skip=CKV_AZURE_189:Same reason as CKV_AZURE_109: Key Vault references and the app's own certificate loads come over the public endpoint.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

// Key Vault Secrets User for the app: read secrets and list their versions
// (Microsoft.KeyVault/vaults/secrets/getSecret/action and .../secrets/readMetadata/action),
// and through the secret that backs every certificate, the certificates' private keys. The
// app needs both: the Key Vault reference of TOKEN_ENCRYPTION_KEY and the notification
// certificate's previous version, found by listing the versions (clients/keyvault.rs). It
// cannot write, delete or purge.
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
// For the person running azd: put the certificates and the token key in.
var keyVaultSecretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
var keyVaultCertificatesOfficer = 'a4417e6f-fecd-4de8-b567-7b0420556985'

resource appReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, readerPrincipalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: readerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource deployerSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(vault.id, deployerPrincipalId, keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficer)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
  }
}

resource deployerCertificates 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(vault.id, deployerPrincipalId, keyVaultCertificatesOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultCertificatesOfficer)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
  }
}

output name string = vault.name
// vaultUri ends with a slash; KEY_VAULT_URL is the origin without one.
output url string = endsWith(vault.properties.vaultUri, '/') ? substring(vault.properties.vaultUri, 0, length(vault.properties.vaultUri) - 1) : vault.properties.vaultUri

// Expiry alert: Key Vault raises CertificateNearExpiry / SecretNearExpiry 30 days before
// an item's expiry (the client certificate, the notification certificate before its
// auto-renewal, a client secret stored with an expiry date). An Event Grid system topic
// turns them into Azure Monitor alerts that mail alertEmail. Off when alertEmail is empty.
@description('Mail address for certificate and secret expiry alerts (30 days ahead); empty: no alert.')
param alertEmail string = ''

resource expiryActions 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-${name}-expiry'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'tp-expiry'
    enabled: true
    emailReceivers: [
      {
        name: 'owner'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource vaultEvents 'Microsoft.EventGrid/systemTopics@2023-12-15-preview' = if (!empty(alertEmail)) {
  name: 'evgt-${name}'
  location: location
  tags: tags
  properties: {
    source: vault.id
    topicType: 'Microsoft.KeyVault.vaults'
  }
}

resource expiryAlert 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2023-12-15-preview' = if (!empty(alertEmail)) {
  parent: vaultEvents
  name: 'near-expiry'
  properties: {
    eventDeliverySchema: 'CloudEventSchemaV1_0'
    filter: {
      includedEventTypes: [
        'Microsoft.KeyVault.CertificateNearExpiry'
        'Microsoft.KeyVault.SecretNearExpiry'
      ]
    }
    destination: {
      endpointType: 'MonitorAlert'
      properties: {
        severity: 'Sev2'
        description: 'teams-presence: a Key Vault certificate or secret expires within 30 days; renew it (docs/deploy.md, Rotating certificates and keys).'
        actionGroups: [
          expiryActions.id
        ]
      }
    }
  }
}
