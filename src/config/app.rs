//! The app registration in Entra ID (`AZURE_*`, `AUTH_SCOPES`) and Key Vault (`KEY_VAULT_*`,
//! `MANAGED_IDENTITY_CLIENT_ID`): who the app is and how it proves it.

use std::path::PathBuf;

use secrecy::SecretString;
use url::Url;

use super::error::ConfigError;
use super::sources::Sources;
use super::values::HTTP;

/// Default scopes: delegated Presence.Read.All is what presence change notifications need
/// (Presence.Read is not enough); offline_access yields the refresh token.
pub const DEFAULT_SCOPES: &str =
    "https://graph.microsoft.com/Presence.Read.All offline_access openid profile";

/// Which signature a certificate client assertion uses (`AZURE_CLIENT_ASSERTION_ALG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionAlg {
    /// RSA-PSS SHA-256 with the `x5t#S256` header: Microsoft's current guidance (default).
    Ps256,
    /// RSA PKCS#1 v1.5 SHA-256 with the SHA-1 `x5t` header: the long-standing format.
    Rs256,
}

/// The app registration and its credential.
#[derive(Debug)]
pub struct AppSettings {
    /// `AZURE_TENANT_ID` (default `organizations`).
    pub tenant: String,
    /// `AZURE_CLIENT_ID`.
    pub client_id: Option<String>,
    /// `AZURE_CLIENT_SECRET`.
    pub client_secret: Option<SecretString>,
    /// `AZURE_CLIENT_SECRET_EXPIRES` (RFC 3339): when the client secret expires, for
    /// `doctor`'s warning (Entra ID does not tell the app itself).
    pub client_secret_expires: Option<chrono::DateTime<chrono::Utc>>,
    /// `AZURE_CLIENT_CERTIFICATE_PATH`.
    pub client_certificate_path: Option<PathBuf>,
    /// `AZURE_CLIENT_ASSERTION_ALG` (`PS256`, default, or `RS256`).
    pub client_assertion_alg: AssertionAlg,
    /// `AZURE_AUTHORITY_HOST`.
    pub authority_host: Url,
    /// `AUTH_SCOPES` (space separated).
    pub auth_scopes: Vec<String>,
}

impl AppSettings {
    pub(super) fn parse(src: &Sources) -> Result<Self, ConfigError> {
        Ok(Self {
            tenant: src
                .setting("AZURE_TENANT_ID")
                .parsed(
                    "a tenant id (GUID), a domain, `organizations` or `common`",
                    tenant,
                )?
                .unwrap_or_else(|| "organizations".into()),
            client_id: src.setting("AZURE_CLIENT_ID").trimmed(),
            client_secret: src.setting("AZURE_CLIENT_SECRET").secret(),
            client_secret_expires: src.setting("AZURE_CLIENT_SECRET_EXPIRES").time()?,
            client_certificate_path: src.setting("AZURE_CLIENT_CERTIFICATE_PATH").path(),
            client_assertion_alg: src
                .setting("AZURE_CLIENT_ASSERTION_ALG")
                .keyword(
                    &[
                        ("PS256", AssertionAlg::Ps256),
                        ("RS256", AssertionAlg::Rs256),
                    ],
                    "PS256 or RS256",
                )?
                .unwrap_or(AssertionAlg::Ps256),
            authority_host: src
                .setting("AZURE_AUTHORITY_HOST")
                .url(HTTP, "an http(s) URL")?
                .unwrap_or_else(|| Url::parse("https://login.microsoftonline.com").unwrap()),
            auth_scopes: scopes(src),
        })
    }
}

/// A tenant id, a domain, `organizations` or `common`: what an authority URL's path allows.
fn tenant(t: &str) -> Option<String> {
    let ok = !t.is_empty()
        && t.len() <= 100
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    ok.then(|| t.to_owned())
}

fn scopes(src: &Sources) -> Vec<String> {
    let scopes = src
        .setting("AUTH_SCOPES")
        .list_by(super::sources::Separator::Whitespace);
    if scopes.is_empty() {
        DEFAULT_SCOPES
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    } else {
        scopes
    }
}

/// Certificates kept in Key Vault, read with the managed identity (the cloud build).
#[derive(Debug)]
pub struct KeyVaultSettings {
    /// `KEY_VAULT_URL`.
    pub url: Option<Url>,
    /// `KEY_VAULT_CLIENT_CERTIFICATE` (certificate name in the vault).
    pub client_certificate: Option<String>,
    /// `KEY_VAULT_NOTIFICATION_CERTIFICATE` (certificate name in the vault).
    pub notification_certificate: Option<String>,
    /// `MANAGED_IDENTITY_CLIENT_ID`, else `AzureWebJobsStorage__clientId`: the user-assigned
    /// identity for Key Vault (system-assigned when unset).
    pub managed_identity_client_id: Option<String>,
}

impl KeyVaultSettings {
    pub(super) fn parse(src: &Sources) -> Result<Self, ConfigError> {
        Ok(Self {
            url: src.setting("KEY_VAULT_URL").url(HTTP, "an http(s) URL")?,
            client_certificate: src.setting("KEY_VAULT_CLIENT_CERTIFICATE").text(),
            notification_certificate: src.setting("KEY_VAULT_NOTIFICATION_CERTIFICATE").text(),
            managed_identity_client_id: src
                .setting("MANAGED_IDENTITY_CLIENT_ID")
                .text()
                .or_else(|| src.setting("AzureWebJobsStorage__clientId").text()),
        })
    }
}
