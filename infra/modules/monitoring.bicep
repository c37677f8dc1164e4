// Log Analytics workspace + workspace-based Application Insights. Local (key) auth on
// the component is off, so telemetry is accepted only from Entra identities: the app's
// managed identity gets Monitoring Metrics Publisher on the component, and the app sets
// APPLICATIONINSIGHTS_AUTHENTICATION_STRING accordingly (modules/functionapp.bicep).
param logAnalyticsName string
param appInsightsName string
param location string
param tags object
param publisherPrincipalId string

@description('Days to keep logs; 30 is the free retention of a PerGB2018 workspace.')
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

// Monitoring Metrics Publisher: lets the identity send telemetry with Entra auth.
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource publisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, publisherPrincipalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: publisherPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The connection string holds no secret (only the instrumentation key, an identifier,
// and the ingestion endpoint); with local auth off it cannot be used without a token.
output connectionString string = appInsights.properties.ConnectionString
output name string = appInsights.name
