//! Observation → stored state → at most one message. The one path every presence source
//! (poll, change notification) goes through.
//!
//! The decision itself is pure ([`crate::core::presence::decide`]); this module adds the
//! optimistic-concurrency loop around the store: read with ETag, decide, write with
//! `If-Match` (or insert-if-absent), and on a lost race read and decide again. Two writers
//! racing on one user therefore produce exactly one message for one change.
//!
//! Publishing is at least once: the write that stores a change also marks it
//! [`PendingPublish`]; whoever confirms the send ([`confirm_published`]: the Service Bus
//! answer with `PUBLISH_MODE=rest`, the hand-off to the output binding, `serve`'s sinks)
//! clears the mark, and every tick sends what is still marked again ([`resend_pending`]).
//! Duplicates are harmless: an edge drops what is not newer than what it applied
//! (`crate::core::judge`), and with `rest` the topic's duplicate detection drops the same
//! `MessageId` first.

use crate::core::message::{PresenceChanged, TopicMessage};
use crate::core::presence::{decide, Decision, Observation};
use crate::engine::publish::{Outbox, Publisher};
use chrono::{DateTime, Utc};

use crate::store::{PendingPublish, PresenceRecord, Store, StoreError};

/// How many times a write is retried after losing a race before giving up (each retry
/// means another writer made progress, so this bound is never reached in practice).
const MAX_ATTEMPTS: usize = 16;

/// Stores the observation if it is a change (marked pending until its send is confirmed)
/// and returns the message to publish.
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
            pending_publish: Some(PendingPublish {
                since: obs.observed_at,
                previous: previous.clone(),
            }),
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

/// The message a stored record stands for (its pending `previous` when it has one).
fn message_of(rec: &PresenceRecord) -> TopicMessage {
    TopicMessage::PresenceChanged(PresenceChanged::from_change(
        &rec.user_id,
        &rec.tenant_id,
        &rec.last,
        rec.pending_publish
            .as_ref()
            .and_then(|p| p.previous.clone()),
    ))
}

/// Clears the pending mark of `user_id` if it is still the one of `sequence` (a newer change
/// keeps its own mark). Returns whether a mark was cleared. ETag-conditional like every
/// write here: a lost race reads again.
pub async fn confirm_published(
    store: &Store,
    user_id: &str,
    sequence: &str,
) -> Result<bool, StoreError> {
    for _ in 0..MAX_ATTEMPTS {
        let Some(current) = store.get::<PresenceRecord>(user_id, "presence").await? else {
            return Ok(false);
        };
        if current.value.pending_publish.is_none() || current.value.last.sequence != sequence {
            return Ok(false);
        }
        let rec = PresenceRecord {
            pending_publish: None,
            ..current.value
        };
        match store.replace(&rec, &current.etag).await {
            Ok(_) => return Ok(true),
            Err(StoreError::PreconditionFailed | StoreError::NotFound) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Unavailable(
        "clearing a pending mark kept losing races; the change will be sent again".into(),
    ))
}

/// [`confirm_published`] for every `presence.changed` in `msgs` (other types are not
/// stored). A mark that cannot be cleared only means one more duplicate later: logged, not
/// failed.
pub async fn confirm_all(store: &Store, msgs: &[TopicMessage]) {
    for m in msgs {
        if let TopicMessage::PresenceChanged(c) = m {
            if let Err(e) = confirm_published(store, &c.user_id, &c.sequence).await {
                tracing::warn!(user_id = %c.user_id, error = %e, "sent, but the pending mark stays; it will be sent again");
            }
        }
    }
}

/// Sends `msgs` straight to the topic (`PUBLISH_MODE=rest`) and, once Service Bus accepted
/// them, clears their pending marks.
pub async fn send_and_confirm(
    store: &Store,
    client: &crate::clients::servicebus::Client,
    msgs: &[TopicMessage],
) -> Result<(), crate::clients::servicebus::ServiceBusError> {
    crate::engine::publish::send_direct(client, msgs).await?;
    confirm_all(store, msgs).await;
    Ok(())
}

/// What a re-send found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resent {
    /// Stored changes still waiting for a confirmed send, sent again.
    pub pending: usize,
    /// Recent changes sent again because their first send cannot be confirmed (the output
    /// binding).
    pub recent: usize,
}

/// Sends again (into `outbox` under the host) every change still marked pending that was
/// stored at or before `pending_before`, and, when `recent_since` is given, the current state
/// of every user whose change was observed since then (the output binding cannot confirm a
/// send, so recent changes are repeated for a while instead). One scan of the presence table.
pub async fn resend_pending(
    store: &Store,
    publisher: &Publisher,
    outbox: Option<&Outbox>,
    pending_before: DateTime<Utc>,
    recent_since: Option<DateTime<Utc>>,
) -> Result<Resent, PipelineError> {
    let mut out = Resent::default();
    let mut msgs = Vec::new();
    for rec in store.list::<PresenceRecord>().await? {
        let rec = rec.value;
        let pending = rec
            .pending_publish
            .as_ref()
            .is_some_and(|p| p.since <= pending_before);
        let recent = recent_since.is_some_and(|t| rec.last.observed_at >= t);
        if pending {
            out.pending += 1;
        } else if recent {
            out.recent += 1;
        } else {
            continue;
        }
        msgs.push(message_of(&rec));
    }
    if !msgs.is_empty() {
        tracing::info!(
            pending = out.pending,
            recent = out.recent,
            "sending stored changes again"
        );
        publisher.publish(outbox, msgs)?;
    }
    Ok(out)
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
