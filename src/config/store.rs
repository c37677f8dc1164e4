//! Where records are kept (`STORE`, `TABLES_CONNECTION_STRING`, `AzureWebJobsStorage` and its
//! identity-based form) and the keys that seal their secrets (`TOKEN_ENCRYPTION_KEY`,
//! `TOKEN_ENCRYPTION_KEY_PREVIOUS`).

use secrecy::{SecretBox, SecretString};
use url::Url;

use super::error::ConfigError;
use super::sources::Sources;

/// Which store backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// Azure Table Storage (the handler's default).
    Table,
    /// Embedded SQLite (the default of `serve`, `login`, `users`).
    Sqlite,
}

/// How to reach Azure Table Storage.
#[derive(Debug, Clone)]
pub enum TablesConnection {
    /// A storage connection string (account key; `UseDevelopmentStorage=true` for Azurite).
    ConnectionString(SecretString),
    /// Identity-based (`AzureWebJobsStorage__accountName` / `__tableServiceUri`): bearer tokens
    /// from the managed identity.
    Identity {
        /// `https://{account}.table.core.windows.net`
        endpoint: Url,
        /// Client id of a user-assigned identity (`AzureWebJobsStorage__clientId`).
        client_id: Option<String>,
    },
}

/// The store.
#[derive(Debug)]
pub struct StoreSettings {
    /// `TABLES_CONNECTION_STRING`, else `AzureWebJobsStorage` (or its identity-based form).
    pub tables: Option<TablesConnection>,
    /// `STORE`; each command has its own default (`Settings::store_kind`).
    pub kind: Option<StoreKind>,
}

impl StoreSettings {
    pub(super) fn parse(src: &Sources) -> Result<Self, ConfigError> {
        let tables = match src.setting("TABLES_CONNECTION_STRING").secret() {
            Some(cs) => Some(TablesConnection::ConnectionString(cs)),
            None => match src.setting("AzureWebJobsStorage").secret() {
                Some(cs) => Some(TablesConnection::ConnectionString(cs)),
                None => identity_tables(src)?,
            },
        };
        Ok(Self {
            tables,
            kind: src.setting("STORE").keyword(
                &[("table", StoreKind::Table), ("sqlite", StoreKind::Sqlite)],
                "`table` or `sqlite`",
            )?,
        })
    }
}

fn identity_tables(src: &Sources) -> Result<Option<TablesConnection>, ConfigError> {
    let client_id = src.setting("AzureWebJobsStorage__clientId").text();
    if let Some(endpoint) = src
        .setting("AzureWebJobsStorage__tableServiceUri")
        .parsed("an https URL", |v| Url::parse(v).ok())?
    {
        return Ok(Some(TablesConnection::Identity {
            endpoint,
            client_id,
        }));
    }
    let account = src.setting("AzureWebJobsStorage__accountName");
    if let Some(name) = account.trimmed() {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(account.invalid(Some(&name), "a storage account name (letters and digits)"));
        }
        let endpoint = Url::parse(&format!("https://{name}.table.core.windows.net")).unwrap();
        return Ok(Some(TablesConnection::Identity {
            endpoint,
            client_id,
        }));
    }
    Ok(None)
}

/// The keys that seal refresh tokens, PKCE verifiers and kept notification keys at rest.
#[derive(Debug)]
pub struct EncryptionSettings {
    /// `TOKEN_ENCRYPTION_KEY` (32 bytes).
    pub key: Option<SecretBox<[u8; 32]>>,
    /// `TOKEN_ENCRYPTION_KEY_PREVIOUS`: the key before a rotation, still able to open.
    pub previous_key: Option<SecretBox<[u8; 32]>>,
}

impl EncryptionSettings {
    pub(super) fn parse(src: &Sources) -> Result<Self, ConfigError> {
        Ok(Self {
            key: src.setting("TOKEN_ENCRYPTION_KEY").key32()?,
            previous_key: src.setting("TOKEN_ENCRYPTION_KEY_PREVIOUS").key32()?,
        })
    }
}
