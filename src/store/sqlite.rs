//! The embedded default: one SQLite file, entities in one table.
//!
//! WAL mode with `synchronous=NORMAL`: a committed write is in the WAL before the call
//! returns, so a crash or `kill -9` of the process loses nothing (only a power cut can lose
//! the last moments, which `FULL` would prevent at the price of an fsync per write: the
//! webhook's p99 at 200 notifications/s went from seconds to milliseconds without it).
//! ETags are unique per write (a deleted and re-created row never matches an old ETag).
//! rusqlite is synchronous: a call runs right on the calling task when the connection is
//! free (a point read or a small transaction takes tens of microseconds, less than the trip
//! to the blocking pool and back), and on the blocking pool when another call holds it;
//! scans and large transactions always go to the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::{Entity, Etag, StoreError, Table};

/// Transactions over at most this many records run where they are called when the
/// connection is free (a webhook batch, a tick's few confirmations); larger ones go to the
/// blocking pool.
pub const SHORT_TRANSACTION: usize = 64;

/// A SQLite-backed store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: Arc<PathBuf>,
}

fn sql_err(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            StoreError::Unavailable("database is locked by another process".into())
        }
        other => StoreError::Other(other.to_string()),
    }
}

/// A fresh ETag: 64 random bits drawn once per process and a counter, so no two writes of
/// any process share one (a deleted and re-created row never matches an old ETag) and a
/// write costs no trip to the kernel's random source.
fn new_etag() -> Etag {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Etag(format!("\"{seed:016x}{n:016x}\""))
}

impl SqliteStore {
    /// Opens (creating if needed) the database file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Other(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
        }
        let conn = Connection::open(path).map_err(sql_err)?;
        // SQLite creates the file with the umask's mode (and its -wal/-shm with the file's):
        // it holds sealed tokens and presence, so it is the owner's alone.
        crate::files::restrict(path).map_err(|e| StoreError::Other(format!("{e:#}")))?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;",
        )
        .map_err(sql_err)?;
        create_or_migrate(&conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: Arc::new(path.to_owned()),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a short `f` (a point read or write, a small transaction) with the connection:
    /// here if it is free, else on the blocking pool (where waiting for it does not hold up
    /// an async worker). Another process writing the file can still make `f` wait for
    /// SQLite's lock (the busy timeout), as long as that write.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        if let Ok(guard) = self.conn.try_lock() {
            return f(&guard);
        }
        self.run_blocking(f).await
    }

    /// Runs `f` with the connection on the blocking pool: for work that may be long (a scan
    /// of a table, a large batch).
    async fn run_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&guard)
        })
        .await
        .map_err(|e| StoreError::Other(format!("store task failed: {e}")))?
    }

    /// Nothing to create beyond the schema made at open.
    pub async fn ensure_tables(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Reads one entity.
    pub async fn get(&self, t: Table, pk: &str, rk: &str) -> Result<Option<Entity>, StoreError> {
        let (pk, rk) = (pk.to_owned(), rk.to_owned());
        self.run(move |c| {
            get_raw_in(c, t, &pk, &rk)?
                .map(|(data, etag)| to_entity(pk, rk, &data, etag.0))
                .transpose()
        })
        .await
    }

    /// Reads one entity's JSON text and ETag, unparsed: typed reads parse it straight into
    /// their record instead of through a `serde_json::Value`.
    pub async fn get_raw(
        &self,
        t: Table,
        pk: &str,
        rk: &str,
    ) -> Result<Option<(String, Etag)>, StoreError> {
        let (pk, rk) = (pk.to_owned(), rk.to_owned());
        self.run(move |c| get_raw_in(c, t, &pk, &rk)).await
    }

    /// Reads one entity's ETag, and its JSON text only when the ETag is not `known`.
    pub async fn get_raw_if_changed(
        &self,
        t: Table,
        pk: &str,
        rk: &str,
        known: Option<&Etag>,
    ) -> Result<Option<(Option<String>, Etag)>, StoreError> {
        let (pk, rk) = (pk.to_owned(), rk.to_owned());
        let known = known.map(|e| e.0.clone());
        self.run(move |c| {
            c.prepare_cached(
                "SELECT CASE WHEN etag IS ?4 THEN NULL ELSE data END, etag FROM entities
                 WHERE tbl=?1 AND pk=?2 AND rk=?3",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![t.name(), pk, rk, known], |row| {
                    Ok((row.get::<_, Option<String>>(0)?, Etag(row.get(1)?)))
                })
                .optional()
            })
            .map_err(sql_err)
        })
        .await
    }

    /// Runs `f` in one transaction: a batch of reads and writes costs one commit instead of
    /// one per statement. `items` is how many records `f` touches: up to
    /// [`SHORT_TRANSACTION`] it runs like any short call, beyond that on the blocking pool.
    /// Committed when `f` returns `Ok`, rolled back otherwise. `BEGIN IMMEDIATE` takes the
    /// write lock up front, so what `f` reads cannot change under it.
    pub async fn in_transaction<T: Send + 'static>(
        &self,
        items: usize,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let f = move |c: &Connection| {
            let exec = |sql| c.prepare_cached(sql).and_then(|mut s| s.execute([]));
            exec("BEGIN IMMEDIATE").map_err(sql_err)?;
            match f(c) {
                Ok(v) => match exec("COMMIT") {
                    Ok(_) => Ok(v),
                    Err(e) => {
                        let _ = c.execute_batch("ROLLBACK");
                        Err(sql_err(e))
                    }
                },
                Err(e) => {
                    let _ = c.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        };
        if items <= SHORT_TRANSACTION {
            self.run(f).await
        } else {
            self.run_blocking(f).await
        }
    }

    /// Inserts; Conflict if present.
    pub async fn insert(
        &self,
        t: Table,
        pk: &str,
        rk: &str,
        data: &Value,
    ) -> Result<Etag, StoreError> {
        let (pk, rk, data) = (pk.to_owned(), rk.to_owned(), data.to_string());
        self.run(move |c| insert_in(c, t, &pk, &rk, &data)).await
    }

    /// Replaces when the ETag matches.
    pub async fn replace(
        &self,
        t: Table,
        pk: &str,
        rk: &str,
        data: &Value,
        etag: &Etag,
    ) -> Result<Etag, StoreError> {
        let (pk, rk, data, old) = (
            pk.to_owned(),
            rk.to_owned(),
            data.to_string(),
            etag.0.clone(),
        );
        self.run(move |c| replace_in(c, t, &pk, &rk, &data, &old))
            .await
    }

    /// Inserts or replaces.
    pub async fn upsert(
        &self,
        t: Table,
        pk: &str,
        rk: &str,
        data: &Value,
    ) -> Result<Etag, StoreError> {
        let (pk, rk, data) = (pk.to_owned(), rk.to_owned(), data.to_string());
        self.run(move |c| {
            let etag = new_etag();
            c.execute(
                "INSERT INTO entities (tbl, pk, rk, data, etag) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tbl, pk, rk) DO UPDATE SET data=excluded.data, etag=excluded.etag",
                params![t.name(), pk, rk, data, etag.0],
            )
            .map_err(sql_err)?;
            Ok(etag)
        })
        .await
    }

    /// Deletes, conditionally when an ETag is given.
    pub async fn delete(
        &self,
        t: Table,
        pk: &str,
        rk: &str,
        etag: Option<&Etag>,
    ) -> Result<(), StoreError> {
        let (pk, rk, old) = (pk.to_owned(), rk.to_owned(), etag.map(|e| e.0.clone()));
        self.run(move |c| {
            let n = match &old {
                Some(old) => c.execute(
                    "DELETE FROM entities WHERE tbl=?1 AND pk=?2 AND rk=?3 AND etag=?4",
                    params![t.name(), pk, rk, old],
                ),
                None => c.execute(
                    "DELETE FROM entities WHERE tbl=?1 AND pk=?2 AND rk=?3",
                    params![t.name(), pk, rk],
                ),
            }
            .map_err(sql_err)?;
            if n == 1 {
                return Ok(());
            }
            exists(c, t, &pk, &rk).and_then(|e| {
                Err(if e {
                    StoreError::PreconditionFailed
                } else {
                    StoreError::NotFound
                })
            })
        })
        .await
    }

    /// Every entity of a table or partition, in key order.
    pub async fn scan(&self, t: Table, pk: Option<&str>) -> Result<Vec<Entity>, StoreError> {
        let pk = pk.map(str::to_owned);
        self.run_blocking(move |c| {
            let mut stmt = c
                .prepare(
                    "SELECT pk, rk, data, etag FROM entities
                     WHERE tbl=?1 AND (?2 IS NULL OR pk=?2) ORDER BY pk, rk",
                )
                .map_err(sql_err)?;
            let rows = stmt
                .query_map(params![t.name(), pk], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                    ))
                })
                .map_err(sql_err)?;
            let mut out = Vec::new();
            for r in rows {
                let (pk, rk, data, etag) = r.map_err(sql_err)?;
                out.push(to_entity(pk, rk, &data, etag)?);
            }
            Ok(out)
        })
        .await
    }

    /// Every entity of a table as its partition key and its document read straight into
    /// `T` (no `serde_json::Value` in between), on the blocking pool. Rows that do not decode
    /// as `T` are left out.
    pub async fn scan_as<T, C>(&self, t: Table) -> Result<C, StoreError>
    where
        T: serde::de::DeserializeOwned,
        C: FromIterator<(String, T)> + Send + 'static,
    {
        self.run_blocking(move |c| {
            let mut stmt = c
                .prepare("SELECT pk, data FROM entities WHERE tbl=?1 ORDER BY pk, rk")
                .map_err(sql_err)?;
            let rows = stmt
                .query_and_then(params![t.name()], |row| {
                    let data = row.get_ref(1)?.as_str()?;
                    match serde_json::from_str::<T>(data) {
                        Ok(v) => Ok(Some((row.get::<_, String>(0)?, v))),
                        Err(_) => Ok(None),
                    }
                })
                .map_err(sql_err)?;
            rows.filter_map(|r: Result<Option<_>, rusqlite::Error>| r.transpose())
                .map(|r| r.map_err(sql_err))
                .collect()
        })
        .await
    }
}

/// The one table: a rowid table with its keys in an index, the ETag before the document.
/// An older version kept it `WITHOUT ROWID`, where a row is its own index entry: a key
/// compare during any seek that met a large document (a tenant-mode subscription, 40 KB on
/// ten overflow pages, which bypass SQLite's page cache) read the whole document from the
/// file again, on every webhook request. Now seeks compare short keys, and a document is
/// read only when its column is.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS entities (
        tbl  TEXT NOT NULL,
        pk   TEXT NOT NULL,
        rk   TEXT NOT NULL,
        etag TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (tbl, pk, rk)
    );";

/// Creates the table, or moves a database written by an older version (`WITHOUT ROWID`,
/// the ETag after the document) to the current layout, in one transaction.
fn create_or_migrate(c: &Connection) -> Result<(), StoreError> {
    let older = || -> rusqlite::Result<bool> {
        let sql: Option<String> = c
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type='table' AND name='entities'",
                [],
                |row| row.get(0),
            )
            .optional()?;
        Ok(sql.is_some_and(|sql| sql.to_ascii_uppercase().contains("WITHOUT ROWID")))
    };
    if !older().map_err(sql_err)? {
        return c.execute_batch(SCHEMA).map_err(sql_err);
    }
    // Asked again under the write lock: of two processes opening an older file at once,
    // one moves it and the other finds it moved.
    let migrate = || -> rusqlite::Result<()> {
        c.execute_batch("BEGIN IMMEDIATE;")?;
        if older()? {
            c.execute_batch(&format!(
                "ALTER TABLE entities RENAME TO entities_before_rowid;
                 {SCHEMA}
                 INSERT INTO entities (tbl, pk, rk, etag, data)
                     SELECT tbl, pk, rk, etag, data FROM entities_before_rowid;
                 DROP TABLE entities_before_rowid;"
            ))?;
        }
        c.execute_batch("COMMIT;")
    };
    migrate().map_err(|e| {
        let _ = c.execute_batch("ROLLBACK;");
        sql_err(e)
    })
}

/// The JSON text and ETag of one entity, on a connection (or inside
/// [`SqliteStore::in_transaction`]).
pub fn get_raw_in(
    c: &Connection,
    t: Table,
    pk: &str,
    rk: &str,
) -> Result<Option<(String, Etag)>, StoreError> {
    c.prepare_cached("SELECT data, etag FROM entities WHERE tbl=?1 AND pk=?2 AND rk=?3")
        .and_then(|mut stmt| {
            stmt.query_row(params![t.name(), pk, rk], |row| {
                Ok((row.get::<_, String>(0)?, Etag(row.get::<_, String>(1)?)))
            })
            .optional()
        })
        .map_err(sql_err)
}

/// The ETag of one entity, on a connection (or inside [`SqliteStore::in_transaction`]).
pub fn etag_in(c: &Connection, t: Table, pk: &str, rk: &str) -> Result<Option<Etag>, StoreError> {
    c.prepare_cached("SELECT etag FROM entities WHERE tbl=?1 AND pk=?2 AND rk=?3")
        .and_then(|mut stmt| {
            stmt.query_row(params![t.name(), pk, rk], |row| Ok(Etag(row.get(0)?)))
                .optional()
        })
        .map_err(sql_err)
}

/// Inserts on a connection; Conflict if present.
pub fn insert_in(
    c: &Connection,
    t: Table,
    pk: &str,
    rk: &str,
    data: &str,
) -> Result<Etag, StoreError> {
    let etag = new_etag();
    let n = c
        .prepare_cached(
            "INSERT INTO entities (tbl, pk, rk, data, etag) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT DO NOTHING",
        )
        .and_then(|mut stmt| stmt.execute(params![t.name(), pk, rk, data, etag.0]))
        .map_err(sql_err)?;
    if n == 0 {
        Err(StoreError::Conflict)
    } else {
        Ok(etag)
    }
}

/// Replaces on a connection when the ETag is still `old`.
pub fn replace_in(
    c: &Connection,
    t: Table,
    pk: &str,
    rk: &str,
    data: &str,
    old: &str,
) -> Result<Etag, StoreError> {
    let etag = new_etag();
    // One statement: the compare and the write cannot be split by another writer.
    let n = c
        .prepare_cached(
            "UPDATE entities SET data=?4, etag=?5 WHERE tbl=?1 AND pk=?2 AND rk=?3 AND etag=?6",
        )
        .and_then(|mut stmt| stmt.execute(params![t.name(), pk, rk, data, etag.0, old]))
        .map_err(sql_err)?;
    if n == 1 {
        return Ok(etag);
    }
    exists(c, t, pk, rk).and_then(|e| {
        Err(if e {
            StoreError::PreconditionFailed
        } else {
            StoreError::NotFound
        })
    })
}

fn exists(c: &Connection, t: Table, pk: &str, rk: &str) -> Result<bool, StoreError> {
    c.query_row(
        "SELECT 1 FROM entities WHERE tbl=?1 AND pk=?2 AND rk=?3",
        params![t.name(), pk, rk],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
    .map_err(sql_err)
}

fn to_entity(pk: String, rk: String, data: &str, etag: String) -> Result<Entity, StoreError> {
    let data = serde_json::from_str(data)
        .map_err(|e| StoreError::Other(format!("row {pk}/{rk} holds invalid JSON: {e}")))?;
    Ok(Entity {
        pk,
        rk,
        data,
        etag: Etag(etag),
    })
}
