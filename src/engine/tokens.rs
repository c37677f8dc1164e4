//! Delegated tokens for background work: the part peers get wrong (lights that stop after an
//! hour, tokens lost on restart, nobody told when a refresh token dies).
//!
//! * Access tokens are cached in memory until five minutes before they expire.
//! * One refresh at a time per user in this process (a per-user async lock), and across
//!   processes the rotated refresh token is written with the ETag read, *before* the new access
//!   token is handed out, so the old refresh token is never sent again once a newer one exists.
//! * `invalid_grant`/`interaction_required` mark the user "sign-in required" (one writer wins
//!   the ETag race and publishes exactly one `user.signin_required`), and no further calls are
//!   made for them until they sign in again. If the stored token changed meanwhile (another
//!   instance rotated it), the new one is tried instead of giving up.
//! * Transient failures retry with backoff and leave the user active.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::clients::entra::{EntraClient, Identity, TokenError, TokenResponse};
use crate::config::ConfigError;
use crate::core::backoff::Backoff;
use crate::core::message::{SignInRequired, TopicMessage};
use crate::core::presence::Presence;
use crate::core::seal::KeyRing;
use crate::engine::publish::{Outbox, Publisher};
use crate::store::{PresenceRecord, Store, StoreError, UserRecord, UserState, Versioned};

/// Why no access token could be had, split by what the caller does.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A setting is missing: nothing works until it is set.
    #[error(transparent)]
    NotConfigured(#[from] ConfigError),
    /// No such user.
    #[error("unknown user {0}")]
    UnknownUser(String),
    /// The user must sign in again; no Graph call is made for them until then.
    #[error("user {user_id} must sign in again: {reason}")]
    SignInRequired {
        /// Who.
        user_id: String,
        /// Secret-free reason.
        reason: String,
    },
    /// Try again later (network, 5xx, throttling, store unavailable).
    #[error("temporarily unavailable: {0}")]
    Transient(String),
    /// Needs a human (invalid_client, corrupt record, unknown sealing key).
    #[error("{0}")]
    Failed(String),
}

impl From<StoreError> for AccessError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => AccessError::Transient(m),
            other => AccessError::Failed(other.to_string()),
        }
    }
}

#[derive(Clone)]
struct Cached {
    token: SecretString,
    until: DateTime<Utc>,
}

struct Inner {
    entra: Result<EntraClient, ConfigError>,
    seal: Result<KeyRing, ConfigError>,
    store: Store,
    publisher: Publisher,
    cache: Mutex<HashMap<String, Cached>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The refresh's retries after a transient failure: the back-off each refresh starts
    /// from, and how many retries.
    backoff: Backoff,
    retries: usize,
}

/// A transient refresh failure is retried this often, after [`RETRY_FIRST`] and then four
/// times as long each (500 ms, 2 s), with jitter.
const RETRIES: usize = 2;
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_CAP: Duration = Duration::from_secs(2);

/// Hands out access tokens for stored users. Cheap to clone.
#[derive(Clone)]
pub struct TokenManager {
    inner: Arc<Inner>,
}

/// The associated data a user's sealed refresh token is bound to.
fn rt_aad(user_id: &str) -> String {
    format!("refresh_token:{user_id}")
}

impl TokenManager {
    /// A manager. `entra` is the configured client or why there is none; `seal` the
    /// token-encryption keys or why there are none.
    pub fn new(
        entra: Result<EntraClient, ConfigError>,
        seal: Result<KeyRing, ConfigError>,
        store: Store,
        publisher: Publisher,
    ) -> Self {
        Self::with_backoff(
            entra,
            seal,
            store,
            publisher,
            Backoff::new(RETRY_FIRST, RETRY_CAP).with_factor(4),
            RETRIES,
        )
    }

    /// A manager with another back-off and number of retries for transient failures.
    pub fn with_backoff(
        entra: Result<EntraClient, ConfigError>,
        seal: Result<KeyRing, ConfigError>,
        store: Store,
        publisher: Publisher,
        backoff: Backoff,
        retries: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                entra,
                seal,
                store,
                publisher,
                cache: Mutex::new(HashMap::new()),
                locks: Mutex::new(HashMap::new()),
                backoff,
                retries,
            }),
        }
    }

    /// The Entra client, or the setting that is missing.
    pub fn entra(&self) -> Result<&EntraClient, ConfigError> {
        self.inner.entra.as_ref().map_err(Clone::clone)
    }

    /// The sealing keys, or the missing setting.
    pub fn seal(&self) -> Result<&KeyRing, ConfigError> {
        self.inner.seal.as_ref().map_err(Clone::clone)
    }

    /// Stores (or re-activates) a signed-in user with their refresh token sealed.
    #[tracing::instrument(name = "sign_in_store", skip_all, fields(user_id = %id.user_id, tenant_id = %id.tenant_id))]
    pub async fn store_sign_in(
        &self,
        id: &Identity,
        tokens: &TokenResponse,
        now: DateTime<Utc>,
    ) -> Result<UserRecord, AccessError> {
        let rt = tokens.refresh_token.as_ref().ok_or_else(|| {
            AccessError::Failed(
                "Entra ID returned no refresh token: the offline_access scope is missing".into(),
            )
        })?;
        let sealed = self
            .seal()?
            .seal(rt.expose_secret().as_bytes(), &rt_aad(&id.user_id));
        let existing = self
            .inner
            .store
            .get::<UserRecord>(&id.user_id, "user")
            .await?;
        let rec = UserRecord {
            user_id: id.user_id.clone(),
            tenant_id: id.tenant_id.clone(),
            upn: id.upn.clone(),
            display_name: id.display_name.clone(),
            state: UserState::Active,
            refresh_token_sealed: Some(sealed),
            refresh_token_updated_at: Some(now),
            created_at: existing.as_ref().map(|e| e.value.created_at).unwrap_or(now),
            updated_at: now,
        };
        self.inner.store.upsert(&rec).await?;
        self.remember(&id.user_id, tokens, now);
        let was_signed_out = existing
            .as_ref()
            .is_some_and(|e| matches!(e.value.state, UserState::SignInRequired { .. }));
        if was_signed_out {
            self.forget_shown_presence(&id.user_id).await;
        }
        Ok(rec)
    }

    /// Once "sign-in required" went out, the lamps show the sign-in breathe, not the stored
    /// presence. The stored presence becomes unknown (its sequence kept, anything pending
    /// dropped: it is superseded), so the first observation after the new sign-in is a change
    /// and is published with a newer sequence, also when the presence is what it was before.
    async fn forget_shown_presence(&self, user_id: &str) {
        let store = &self.inner.store;
        for _ in 0..3 {
            let current = match store.get::<PresenceRecord>(user_id, "presence").await {
                Ok(Some(c)) => c,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(user_id, error = %e, "cannot read the presence to show again after sign-in");
                    return;
                }
            };
            let mut rec = current.value;
            rec.last.presence = Presence::new("PresenceUnknown", "PresenceUnknown");
            rec.pending_publish = None;
            match store.replace(&rec, &current.etag).await {
                Ok(_) => return,
                Err(StoreError::PreconditionFailed | StoreError::Conflict) => continue,
                Err(e) => {
                    tracing::warn!(user_id, error = %e, "cannot reset the presence to show again after sign-in");
                    return;
                }
            }
        }
    }

    fn remember(&self, user_id: &str, tokens: &TokenResponse, now: DateTime<Utc>) {
        let life = i64::try_from(tokens.expires_in)
            .unwrap_or(3600)
            .saturating_sub(300)
            .max(0);
        self.inner
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                user_id.to_owned(),
                Cached {
                    token: tokens.access_token.clone(),
                    until: now + chrono::Duration::seconds(life),
                },
            );
    }

    fn cached(&self, user_id: &str, now: DateTime<Utc>) -> Option<SecretString> {
        let cache = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(user_id)
            .filter(|c| c.until > now)
            .map(|c| c.token.clone())
    }

    /// An app-only Graph token for `tenant` (client credentials), cached like the others.
    #[tracing::instrument(level = "debug", name = "app_token", skip_all, fields(tenant_id = %tenant))]
    pub async fn app_token(&self, tenant: &str) -> Result<SecretString, AccessError> {
        let key = format!("app:{tenant}");
        if let Some(t) = self.cached(&key, Utc::now()) {
            return Ok(t);
        }
        let lock = self.user_lock(&key);
        let _guard = lock.lock().await;
        if let Some(t) = self.cached(&key, Utc::now()) {
            return Ok(t);
        }
        let tokens = self
            .entra()?
            .app_token(tenant, "https://graph.microsoft.com/.default")
            .await
            .map_err(|e| match e {
                TokenError::Transient(m) => AccessError::Transient(m),
                other => AccessError::Failed(other.to_string()),
            })?;
        self.remember(&key, &tokens, Utc::now());
        Ok(tokens.access_token)
    }

    /// Forgets a cached access token (after Graph answered 401 with it).
    pub fn forget(&self, user_id: &str) {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(user_id);
    }

    fn user_lock(&self, user_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.inner
            .locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(user_id.to_owned())
            .or_default()
            .clone()
    }

    /// A Graph access token for the user, refreshing (and rotating) when needed.
    #[tracing::instrument(level = "debug", name = "access_token", skip_all, fields(user_id = %user_id))]
    pub async fn access_token(
        &self,
        user_id: &str,
        outbox: Option<&Outbox>,
    ) -> Result<SecretString, AccessError> {
        if let Some(t) = self.cached(user_id, Utc::now()) {
            return Ok(t);
        }
        let lock = self.user_lock(user_id);
        let _guard = lock.lock().await;
        // Someone may have refreshed while we waited.
        if let Some(t) = self.cached(user_id, Utc::now()) {
            return Ok(t);
        }
        let entra = self.entra()?.clone();
        let seal = self.seal()?.clone();
        let mut retried_after_rotation = false;
        let mut attempt = 0usize;
        let mut backoff = self.inner.backoff.clone();
        loop {
            let user = self
                .inner
                .store
                .get::<UserRecord>(user_id, "user")
                .await?
                .ok_or_else(|| AccessError::UnknownUser(user_id.to_owned()))?;
            if let UserState::SignInRequired { reason, .. } = &user.value.state {
                return Err(AccessError::SignInRequired {
                    user_id: user_id.to_owned(),
                    reason: reason.clone(),
                });
            }
            let sealed = user.value.refresh_token_sealed.clone().ok_or_else(|| {
                AccessError::Failed(format!("user {user_id} has no refresh token stored"))
            })?;
            let rt = seal.open(&sealed, &rt_aad(user_id)).map_err(|e| {
                AccessError::Failed(format!("stored refresh token of {user_id}: {e}"))
            })?;
            let rt = SecretString::from(String::from_utf8_lossy(&rt).into_owned());
            match entra.refresh(&user.value.tenant_id, &rt).await {
                Ok(tokens) => {
                    let now = Utc::now();
                    self.persist_rotation(user, &tokens, &seal, now).await?;
                    self.remember(user_id, &tokens, now);
                    return Ok(tokens.access_token);
                }
                Err(TokenError::SignInRequired(reason)) => {
                    // Did another instance rotate the token meanwhile? Then ours was stale.
                    let now_stored = self.inner.store.get::<UserRecord>(user_id, "user").await?;
                    let rotated = now_stored.as_ref().is_some_and(|u| {
                        u.value.refresh_token_sealed.as_deref() != Some(sealed.as_str())
                    });
                    if rotated && !retried_after_rotation {
                        retried_after_rotation = true;
                        continue;
                    }
                    self.mark_sign_in_required(user_id, &reason, outbox).await?;
                    return Err(AccessError::SignInRequired {
                        user_id: user_id.to_owned(),
                        reason,
                    });
                }
                Err(TokenError::Transient(m)) => {
                    if attempt < self.inner.retries {
                        tokio::time::sleep(backoff.next_delay()).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(AccessError::Transient(m));
                }
                Err(e) => return Err(AccessError::Failed(e.to_string())),
            }
        }
    }

    /// Writes the rotated refresh token with the ETag we read. On a lost race the newer
    /// token someone else stored wins, and ours (equally valid) is simply not kept.
    async fn persist_rotation(
        &self,
        user: Versioned<UserRecord>,
        tokens: &TokenResponse,
        seal: &KeyRing,
        now: DateTime<Utc>,
    ) -> Result<(), AccessError> {
        let Some(new_rt) = &tokens.refresh_token else {
            return Ok(());
        };
        let mut rec = user.value;
        rec.refresh_token_sealed =
            Some(seal.seal(new_rt.expose_secret().as_bytes(), &rt_aad(&rec.user_id)));
        rec.refresh_token_updated_at = Some(now);
        rec.updated_at = now;
        match self.inner.store.replace(&rec, &user.etag).await {
            Ok(_) | Err(StoreError::PreconditionFailed) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn publish_sign_in_required(
        &self,
        rec: &UserRecord,
        reason: &str,
        since: DateTime<Utc>,
        outbox: Option<&Outbox>,
    ) {
        let msg = TopicMessage::SignInRequired(SignInRequired {
            user_id: rec.user_id.clone(),
            tenant_id: rec.tenant_id.clone(),
            observed_at: since,
            reason: reason.to_owned(),
        });
        if let Err(e) = self.inner.publisher.publish(outbox, vec![msg]) {
            tracing::warn!(user_id = %rec.user_id, error = %e, "could not publish user.signin_required");
        }
    }

    /// Publishes `user.signin_required` for the users marked by a job that had nowhere to
    /// publish, once each (the ETag-conditional write of `announced` decides who sends it).
    /// Returns how many were announced.
    pub async fn announce_pending(
        &self,
        users: &[Versioned<UserRecord>],
        outbox: Option<&Outbox>,
    ) -> usize {
        if !self.inner.publisher.can_deliver(outbox) {
            return 0;
        }
        let mut announced = 0;
        for u in users {
            let UserState::SignInRequired {
                reason,
                since,
                announced: false,
            } = &u.value.state
            else {
                continue;
            };
            let mut rec = u.value.clone();
            rec.state = UserState::SignInRequired {
                reason: reason.clone(),
                since: *since,
                announced: true,
            };
            match self.inner.store.replace(&rec, &u.etag).await {
                Ok(_) => {
                    self.publish_sign_in_required(&rec, reason, *since, outbox);
                    announced += 1;
                }
                Err(e) => {
                    tracing::debug!(user_id = %rec.user_id, error = %e, "not announcing now")
                }
            }
        }
        announced
    }

    /// Marks the user "sign-in required" and publishes one `user.signin_required`.
    #[tracing::instrument(name = "sign_in_required", skip_all, fields(user_id = %user_id))]
    pub async fn mark_sign_in_required(
        &self,
        user_id: &str,
        reason: &str,
        outbox: Option<&Outbox>,
    ) -> Result<(), AccessError> {
        for _ in 0..8 {
            let Some(user) = self.inner.store.get::<UserRecord>(user_id, "user").await? else {
                return Ok(());
            };
            if matches!(user.value.state, UserState::SignInRequired { .. }) {
                return Ok(()); // someone else marked (and published) already
            }
            let now = Utc::now();
            let mut rec = user.value;
            // Nowhere to publish from this job: stored unannounced, and the next job that
            // can publish announces it (see `announce_pending`), so the message is not lost.
            let deliverable = self.inner.publisher.can_deliver(outbox);
            rec.state = UserState::SignInRequired {
                reason: reason.to_owned(),
                since: now,
                announced: deliverable,
            };
            rec.refresh_token_sealed = None;
            rec.updated_at = now;
            match self.inner.store.replace(&rec, &user.etag).await {
                Ok(_) => {
                    self.forget(user_id);
                    tracing::warn!(
                        user_id,
                        reason,
                        "refresh token no longer works; user must sign in again"
                    );
                    if deliverable {
                        self.publish_sign_in_required(&rec, reason, now, outbox);
                    }
                    return Ok(());
                }
                Err(StoreError::PreconditionFailed) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AccessError::Transient("user record kept changing".into()))
    }
}

/// The signed-in user an account setting (`TENANT_SYNC_USERS`: an object id or a UPN) names,
/// if that account has signed in.
pub fn resolve_account<'a>(account: &str, users: &'a [UserRecord]) -> Option<&'a UserRecord> {
    users
        .iter()
        .find(|u| u.user_id.eq_ignore_ascii_case(account) || u.upn.eq_ignore_ascii_case(account))
}
