//! The message on the topic (version 1, as the types below define it): the one wire format
//! shared by the cloud (publisher) and every edge (consumer).
//!
//! Consumers are lenient: unknown `type`s parse as [`TopicMessage::Unknown`] and unknown fields
//! are ignored, so a newer cloud never breaks an older Pi.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::core::presence::{LastKnown, Presence, Source};

/// The version this build writes.
pub const VERSION: u32 = 1;

/// `presence.changed`: one per real change of a user's presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceChanged {
    /// Entra object id.
    pub user_id: String,
    /// Entra tenant id.
    pub tenant_id: String,
    /// The new presence.
    #[serde(flatten)]
    pub presence: Presence,
    /// The presence before, absent the first time a user is seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Presence>,
    /// `notification` or `poll`.
    pub source: Source,
    /// When the change was observed.
    #[serde(with = "millis")]
    pub observed_at: DateTime<Utc>,
    /// Sortable, increasing per user.
    pub sequence: String,
}

impl PresenceChanged {
    /// The message for a stored change.
    pub fn from_change(
        user_id: &str,
        tenant_id: &str,
        next: &LastKnown,
        previous: Option<Presence>,
    ) -> Self {
        Self {
            user_id: user_id.to_owned(),
            tenant_id: tenant_id.to_owned(),
            presence: next.presence.clone(),
            previous,
            source: next.source,
            observed_at: next.observed_at,
            sequence: next.sequence.clone(),
        }
    }
}

/// `user.signin_required`: the user's refresh token stopped working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignInRequired {
    /// Entra object id.
    pub user_id: String,
    /// Entra tenant id.
    pub tenant_id: String,
    /// When it was noticed.
    #[serde(with = "millis")]
    pub observed_at: DateTime<Utc>,
    /// Short, secret-free reason (an AADSTS code and its meaning).
    pub reason: String,
}

/// Every message type this build understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicMessage {
    /// `presence.changed`
    PresenceChanged(PresenceChanged),
    /// `user.signin_required`
    SignInRequired(SignInRequired),
    /// A `type` this build does not know (completed and ignored by edges).
    Unknown {
        /// The `type` field as sent.
        kind: String,
    },
}

/// Why a body is not a message at all (as opposed to an unknown but well-formed one).
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Not JSON, or not an object.
    #[error("message is not a JSON object: {0}")]
    NotJson(String),
    /// A known type with missing or mistyped fields.
    #[error("malformed {kind} message: {detail}")]
    Malformed {
        /// The `type`.
        kind: String,
        /// serde's description, which names the field (never the body).
        detail: String,
    },
}

impl TopicMessage {
    /// The JSON object sent on the topic.
    pub fn to_json(&self) -> Value {
        let (kind, mut body) = match self {
            TopicMessage::PresenceChanged(m) => ("presence.changed", json!(m)),
            TopicMessage::SignInRequired(m) => ("user.signin_required", json!(m)),
            TopicMessage::Unknown { kind } => (kind.as_str(), json!({})),
        };
        let obj = body.as_object_mut().expect("messages serialize to objects");
        // `type` and `version` first, for humans reading the topic in the portal.
        let mut out = serde_json::Map::new();
        out.insert("type".into(), json!(kind));
        out.insert("version".into(), json!(VERSION));
        out.append(obj);
        Value::Object(out)
    }

    /// Parses a message body leniently (see the module docs).
    pub fn parse(body: &[u8]) -> Result<Self, MessageError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| MessageError::NotJson(e.to_string()))?;
        let Some(kind) = value.get("type").and_then(Value::as_str).map(str::to_owned) else {
            return Err(MessageError::NotJson("no \"type\" field".into()));
        };
        let malformed = |e: serde_json::Error| MessageError::Malformed {
            kind: kind.clone(),
            detail: e.to_string(),
        };
        match kind.as_str() {
            "presence.changed" => serde_json::from_value(value)
                .map(TopicMessage::PresenceChanged)
                .map_err(malformed),
            "user.signin_required" => serde_json::from_value(value)
                .map(TopicMessage::SignInRequired)
                .map_err(malformed),
            _ => Ok(TopicMessage::Unknown { kind }),
        }
    }

    /// The user the message is about, if any.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            TopicMessage::PresenceChanged(m) => Some(&m.user_id),
            TopicMessage::SignInRequired(m) => Some(&m.user_id),
            TopicMessage::Unknown { .. } => None,
        }
    }
}

/// RFC 3339 with milliseconds and `Z` (`2026-11-22T10:15:00.000Z`), as every producer writes it.
mod millis {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sample() -> TopicMessage {
        TopicMessage::PresenceChanged(PresenceChanged {
            user_id: "u1".into(),
            tenant_id: "t1".into(),
            presence: Presence::new("Busy", "InACall"),
            previous: Some(Presence::new("Available", "Available")),
            source: Source::Notification,
            observed_at: Utc.with_ymd_and_hms(2026, 11, 22, 10, 15, 30).unwrap()
                + chrono::Duration::milliseconds(123),
            sequence: "00000000000000000001-000000".into(),
        })
    }

    #[test]
    fn presence_changed_has_every_contract_field() {
        let v = sample().to_json();
        assert_eq!(
            v,
            json!({
                "type": "presence.changed", "version": 1, "userId": "u1", "tenantId": "t1",
                "availability": "Busy", "activity": "InACall",
                "previous": {"availability": "Available", "activity": "Available"},
                "source": "notification", "observedAt": "2026-11-22T10:15:30.123Z",
                "sequence": "00000000000000000001-000000"
            })
        );
        let round = TopicMessage::parse(v.to_string().as_bytes()).unwrap();
        assert_eq!(round, sample());
    }

    #[test]
    fn unknown_types_and_fields_are_tolerated() {
        let m = TopicMessage::parse(br#"{"type":"lamp.exploded","version":7}"#).unwrap();
        assert_eq!(
            m,
            TopicMessage::Unknown {
                kind: "lamp.exploded".into()
            }
        );
        let mut v = sample().to_json();
        v["futureField"] = json!({"x": 1});
        assert_eq!(
            TopicMessage::parse(v.to_string().as_bytes()).unwrap(),
            sample()
        );
    }

    #[test]
    fn broken_bodies_are_errors_not_panics() {
        assert!(TopicMessage::parse(b"").is_err());
        assert!(TopicMessage::parse(b"[1]").is_err());
        assert!(TopicMessage::parse(br#"{"type":"presence.changed"}"#).is_err());
        assert!(TopicMessage::parse(br#"{"type":"presence.changed","userId":1}"#).is_err());
    }

    #[test]
    fn signin_required_round_trips() {
        let m = TopicMessage::SignInRequired(SignInRequired {
            user_id: "u".into(),
            tenant_id: "t".into(),
            observed_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            reason: "AADSTS700082: refresh token expired after 90 days of inactivity".into(),
        });
        let v = m.to_json();
        assert_eq!(v["type"], "user.signin_required");
        assert_eq!(TopicMessage::parse(v.to_string().as_bytes()).unwrap(), m);
    }
}
