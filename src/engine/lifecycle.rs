//! Verified lifecycle events: the seam between the webhook (`POST /api/lifecycle`) and
//! subscription management.
//!
//! The webhook checks each event (known subscription, matching `clientState`) and calls
//! [`on_lifecycle_event`], which records a [`LifecycleMark`] in the store and returns at once:
//! Graph wants its answer within 3 s, and acting on the event (reauthorize or renew the
//! subscription, recreate it, poll its users) needs a delegated token and Graph round trips.
//! Subscription management reads the marks with [`pending`], acts, and removes each with
//! [`clear`]. A mark for a subscription replaces the previous one (the newest event wins;
//! every event asks for the same thing: make this subscription healthy again).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::clients::graph::notification::LifecycleEvent;
use crate::store::{Store, StoreError, SubscriptionRecord, Table};

const PARTITION: &str = "lifecycle";

/// A lifecycle event waiting to be acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleMark {
    /// Graph's subscription id.
    pub subscription_id: String,
    /// `reauthorizationRequired`, `subscriptionRemoved` or `missed`.
    pub event: String,
    /// When the webhook received it.
    pub received_at: DateTime<Utc>,
}

impl LifecycleMark {
    /// The event, typed (`None` for a mark written by a newer build).
    pub fn event(&self) -> Option<LifecycleEvent> {
        [
            LifecycleEvent::ReauthorizationRequired,
            LifecycleEvent::SubscriptionRemoved,
            LifecycleEvent::Missed,
        ]
        .into_iter()
        .find(|e| e.as_str() == self.event)
    }
}

/// Records a verified event for subscription management to act on.
#[tracing::instrument(name = "lifecycle_event", skip_all, fields(subscription_id = %sub.subscription_id))]
pub async fn on_lifecycle_event(
    store: &Store,
    sub: &SubscriptionRecord,
    event: LifecycleEvent,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mark = LifecycleMark {
        subscription_id: sub.subscription_id.clone(),
        event: event.as_str().to_owned(),
        received_at: now,
    };
    let data = serde_json::to_value(&mark)
        .map_err(|e| StoreError::Other(format!("cannot encode lifecycle mark: {e}")))?;
    store
        .upsert_entity(Table::Meta, PARTITION, &sub.subscription_id, &data)
        .await?;
    tracing::info!(subscription_id = %sub.subscription_id, event = event.as_str(), "lifecycle event recorded");
    Ok(())
}

/// Every recorded event not yet cleared.
pub async fn pending(store: &Store) -> Result<Vec<LifecycleMark>, StoreError> {
    store
        .scan_entities(Table::Meta, Some(PARTITION))
        .await?
        .into_iter()
        .filter_map(|e| serde_json::from_value(e.data).ok())
        .map(Ok)
        .collect()
}

/// Removes a subscription's mark once acted on (absent is fine).
pub async fn clear(store: &Store, subscription_id: &str) -> Result<(), StoreError> {
    match store
        .delete_entity(Table::Meta, PARTITION, subscription_id, None)
        .await
    {
        Ok(()) | Err(StoreError::NotFound) => Ok(()),
        Err(e) => Err(e),
    }
}
