//! Guards that hold across instances: rows in one table ([`Table::Guards`]) that say "this was
//! seen" or "this many were taken" until an expiry, shared by every process on the store.
//!
//! Flex Consumption runs as many handler instances as load asks for, all on one storage
//! account; a guard kept in one process's memory is a guard per instance. Here a guard is a
//! row keyed by its kind (partition) and key (row), with the time it stops meaning anything:
//!
//! * [`claim`]: a conditional insert; whoever inserts first owns the key until the expiry
//!   (a replayed PBX event body). An expired row is taken over with its ETag.
//! * [`take`]: a rate limit as one timestamp ([`crate::core::rate`]), read and replaced with
//!   its ETag (the sign-in start limit).
//! * [`purge`]: deletes what expired, each row with the ETag it was read at (a row claimed
//!   again meanwhile stays). Run from a timer.
//!
//! Round trips on Table Storage: [`claim`] of a fresh key is one insert (a live one: the
//! insert and a read; an expired one: also its replace); [`take`] is one read, plus one
//! conditional write when it allows. On SQLite each is one transaction.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Record, Store, StoreError, Table};
use crate::core::rate::Rate;

/// One guard: `kind` (the partition) and `key` (the row), meaningful until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardRecord {
    /// What is guarded (`pbx-body`, `signin-client`, ...).
    pub kind: String,
    /// The guarded key within its kind (a digest, never a secret or an address in clear).
    pub key: String,
    /// When the row stops meaning anything; [`purge`] deletes it after that. For a rate
    /// limit this is also the theoretical arrival time ([`crate::core::rate`]).
    pub expires_at: DateTime<Utc>,
}

impl Record for GuardRecord {
    const TABLE: Table = Table::Guards;
    fn keys(&self) -> (String, String) {
        (self.kind.clone(), self.key.clone())
    }
}

/// What a claim came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This call claimed the key (no row, or the row had expired).
    Claimed,
    /// A live claim exists: someone else has it.
    AlreadyClaimed,
}

/// What taking from a rate limit came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Allowed, and stored.
    Allowed,
    /// Refused; nothing written.
    Refused,
}

/// Claims `key` of `kind` until `until` (no row, or the row expired at `now`). Racing
/// claimants: exactly one gets [`Claim::Claimed`].
pub async fn claim(
    store: &Store,
    kind: &str,
    key: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Claim, StoreError> {
    let rec = GuardRecord {
        kind: kind.to_owned(),
        key: key.to_owned(),
        expires_at: until,
    };
    if let Store::Table(_) = store {
        // A fresh key, the common case, costs one insert and no read.
        match store.insert(&rec).await {
            Ok(_) => return Ok(Claim::Claimed),
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(e),
        }
    }
    // Read, and take over an expired row with its ETag (SQLite: all in one transaction).
    let one = store
        .update_each(
            vec![(kind.to_owned(), key.to_owned())],
            move |_, current: Option<&GuardRecord>| match current {
                Some(c) if c.expires_at > now => None,
                _ => Some((rec.clone(), ())),
            },
        )
        .await?;
    Ok(match single(one)? {
        Some(()) => Claim::Claimed,
        None => Claim::AlreadyClaimed,
    })
}

/// Takes one from the rate limit `rate` of `key` at `now`. Racing takers are serialised by
/// the ETag.
pub async fn take(
    store: &Store,
    kind: &str,
    key: &str,
    rate: Rate,
    now: DateTime<Utc>,
) -> Result<Take, StoreError> {
    let (kind, key) = (kind.to_owned(), key.to_owned());
    let one = store
        .update_each(
            vec![(kind.clone(), key.clone())],
            move |_, current: Option<&GuardRecord>| {
                let tat = rate.take(current.map(|c| c.expires_at), now)?;
                Some((
                    GuardRecord {
                        kind: kind.clone(),
                        key: key.clone(),
                        expires_at: tat,
                    },
                    (),
                ))
            },
        )
        .await?;
    Ok(match single(one)? {
        Some(()) => Take::Allowed,
        None => Take::Refused,
    })
}

/// The one result of a one-entity update: `Some` when it wrote.
fn single(results: Vec<Result<Option<()>, StoreError>>) -> Result<Option<()>, StoreError> {
    match results.into_iter().next() {
        Some(Ok(done)) => Ok(done),
        Some(Err(e)) => Err(e),
        None => Err(StoreError::Other("a guard update returned nothing".into())),
    }
}

/// Deletes every guard that expired before `now`, each with the ETag it was read at (one
/// claimed or taken again meanwhile stays). Rows that do not read as a guard are left
/// alone. Returns how many went.
pub async fn purge(store: &Store, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let mut purged = 0;
    for e in store.scan_entities(Table::Guards, None).await? {
        let Ok(g) = serde_json::from_value::<GuardRecord>(e.data) else {
            continue;
        };
        if g.expires_at >= now {
            continue;
        }
        match store
            .delete_entity(Table::Guards, &e.pk, &e.rk, Some(&e.etag))
            .await
        {
            // Gone already (another instance purged it) or claimed again: fine either way.
            Ok(()) => purged += 1,
            Err(StoreError::NotFound | StoreError::PreconditionFailed) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(purged)
}
