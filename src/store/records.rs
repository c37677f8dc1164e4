//! The records the system keeps. Secrets in them are always sealed (see `crate::core::seal`):
//! refresh tokens and PKCE verifiers are AES-256-GCM ciphertexts, `clientState` is kept only
//! as a SHA-256 digest. Reading a raw row never reveals a credential.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Record, Table};
use crate::core::presence::{LastKnown, Presence, Source};

/// Whether a user's background access still works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum UserState {
    /// The refresh token works.
    Active,
    /// The refresh token stopped working; no Graph call is made until the user signs in again.
    #[serde(rename_all = "camelCase")]
    SignInRequired {
        /// Secret-free reason (AADSTS code and meaning).
        reason: String,
        /// When it was noticed.
        since: DateTime<Utc>,
        /// Whether `user.signin_required` went out. A job with nowhere to publish (the
        /// host's `subscriptions-renew`) marks the user unannounced, and the next job that
        /// can publish announces them. Rows from before this field were announced.
        #[serde(default = "already_announced")]
        announced: bool,
    },
}

fn already_announced() -> bool {
    true
}

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    /// Entra object id (`oid`).
    pub user_id: String,
    /// Entra tenant id (`tid`).
    pub tenant_id: String,
    /// `preferred_username`.
    #[serde(default)]
    pub upn: String,
    /// `name`.
    #[serde(default)]
    pub display_name: String,
    /// Active or sign-in required.
    #[serde(flatten)]
    pub state: UserState,
    /// The refresh token, sealed with `TOKEN_ENCRYPTION_KEY` (`v1.<kid>.<nonce>.<ct>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_sealed: Option<String>,
    /// When the refresh token was last rotated (a token unused for 90 days dies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_updated_at: Option<DateTime<Utc>>,
    /// First sign-in.
    pub created_at: DateTime<Utc>,
    /// Last change to this record.
    pub updated_at: DateTime<Utc>,
}

impl Record for UserRecord {
    const TABLE: Table = Table::Users;
    fn keys(&self) -> (String, String) {
        (self.user_id.clone(), "user".into())
    }
}

/// Last known presence of a user. Stored as one flat JSON object: the fields of `last`
/// beside `userId`, `tenantId` and `pendingPublish` (see `PresenceRecordWire` below).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "PresenceRecordWire")]
pub struct PresenceRecord {
    /// Entra object id.
    pub user_id: String,
    /// Entra tenant id.
    pub tenant_id: String,
    /// What we last published.
    pub last: LastKnown,
    /// Set while the change in `last` is stored but its sending is not confirmed: written in
    /// the same ETag-conditional write as the change, cleared once the send is confirmed
    /// (`crate::engine::pipeline::confirm_all` and its `Confirmer`). While set, every tick sends it again,
    /// so a process that dies between the two, or a topic that is down, loses nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_publish: Option<PendingPublish>,
}

/// [`PresenceRecord`] as stored: `last`'s fields spelt out beside the others, the very
/// object `#[serde(flatten)]` would read and write. Flattening buffers every field of the
/// object (each of the up to 32 applied-item digests among them) before it decodes them,
/// and a record is decoded on every change and again when its mark is cleared.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PresenceRecordWire {
    user_id: String,
    tenant_id: String,
    presence: Presence,
    sequence: String,
    observed_at: DateTime<Utc>,
    #[serde(default)]
    graph_sequence: Option<String>,
    source: Source,
    #[serde(default)]
    applied_items: Vec<String>,
    #[serde(default)]
    pending_publish: Option<PendingPublish>,
}

/// What [`PresenceRecord`] writes: [`PresenceRecordWire`]'s fields, borrowed.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PresenceRecordRef<'a> {
    user_id: &'a str,
    tenant_id: &'a str,
    presence: &'a Presence,
    sequence: &'a str,
    observed_at: &'a DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    graph_sequence: &'a Option<String>,
    source: Source,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    applied_items: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_publish: &'a Option<PendingPublish>,
}

impl From<PresenceRecordWire> for PresenceRecord {
    fn from(w: PresenceRecordWire) -> Self {
        Self {
            user_id: w.user_id,
            tenant_id: w.tenant_id,
            last: LastKnown {
                presence: w.presence,
                sequence: w.sequence,
                observed_at: w.observed_at,
                graph_sequence: w.graph_sequence,
                source: w.source,
                applied_items: w.applied_items,
            },
            pending_publish: w.pending_publish,
        }
    }
}

impl Serialize for PresenceRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let l = &self.last;
        PresenceRecordRef {
            user_id: &self.user_id,
            tenant_id: &self.tenant_id,
            presence: &l.presence,
            sequence: &l.sequence,
            observed_at: &l.observed_at,
            graph_sequence: &l.graph_sequence,
            source: l.source,
            applied_items: &l.applied_items,
            pending_publish: &self.pending_publish,
        }
        .serialize(s)
    }
}

/// The presence document's times Table Storage keeps as properties of their own
/// (`crate::store::Table::indexed`), so the re-send finds the pending and the recent rows
/// among all users without reading them all: (property, JSON pointer).
pub const PRESENCE_INDEX: [(&str, &str); 2] = [
    ("PendingSince", "/pendingPublish/since"),
    ("ObservedAt", "/observedAt"),
];

/// A stored change waiting for its publishing to be confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingPublish {
    /// When the change was stored (its observation time).
    pub since: DateTime<Utc>,
    /// The presence before the change, so a re-sent message is the one first sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<crate::core::presence::Presence>,
}

impl Record for PresenceRecord {
    const TABLE: Table = Table::Presence;
    fn keys(&self) -> (String, String) {
        (self.user_id.clone(), "presence".into())
    }
}

/// A Graph change-notification subscription we created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionRecord {
    /// Graph's subscription id.
    pub subscription_id: String,
    /// The users it covers (one in personal mode, up to 650 in tenant mode).
    pub user_ids: Vec<String>,
    /// Tenant of those users.
    pub tenant_id: String,
    /// The user whose delegated token created it (renewals use the same one).
    pub owner_user_id: String,
    /// Graph resource path.
    pub resource: String,
    /// Hex SHA-256 of the random `clientState` (the secret itself is not stored).
    pub client_state_sha256: String,
    /// When Graph will drop it.
    pub expires_at: DateTime<Utc>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// The `encryptionCertificateId` it was created with: when the ring's current
    /// certificate differs, the subscription is recreated (a PATCH cannot change it). Empty
    /// in records from before this field, which are recreated once for the same reason.
    #[serde(default)]
    pub certificate_id: String,
}

impl Record for SubscriptionRecord {
    const TABLE: Table = Table::Subscriptions;
    fn keys(&self) -> (String, String) {
        (self.subscription_id.clone(), "subscription".into())
    }
}

/// A sign-in in progress, keyed by its `state` (kept server-side because the form_post
/// callback is a cross-site POST and Lax cookies do not come back with it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingSignIn {
    /// The random `state` parameter.
    pub state: String,
    /// The PKCE verifier, sealed.
    pub code_verifier_sealed: String,
    /// The OIDC nonce expected in the id_token.
    pub nonce: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Unusable after this.
    pub expires_at: DateTime<Utc>,
}

impl Record for PendingSignIn {
    const TABLE: Table = Table::PendingSignIns;
    fn keys(&self) -> (String, String) {
        (self.state.clone(), "pending".into())
    }
}

/// One PBX extension mapped to one Teams user (`pbx map add`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PbxMappingRecord {
    /// The extension (or number) as the PBX spells it.
    pub extension: String,
    /// The Teams user's Entra object id (resolved once from a UPN or e-mail).
    pub user_id: String,
    /// What the admin typed (object id, UPN or e-mail), for `pbx map list`.
    #[serde(default)]
    pub user: String,
    /// When the mapping was made.
    pub created_at: DateTime<Utc>,
}

impl Record for PbxMappingRecord {
    const TABLE: Table = Table::PbxMappings;
    fn keys(&self) -> (String, String) {
        ("pbx".into(), self.extension.clone())
    }
}

/// What the PBX sync knows about one extension, kept across restarts: the link state
/// (`core::pbx::sync::Link`, serialised: echo ledger, ownership of a profile we set) and
/// what the status page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PbxLinkRecord {
    /// The extension.
    pub extension: String,
    /// The mapped Teams user.
    pub user_id: String,
    /// The serialised link.
    pub link: serde_json::Value,
    /// When the link next needs a tick (hold-down, stable window, re-post), if ever.
    #[serde(default)]
    pub next_wake: Option<DateTime<Utc>>,
    /// The line state last seen (`idle`, `in_call`, ...).
    #[serde(default)]
    pub line: Option<String>,
    /// The PBX profile last seen.
    #[serde(default)]
    pub profile: Option<String>,
    /// The Teams presence last seen (`Busy/InACall`).
    #[serde(default)]
    pub teams: Option<String>,
    /// The last write to Teams (`setPresence Busy/InACall`) and when.
    #[serde(default)]
    pub last_to_teams: Option<(String, DateTime<Utc>)>,
    /// The last write to the PBX (`Away`) and when.
    #[serde(default)]
    pub last_to_pbx: Option<(String, DateTime<Utc>)>,
    /// The last failed write, one line, no secrets.
    #[serde(default)]
    pub last_error: Option<String>,
}

impl Record for PbxLinkRecord {
    const TABLE: Table = Table::PbxLinks;
    fn keys(&self) -> (String, String) {
        ("pbx".into(), self.extension.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The record as `#[serde(flatten)]` wrote it before [`PresenceRecordWire`]: the stored
    /// rows of every earlier version must read and write the same.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Flattened {
        user_id: String,
        tenant_id: String,
        #[serde(flatten)]
        last: LastKnown,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pending_publish: Option<PendingPublish>,
    }

    fn records() -> Vec<PresenceRecord> {
        let at = Utc.with_ymd_and_hms(2026, 11, 28, 9, 30, 0).unwrap();
        let last = LastKnown {
            presence: Presence::new("Busy", "InACall"),
            sequence: "00000000001764322200000-000001".into(),
            observed_at: at,
            graph_sequence: None,
            source: Source::Poll,
            applied_items: Vec::new(),
        };
        let bare = PresenceRecord {
            user_id: "a1b2".into(),
            tenant_id: "t1".into(),
            last: last.clone(),
            pending_publish: None,
        };
        let full = PresenceRecord {
            last: LastKnown {
                graph_sequence: Some("00000000000000000042".into()),
                source: Source::Notification,
                applied_items: vec!["d1".into(), "d2".into()],
                ..last
            },
            pending_publish: Some(PendingPublish {
                since: at,
                previous: Some(Presence::new("Available", "Available")),
            }),
            ..bare.clone()
        };
        let pending_without_previous = PresenceRecord {
            pending_publish: Some(PendingPublish {
                since: at,
                previous: None,
            }),
            ..bare.clone()
        };
        vec![bare, full, pending_without_previous]
    }

    #[test]
    fn a_presence_record_reads_and_writes_what_flatten_did() {
        for rec in records() {
            let old = Flattened {
                user_id: rec.user_id.clone(),
                tenant_id: rec.tenant_id.clone(),
                last: rec.last.clone(),
                pending_publish: rec.pending_publish.clone(),
            };
            let written = serde_json::to_string(&rec).unwrap();
            assert_eq!(written, serde_json::to_string(&old).unwrap());
            let read: PresenceRecord = serde_json::from_str(&written).unwrap();
            assert_eq!(read, rec);
            assert_eq!(serde_json::from_str::<Flattened>(&written).unwrap(), old);
        }
    }

    #[test]
    fn a_presence_record_ignores_fields_it_does_not_know_and_needs_those_it_does() {
        let rec = &records()[1];
        let mut v = serde_json::to_value(rec).unwrap();
        v["addedLater"] = serde_json::json!({"x": 1});
        assert_eq!(
            &serde_json::from_value::<PresenceRecord>(v.clone()).unwrap(),
            rec
        );
        v.as_object_mut().unwrap().remove("sequence");
        assert!(serde_json::from_value::<PresenceRecord>(v).is_err());
    }
}
