// Service Bus: the `presence` topic the cloud part publishes every change to, and per
// edge device (a Raspberry Pi at home, one at the office, ...) a filtered subscription
// forwarding into the edge's own queue.
//
// Standard tier: topics and subscriptions need it (Basic has queues only).
//
// Edges authenticate with a listen-only SAS key on their own queue (a Pi has no Entra
// identity), so local (SAS) auth stays enabled on the namespace. The output binding sends
// with the managed identity (Azure Service Bus Data Sender on the topic); the REST
// publisher uses a Send-only key on the topic kept in Key Vault.
param name string
param location string
param tags object
param topicName string = 'presence'
@description('The per-edge plan infra/hooks/edge_plan.py renders from TEAMS_PRESENCE_EDGES: { edges: [{ name, existing }], rules: [{ edgeIndex, edge, name, sqlExpression }] }.')
param edgePlan object
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
  //   keys scoped to their own queue. The cloud part uses its managed identity and a
  //   Send-only topic key held in Key Vault.
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

// Per-edge isolation. Each edge gets:
//   - a queue `edge-<name>`, the only entity its key can read;
//   - a topic subscription `<name>` whose `$Default` rule is a FalseFilter (1=0) and whose
//     other rules (`users-01`, ..., or `all-users`: 1=1) are SQL filters on the `userId`
//     application property, rendered by infra/hooks/edge_plan.py: a condition is at most
//     1,024 characters, which holds 25 object ids, so an edge with more users gets more
//     rules; a message matching any of them is delivered once;
//   - auto-forwarding from that subscription into the queue;
//   - a listen-only SAS rule `listen` on that queue alone.
// A leaked Pi key then reveals only that Pi's users. The filters see application
// properties, never the body: the cloud part must publish with `userId` as a property
// (PUBLISH_MODE=rest, set in modules/functionapp.bicep); messages from the Functions
// output binding carry none and match no edge filter.
//
// A new subscription starts with the implicit `$Default` TrueFilter: every message matches
// until the deployment replaces it. So a new edge's subscription is created without
// forwardTo and with a 1-second message time to live (dead-lettering off): whatever matches
// before its own rules are in place expires there, unread and unforwarded. Its rules come
// next, then `$Default` becomes 1=0, and only then does the module edge-forwarding.bicep
// turn forwarding on (and the one-day time to live back). An edge the preprovision hook saw
// existing is deployed with forwarding throughout; its new rules go in before `$Default`
// changes, so its users are never cut off. Rules the plan no longer has are deleted by the
// postprovision hook (deployments only add and update).
var edges = edgePlan.edges
var edgeRules = edgePlan.rules

var subscriptionBase = {
  maxDeliveryCount: 10
  lockDuration: 'PT1M'
  deadLetteringOnFilterEvaluationExceptions: true
  enableBatchedOperations: true
}

// What every edge's subscription ends up with (the forwarding module deploys exactly this).
var forwardingProperties = [for edge in edges: union(subscriptionBase, {
  defaultMessageTimeToLive: messageTimeToLive
  deadLetteringOnMessageExpiration: true
  forwardTo: 'edge-${edge.name}'
})]

resource subscriptions 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2022-10-01-preview' = [for (edge, i) in edges: {
  parent: topic
  name: edge.name
  properties: edge.existing ? forwardingProperties[i] : union(subscriptionBase, {
    defaultMessageTimeToLive: 'PT1S'
    deadLetteringOnMessageExpiration: false
  })
  dependsOn: [
    queues
  ]
}]

// Named in full (namespace/topic/subscription/rule) rather than through `parent`: each rule
// belongs to the subscription its `edge` names, not to the subscription of its loop index.
resource userRules 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2022-10-01-preview' = [for rule in edgeRules: {
  name: '${namespace.name}/${topic.name}/${rule.edge}/${rule.name}'
  properties: {
    filterType: 'SqlFilter'
    sqlFilter: {
      sqlExpression: rule.sqlExpression
    }
  }
  dependsOn: [
    subscriptions
  ]
}]

resource defaultRules 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2022-10-01-preview' = [for (edge, i) in edges: {
  parent: subscriptions[i]
  name: '$Default'
  properties: {
    filterType: 'SqlFilter'
    sqlFilter: {
      sqlExpression: '1=0'
    }
  }
  dependsOn: [
    userRules
  ]
}]

module forwarding 'edge-forwarding.bicep' = {
  name: 'edge-forwarding'
  params: {
    namespaceName: namespace.name
    topicName: topic.name
    subscriptionNames: [for edge in edges: edge.name]
    subscriptionProperties: forwardingProperties
  }
  dependsOn: [
    defaultRules
    userRules
    queues
  ]
}

resource queues 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = [for edge in edges: {
  parent: namespace
  name: 'edge-${edge.name}'
  properties: {
    maxDeliveryCount: 10
    lockDuration: 'PT1M'
    defaultMessageTimeToLive: messageTimeToLive
    deadLetteringOnMessageExpiration: true
    enableBatchedOperations: true
    maxSizeInMegabytes: 1024
  }
}]

// Listen only, on this queue only: no Send, no Manage, nothing on the topic.
// Read it with: az servicebus queue authorization-rule keys list ... --queue-name edge-<name> -n listen
resource edgeRules 'Microsoft.ServiceBus/namespaces/queues/authorizationRules@2022-10-01-preview' = [for (edge, i) in edges: {
  parent: queues[i]
  name: 'listen'
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
output edgeQueues array = [for edge in edges: 'edge-${edge.name}']
