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
//! * recreates one created with a certificate that is no longer the ring's current one (Graph
//!   keeps encrypting for the certificate a subscription was created with; a renewal cannot
//!   change it), so the previous certificate can be retired after one run;
//! * removes subscriptions for users who are gone, or whose owner changed.
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

use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;

use crate::clients::graph::client::{GraphError, NewSubscription, MAX_IDS_PER_CALL};
use crate::clients::graph::notification::{self, LifecycleEvent};
use crate::engine::context::Context;
use crate::engine::poller::Poller;
use crate::store::{StoreError, SubscriptionRecord, UserRecord, UserState};

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

/// Whether subscriptions can be used at all, and the notification and lifecycle URLs.
fn urls(state: &Context) -> Result<Endpoints, String> {
    let base = state
        .settings
        .public_base_url
        .as_ref()
        .ok_or("PUBLIC_BASE_URL is not set: presence is polled only")?;
    // Graph only delivers to HTTPS; loopback HTTP is allowed for local tests with a fake.
    let loopback = matches!(base.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if base.scheme() != "https" && !loopback {
        return Err(
            "PUBLIC_BASE_URL must be https for change notifications: presence is polled only"
                .into(),
        );
    }
    if state.notification_keys.current().is_none() {
        return Err("no notification certificate: presence is polled only".into());
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
    if settings.tenant_users.is_empty() {
        return None;
    }
    let plan = tenant_plan(&settings.tenant_users, &settings.tenant_sync_users);
    let live: Vec<&SubscriptionRecord> = subscriptions
        .iter()
        .filter(|s| s.expires_at > now)
        .collect();
    let covered: std::collections::HashSet<&str> = live
        .iter()
        .flat_map(|s| s.user_ids.iter().map(String::as_str))
        .collect();
    let subscribed = settings
        .tenant_users
        .iter()
        .filter(|u| covered.contains(u.as_str()))
        .count();
    let mut reasons = Vec::new();
    if settings.tenant_sync_users.is_empty() {
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
        users: settings.tenant_users.len(),
        sync_accounts: settings.tenant_sync_users.len(),
        subscribed,
        polled: settings.tenant_users.len() - subscribed,
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
    if !s.tenant_users.is_empty() {
        let plan = tenant_plan(&s.tenant_users, &s.tenant_sync_users);
        // Said once when it starts or changes (runs come every minute in `serve`).
        static LAST_SHORTFALL: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
        let why = plan.shortfall();
        let mut last = LAST_SHORTFALL.lock().unwrap_or_else(|p| p.into_inner());
        if *last != why {
            match &why {
                Some(why) => tracing::warn!(
                    polled = plan.unowned.len(),
                    users = s.tenant_users.len(),
                    sync_accounts = plan.sync_accounts,
                    "{why}"
                ),
                None => tracing::info!(
                    users = s.tenant_users.len(),
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
                tenant: s.tenant.clone(),
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
            report.disabled = Some(why);
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
                tracing::warn!(subscription = %rec.subscription_id, error = %e, "no token to act on a lifecycle event");
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
                        tracing::warn!(subscription = %rec.subscription_id, error = %e, "reauthorization failed; recreating");
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
                tracing::debug!(owner = %d.owner, error = %e, "no token to keep a subscription");
                report.failed += 1;
                continue;
            }
        };
        match existing {
            Some(rec) if rec.certificate_id != current_cert => {
                // Created for a certificate that is no longer current: Graph would go on
                // encrypting for it until the subscription ends, so replace it now. One
                // presence subscription per user per app: the old one goes first, and its
                // users are polled at once for what the gap might hide.
                tracing::info!(subscription = %rec.subscription_id, "the notification certificate rotated; recreating the subscription");
                match state
                    .graph
                    .delete_subscription(&token, &rec.subscription_id)
                    .await
                {
                    Ok(()) | Err(GraphError::NotFound) => {}
                    Err(e) => {
                        tracing::warn!(subscription = %rec.subscription_id, error = %e, "cannot delete the subscription to recreate it");
                        report.failed += 1;
                        continue;
                    }
                }
                forget(state, &rec).await;
                for u in &rec.user_ids {
                    poller.poll_soon(u);
                }
                create(state, &token, &d, &endpoints, now, &known, &mut report).await;
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
                    tracing::info!(subscription = %rec.subscription_id, "Graph no longer knows the subscription; recreating");
                    forget(state, &rec).await;
                    create(state, &token, &d, &endpoints, now, &known, &mut report).await;
                }
                Err(e) => {
                    tracing::warn!(subscription = %rec.subscription_id, error = %e, "renewal failed");
                    report.failed += 1;
                    if rec.expires_at <= now {
                        forget(state, &rec).await;
                    }
                }
            },
            None => create(state, &token, &d, &endpoints, now, &known, &mut report).await,
        }
    }
    if report != RenewReport::default() {
        tracing::info!(?report, "subscriptions maintained");
    }
    report
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
        tracing::info!(owner = %d.owner, "a subscription for these users already exists; replacing it");
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
            tracing::warn!(owner = %d.owner, error = %e, "cannot create a presence subscription; polling instead");
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
