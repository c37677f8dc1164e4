//! Observation → stored state → at most one message. The one path every presence source
//! (poll, change notification) goes through.
//!
//! The decision itself is pure ([`crate::core::presence::decide`]); this module adds the
//! optimistic-concurrency loop around the store: read with ETag, decide, write with
//! `If-Match` (or insert-if-absent), and on a lost race read and decide again. Two writers
//! racing on one user therefore produce exactly one message for one change.

use crate::core::message::{PresenceChanged, TopicMessage};
use crate::core::presence::{decide, Decision, Observation};
use crate::engine::publish::{Outbox, Publisher};
use crate::store::{PresenceRecord, Store, StoreError};

/// How many times a write is retried after losing a race before giving up (each retry
/// means another writer made progress, so this bound is never reached in practice).
const MAX_ATTEMPTS: usize = 16;

/// Stores the observation if it is a change and returns the message to publish.
pub async fn record(
    store: &Store,
    obs: &Observation,
) -> Result<Option<PresenceChanged>, StoreError> {
    for _ in 0..MAX_ATTEMPTS {
        let current = store
            .get::<PresenceRecord>(&obs.user_id, "presence")
            .await?;
        let last = current.as_ref().map(|v| &v.value.last);
        let Decision::Changed { next, previous } = decide(last, obs) else {
            return Ok(None);
        };
        let rec = PresenceRecord {
            user_id: obs.user_id.clone(),
            tenant_id: obs.tenant_id.clone(),
            last: next,
        };
        let written = match &current {
            Some(v) => store.replace(&rec, &v.etag).await,
            None => store.insert(&rec).await,
        };
        match written {
            Ok(_) => {
                return Ok(Some(PresenceChanged::from_change(
                    &obs.user_id,
                    &obs.tenant_id,
                    &rec.last,
                    previous,
                )))
            }
            Err(StoreError::PreconditionFailed | StoreError::Conflict | StoreError::NotFound) => {
                continue
            }
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Unavailable(
        "presence write kept losing races; will retry on the next observation".into(),
    ))
}

/// [`record`] and publish. Returns whether a message was published.
pub async fn record_and_publish(
    store: &Store,
    publisher: &Publisher,
    outbox: Option<&Outbox>,
    obs: &Observation,
) -> Result<bool, PipelineError> {
    match record(store, obs).await? {
        None => Ok(false),
        Some(msg) => {
            tracing::info!(user_id = %obs.user_id, presence = %msg.presence, source = ?obs.source, "presence changed");
            publisher.publish(outbox, vec![TopicMessage::PresenceChanged(msg)])?;
            Ok(true)
        }
    }
}

/// Why an observation could not be processed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The store failed (transient or not): the caller answers 5xx / retries next tick.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The change was stored but could not be published.
    #[error(transparent)]
    Publish(#[from] crate::engine::publish::PublishError),
}
