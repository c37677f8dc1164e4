//! A process-local cache of records that revalidates by ETag on every read.
//!
//! The webhook reads the subscription a notification names on every request; a tenant-mode
//! subscription lists 650 users, so parsing it each time cost more than the rest of a
//! single-notification request. The cache keeps the parsed record and asks the store only
//! whether its ETag moved ([`Store::get_if_changed`]): a changed or deleted record is seen
//! on the very next read, so nothing is ever served stale. [`RecordCache::known`] skips that
//! read for a caller that checks the ETag in its own transaction instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Etag, Fresh, Record, Store, StoreError};

/// Partition and row key → the ETag read and the record.
type Entries<T> = HashMap<(String, String), (Etag, Arc<T>)>;

/// Parsed records by key, each with the ETag it was read at.
pub struct RecordCache<T> {
    entries: Mutex<Entries<T>>,
    max: usize,
}

impl<T> std::fmt::Debug for RecordCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordCache")
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl<T: Record> RecordCache<T> {
    /// A cache of at most `max` records (emptied when full: it holds what is in use).
    pub fn new(max: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            max,
        }
    }

    /// The record at `pk`/`rk` as the store has it now.
    pub async fn get(
        &self,
        store: &Store,
        pk: &str,
        rk: &str,
    ) -> Result<Option<Arc<T>>, StoreError> {
        let key = (pk.to_owned(), rk.to_owned());
        let known = self.lock().get(&key).cloned();
        match store
            .get_if_changed::<T>(pk, rk, known.as_ref().map(|(e, _)| e))
            .await?
        {
            Fresh::Unchanged => Ok(known.map(|(_, v)| v)),
            Fresh::Missing => {
                self.lock().remove(&key);
                Ok(None)
            }
            Fresh::Changed(v) => {
                let value = Arc::new(v.value);
                let mut entries = self.lock();
                if entries.len() >= self.max {
                    entries.clear();
                }
                entries.insert(key, (v.etag, value.clone()));
                Ok(Some(value))
            }
        }
    }

    /// The record kept for `pk`/`rk` and the ETag it was read at, without asking the store:
    /// for a caller that checks the ETag itself later, in the transaction that depends on it
    /// ([`Store::update_each_if`]).
    pub fn known(&self, pk: &str, rk: &str) -> Option<(Etag, Arc<T>)> {
        self.lock().get(&(pk.to_owned(), rk.to_owned())).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<T>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}
