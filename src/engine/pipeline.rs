//! Observation → stored state → at most one message. The one path every presence source
//! (poll, change notification) goes through.
//!
//! The decision itself is pure ([`crate::core::presence::decide`]); this module adds the
//! optimistic-concurrency loop around the store: read with ETag, decide, write with
//! `If-Match` (or insert-if-absent), and on a lost race read and decide again. Two writers
//! racing on one user therefore produce exactly one message for one change.
//!
//! Publishing is at least once: the write that stores a change also marks it
//! [`PendingPublish`]; whoever confirms the send ([`confirm_all`] or a [`Confirmer`]: the
//! Service Bus answer with `PUBLISH_MODE=rest`, the hand-off to the output binding, `serve`'s
//! sinks) clears the mark, and every tick sends what is still marked again ([`resend_pending`]).
//! Duplicates are harmless: an edge drops what is not newer than what it applied
//! (`crate::core::judge`), and with `rest` the topic's duplicate detection drops the same
//! `MessageId` first.

use crate::core::message::{PresenceChanged, TopicMessage};
use crate::core::presence::{decide, remember_item, Decision, Observation};
use crate::engine::publish::{Outbox, Publisher};
use chrono::{DateTime, Utc};

use crate::store::{Bound, Etag, PendingPublish, PresenceRecord, Store, StoreError, Table};

/// Stores the observation if it is a change (marked pending until its send is confirmed)
/// and returns the message to publish.
pub async fn record(
    store: &Store,
    obs: &Observation,
) -> Result<Option<PresenceChanged>, StoreError> {
    let mut recorded = record_batch(store, vec![obs.clone()]).await?;
    recorded.pop().unwrap_or(Ok(None))
}

/// The record to write when `obs` changes `current` (marked pending, with the message to
/// publish), or when it changed nothing but is a notification item to remember (no message:
/// [`crate::core::presence::remember_item`]). `None`: nothing to write.
fn next_record(
    current: Option<&PresenceRecord>,
    obs: &Observation,
) -> Option<(PresenceRecord, Option<PresenceChanged>)> {
    let (next, previous) = match decide(current.map(|r| &r.last), obs) {
        Decision::Changed { next, previous } => (next, previous),
        Decision::Unchanged => {
            let current = current?;
            let last = remember_item(&current.last, obs)?;
            return Some((
                PresenceRecord {
                    last,
                    ..current.clone()
                },
                None,
            ));
        }
    };
    let msg = PresenceChanged::from_change(&obs.user_id, &obs.tenant_id, &next, previous.clone());
    let rec = PresenceRecord {
        user_id: obs.user_id.clone(),
        tenant_id: obs.tenant_id.clone(),
        last: next,
        pending_publish: Some(PendingPublish {
            since: obs.observed_at,
            previous,
        }),
    };
    Some((rec, Some(msg)))
}

/// [`record`] for a batch, in order, in one store transaction where the store has them
/// (SQLite: one commit and one trip to the blocking pool for a whole webhook batch). Two
/// observations of one user in a batch are decided one after the other. The outer error is
/// the store failing for the whole batch (nothing recorded).
pub async fn record_batch(
    store: &Store,
    observations: Vec<Observation>,
) -> Result<Vec<Result<Option<PresenceChanged>, StoreError>>, StoreError> {
    let recorded = record_batch_if(store, Vec::new(), observations).await?;
    Ok(recorded.unwrap_or_default())
}

/// [`record_batch`], only if every entity in `unchanged` still has the ETag given
/// ([`Store::update_each_if`]): `Ok(None)`, nothing recorded, when one moved.
pub async fn record_batch_if(
    store: &Store,
    unchanged: Vec<(Table, String, String, Etag)>,
    observations: Vec<Observation>,
) -> Result<Option<Vec<Result<Option<PresenceChanged>, StoreError>>>, StoreError> {
    let keys = observations
        .iter()
        .map(|o| (o.user_id.clone(), "presence".to_owned()))
        .collect();
    let recorded = store
        .update_each_if(
            unchanged,
            keys,
            move |i, current: Option<&PresenceRecord>| next_record(current, &observations[i]),
        )
        .await?;
    // A remembered item was written but changed nothing: no message.
    Ok(recorded.map(|all| all.into_iter().map(|r| r.map(Option::flatten)).collect()))
}

/// What recording one observation came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The presence changed: stored and one message published.
    Published,
    /// Nothing new (the same presence, an older sequence, an item seen before): no message.
    NothingNew,
}

/// What recording a batch came to.
#[derive(Debug)]
pub enum BatchOutcome {
    /// One of the entities that had to stay unchanged moved: nothing recorded or published.
    Stale,
    /// Per observation, in order: its outcome, or why it was not recorded or published.
    Done(Vec<Result<Outcome, PipelineError>>),
}

/// [`record_batch_if`] and publish, in order: per observation, what it came to;
/// [`BatchOutcome::Stale`] when one of `unchanged` moved (nothing recorded or published).
pub async fn record_and_publish_batch(
    store: &Store,
    publisher: &Publisher,
    outbox: Option<&Outbox>,
    unchanged: Vec<(Table, String, String, Etag)>,
    observations: Vec<Observation>,
) -> Result<BatchOutcome, StoreError> {
    let Some(recorded) = record_batch_if(store, unchanged, observations).await? else {
        return Ok(BatchOutcome::Stale);
    };
    Ok(BatchOutcome::Done(
        recorded
            .into_iter()
            .map(|r| match r? {
                None => Ok(Outcome::NothingNew),
                Some(msg) => {
                    tracing::info!(user_id = %msg.user_id, presence = %msg.presence, source = ?msg.source, "presence changed");
                    publisher.publish(outbox, vec![TopicMessage::PresenceChanged(msg)])?;
                    Ok(Outcome::Published)
                }
            })
            .collect(),
    ))
}

/// [`record`] and publish: whether a message was published.
pub async fn record_and_publish(
    store: &Store,
    publisher: &Publisher,
    outbox: Option<&Outbox>,
    obs: &Observation,
) -> Result<Outcome, PipelineError> {
    match record(store, obs).await? {
        None => Ok(Outcome::NothingNew),
        Some(msg) => {
            tracing::info!(user_id = %obs.user_id, presence = %msg.presence, source = ?obs.source, "presence changed");
            publisher.publish(outbox, vec![TopicMessage::PresenceChanged(msg)])?;
            Ok(Outcome::Published)
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

/// The record without its pending mark, when the mark is still the one of `sequence`.
fn without_mark(current: &PresenceRecord, sequence: &str) -> Option<(PresenceRecord, ())> {
    if current.pending_publish.is_none() || current.last.sequence != sequence {
        return None;
    }
    let rec = PresenceRecord {
        pending_publish: None,
        ..current.clone()
    };
    Some((rec, ()))
}

/// The pending marks `msgs` stand for: user id and sequence of every `presence.changed`
/// (other types are not stored).
fn marks_of(msgs: &[TopicMessage]) -> Vec<(String, String)> {
    msgs.iter()
        .filter_map(|m| match m {
            TopicMessage::PresenceChanged(c) => Some((c.user_id.clone(), c.sequence.clone())),
            _ => None,
        })
        .collect()
}

/// Clears the pending mark of every `presence.changed` in `msgs` whose record still holds
/// that sequence (a newer change keeps its own mark; other types are not stored). A mark that cannot be cleared only means one more duplicate later: logged, not
/// failed.
pub async fn confirm_all(store: &Store, msgs: &[TopicMessage]) {
    clear_marks(store, marks_of(msgs)).await
}

/// Clears the marks (user id, sequence) in one transaction where the store has them.
async fn clear_marks(store: &Store, marks: Vec<(String, String)>) {
    // A mark this process knows it cleared (or never set) stays cleared: a newer change
    // carries another sequence. A repeated message costs no round trip then.
    let marks: Vec<(String, String)> = marks
        .into_iter()
        .filter(|(user, sequence)| {
            store
                .known::<PresenceRecord>(user, "presence")
                .is_none_or(|v| without_mark(&v.value, sequence).is_some())
        })
        .collect();
    if marks.is_empty() {
        return;
    }
    let keys = marks
        .iter()
        .map(|(u, _)| (u.clone(), "presence".to_owned()))
        .collect();
    let sequences: Vec<String> = marks.iter().map(|(_, s)| s.clone()).collect();
    // ETag-conditional like every write here, record by record.
    let cleared = store
        .update_each(keys, move |i, current: Option<&PresenceRecord>| {
            without_mark(current?, &sequences[i])
        })
        .await;
    let failed: Vec<(&str, StoreError)> = match cleared {
        Ok(results) => marks
            .iter()
            .zip(results)
            .filter_map(|((u, _), r)| r.err().map(|e| (u.as_str(), e)))
            .collect(),
        Err(e) => {
            tracing::warn!(messages = marks.len(), error = %e, "sent, but the pending marks stay; they will be sent again");
            return;
        }
    };
    for (user_id, e) in failed {
        tracing::warn!(user_id = %user_id, error = %e, "sent, but the pending mark stays; it will be sent again");
    }
}

/// How long the [`Confirmer`] gathers marks before clearing them together.
pub const CONFIRM_WINDOW: std::time::Duration = std::time::Duration::from_millis(5);

/// At most this many marks are cleared in one transaction.
const CONFIRM_MAX: usize = 256;

enum ConfirmJob {
    Marks(Vec<(String, String)>),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Clears pending marks in the background, those of every hand-off within
/// [`CONFIRM_WINDOW`] in one store transaction (a group commit): a webhook invocation hands
/// its messages to the output binding, or `serve` to its sinks, without waiting for a
/// second commit of its own. Marks still queued when the process dies only mean one more
/// duplicate from the next tick, as for any change whose send was not confirmed.
#[derive(Clone)]
pub struct Confirmer {
    store: Store,
    tx: std::sync::Arc<std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<ConfirmJob>>>,
}

impl std::fmt::Debug for Confirmer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Confirmer").finish_non_exhaustive()
    }
}

impl Confirmer {
    /// A confirmer for `store`; its task starts with the first marks, on the runtime that
    /// hands them over.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            tx: Default::default(),
        }
    }

    /// Queues the pending marks of `msgs` to be cleared within [`CONFIRM_WINDOW`]. Without
    /// a running task (its runtime is gone) they are cleared here and now.
    pub async fn confirm(&self, msgs: &[TopicMessage]) {
        let marks = marks_of(msgs);
        if marks.is_empty() {
            return;
        }
        if let Err(tokio::sync::mpsc::error::SendError(ConfirmJob::Marks(marks))) =
            self.sender().send(ConfirmJob::Marks(marks))
        {
            clear_marks(&self.store, marks).await;
        }
    }

    /// Returns once every mark queued before the call is cleared (or failed to be).
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.sender().send(ConfirmJob::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    fn sender(&self) -> &tokio::sync::mpsc::UnboundedSender<ConfirmJob> {
        self.tx.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(Self::run(self.store.clone(), rx));
            tx
        })
    }

    async fn run(store: Store, mut rx: tokio::sync::mpsc::UnboundedReceiver<ConfirmJob>) {
        let mut flushes = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut marks = Vec::new();
            match first {
                ConfirmJob::Marks(m) => {
                    marks = m;
                    tokio::time::sleep(CONFIRM_WINDOW).await;
                }
                ConfirmJob::Flush(done) => flushes.push(done),
            }
            while marks.len() < CONFIRM_MAX {
                match rx.try_recv() {
                    Ok(ConfirmJob::Marks(m)) => marks.extend(m),
                    Ok(ConfirmJob::Flush(done)) => flushes.push(done),
                    Err(_) => break,
                }
            }
            clear_marks(&store, marks).await;
            for done in flushes.drain(..) {
                let _ = done.send(());
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

/// The recent changes this process already sent once more with the output binding
/// ([`resend_pending`]): each is repeated once, on the next tick, not on every tick of the
/// window. The Functions host never tells a custom handler whether a binding's send went
/// through (its response carries the outputs; what the host then does with them is not
/// reported back), so one repeat is what covers a failed invocation; a longer topic outage
/// is healed by the edges' own reconcile (`RECONCILE_INTERVAL`).
#[derive(Debug, Default)]
pub struct Repeats(std::sync::Mutex<std::collections::HashMap<String, String>>);

/// At most this many users' last repeats are remembered (emptied when full).
const REPEATS_KEPT: usize = 100_000;

impl Repeats {
    /// Whether the change `sequence` of `user_id` is repeated for the first time (and
    /// remembers that it now is).
    pub fn first(&self, user_id: &str, sequence: &str) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.get(user_id).is_some_and(|s| s == sequence) {
            return false;
        }
        if seen.len() >= REPEATS_KEPT {
            seen.clear();
        }
        seen.insert(user_id.to_owned(), sequence.to_owned());
        true
    }
}

/// What a re-send found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resent {
    /// Stored changes still waiting for a confirmed send, sent again.
    pub pending: usize,
    /// Recent changes sent again, once each, because their first send cannot be confirmed
    /// (the output binding).
    pub recent: usize,
}

/// Sends again (into `outbox` under the host) every change still marked pending that was
/// stored at or before `pending_before`, and, when `recent` is given, the current state of
/// every user whose change was observed since its time, once per change ([`Repeats`]: the
/// output binding cannot confirm a send). One query of the presence table for the rows
/// that can qualify ([`Store::scan_where`]).
pub async fn resend_pending(
    store: &Store,
    publisher: &Publisher,
    outbox: Option<&Outbox>,
    pending_before: DateTime<Utc>,
    recent: Option<(DateTime<Utc>, &Repeats)>,
) -> Result<Resent, PipelineError> {
    let mut out = Resent::default();
    let mut msgs = Vec::new();
    // Only the rows that can qualify: Table Storage filters on its index properties, so a
    // tick reads the pending and recent rows, not every user's.
    let mut wanted = vec![Bound::AtMost("PendingSince", pending_before)];
    if let Some((since, _)) = recent {
        wanted.push(Bound::AtLeast("ObservedAt", since));
    }
    for e in store.scan_where(Table::Presence, &wanted).await? {
        let Ok(rec) = serde_json::from_value::<PresenceRecord>(e.data) else {
            continue;
        };
        let pending = rec
            .pending_publish
            .as_ref()
            .is_some_and(|p| p.since <= pending_before);
        let repeat = recent.is_some_and(|(since, repeats)| {
            rec.last.observed_at >= since && repeats.first(&rec.user_id, &rec.last.sequence)
        });
        if pending {
            out.pending += 1;
        } else if repeat {
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
