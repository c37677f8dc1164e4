//! Keeping Graph presence subscriptions alive: what `subscriptions-renew` and `serve`'s
//! scheduler run.
//!
//! Presence subscriptions live at most 60 minutes and Graph allows one per user per app.
//! Each run works out the subscriptions we want (personal mode: one per active user, created
//! with that user's delegated token; tenant mode: bulk ones of at most 650 ids, created with
//! `TENANT_SYNC_USER`'s token, since app-only tokens cannot subscribe to presence), then:
//!
//! * creates the missing ones (random `clientState`, stored only as a SHA-256 digest);
//! * renews those expiring within [`RENEW_BEFORE`] (PATCH to 59 minutes ahead);
//! * recreates one Graph no longer knows (404 on renew);
//! * on 409 (a subscription for the user exists that we have no record of, e.g. after a lost
//!   store) finds it with `GET /subscriptions`, deletes it and creates ours: we cannot adopt it
//!   as-is because we never knew its `clientState`;
//! * acts on lifecycle marks the webhook left (`reauthorizationRequired` → reauthorize,
//!   `subscriptionRemoved` → recreate, `missed` → recreate and poll at once);
//! * removes subscriptions for users who are gone.
//!
//! A user whose subscription cannot be kept simply has none stored; the poller then polls them
//! every `POLL_INTERVAL` instead of rarely (the status page shows "polling").

use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;

use crate::clients::graph::client::{GraphError, NewSubscription, MAX_IDS_PER_CALL};
use crate::clients::graph::notification::LifecycleEvent;
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

async fn desired(state: &Context) -> Result<Vec<Desired>, StoreError> {
    let s = &state.settings;
    if !s.tenant_users.is_empty() {
        let Some(owner) = s.tenant_sync_user.clone() else {
            return Ok(Vec::new());
        };
        return Ok(s
            .tenant_users
            .chunks(MAX_IDS_PER_CALL)
            .map(|ids| Desired {
                owner: owner.clone(),
                tenant: s.tenant.clone(),
                user_ids: ids.to_vec(),
                resource: bulk_resource(ids),
            })
            .collect());
    }
    Ok(state
        .store
        .list::<UserRecord>()
        .await?
        .into_iter()
        .map(|u| u.value)
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

    // Subscriptions nobody wants any more.
    for rec in have
        .iter()
        .filter(|h| !want.iter().any(|w| w.resource == h.resource))
    {
        if let Ok(token) = state.tokens.access_token(&rec.owner_user_id, None).await {
            let _ = state
                .graph
                .delete_subscription(&token, &rec.subscription_id)
                .await;
        }
        forget(state, rec).await;
        report.removed += 1;
    }

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
                    create(state, &token, &d, &endpoints, now, &mut report).await;
                }
                Err(e) => {
                    tracing::warn!(subscription = %rec.subscription_id, error = %e, "renewal failed");
                    report.failed += 1;
                    if rec.expires_at <= now {
                        forget(state, &rec).await;
                    }
                }
            },
            None => create(state, &token, &d, &endpoints, now, &mut report).await,
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
        // One presence subscription per user per app: a leftover we have no record of.
        tracing::info!(owner = %d.owner, "a subscription for these users already exists; replacing it");
        if let Ok(list) = state.graph.list_subscriptions(token).await {
            for old in list.iter().filter(|s| {
                s.resource.trim_start_matches('/') == d.resource.trim_start_matches('/')
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
}
