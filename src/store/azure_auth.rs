//! Bearer tokens for Azure resources (Table Storage, Key Vault) from the managed identity,
//! through azure_identity. Only the cloud build (`azure-sdk` feature) has the identity;
//! the Pi build, which compiles with Rust 1.85, reports a clear configuration problem instead.

use secrecy::SecretString;

/// Where bearer tokens come from. Without the `azure-sdk` feature there is no source at all
/// ([`TokenSource::managed_identity`] refuses), so nothing can hold one.
#[derive(Clone)]
pub enum TokenSource {
    /// An azure_identity credential (managed identity in Azure).
    #[cfg(feature = "azure-sdk")]
    Credential(std::sync::Arc<dyn azure_core::credentials::TokenCredential>),
}

impl TokenSource {
    /// The managed identity: system-assigned, or the user-assigned one with `client_id`.
    pub fn managed_identity(client_id: Option<&str>) -> Result<Self, String> {
        #[cfg(feature = "azure-sdk")]
        {
            use azure_identity::{
                ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
            };
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.map(|c| UserAssignedId::ClientId(c.to_owned())),
                ..Default::default()
            };
            let cred = ManagedIdentityCredential::new(Some(options))
                .map_err(|e| format!("cannot use the managed identity: {e}"))?;
            Ok(TokenSource::Credential(cred))
        }
        #[cfg(not(feature = "azure-sdk"))]
        {
            let _ = client_id;
            Err("identity-based access needs the cloud build (default features); this build has no Azure SDK, use a connection string".into())
        }
    }

    /// A token for `scope` (e.g. `https://storage.azure.com/.default`). Errors are short and
    /// hold no token material.
    pub async fn token(&self, scope: &str) -> Result<SecretString, String> {
        #[cfg(feature = "azure-sdk")]
        {
            let TokenSource::Credential(c) = self;
            c.get_token(&[scope], None)
                .await
                .map(|t| SecretString::from(t.token.secret().to_owned()))
                .map_err(|e| format!("managed identity token for {scope} failed: {e}"))
        }
        #[cfg(not(feature = "azure-sdk"))]
        {
            let _ = scope;
            match *self {}
        }
    }
}
