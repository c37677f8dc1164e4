//! Where presence changes go.
//!
//! Under the Functions host a change becomes part of the invocation's `message` output
//! binding: the code that detects it pushes into the invocation's [`Outbox`], and the payload
//! dispatcher turns the outbox into `Outputs.message` (JSON objects, never strings). In `serve`
//! changes are delivered in-process. Either way the detecting code calls one function,
//! [`Publisher::publish`], and does not know which.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::core::message::TopicMessage;

/// Messages produced during one payload-mode invocation.
#[derive(Clone, Default, Debug)]
pub struct Outbox(Arc<Mutex<Vec<TopicMessage>>>);

impl Outbox {
    /// Adds messages.
    pub fn push(&self, msgs: impl IntoIterator<Item = TopicMessage>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(msgs);
    }

    /// Takes everything out.
    pub fn drain(&self) -> Vec<TopicMessage> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// How many recent messages the status page shows.
const RECENT: usize = 50;

/// The process-wide publisher.
#[derive(Clone, Default)]
pub struct Publisher {
    recent: Arc<Mutex<VecDeque<TopicMessage>>>,
    subscribers: Arc<Mutex<Vec<tokio::sync::mpsc::UnboundedSender<TopicMessage>>>>,
}

/// Why a message could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No destination is configured for a change detected outside an invocation.
    #[error("no destination for presence messages in this mode")]
    NoDestination,
}

impl Publisher {
    /// Publishes: into `outbox` when running inside a payload-mode invocation, otherwise to
    /// the in-process subscribers (`serve`'s sinks).
    pub fn publish(
        &self,
        outbox: Option<&Outbox>,
        msgs: Vec<TopicMessage>,
    ) -> Result<(), PublishError> {
        if msgs.is_empty() {
            return Ok(());
        }
        {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            for m in &msgs {
                if recent.len() == RECENT {
                    recent.pop_front();
                }
                recent.push_back(m.clone());
            }
        }
        if let Some(outbox) = outbox {
            outbox.push(msgs);
            return Ok(());
        }
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        if subs.is_empty() {
            return Err(PublishError::NoDestination);
        }
        subs.retain(|tx| msgs.iter().all(|m| tx.send(m.clone()).is_ok()));
        Ok(())
    }

    /// Whether [`Self::publish`] would deliver now: into `outbox`, or to a subscriber.
    pub fn can_deliver(&self, outbox: Option<&Outbox>) -> bool {
        outbox.is_some()
            || !self
                .subscribers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
    }

    /// An in-process subscription (each message is delivered to every subscriber).
    pub fn subscribe(&self) -> tokio::sync::mpsc::UnboundedReceiver<TopicMessage> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        rx
    }

    /// The most recent messages, oldest first.
    pub fn recent(&self) -> Vec<TopicMessage> {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// Sends messages straight to the topic over the Service Bus REST API (`PUBLISH_MODE=rest`).
///
/// Unlike the Functions output binding this can set message properties: `userId` and `type`
/// become application properties, so an edge's subscription can filter per user with a SQL
/// rule (`userId = '...'`), and `MessageId` is `{userId}:{sequence}` (or the sign-in event's
/// time), so the topic's duplicate detection drops a message published twice by a retry.
pub async fn send_direct(
    client: &crate::clients::servicebus::Client,
    msgs: &[TopicMessage],
) -> Result<(), crate::clients::servicebus::ServiceBusError> {
    for m in msgs {
        let (kind, id) = match m {
            TopicMessage::PresenceChanged(p) => {
                ("presence.changed", format!("{}:{}", p.user_id, p.sequence))
            }
            TopicMessage::SignInRequired(s) => (
                "user.signin_required",
                format!("{}:signin:{}", s.user_id, s.observed_at.timestamp_millis()),
            ),
            TopicMessage::Unknown { .. } => continue,
        };
        let props = crate::clients::servicebus::BrokerProperties {
            message_id: Some(id),
            label: Some(kind.to_owned()),
            content_type: Some("application/json".into()),
            ..Default::default()
        };
        let mut custom = std::collections::BTreeMap::new();
        if let Some(u) = m.user_id() {
            custom.insert("userId".to_owned(), u.to_owned());
        }
        custom.insert("type".to_owned(), kind.to_owned());
        client
            .send(m.to_json().to_string().as_bytes(), &props, &custom)
            .await?;
    }
    Ok(())
}
