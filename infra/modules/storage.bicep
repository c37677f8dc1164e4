// The Function App's storage account. It holds the host's own state (timer schedule
// monitors, singleton locks, keys), the blob container the Flex Consumption plan
// deploys the package from, and the app's tables (users, tokens, last presence,
// subscriptions: STORE=table).
//
// Shared Key access is off: the host, the deployment and the app all use the managed
// identity (AzureWebJobsStorage__accountName/__credential/__clientId, TABLES_ENDPOINT).
param name string
param location string
param tags object
param deploymentContainerName string
param hostPrincipalId string

@description('Replication. LRS is enough: everything here can be rebuilt (users sign in again, the package is redeployed).')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_LRS'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:Flex Consumption without VNet integration reaches its storage over the public endpoint; access is by Entra identity only (allowSharedKeyAccess false). Enable VNet integration + private endpoints to tighten this.
  // checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35: the app has no VNet, so the public endpoint must stay reachable; shared keys are disabled.
  // checkov:skip=CKV_AZURE_206:Nothing here needs geo-replication (tokens can be re-obtained by signing in, the package is redeployed); skuName allows GRS/GZRS for those who want it.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Least privilege for the host and the app:
// - Storage Blob Data Owner: the Functions host needs it for AzureWebJobsStorage with an
//   identity (it creates containers and takes blob leases for timer singletons), and the
//   Flex plan reads the deployment package with it.
// - Storage Table Data Contributor: the app's own tables (STORE=table).
// No queue or file roles: nothing here uses queues, and Flex has no content file share.
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'

resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, hostPrincipalId, storageBlobDataOwner)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: hostPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, hostPrincipalId, storageTableDataContributor)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: hostPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
output tableEndpoint string = account.properties.primaryEndpoints.table
output deploymentContainerName string = deploymentContainer.name
