// The cloud part's REST publisher (PUBLISH_MODE=rest) signs with a SAS key today: a
// Send-only rule on the presence topic alone, whose connection string goes into Key
// Vault, never into an app setting in clear (the app reads it through a Key Vault
// reference). Deployed only when publishMode is rest (infra/main.bicep).
param namespaceName string
param topicName string
param vaultName string
param secretName string = 'servicebus-publisher'

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' existing = {
  name: namespaceName
}

resource topic 'Microsoft.ServiceBus/namespaces/topics@2022-10-01-preview' existing = {
  parent: namespace
  name: topicName
}

resource publisherRule 'Microsoft.ServiceBus/namespaces/topics/authorizationRules@2022-10-01-preview' = {
  parent: topic
  name: 'cloud-publisher'
  properties: {
    rights: [
      'Send'
    ]
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource publisherSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41:A SAS key has no expiry of its own; rotate it by renewing the rule's keys and provisioning again (docs/deploy.md).
  parent: vault
  name: secretName
  properties: {
    contentType: 'text/plain'
    value: publisherRule.listKeys().primaryConnectionString
  }
}

output secretName string = publisherSecret.name
