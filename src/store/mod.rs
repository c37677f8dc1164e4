//! What the system keeps, behind one interface with two backends.
//!
//! The backends ([`sqlite`], [`table`]) only know *entities*: a partition key, a row key, a
//! JSON document and an ETag, with Azure Table Storage's semantics (insert fails if present,
//! replace and delete can be conditional on an ETag, 412 when it moved). Typed records
//! ([`records`]) sit on top, so both backends store exactly the same thing and one
//! conformance suite (tests/integration/store.rs) runs against both.
//!
//! Optimistic concurrency is the only locking: a writer reads, decides, and writes with
//! `If-Match`; on [`StoreError::PreconditionFailed`] it reads again and decides again. That is
//! what keeps a poll and a notification racing on one user from publishing twice.

pub mod azure_auth;
pub mod records;
pub mod sqlite;
pub mod table;

use std::fmt;

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

pub use records::{
    PbxLinkRecord, PbxMappingRecord, PendingPublish, PendingSignIn, PresenceRecord,
    SubscriptionRecord, UserRecord, UserState,
};

/// The logical tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Signed-in users and their encrypted refresh tokens.
    Users,
    /// Last known presence per user.
    Presence,
    /// Graph change-notification subscriptions.
    Subscriptions,
    /// Sign-ins in progress (state, PKCE verifier, nonce).
    PendingSignIns,
    /// Free-form entities for tests and small bookkeeping.
    Meta,
    /// PBX extension ↔ Teams user mapping.
    PbxMappings,
    /// PBX sync state per extension (echo ledger, ownership, last writes).
    PbxLinks,
}

impl Table {
    /// Every table, for creation at start-up.
    pub const ALL: [Table; 7] = [
        Table::Users,
        Table::Presence,
        Table::Subscriptions,
        Table::PendingSignIns,
        Table::Meta,
        Table::PbxMappings,
        Table::PbxLinks,
    ];

    /// The Azure table name (alphanumeric, starts with a letter) and SQLite discriminator.
    pub fn name(self) -> &'static str {
        match self {
            Table::Users => "TeamsPresenceUsers",
            Table::Presence => "TeamsPresencePresence",
            Table::Subscriptions => "TeamsPresenceSubscriptions",
            Table::PendingSignIns => "TeamsPresencePendingSignIns",
            Table::Meta => "TeamsPresenceMeta",
            Table::PbxMappings => "TeamsPresencePbxMappings",
            Table::PbxLinks => "TeamsPresencePbxLinks",
        }
    }
}

/// An opaque version stamp; pass it back to make a write conditional.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Etag(pub String);

impl fmt::Display for Etag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One stored entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// Partition key.
    pub pk: String,
    /// Row key.
    pub rk: String,
    /// The document.
    pub data: Value,
    /// Its current version.
    pub etag: Etag,
}

/// Store failures, split by what the caller does about them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Insert of an entity that exists: the caller lost a race to create it.
    #[error("entity already exists")]
    Conflict,
    /// Conditional write or delete against a version that moved: read again, decide again.
    #[error("entity changed since it was read")]
    PreconditionFailed,
    /// Conditional write or delete of an entity that does not exist.
    #[error("entity not found")]
    NotFound,
    /// The store could not be reached or answered 5xx after retries: transient, the
    /// caller answers 5xx or tries on its next run. The text never holds keys or tokens.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else (bad credentials, corrupt row): needs a human.
    #[error("store error: {0}")]
    Other(String),
}

/// A typed record and where it lives.
pub trait Record: Serialize + DeserializeOwned {
    /// Its table.
    const TABLE: Table;
    /// Its partition and row key.
    fn keys(&self) -> (String, String);
}

/// A record with the version it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// The record.
    pub value: T,
    /// Its ETag.
    pub etag: Etag,
}

/// The store: a closed set of backends.
#[derive(Clone)]
pub enum Store {
    /// Embedded SQLite (`serve`, `login`, `users`).
    Sqlite(sqlite::SqliteStore),
    /// Azure Table Storage (the Functions handler).
    Table(table::TableStore),
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Store::Sqlite(s) => write!(f, "Store::Sqlite({})", s.path().display()),
            Store::Table(t) => write!(f, "Store::Table({})", t.endpoint()),
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $b:ident => $e:expr) => {
        match $self {
            Store::Sqlite($b) => $e,
            Store::Table($b) => $e,
        }
    };
}

impl Store {
    /// Creates the tables if they do not exist.
    pub async fn ensure_tables(&self) -> Result<(), StoreError> {
        dispatch!(self, b => b.ensure_tables().await)
    }

    /// A short description for the status page and `doctor` (no secrets).
    pub fn describe(&self) -> String {
        match self {
            Store::Sqlite(s) => format!("SQLite at {}", s.path().display()),
            Store::Table(t) => format!("Azure Table Storage at {}", t.endpoint()),
        }
    }

    // --- Entity level -------------------------------------------------------------------

    /// Reads one entity.
    pub async fn get_entity(
        &self,
        t: Table,
        pk: &str,
        rk: &str,
    ) -> Result<Option<Entity>, StoreError> {
        dispatch!(self, b => b.get(t, pk, rk).await)
    }

    /// Inserts; [`StoreError::Conflict`] if it exists.
    pub async fn insert_entity(
        &self,
        t: Table,
        pk: &str,
        rk: &str,
        data: &Value,
    ) -> Result<Etag, StoreError> {
        dispatch!(self, b => b.insert(t, pk, rk, data).await)
    }

    /// Replaces if the ETag still matches.
    pub async fn replace_entity(
        &self,
        t: Table,
        pk: &str,
        rk: &str,
        data: &Value,
        etag: &Etag,
    ) -> Result<Etag, StoreError> {
        dispatch!(self, b => b.replace(t, pk, rk, data, etag).await)
    }

    /// Inserts or replaces unconditionally.
    pub async fn upsert_entity(
        &self,
        t: Table,
        pk: &str,
        rk: &str,
        data: &Value,
    ) -> Result<Etag, StoreError> {
        dispatch!(self, b => b.upsert(t, pk, rk, data).await)
    }

    /// Deletes, conditionally on `etag` when given.
    pub async fn delete_entity(
        &self,
        t: Table,
        pk: &str,
        rk: &str,
        etag: Option<&Etag>,
    ) -> Result<(), StoreError> {
        dispatch!(self, b => b.delete(t, pk, rk, etag).await)
    }

    /// Every entity of a table, or of one partition, in key order.
    pub async fn scan_entities(
        &self,
        t: Table,
        pk: Option<&str>,
    ) -> Result<Vec<Entity>, StoreError> {
        dispatch!(self, b => b.scan(t, pk).await)
    }

    // --- Typed --------------------------------------------------------------------------

    /// Reads a record.
    pub async fn get<T: Record>(
        &self,
        pk: &str,
        rk: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        match self.get_entity(T::TABLE, pk, rk).await? {
            None => Ok(None),
            Some(e) => Ok(Some(decode(e)?)),
        }
    }

    /// Inserts a record; [`StoreError::Conflict`] if one with its keys exists.
    pub async fn insert<T: Record>(&self, rec: &T) -> Result<Etag, StoreError> {
        let (pk, rk) = rec.keys();
        self.insert_entity(T::TABLE, &pk, &rk, &encode(rec)?).await
    }

    /// Replaces a record read at `etag`.
    pub async fn replace<T: Record>(&self, rec: &T, etag: &Etag) -> Result<Etag, StoreError> {
        let (pk, rk) = rec.keys();
        self.replace_entity(T::TABLE, &pk, &rk, &encode(rec)?, etag)
            .await
    }

    /// Inserts or replaces a record unconditionally.
    pub async fn upsert<T: Record>(&self, rec: &T) -> Result<Etag, StoreError> {
        let (pk, rk) = rec.keys();
        self.upsert_entity(T::TABLE, &pk, &rk, &encode(rec)?).await
    }

    /// Deletes a record.
    pub async fn delete<T: Record>(
        &self,
        pk: &str,
        rk: &str,
        etag: Option<&Etag>,
    ) -> Result<(), StoreError> {
        self.delete_entity(T::TABLE, pk, rk, etag).await
    }

    /// Every record of a kind.
    pub async fn list<T: Record>(&self) -> Result<Vec<Versioned<T>>, StoreError> {
        self.scan_entities(T::TABLE, None)
            .await?
            .into_iter()
            .map(decode)
            .collect()
    }
}

fn encode<T: Serialize>(rec: &T) -> Result<Value, StoreError> {
    serde_json::to_value(rec).map_err(|e| StoreError::Other(format!("cannot encode record: {e}")))
}

fn decode<T: DeserializeOwned>(e: Entity) -> Result<Versioned<T>, StoreError> {
    let value = serde_json::from_value(e.data).map_err(|err| {
        StoreError::Other(format!(
            "stored {}/{} is not a valid record: {err}",
            e.pk, e.rk
        ))
    })?;
    Ok(Versioned {
        value,
        etag: e.etag,
    })
}

/// Opens the store a command uses: SQLite under `data_dir` unless `STORE=table`.
pub fn open(
    settings: &crate::config::Settings,
    default: crate::config::StoreKind,
    data_dir: &std::path::Path,
) -> anyhow::Result<Store> {
    use crate::config::StoreKind;
    Ok(match settings.store_kind(default) {
        StoreKind::Sqlite => {
            crate::files::prepare_data_dir(data_dir)?;
            Store::Sqlite(sqlite::SqliteStore::open(
                &data_dir.join("teams-presence.sqlite3"),
            )?)
        }
        StoreKind::Table => {
            let conn = settings.tables.as_ref().ok_or_else(|| {
                crate::config::ConfigError::missing(
                    "TABLES_CONNECTION_STRING",
                    "an Azure Storage connection string (or AzureWebJobsStorage) because STORE=table",
                )
            })?;
            Store::Table(table::TableStore::from_config(conn)?)
        }
    })
}
