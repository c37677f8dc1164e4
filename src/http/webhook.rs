//! `POST /api/notifications` and `POST /api/lifecycle`: Graph's change-notification webhook.
//!
//! Both routes answer Graph's validation handshake: `?validationToken=X` gets 200,
//! `text/plain`, body X URL-decoded (within 10 s; in payload mode the host passes the
//! original URL, so the token arrives percent-encoded either way and is decoded here).
//!
//! Notifications (the checks themselves are in [`crate::clients::graph::notification`]):
//!
//! * a body that is not a batch is 400; anything else is 202, including batches whose items
//!   are all rejected, so a forger gets no retry loop and learns nothing;
//! * the batch's validation tokens are checked first, so items no token vouches for cost no
//!   store read (a forged batch naming 64 subscriptions used to cost 64);
//! * 503 only when we could not record (a store read or write failed, or no signing keys can
//!   be had): Graph then delivers the batch again, and change detection makes the items
//!   already recorded publish nothing the second time;
//! * accepted items go through [`crate::engine::pipeline::record_and_publish_batch`], the same path as
//!   polling; under the Functions host what they publish lands in the invocation's
//!   [`Outbox`] (request extension) and becomes the `message` output binding.
//!
//! Logs carry subscription ids, counts and rejection reasons: never bodies, tokens, keys or
//! `clientState`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use chrono::Utc;

use super::ApiError;
use crate::clients::graph::notification::{
    self, loggable_id, ChangeNotification, LifecycleNotification, Rejection,
};
use crate::clients::graph::validation_token;
use crate::core::presence::Observation;
use crate::engine::pipeline::{self, PipelineError};
use crate::engine::publish::Outbox;
use crate::http::state::AppState;
use crate::store::{Etag, Store, StoreError, SubscriptionRecord, Table};

/// At most this many distinct subscriptions are looked up per request (Graph batches
/// carry one or a few; a tenant-mode subscription covers 650 users). Items of further
/// subscriptions are rejected as unknown, which bounds what a forged batch costs.
pub const MAX_SUBSCRIPTIONS_PER_BATCH: usize = 64;

/// Batches of at most this many items are decrypted on the async worker (one RSA operation,
/// about 0.2 ms); larger ones on the blocking pool.
const OPEN_INLINE: usize = 1;

/// The webhook's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/notifications", post(notifications))
        .route("/api/lifecycle", post(lifecycle))
}

/// The `validationToken` query parameter, URL-decoded.
fn validation_token(raw_query: Option<&str>) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw_query?)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "validationToken")
        .map(|(_, v)| v)
}

fn handshake(token: String, route: &'static str) -> Response {
    tracing::info!(route, "answered validation handshake");
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/plain"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        token,
    )
        .into_response()
}

fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

/// Looks up the subscriptions a batch names. Ids that cannot be Graph's (or beyond the
/// per-batch cap) are not looked up and stay unknown.
async fn lookup_subscriptions<'a>(
    state: &AppState,
    ids: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, Arc<SubscriptionRecord>>, StoreError> {
    let mut found = HashMap::new();
    let mut looked = HashSet::new();
    for id in ids {
        if looked.contains(id)
            || looked.len() >= MAX_SUBSCRIPTIONS_PER_BATCH
            || id.is_empty()
            || loggable_id(id) != id
        {
            continue;
        }
        looked.insert(id.to_owned());
        if let Some(v) = state
            .subscriptions
            .get(&state.store, id, "subscription")
            .await?
        {
            found.insert(id.to_owned(), v);
        }
    }
    Ok(found)
}

/// The subscriptions a batch names, all from the cache with the ETags they were read at,
/// without asking the store; `None` when one is not cached (or could not be looked up at
/// all), and the batch takes [`lookup_subscriptions`].
#[expect(
    clippy::type_complexity,
    reason = "the two halves of one answer, each named where it is built and taken apart"
)]
fn cached_subscriptions(
    state: &AppState,
    items: &[ChangeNotification],
) -> Option<(
    HashMap<String, Arc<SubscriptionRecord>>,
    Vec<(Table, String, String, Etag)>,
)> {
    let mut found = HashMap::new();
    let mut unchanged = Vec::new();
    for item in items {
        let id = item.subscription_id.as_str();
        if found.contains_key(id) {
            continue;
        }
        if found.len() >= MAX_SUBSCRIPTIONS_PER_BATCH || id.is_empty() || loggable_id(id) != id {
            return None;
        }
        let (etag, record) = state.subscriptions.known(id, "subscription")?;
        unchanged.push((
            Table::Subscriptions,
            id.to_owned(),
            "subscription".to_owned(),
            etag,
        ));
        found.insert(id.to_owned(), record);
    }
    Some((found, unchanged))
}

fn unavailable(what: &str) -> Response {
    ApiError::Unavailable(format!("{what}; deliver again later")).into_response()
}

async fn notifications(
    State(state): State<AppState>,
    outbox: Option<Extension<Outbox>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    if let Some(token) = validation_token(query.as_deref()) {
        return handshake(token, "notifications");
    }
    let now = Utc::now();
    let batch = match notification::parse_batch::<ChangeNotification>(&body) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(bytes = body.len(), "rejected notification body: {e}");
            return ApiError::BadRequest(e.to_string()).into_response();
        }
    };
    let total = batch.items.len();
    let mut rejected: Vec<(String, Rejection)> = Vec::new();
    let items: Vec<ChangeNotification> = batch
        .items
        .into_iter()
        .filter_map(|i| i.map_err(|r| rejected.push((String::new(), r))).ok())
        .collect();
    // Step 1: validation tokens, against the cached signing keys, before anything costs a
    // store read: an unauthenticated batch is turned away here whatever it names.
    let vouched = if items.is_empty() {
        HashSet::new()
    } else {
        match state.settings.app.client_id.as_deref() {
            None => {
                tracing::error!(
                    "AZURE_CLIENT_ID is not set: validation tokens cannot be checked, notifications are dropped"
                );
                HashSet::new()
            }
            Some(client_id) => match validation_token::vouched_tenants(
                &state.token_keys,
                &batch.validation_tokens,
                client_id,
                now,
            )
            .await
            {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "cannot check validation tokens");
                    return unavailable("cannot check validation tokens");
                }
            },
        }
    };
    let items: Vec<ChangeNotification> = items
        .into_iter()
        .filter_map(|item| {
            let tenant = item.tenant_id.as_deref().map(str::to_ascii_lowercase);
            if tenant.is_some_and(|t| vouched.contains(&t)) {
                Some(item)
            } else {
                rejected.push((item.subscription_id, Rejection::NoValidToken));
                None
            }
        })
        .collect();

    // Step 2: the subscriptions of what is left; subscription, clientState, tenant. On
    // SQLite, when every subscription named is in the cache, the checks and the decryption
    // use the cached records and the record transaction confirms their ETags (one store
    // round trip less per request). If that confirmation fails, or anything is rejected
    // against a cached record, the whole batch is checked again against the store's current
    // records: nothing is accepted or dropped on a stale copy.
    let items = Arc::new(items);
    let mut cached = match &state.store {
        Store::Sqlite(_) => cached_subscriptions(&state, &items),
        _ => None,
    };
    let outbox = outbox.map(|Extension(o)| o);
    let (mut published, mut store_failed) = (0usize, false);
    let mut accepted_items: usize;
    loop {
        let (subs, unchanged) = match cached.take() {
            Some((subs, unchanged)) => (subs, Some(unchanged)),
            None => {
                match lookup_subscriptions(&state, items.iter().map(|i| i.subscription_id.as_str()))
                    .await
                {
                    Ok(s) => (s, None),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read subscriptions");
                        return unavailable("cannot read subscriptions");
                    }
                }
            }
        };
        let mut refused: Vec<(String, Rejection)> = Vec::new();
        let mut to_open = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let sub = subs.get(&item.subscription_id);
            match notification::check_subscription(
                item.client_state.as_ref(),
                item.tenant_id.as_deref(),
                sub.map(|s| &**s),
            ) {
                // The record itself goes along (a tenant-mode one lists 650 users: no copy).
                Ok(_) => to_open.push((i, sub.cloned().expect("a matched item has one"))),
                Err(r) => refused.push((item.subscription_id.clone(), r)),
            }
        }

        // Step 3: RSA unwrap, HMAC, AES. One item (a quarter of a millisecond) is opened
        // right here: the trip to the blocking pool and back cost a tenth of that again.
        // More go to the blocking pool, so a batch never holds up the async workers for long.
        let keys = state.notification_keys.clone();
        let all = items.clone();
        let open_all = move |to_open: Vec<(usize, Arc<SubscriptionRecord>)>| {
            to_open
                .into_iter()
                .map(|(i, sub)| (i, notification::open(&all[i], &*sub, &keys, now)))
                .collect::<Vec<_>>()
        };
        let opened: Vec<(usize, Result<Observation, Rejection>)> = if to_open.len() <= OPEN_INLINE {
            open_all(to_open)
        } else {
            match tokio::task::spawn_blocking(move || open_all(to_open)).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(error = %e, "decryption task failed");
                    return unavailable("decryption failed");
                }
            }
        };
        let mut observations = Vec::with_capacity(opened.len());
        for (i, r) in opened {
            match r {
                Ok(o) => observations.push(o),
                Err(reason) => refused.push((items[i].subscription_id.clone(), reason)),
            }
        }
        if unchanged.is_some() && !refused.is_empty() {
            continue;
        }

        // Record and publish, in batch order (two changes of one user stay ordered), the
        // whole batch in one store transaction where the store has them.
        accepted_items = observations.len();
        let user_ids: Vec<String> = observations.iter().map(|o| o.user_id.clone()).collect();
        let results = if observations.is_empty() {
            Ok(Some(Vec::new()))
        } else {
            pipeline::record_and_publish_batch(
                &state.store,
                &state.publisher,
                outbox.as_ref(),
                unchanged.unwrap_or_default(),
                observations,
            )
            .await
        };
        rejected.extend(refused);
        match results {
            // A subscription moved since it was cached: check everything again.
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(error = %e, items = accepted_items, "cannot record presence");
                store_failed = true;
            }
            Ok(Some(results)) => {
                for (user_id, r) in user_ids.iter().zip(results) {
                    match r {
                        Ok(true) => published += 1,
                        Ok(false) => {}
                        Err(PipelineError::Store(e)) => {
                            tracing::error!(user_id = %user_id, error = %e, "cannot record presence");
                            store_failed = true;
                        }
                        Err(PipelineError::Publish(e)) => {
                            // Stored: a retry would find nothing new, so this is not Graph's to repeat.
                            tracing::warn!(user_id = %user_id, error = %e, "presence recorded but not published");
                        }
                    }
                }
            }
        }
        break;
    }
    for (sub_id, reason) in &rejected {
        tracing::warn!(subscription_id = %loggable_id(sub_id), reason = reason.as_str(), "notification rejected");
    }
    tracing::info!(
        items = total,
        accepted = accepted_items,
        rejected = rejected.len(),
        published,
        "notification batch"
    );
    if store_failed {
        return unavailable("cannot record presence");
    }
    accepted()
}

async fn lifecycle(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    if let Some(token) = validation_token(query.as_deref()) {
        return handshake(token, "lifecycle");
    }
    let now = Utc::now();
    let batch = match notification::parse_batch::<LifecycleNotification>(&body) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(bytes = body.len(), "rejected lifecycle body: {e}");
            return ApiError::BadRequest(e.to_string()).into_response();
        }
    };
    let items: Vec<LifecycleNotification> = batch
        .items
        .into_iter()
        .filter_map(|i| {
            i.map_err(|r| tracing::warn!(reason = r.as_str(), "lifecycle item rejected"))
                .ok()
        })
        .collect();
    let subs = match lookup_subscriptions(&state, items.iter().map(|i| i.subscription_id.as_str()))
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot read subscriptions");
            return unavailable("cannot read subscriptions");
        }
    };
    for item in &items {
        let sub = subs.get(&item.subscription_id).map(|s| &**s);
        // The tenant is not a secret here (clientState is); a missing one means the
        // subscription's own.
        let tenant = item
            .tenant_id
            .as_deref()
            .or(sub.map(|s| s.tenant_id.as_str()));
        let checked = notification::check_subscription(item.client_state.as_ref(), tenant, sub)
            .and_then(|_| item.event());
        let (Some(sub), Ok(event)) = (sub, checked) else {
            let reason = checked.err().unwrap_or(Rejection::UnknownSubscription);
            tracing::warn!(subscription_id = %loggable_id(&item.subscription_id), reason = reason.as_str(), "lifecycle item rejected");
            continue;
        };
        if let Err(e) =
            crate::engine::lifecycle::on_lifecycle_event(&state.store, sub, event, now).await
        {
            tracing::error!(subscription_id = %sub.subscription_id, error = %e, "cannot record lifecycle event");
            return unavailable("cannot record lifecycle event");
        }
    }
    accepted()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_token_is_url_decoded_once() {
        let cases = [
            (Some("validationToken=abc"), Some("abc")),
            (
                Some("validationToken=Validation%3A%20Testing%20client+application%2Breach"),
                Some("Validation: Testing client application+reach"),
            ),
            (Some("code=x&validationToken=%2525"), Some("%25")),
            (Some("validationtoken=abc"), None),
            (Some(""), None),
            (None, None),
        ];
        for (q, want) in cases {
            assert_eq!(validation_token(q).as_deref(), want, "{q:?}");
        }
    }
}
