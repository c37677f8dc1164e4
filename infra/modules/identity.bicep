// The user-assigned managed identity the Function App runs as. User-assigned (not
// system-assigned) so the role assignments can be made before the app exists and its
// first start already has access to storage, the topic and the vault.
param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
