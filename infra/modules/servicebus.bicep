// Service Bus: the `presence` topic the cloud part publishes every change to, and one
// subscription per edge device (a Raspberry Pi at home, one at the office, ...).
//
// Standard tier: topics and subscriptions need it (Basic has queues only).
//
// Edges authenticate with a listen-only SAS key on the topic (a Pi has no Entra
// identity), so local (SAS) auth stays enabled on the namespace. The cloud part sends
// with its managed identity (Azure Service Bus Data Sender on the topic) and holds no key.
param name string
param location string
param tags object
param topicName string = 'presence'
param edgeSubscriptions array
param senderPrincipalId string

@description('How long a presence message waits for an edge that is offline. Older presence is useless, so keep it short.')
param messageTimeToLive string = 'P1D'

@description('Window in which a resent message with the same MessageId is dropped. Only messages published with an explicit MessageId (the REST publisher) benefit; the Functions output binding cannot set one.')
param duplicateDetectionWindow string = 'PT10M'

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = {
  // Deliberate choices (checkov 3.3 has no Bicep check for them; other scanners may ask):
  // - Microsoft-managed encryption keys: customer-managed keys need the Premium tier,
  //   and presence states do not justify its cost.
  // - Local (SAS) auth stays on: edges have no Entra identity and use listen-only SAS
  //   keys scoped to the topic. The cloud part itself uses its managed identity.
  // - Public network access: edges connect from home/office networks over the internet
  //   (outbound HTTPS only); every caller still needs a key or an Entra token.
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    disableLocalAuth: false
  }
}

resource topic 'Microsoft.ServiceBus/namespaces/topics@2022-10-01-preview' = {
  parent: namespace
  name: topicName
  properties: {
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
    defaultMessageTimeToLive: messageTimeToLive
    enableBatchedOperations: true
    supportOrdering: true
    maxSizeInMegabytes: 1024
  }
}

// One subscription per edge. Every subscription gets the $Default rule (1=1, all
// messages); edges filter by user with WATCH_USERS. Per-user SQL filters on `userId`
// only work for messages published with application properties, i.e. through the
// Service Bus REST API, not through the Functions output binding (docs/deploy.md).
resource subscriptions 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2022-10-01-preview' = [for edge in edgeSubscriptions: {
  parent: topic
  name: edge
  properties: {
    maxDeliveryCount: 10
    lockDuration: 'PT1M'
    defaultMessageTimeToLive: messageTimeToLive
    deadLetteringOnMessageExpiration: true
    deadLetteringOnFilterEvaluationExceptions: true
    enableBatchedOperations: true
  }
}]

// A listen-only key per edge, on the topic (not the namespace): a leaked Pi key can
// read presence from this topic and do nothing else. Read it with
//   az servicebus topic authorization-rule keys list ... --name edge-<name>
resource edgeRules 'Microsoft.ServiceBus/namespaces/topics/authorizationRules@2022-10-01-preview' = [for edge in edgeSubscriptions: {
  parent: topic
  name: 'edge-${edge}'
  properties: {
    rights: [
      'Listen'
    ]
  }
}]

// Azure Service Bus Data Sender, scoped to the topic only.
var serviceBusDataSender = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, senderPrincipalId, serviceBusDataSender)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSender)
    principalId: senderPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = namespace.name
// serviceBusEndpoint is https://<ns>.servicebus.windows.net:443/ (other suffixes in
// sovereign clouds); the binding wants the bare host name.
output fullyQualifiedNamespace string = split(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':')[0]
output topicName string = topic.name
