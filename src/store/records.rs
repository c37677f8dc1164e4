//! The records the system keeps. Secrets in them are always sealed (see `crate::core::seal`):
//! refresh tokens and PKCE verifiers are AES-256-GCM ciphertexts, `clientState` is kept only
//! as a SHA-256 digest. Reading a raw row never reveals a credential.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Record, Table};
use crate::core::presence::LastKnown;

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

/// Last known presence of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceRecord {
    /// Entra object id.
    pub user_id: String,
    /// Entra tenant id.
    pub tenant_id: String,
    /// What we last published.
    #[serde(flatten)]
    pub last: LastKnown,
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
