//! Keeping Graph presence subscriptions alive: what `subscriptions-renew` and `serve`'s
//! scheduler run.
//!
//! Presence subscriptions live at most 60 minutes and Graph allows one per user per app.
//! Each run works out the subscriptions we want (personal mode: one per active user, created
//! with that user's delegated token; tenant mode: see [`tenant_plan`]), then:
//!
//! * creates the missing ones (random `clientState`, stored only as a SHA-256 digest);
//! * renews those expiring within [`RENEW_BEFORE`] (PATCH to 59 minutes ahead);
//! * recreates one Graph no longer knows (404 on renew);
//! * on 409 (a subscription for the user exists that we have no record of, e.g. after a lost
//!   store) finds it with `GET /subscriptions`, deletes it and creates ours: we cannot adopt it
//!   as-is because we never knew its `clientState`;
//! * acts on lifecycle marks the webhook left (`reauthorizationRequired` → reauthorize,
//!   `subscriptionRemoved` → recreate, `missed` → recreate and poll at once);
//! * moves one made with a certificate that is no longer the ring's current one to the
//!   current one by PATCHing `encryptionCertificate` / `encryptionCertificateId` on the live
//!   subscription (Graph's documented key rotation: no gap, no 409 dance), recreating it only
//!   if Graph no longer knows it;
//! * removes subscriptions for users who are gone, or whose owner changed.
//!
//! # Keys kept after a rotation
//!
//! Graph may go on using the old certificate for a while after the PATCH, and retries an
//! undelivered notification for up to 4 hours. So every key a subscription uses is stored
//! (sealed with `TOKEN_ENCRYPTION_KEY`, in the meta table) with the last time it was in use,
//! and [`with_retired_keys`] adds those retired less than [`KEEP_RETIRED_KEY`] ago to the
//! ring at start: a restart after the switch, a configuration that already dropped the old
//! pair, or Key Vault moving on twice cannot lose a notification Graph is still retrying.
//!
//! # Tenant mode
//!
//! App-only tokens cannot subscribe to presence, and Graph allows one presence subscription
//! per user per app, also for the signed-in user who owns it: one sync account can therefore
//! own one bulk subscription of at most 650 ids. `TENANT_USERS` is cut into chunks of 650 in
//! order; chunk *i* belongs to the *i*-th account of `TENANT_SYNC_USERS`. Chunks without an
//! account are not subscribed: those users are polled every `POLL_INTERVAL`, and the status
//! page, `teams-presence users` and a log line of every run say how many and why.
//!
//! A user whose subscription cannot be kept simply has none stored; the poller then polls them
//! every `POLL_INTERVAL` instead of rarely (the status page shows "polling").

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::clients::graph::certs::KeyRing;
use crate::clients::graph::client::{GraphError, NewSubscription, MAX_IDS_PER_CALL};
use crate::clients::graph::notification::{self, LifecycleEvent};
use crate::engine::context::Context;
use crate::engine::poller::Poller;
use crate::store::{StoreError, SubscriptionRecord, Table, UserRecord, UserState};

/// Renew a subscription when less than this is left.
pub const RENEW_BEFORE: Duration = Duration::minutes(20);
/// How far ahead we ask (Graph's presence maximum is 60 minutes).
pub const LIFETIME: Duration = Duration::minutes(59);

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RenewReport {
    /// Subscriptions created (including recreated ones).
    pub created: usize,
    /// Subscriptions renewed.
    pub renewed: usize,
    /// Subscriptions moved to the current notification certificate (PATCH).
    pub rekeyed: usize,
    /// Reauthorized after a lifecycle event.
    pub reauthorized: usize,
    /// Removed (user gone).
    pub removed: usize,
    /// Failures (those users fall back to polling).
    pub failed: usize,
    /// Why nothing was done, when subscriptions are not configured.
    pub disabled: Option<String>,
}

/// One subscription we want.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Desired {
    owner: String,
    tenant: String,
    user_ids: Vec<String>,
    resource: String,
}

fn personal_resource(user_id: &str) -> String {
    format!("/communications/presences/{user_id}")
}

fn bulk_resource(ids: &[String]) -> String {
    let list: Vec<String> = ids
        .iter()
        .map(|i| format!("'{}'", i.replace('\'', "''")))
        .collect();
    format!(
        "/communications/presences?$filter=id in ({})",
        list.join(",")
    )
}

/// Where Graph delivers.
struct Endpoints {
    notification: String,
    lifecycle: String,
}

/// Why change notifications are off and presence is polled only (the upkeep's report
/// says it on the status page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum NotificationsOff {
    /// Nowhere for Graph to deliver.
    #[error("PUBLIC_BASE_URL is not set: presence is polled only")]
    NoPublicUrl,
    /// Graph delivers to HTTPS only.
    #[error("PUBLIC_BASE_URL must be https for change notifications: presence is polled only")]
    NotHttps,
    /// Nothing to have rich notifications encrypted for.
    #[error("no notification certificate: presence is polled only")]
    NoCertificate,
}

/// Whether subscriptions can be used at all, and the notification and lifecycle URLs.
fn urls(state: &Context) -> Result<Endpoints, NotificationsOff> {
    let base = state
        .settings
        .graph
        .public_base_url
        .as_ref()
        .ok_or(NotificationsOff::NoPublicUrl)?;
    // Graph only delivers to HTTPS; loopback HTTP is allowed for local tests with a fake.
    let loopback = matches!(base.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if base.scheme() != "https" && !loopback {
        return Err(NotificationsOff::NotHttps);
    }
    if state.notification_keys.current().is_none() {
        return Err(NotificationsOff::NoCertificate);
    }
    let join = |p: &str| base.join(p).map(|u| u.to_string()).unwrap_or_default();
    Ok(Endpoints {
        notification: join("api/notifications"),
        lifecycle: join("api/lifecycle"),
    })
}

/// How tenant mode shares `TENANT_USERS` among the sync accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPlan {
    /// Each sync account (as configured) with the at most 650 users its subscription covers.
    pub owned: Vec<(String, Vec<String>)>,
    /// Users beyond what the sync accounts can own: polled every `POLL_INTERVAL`.
    pub unowned: Vec<String>,
    /// Sync accounts configured.
    pub sync_accounts: usize,
}

/// Cuts `users` into chunks of [`MAX_IDS_PER_CALL`] and gives chunk *i* to account *i*.
pub fn tenant_plan(users: &[String], sync_accounts: &[String]) -> TenantPlan {
    let mut plan = TenantPlan {
        owned: Vec::new(),
        unowned: Vec::new(),
        sync_accounts: sync_accounts.len(),
    };
    for (i, chunk) in users.chunks(MAX_IDS_PER_CALL).enumerate() {
        match sync_accounts.get(i) {
            Some(owner) => plan.owned.push((owner.clone(), chunk.to_vec())),
            None => plan.unowned.extend_from_slice(chunk),
        }
    }
    plan
}

impl TenantPlan {
    /// Why some users cannot have a subscription, in words, or `None` when all can.
    pub fn shortfall(&self) -> Option<String> {
        if self.unowned.is_empty() {
            return None;
        }
        let total = self.unowned.len() + self.owned.iter().map(|(_, u)| u.len()).sum::<usize>();
        let needed = total.div_ceil(MAX_IDS_PER_CALL);
        Some(format!(
            "{} of {total} tenant users are polled: {} sync account(s) in TENANT_SYNC_USERS own at most {MAX_IDS_PER_CALL} users' subscription each (one presence subscription per user per app); sign in {} more account(s) and add them to cover everyone",
            self.unowned.len(),
            self.sync_accounts,
            needed - self.sync_accounts,
        ))
    }
}

/// Tenant mode's coverage right now: what the status page and `users` show.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantCoverage {
    /// Users in `TENANT_USERS`.
    pub users: usize,
    /// Accounts in `TENANT_SYNC_USERS`.
    pub sync_accounts: usize,
    /// Users covered by a live subscription.
    pub subscribed: usize,
    /// Users polled every `POLL_INTERVAL` (no live subscription).
    pub polled: usize,
    /// Live subscriptions.
    pub subscriptions: usize,
    /// Why users are polled, one sentence per reason.
    pub reasons: Vec<String>,
}

/// Works out [`TenantCoverage`] from the settings, the signed-in users and the stored
/// subscriptions at `now`; `None` outside tenant mode.
pub fn tenant_coverage(
    settings: &crate::config::Settings,
    users: &[UserRecord],
    subscriptions: &[SubscriptionRecord],
    now: DateTime<Utc>,
) -> Option<TenantCoverage> {
    if settings.polling.tenant_users.is_empty() {
        return None;
    }
    let plan = tenant_plan(
        &settings.polling.tenant_users,
        &settings.polling.tenant_sync_users,
    );
    let live: Vec<&SubscriptionRecord> = subscriptions
        .iter()
        .filter(|s| s.expires_at > now)
        .collect();
    let covered: std::collections::HashSet<&str> = live
        .iter()
        .flat_map(|s| s.user_ids.iter().map(String::as_str))
        .collect();
    let subscribed = settings
        .polling
        .tenant_users
        .iter()
        .filter(|u| covered.contains(u.as_str()))
        .count();
    let mut reasons = Vec::new();
    if settings.polling.tenant_sync_users.is_empty() {
        reasons.push("TENANT_SYNC_USERS is empty: app-only tokens cannot subscribe to presence, so every tenant user is polled".to_owned());
    } else if let Some(why) = plan.shortfall() {
        reasons.push(why);
    }
    for (account, ids) in &plan.owned {
        let live_here = ids.iter().all(|i| covered.contains(i.as_str()));
        if live_here {
            continue;
        }
        let why = match crate::engine::tokens::resolve_account(account, users) {
            None => "has not signed in",
            Some(u) if !matches!(u.state, UserState::Active) => "must sign in again",
            Some(_) => "has no live subscription yet (created or retried at the next run)",
        };
        reasons.push(format!(
            "sync account {account} {why}: its {} users are polled",
            ids.len()
        ));
    }
    Some(TenantCoverage {
        users: settings.polling.tenant_users.len(),
        sync_accounts: settings.polling.tenant_sync_users.len(),
        subscribed,
        polled: settings.polling.tenant_users.len() - subscribed,
        subscriptions: live.len(),
        reasons,
    })
}

async fn desired(state: &Context) -> Result<Vec<Desired>, StoreError> {
    let s = &state.settings;
    let users: Vec<UserRecord> = state
        .store
        .list::<UserRecord>()
        .await?
        .into_iter()
        .map(|u| u.value)
        .collect();
    if !s.polling.tenant_users.is_empty() {
        let plan = tenant_plan(&s.polling.tenant_users, &s.polling.tenant_sync_users);
        // Said once when it starts or changes (runs come every minute in `serve`).
        static LAST_SHORTFALL: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
        let why = plan.shortfall();
        let mut last = LAST_SHORTFALL.lock().unwrap_or_else(|p| p.into_inner());
        if *last != why {
            match &why {
                Some(why) => tracing::warn!(
                    polled = plan.unowned.len(),
                    users = s.polling.tenant_users.len(),
                    sync_accounts = plan.sync_accounts,
                    "{why}"
                ),
                None => tracing::info!(
                    users = s.polling.tenant_users.len(),
                    sync_accounts = plan.sync_accounts,
                    "every tenant user now has a sync account's subscription"
                ),
            }
            *last = why;
        }
        drop(last);
        return Ok(plan
            .owned
            .into_iter()
            .map(|(account, ids)| Desired {
                // Tokens are kept by object id; an account not signed in keeps its name
                // and fails to get one (counted as failed: its users are polled).
                owner: crate::engine::tokens::resolve_account(&account, &users)
                    .map(|u| u.user_id.clone())
                    .unwrap_or(account),
                tenant: s.app.tenant.clone(),
                resource: bulk_resource(&ids),
                user_ids: ids,
            })
            .collect());
    }
    Ok(users
        .into_iter()
        .filter(|u| matches!(u.state, UserState::Active))
        .map(|u| Desired {
            resource: personal_resource(&u.user_id),
            owner: u.user_id.clone(),
            tenant: u.tenant_id,
            user_ids: vec![u.user_id],
        })
        .collect())
}

/// Runs one maintenance pass at `now`.
#[tracing::instrument(name = "subscription_maintenance", skip_all)]
pub async fn maintain(state: &Context, poller: &Poller, now: DateTime<Utc>) -> RenewReport {
    // One pass at a time: two passes over the same state both create a subscription for a
    // new user, and the second's 409-replace deletes the first's, leaving a dead record.
    let _one_at_a_time = state.maintenance.lock().await;
    let mut report = RenewReport::default();
    // Both roles run this every minute, subscriptions or not: the place for other upkeep.
    match crate::engine::signins::purge_expired(&state.store, now).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(purged = n, "expired pending sign-ins removed"),
        Err(e) => tracing::warn!(error = %e, "cannot purge expired pending sign-ins"),
    }
    let endpoints = match urls(state) {
        Ok(u) => u,
        Err(why) => {
            report.disabled = Some(why.to_string());
            return report;
        }
    };
    let want = match desired(state).await {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot list users for subscriptions");
            report.failed += 1;
            return report;
        }
    };
    let mut have: Vec<SubscriptionRecord> = match state.store.list::<SubscriptionRecord>().await {
        Ok(v) => v.into_iter().map(|s| s.value).collect(),
        Err(e) => {
            tracing::error!(error = %e, "cannot list subscriptions");
            report.failed += 1;
            return report;
        }
    };
    let marks = crate::engine::lifecycle::pending(&state.store)
        .await
        .unwrap_or_default();
    // Every certificate a subscription used at the start of this run: Graph may have
    // encrypted with it until now, whatever this run changes.
    let in_use: HashSet<String> = have.iter().map(|h| h.certificate_id.clone()).collect();

    // Lifecycle events first: they say a subscription needs attention now.
    for mark in marks {
        let Some(pos) = have
            .iter()
            .position(|s| s.subscription_id == mark.subscription_id)
        else {
            let _ = crate::engine::lifecycle::clear(&state.store, &mark.subscription_id).await;
            continue;
        };
        let rec = have[pos].clone();
        let token = match state.tokens.access_token(&rec.owner_user_id, None).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(subscription_id = %rec.subscription_id, error = %e, "no token to act on a lifecycle event");
                report.failed += 1;
                continue;
            }
        };
        match mark.event() {
            Some(LifecycleEvent::ReauthorizationRequired) => {
                let renewed = match state
                    .graph
                    .reauthorize_subscription(&token, &rec.subscription_id)
                    .await
                {
                    Ok(()) => state
                        .graph
                        .renew_subscription(&token, &rec.subscription_id, now + LIFETIME)
                        .await
                        .map(|s| s.expiration_date_time),
                    Err(e) => Err(e),
                };
                match renewed {
                    Ok(expires) => {
                        report.reauthorized += 1;
                        let mut updated = rec.clone();
                        updated.expires_at = expires;
                        let _ = state.store.upsert(&updated).await;
                        have[pos] = updated;
                    }
                    Err(e) => {
                        tracing::warn!(subscription_id = %rec.subscription_id, error = %e, "reauthorization failed; recreating");
                        forget(state, &rec).await;
                        have.remove(pos);
                    }
                }
            }
            Some(LifecycleEvent::SubscriptionRemoved | LifecycleEvent::Missed) | None => {
                let _ = state
                    .graph
                    .delete_subscription(&token, &rec.subscription_id)
                    .await;
                forget(state, &rec).await;
                have.remove(pos);
                for u in &rec.user_ids {
                    poller.poll_soon(u);
                }
            }
        }
        let _ = crate::engine::lifecycle::clear(&state.store, &mark.subscription_id).await;
    }

    // Subscriptions nobody wants any more (or owned by another account than now planned:
    // the old owner's token deletes it before the new owner creates its own).
    let wanted = |h: &SubscriptionRecord| {
        want.iter()
            .any(|w| w.resource == h.resource && w.owner == h.owner_user_id)
    };
    let (kept, unwanted): (Vec<_>, Vec<_>) = have.into_iter().partition(|h| wanted(h));
    have = kept;
    for rec in &unwanted {
        if let Ok(token) = state.tokens.access_token(&rec.owner_user_id, None).await {
            let _ = state
                .graph
                .delete_subscription(&token, &rec.subscription_id)
                .await;
        }
        forget(state, rec).await;
        report.removed += 1;
    }

    let current_cert = state
        .notification_keys
        .current()
        .map(|k| k.id().to_owned())
        .unwrap_or_default();
    let known: Vec<String> = have.iter().map(|h| h.subscription_id.clone()).collect();
    for d in want {
        let existing = have.iter().find(|h| h.resource == d.resource).cloned();
        let token = match state.tokens.access_token(&d.owner, None).await {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(user_id = %d.owner, error = %e, "no token to keep a subscription");
                report.failed += 1;
                continue;
            }
        };
        match existing {
            Some(rec) if rec.certificate_id != current_cert => {
                // Made for a certificate that is no longer current: move the live
                // subscription to the current one (Graph's documented key rotation). The old
                // key stays for what Graph already encrypted and still retries.
                let Some(cert) = state.notification_keys.current() else {
                    continue;
                };
                tracing::info!(subscription_id = %rec.subscription_id, certificate_id = %cert.id(), "the notification certificate rotated; updating the subscription");
                match state
                    .graph
                    .update_subscription_certificate(
                        &token,
                        &rec.subscription_id,
                        now + LIFETIME,
                        &cert.certificate_base64(),
                        cert.id(),
                    )
                    .await
                {
                    Ok(sub) => {
                        let mut updated = rec.clone();
                        updated.expires_at = sub.expiration_date_time;
                        updated.certificate_id = cert.id().to_owned();
                        match state.store.upsert(&updated).await {
                            Ok(_) => report.rekeyed += 1,
                            Err(e) => {
                                tracing::error!(error = %e, "cannot store the updated subscription");
                                report.failed += 1;
                            }
                        }
                    }
                    Err(GraphError::NotFound) => {
                        tracing::info!(subscription_id = %rec.subscription_id, "Graph no longer knows the subscription; recreating");
                        forget(state, &rec).await;
                        create(state, &token, &d, &endpoints, now, &known, &mut report).await;
                    }
                    Err(e) => {
                        tracing::warn!(subscription_id = %rec.subscription_id, error = %e, "cannot move the subscription to the current certificate; trying again next run");
                        report.failed += 1;
                    }
                }
            }
            Some(rec) if rec.expires_at - now > RENEW_BEFORE => {}
            Some(rec) => match state
                .graph
                .renew_subscription(&token, &rec.subscription_id, now + LIFETIME)
                .await
            {
                Ok(sub) => {
                    let mut updated = rec.clone();
                    updated.expires_at = sub.expiration_date_time;
                    match state.store.upsert(&updated).await {
                        Ok(_) => report.renewed += 1,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot store the renewed subscription");
                            report.failed += 1;
                        }
                    }
                }
                Err(GraphError::NotFound) => {
                    tracing::info!(subscription_id = %rec.subscription_id, "Graph no longer knows the subscription; recreating");
                    forget(state, &rec).await;
                    create(state, &token, &d, &endpoints, now, &known, &mut report).await;
                }
                Err(e) => {
                    tracing::warn!(subscription_id = %rec.subscription_id, error = %e, "renewal failed");
                    report.failed += 1;
                    if rec.expires_at <= now {
                        forget(state, &rec).await;
                    }
                }
            },
            None => create(state, &token, &d, &endpoints, now, &known, &mut report).await,
        }
    }
    remember_keys(state, &in_use, now).await;
    if report != RenewReport::default() {
        tracing::info!(?report, "subscriptions maintained");
    }
    report
}

// --- Notification keys kept after a rotation ---------------------------------------------

/// How long a notification key is kept after the last run that saw a subscription use it:
/// Graph retries an undelivered notification for up to 4 hours, plus the
/// `KEY_REFRESH` granularity of the bookkeeping and a margin.
pub const KEEP_RETIRED_KEY: Duration = Duration::minutes(4 * 60 + 30);

/// A key in use has its `lastUsedAt` written at most this often.
const KEY_REFRESH: Duration = Duration::minutes(10);

/// Meta-table partition of the stored keys (row key: the certificate id).
const KEY_PARTITION: &str = "notification-key";

/// A notification key as stored: the certificate and private key as PEM, sealed with
/// `TOKEN_ENCRYPTION_KEY` (bound to the certificate id), and when a subscription last used it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredKey {
    certificate_id: String,
    sealed_pem: String,
    last_used_at: DateTime<Utc>,
}

fn key_aad(certificate_id: &str) -> String {
    format!("notification-key:{certificate_id}")
}

async fn stored_keys(state: &Context) -> Result<Vec<StoredKey>, StoreError> {
    Ok(state
        .store
        .scan_entities(Table::Meta, Some(KEY_PARTITION))
        .await?
        .into_iter()
        .filter_map(|e| serde_json::from_value(e.data).ok())
        .collect())
}

/// The context with every stored key retired less than [`KEEP_RETIRED_KEY`] before `now`
/// added to its ring (after the configured ones, for decryption only). The roles call this
/// at start, so a key Graph may still be using survives a restart and a configuration that
/// no longer has it.
pub async fn with_retired_keys(state: Context, now: DateTime<Utc>) -> Context {
    let Ok(seal) = state.tokens.seal() else {
        return state;
    };
    let stored = match stored_keys(&state).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the retired notification keys");
            return state;
        }
    };
    let mut ring: KeyRing = (*state.notification_keys).clone();
    let mut added = 0;
    for k in stored {
        if ring.find(&k.certificate_id).is_some() || now - k.last_used_at >= KEEP_RETIRED_KEY {
            continue;
        }
        let opened = seal
            .open(&k.sealed_pem, &key_aad(&k.certificate_id))
            .ok()
            .and_then(|pem| KeyRing::from_pem(&pem).ok())
            .filter(|r| r.find(&k.certificate_id).is_some());
        match opened {
            Some(old) => {
                ring = ring.with_previous(old);
                added += 1;
            }
            None => {
                tracing::warn!(certificate_id = %k.certificate_id, "a retired notification key cannot be opened (TOKEN_ENCRYPTION_KEY changed?); notifications Graph retries for it will be dropped")
            }
        }
    }
    if added == 0 {
        return state;
    }
    tracing::info!(
        keys = added,
        "notification keys retired less than 4.5 hours ago kept for Graph's retries"
    );
    state.with_notification_keys(ring)
}

/// Stores the current key and every key in `in_use` with `now` as their last use (at most
/// every [`KEY_REFRESH`]), and deletes stored keys unused for [`KEEP_RETIRED_KEY`].
async fn remember_keys(state: &Context, in_use: &HashSet<String>, now: DateTime<Utc>) {
    let Ok(seal) = state.tokens.seal() else {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            tracing::warn!("TOKEN_ENCRYPTION_KEY is not set: notification keys are not kept after a rotation; keep the old certificate for 4 hours after switching");
        });
        return;
    };
    let stored = match stored_keys(state).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the stored notification keys");
            return;
        }
    };
    let current = state.notification_keys.current().map(|k| k.id().to_owned());
    let used = |id: &str| current.as_deref() == Some(id) || in_use.contains(id);
    for key in state.notification_keys.keys() {
        if !used(key.id()) {
            continue;
        }
        let fresh = stored
            .iter()
            .any(|s| s.certificate_id == key.id() && now - s.last_used_at < KEY_REFRESH);
        if fresh {
            continue;
        }
        let pem = match key.to_pem() {
            Ok(p) => secrecy::zeroize::Zeroizing::new(p),
            Err(_) => continue,
        };
        let rec = StoredKey {
            certificate_id: key.id().to_owned(),
            sealed_pem: seal.seal(&pem, &key_aad(key.id())),
            last_used_at: now,
        };
        let data = serde_json::to_value(&rec).unwrap_or_default();
        if let Err(e) = state
            .store
            .upsert_entity(Table::Meta, KEY_PARTITION, key.id(), &data)
            .await
        {
            tracing::warn!(certificate_id = %key.id(), error = %e, "cannot store a notification key");
        }
    }
    for old in stored {
        if used(&old.certificate_id) || now - old.last_used_at < KEEP_RETIRED_KEY {
            continue;
        }
        match state
            .store
            .delete_entity(Table::Meta, KEY_PARTITION, &old.certificate_id, None)
            .await
        {
            Ok(()) | Err(StoreError::NotFound) => {
                tracing::info!(certificate_id = %old.certificate_id, "a retired notification key is past Graph's retries; deleted")
            }
            Err(e) => tracing::warn!(error = %e, "cannot delete a retired notification key"),
        }
    }
}

async fn forget(state: &Context, rec: &SubscriptionRecord) {
    match state
        .store
        .delete::<SubscriptionRecord>(&rec.subscription_id, "subscription", None)
        .await
    {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(e) => tracing::error!(error = %e, "cannot delete a subscription record"),
    }
}

#[tracing::instrument(name = "subscription_create", skip_all, fields(user_id = %d.owner, tenant_id = %d.tenant))]
async fn create(
    state: &Context,
    token: &SecretString,
    d: &Desired,
    endpoints: &Endpoints,
    now: DateTime<Utc>,
    known: &[String],
    report: &mut RenewReport,
) {
    let Some(cert) = state.notification_keys.current() else {
        report.failed += 1;
        return;
    };
    let client_state = crate::clients::entra::random_token(32);
    let new = NewSubscription {
        resource: d.resource.clone(),
        notification_url: endpoints.notification.clone(),
        lifecycle_url: endpoints.lifecycle.clone(),
        expires_at: now + LIFETIME,
        client_state: SecretString::from(client_state.clone()),
        certificate_base64: cert.certificate_base64(),
        certificate_id: cert.id().to_owned(),
    };
    let mut result = state.graph.create_subscription(token, &new).await;
    if let Err(GraphError::Conflict(_)) = &result {
        // One presence subscription per user per app, the owner included: a leftover we
        // have no record of (same resource, or any presence subscription of this owner that
        // is not ours, e.g. after a lost store or a changed `TENANT_USERS`).
        tracing::info!(user_id = %d.owner, "a subscription for these users already exists; replacing it");
        if let Ok(list) = state.graph.list_subscriptions(token).await {
            for old in list.iter().filter(|s| {
                let r = s.resource.trim_start_matches('/');
                r == d.resource.trim_start_matches('/')
                    || (r.starts_with("communications/presences") && !known.contains(&s.id))
            }) {
                let _ = state.graph.delete_subscription(token, &old.id).await;
            }
        }
        result = state.graph.create_subscription(token, &new).await;
    }
    match result {
        Ok(sub) => {
            let rec = SubscriptionRecord {
                subscription_id: sub.id.clone(),
                user_ids: d.user_ids.clone(),
                tenant_id: d.tenant.clone(),
                owner_user_id: d.owner.clone(),
                resource: d.resource.clone(),
                client_state_sha256: crate::clients::graph::notification::client_state_sha256_hex(
                    &client_state,
                ),
                expires_at: sub.expiration_date_time,
                created_at: now,
                certificate_id: cert.id().to_owned(),
            };
            match state.store.upsert(&rec).await {
                Ok(_) => report.created += 1,
                Err(e) => {
                    tracing::error!(error = %e, "cannot store the new subscription; deleting it again");
                    let _ = state.graph.delete_subscription(token, &sub.id).await;
                    report.failed += 1;
                }
            }
        }
        Err(e) => {
            tracing::warn!(user_id = %d.owner, error = %e, "cannot create a presence subscription; polling instead");
            report.failed += 1;
        }
    }
}

/// The stored record is what the notification checks match an item against; the checks
/// live with Graph's wire format, which knows nothing of the store.
impl notification::Subscription for SubscriptionRecord {
    fn client_state_sha256(&self) -> &str {
        &self.client_state_sha256
    }
    fn tenant_id(&self) -> &str {
        &self.tenant_id
    }
    fn user_ids(&self) -> &[String] {
        &self.user_ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_follow_graphs_syntax() {
        assert_eq!(personal_resource("abc"), "/communications/presences/abc");
        assert_eq!(
            bulk_resource(&["a".into(), "b'c".into()]),
            "/communications/presences?$filter=id in ('a','b''c')"
        );
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("u{i}")).collect()
    }

    #[test]
    fn each_sync_account_owns_at_most_650_users_and_the_rest_are_polled() {
        let accounts = |n: usize| (0..n).map(|i| format!("sync{i}")).collect::<Vec<_>>();
        let plan = tenant_plan(&ids(1400), &accounts(2));
        let owned: Vec<(&str, usize)> = plan
            .owned
            .iter()
            .map(|(a, u)| (a.as_str(), u.len()))
            .collect();
        assert_eq!(owned, vec![("sync0", 650), ("sync1", 650)]);
        assert_eq!(plan.unowned.len(), 100);
        assert_eq!(plan.unowned[0], "u1300");
        let why = plan.shortfall().unwrap();
        assert!(
            why.starts_with("100 of 1400 tenant users are polled"),
            "{why}"
        );
        assert!(why.contains("sign in 1 more"), "{why}");

        let plan = tenant_plan(&ids(1400), &accounts(3));
        assert_eq!(plan.owned.iter().map(|(_, u)| u.len()).sum::<usize>(), 1400);
        assert!(plan.unowned.is_empty() && plan.shortfall().is_none());

        // More accounts than needed: the spare ones own nothing.
        let plan = tenant_plan(&ids(10), &accounts(3));
        assert_eq!(plan.owned.len(), 1);
        // None at all: everybody is polled.
        let plan = tenant_plan(&ids(700), &[]);
        assert_eq!((plan.owned.len(), plan.unowned.len()), (0, 700));
    }
}
