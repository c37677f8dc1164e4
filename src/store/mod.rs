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
pub mod cache;
pub mod guards;
pub mod records;
pub mod sqlite;
pub mod table;

use std::fmt;

use futures_util::StreamExt;
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
    /// Guards that hold across instances, each row until its expiry ([`guards`]).
    Guards,
}

impl Table {
    /// Every table, for creation at start-up.
    pub const ALL: [Table; 8] = [
        Table::Users,
        Table::Presence,
        Table::Subscriptions,
        Table::PendingSignIns,
        Table::Meta,
        Table::PbxMappings,
        Table::PbxLinks,
        Table::Guards,
    ];

    /// Times in a table's documents that Table Storage also keeps as properties of their
    /// own, so a query can filter on them ([`Store::scan_where`]): (property, JSON pointer
    /// into the document).
    pub fn indexed(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Table::Presence => &records::PRESENCE_INDEX,
            _ => &[],
        }
    }

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
            Table::Guards => "TeamsPresenceGuards",
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

    /// Every entity of a table as its partition key and its document read as `T`; rows that
    /// do not decode as `T` are left out. On SQLite the rows are decoded from their text on
    /// the blocking pool, without the `Entity` and its `serde_json::Value` (a poll tick
    /// scans 10,000 presences this way).
    pub async fn scan_as<T, C>(&self, t: Table) -> Result<C, StoreError>
    where
        T: DeserializeOwned,
        C: FromIterator<(String, T)> + Send + 'static,
    {
        match self {
            Store::Sqlite(s) => s.scan_as(t).await,
            Store::Table(s) => Ok(s.scan_as::<T>(t).await?.into_iter().collect()),
        }
    }

    /// The entities of a table whose index properties ([`Table::indexed`]) meet any of
    /// `any`. Table Storage filters them itself (after reading the whole table once per
    /// storage account, for rows written before the properties existed); SQLite reads every row.
    pub async fn scan_where(&self, t: Table, any: &[Bound]) -> Result<Vec<Entity>, StoreError> {
        match self {
            Store::Table(s) => s.scan_where(t, any).await,
            Store::Sqlite(_) => Ok(self
                .scan_entities(t, None)
                .await?
                .into_iter()
                .filter(|e| meets(t, &e.data, any))
                .collect()),
        }
    }

    /// The record as this process last read or wrote it, when it remembers (Table Storage,
    /// [`table::TableStore::known`]): what a caller may trust to *skip* a write only when a
    /// stale copy cannot make that wrong (a pending mark this process cleared stays
    /// cleared: a newer change has another sequence). `None` on SQLite, where a read is
    /// cheap.
    pub fn known<T: Record>(&self, pk: &str, rk: &str) -> Option<Versioned<T>> {
        let Store::Table(s) = self else {
            return None;
        };
        let (etag, data) = s.known(T::TABLE, pk, rk)?;
        decode(Entity {
            pk: pk.to_owned(),
            rk: rk.to_owned(),
            data,
            etag,
        })
        .ok()
    }

    // --- Typed --------------------------------------------------------------------------

    /// Reads a record.
    pub async fn get<T: Record>(
        &self,
        pk: &str,
        rk: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        if let Store::Sqlite(s) = self {
            return s
                .get_raw(T::TABLE, pk, rk)
                .await?
                .map(|(data, etag)| decode_text(pk, rk, &data, etag))
                .transpose();
        }
        match self.get_entity(T::TABLE, pk, rk).await? {
            None => Ok(None),
            Some(e) => Ok(Some(decode(e)?)),
        }
    }

    /// Reads a record unless its ETag is still `known` (a cache revalidating what it holds):
    /// on SQLite an unchanged record costs the ETag compare and no parsing.
    pub async fn get_if_changed<T: Record>(
        &self,
        pk: &str,
        rk: &str,
        known: Option<&Etag>,
    ) -> Result<Fresh<T>, StoreError> {
        if let Store::Sqlite(s) = self {
            return match s.get_raw_if_changed(T::TABLE, pk, rk, known).await? {
                None => Ok(Fresh::Missing),
                Some((None, _)) => Ok(Fresh::Unchanged),
                Some((Some(data), etag)) => decode_text(pk, rk, &data, etag).map(Fresh::Changed),
            };
        }
        Ok(match self.get_entity(T::TABLE, pk, rk).await? {
            None => Fresh::Missing,
            Some(e) if Some(&e.etag) == known => Fresh::Unchanged,
            Some(e) => Fresh::Changed(decode(e)?),
        })
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

    /// Read, decide, write for several records of one kind, in order: `decide(i, current)`
    /// returns the record to write for `keys[i]` (conditional on the version read, as
    /// everywhere) and what to hand back, or `None` to leave it. A lost race reads and
    /// decides again. On SQLite the whole batch is one transaction in one trip to the
    /// blocking pool (so nothing races inside it); on Table Storage the items go one after
    /// another. The outer error is the batch failing as a whole (nothing written); the inner
    /// ones are single records that could not be read or written.
    pub async fn update_each<T, R>(
        &self,
        keys: Vec<(String, String)>,
        decide: impl FnMut(usize, Option<&T>) -> Option<(T, R)> + Send + 'static,
    ) -> Result<Vec<Result<Option<R>, StoreError>>, StoreError>
    where
        T: Record + Send + 'static,
        R: Send + 'static,
    {
        let done = self.update_each_if(Vec::new(), keys, decide).await?;
        Ok(done.unwrap_or_default())
    }

    /// [`Store::update_each`], done only if every entity in `unchanged` (table, keys, ETag)
    /// still has that ETag: what the batch was decided against (the webhook's cached
    /// subscriptions) is checked in the same transaction as the writes, instead of in a
    /// read of its own before. `Ok(None)` when one of them moved or is gone: nothing was
    /// written. Only SQLite has transactions for this; with a non-empty `unchanged` other
    /// stores answer `Ok(None)`, and the caller reads the current versions and decides
    /// again.
    pub async fn update_each_if<T, R>(
        &self,
        unchanged: Vec<(Table, String, String, Etag)>,
        keys: Vec<(String, String)>,
        mut decide: impl FnMut(usize, Option<&T>) -> Option<(T, R)> + Send + 'static,
    ) -> Result<Option<Vec<Result<Option<R>, StoreError>>>, StoreError>
    where
        T: Record + Send + 'static,
        R: Send + 'static,
    {
        match self {
            Store::Sqlite(s) => {
                s.in_transaction(keys.len() + unchanged.len(), move |c| {
                    for (t, pk, rk, etag) in &unchanged {
                        if sqlite::etag_in(c, *t, pk, rk)?.as_ref() != Some(etag) {
                            return Ok(None);
                        }
                    }
                    let read = |(pk, rk): &(String, String)| {
                        sqlite::get_raw_in(c, T::TABLE, pk, rk)?
                            .map(|(data, etag)| decode_text(pk, rk, &data, etag))
                            .transpose()
                    };
                    let write = |rec: &T, etag: Option<&Etag>| {
                        let (pk, rk) = rec.keys();
                        let data = encode_text(rec)?;
                        match etag {
                            Some(e) => sqlite::replace_in(c, T::TABLE, &pk, &rk, &data, &e.0),
                            None => sqlite::insert_in(c, T::TABLE, &pk, &rk, &data),
                        }
                    };
                    let mut out = Vec::with_capacity(keys.len());
                    for (i, key) in keys.iter().enumerate() {
                        let r = update_one(read, write, key, |cur| decide(i, cur));
                        // A store that fails outright fails the batch: nothing is committed.
                        if let Err(StoreError::Unavailable(_)) = &r {
                            return r.map(|_| None);
                        }
                        out.push(r);
                    }
                    Ok(Some(out))
                })
                .await
            }
            Store::Table(_) if !unchanged.is_empty() => Ok(None),
            Store::Table(_) => {
                // Distinct entities go at once (each is its own round trips; a batch of 100
                // one after the other took 100 times the latency), the records of one
                // entity one after the other, in batch order.
                let mut groups: Vec<Vec<usize>> = Vec::new();
                let mut by_key: std::collections::HashMap<&(String, String), usize> =
                    std::collections::HashMap::new();
                for (i, key) in keys.iter().enumerate() {
                    let g = *by_key.entry(key).or_insert_with(|| {
                        groups.push(Vec::new());
                        groups.len() - 1
                    });
                    groups[g].push(i);
                }
                let decide = std::sync::Mutex::new(decide);
                let (decide, keys) = (&decide, &keys);
                let done: Vec<Vec<(usize, Updated<R>)>> = futures_util::stream::iter(groups)
                    .map(|group| async move {
                        let mut out = Vec::with_capacity(group.len());
                        for i in group {
                            let (pk, rk) = &keys[i];
                            let r = self
                                .update_one_async(pk, rk, |cur| {
                                    let mut d = decide.lock().unwrap_or_else(|p| p.into_inner());
                                    (*d)(i, cur)
                                })
                                .await;
                            out.push((i, r));
                        }
                        out
                    })
                    .buffer_unordered(TABLE_CONCURRENCY)
                    .collect()
                    .await;
                let mut out: Vec<Option<Updated<R>>> = (0..keys.len()).map(|_| None).collect();
                for (i, r) in done.into_iter().flatten() {
                    out[i] = Some(r);
                }
                Ok(Some(
                    out.into_iter()
                        .map(|r| r.expect("every key is done"))
                        .collect(),
                ))
            }
        }
    }

    async fn update_one_async<T: Record, R>(
        &self,
        pk: &str,
        rk: &str,
        mut decide: impl FnMut(Option<&T>) -> Option<(T, R)>,
    ) -> Result<Option<R>, StoreError> {
        // First what this process last read or wrote (Table Storage: no read when the
        // decision is a write, which its ETag makes safe); from then on, the store.
        let mut known = match self {
            Store::Table(t) => t.known(T::TABLE, pk, rk).and_then(|(etag, data)| {
                decode(Entity {
                    pk: pk.to_owned(),
                    rk: rk.to_owned(),
                    data,
                    etag,
                })
                .ok()
            }),
            Store::Sqlite(_) => None,
        };
        for _ in 0..MAX_ATTEMPTS {
            let from_memory = known.is_some();
            let current = match known.take() {
                Some(v) => Some(v),
                None => self.get::<T>(pk, rk).await?,
            };
            let Some((next, r)) = decide(current.as_ref().map(|v| &v.value)) else {
                if from_memory {
                    // Leaving it alone needs the store's word, not this process's memory.
                    continue;
                }
                return Ok(None);
            };
            let written = match &current {
                Some(v) => self.replace(&next, &v.etag).await,
                None => self.insert(&next).await,
            };
            match written {
                Ok(_) => return Ok(Some(r)),
                Err(
                    StoreError::PreconditionFailed | StoreError::Conflict | StoreError::NotFound,
                ) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(lost_races())
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

/// A condition on an index property ([`Table::indexed`]) for [`Store::scan_where`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The property is set and at most this time.
    AtMost(&'static str, chrono::DateTime<chrono::Utc>),
    /// The property is set and at least this time.
    AtLeast(&'static str, chrono::DateTime<chrono::Utc>),
}

/// Whether a document of table `t` meets any of `any` (what Table Storage's filter decides
/// on its index properties, decided on the document itself).
fn meets(t: Table, data: &Value, any: &[Bound]) -> bool {
    let time = |name: &str| {
        let (_, pointer) = t.indexed().iter().find(|(n, _)| *n == name)?;
        let text = data.pointer(pointer)?.as_str()?;
        chrono::DateTime::parse_from_rfc3339(text).ok()
    };
    any.iter().any(|b| match b {
        Bound::AtMost(n, at) => time(n).is_some_and(|v| v <= *at),
        Bound::AtLeast(n, at) => time(n).is_some_and(|v| v >= *at),
    })
}

/// What [`Store::get_if_changed`] found.
#[derive(Debug)]
pub enum Fresh<T> {
    /// The record still has the ETag the caller knows.
    Unchanged,
    /// The record at its new version.
    Changed(Versioned<T>),
    /// No such record.
    Missing,
}

/// What one record of [`Store::update_each`] came to.
type Updated<R> = Result<Option<R>, StoreError>;

/// Entities a batch on Table Storage updates at once.
const TABLE_CONCURRENCY: usize = 16;

/// How many times a conditional write is retried after losing a race (each retry means
/// another writer made progress, so this bound is never reached in practice).
const MAX_ATTEMPTS: usize = 16;

fn lost_races() -> StoreError {
    StoreError::Unavailable("a write kept losing races; it is tried again on the next run".into())
}

/// One record of [`Store::update_each`] on a synchronous backend.
fn update_one<T, R, K>(
    read: impl Fn(&K) -> Result<Option<Versioned<T>>, StoreError>,
    write: impl Fn(&T, Option<&Etag>) -> Result<Etag, StoreError>,
    key: &K,
    mut decide: impl FnMut(Option<&T>) -> Option<(T, R)>,
) -> Result<Option<R>, StoreError> {
    for _ in 0..MAX_ATTEMPTS {
        let current = read(key)?;
        let Some((next, r)) = decide(current.as_ref().map(|v| &v.value)) else {
            return Ok(None);
        };
        match write(&next, current.as_ref().map(|v| &v.etag)) {
            Ok(_) => return Ok(Some(r)),
            Err(StoreError::PreconditionFailed | StoreError::Conflict | StoreError::NotFound) => {
                continue
            }
            Err(e) => return Err(e),
        }
    }
    Err(lost_races())
}

fn encode_text<T: Serialize>(rec: &T) -> Result<String, StoreError> {
    serde_json::to_string(rec).map_err(|e| StoreError::Other(format!("cannot encode record: {e}")))
}

/// A record straight from its stored JSON text.
fn decode_text<T: DeserializeOwned>(
    pk: &str,
    rk: &str,
    data: &str,
    etag: Etag,
) -> Result<Versioned<T>, StoreError> {
    let value = serde_json::from_str(data).map_err(|err| {
        StoreError::Other(format!("stored {pk}/{rk} is not a valid record: {err}"))
    })?;
    Ok(Versioned { value, etag })
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
            let conn = settings.require_tables()?;
            Store::Table(table::TableStore::from_config(conn)?)
        }
    })
}
