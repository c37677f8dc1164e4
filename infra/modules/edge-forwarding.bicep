// The second step of every edge's topic subscription (modules/servicebus.bicep): forwarding
// into the edge's queue, deployed only after the subscription's own rules exist and its
// `$Default` rule is a FalseFilter, so a new edge never passes on a message its filters would
// not have let through. An edge that already existed is deployed with these same properties
// in the first step too, so for it this is no change.
param namespaceName string
param topicName string
@description('The edges\' subscription names, in the order of subscriptionProperties.')
param subscriptionNames array
@description('Each subscription\'s final properties, forwardTo included.')
param subscriptionProperties array

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' existing = {
  name: namespaceName
}

resource topic 'Microsoft.ServiceBus/namespaces/topics@2022-10-01-preview' existing = {
  parent: namespace
  name: topicName
}

resource forwarding 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2022-10-01-preview' = [for (name, i) in subscriptionNames: {
  parent: topic
  name: name
  properties: subscriptionProperties[i]
}]
