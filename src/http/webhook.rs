//! `POST /api/notifications` and `POST /api/lifecycle`: Graph's change-notification webhook.
//!
//! Both routes answer Graph's validation handshake: `?validationToken=X` gets 200,
//! `text/plain`, body X URL-decoded (within 10 s; in payload mode the host passes the
//! original URL, so the token arrives percent-encoded either way and is decoded here).
//!
//! Everything after the handshake is [`crate::engine::notifications`] (whose module doc
//! lists the steps in their order); this module maps its outcome to an answer and writes
//! one log line per request:
//!
//! * a body that is not a batch is 400; anything else is 202, including batches whose items
//!   are all rejected, so a forger gets no retry loop and learns nothing;
//! * 503 only when we could not record (a store read or write failed, or no signing keys can
//!   be had): Graph then delivers the batch again, and change detection makes the items
//!   already recorded publish nothing the second time;
//! * under the Functions host what accepted items publish lands in the invocation's
//!   [`Outbox`] (request extension) and becomes the `message` output binding.
//!
//! Logs carry subscription ids, counts and rejection reasons: never bodies, tokens, keys or
//! `clientState`.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use chrono::Utc;

use super::ApiError;
use crate::engine::notifications::{self, Checks, DeliverAgain, NotAccepted};
use crate::engine::publish::Outbox;
use crate::http::state::AppState;

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

fn checks(state: &AppState) -> Checks<'_> {
    Checks {
        ctx: &state.ctx,
        token_keys: &state.token_keys,
        subscriptions: &state.subscriptions,
    }
}

/// 400 for a body that is not a batch, 503 (with what failed) for one to deliver again,
/// logged here: the one line of a request that was not accepted.
fn not_accepted(e: NotAccepted, route: &'static str, bytes: usize) -> Response {
    match e {
        NotAccepted::Malformed(e) => {
            tracing::warn!(route, bytes, "rejected notification body: {e}");
            ApiError::BadRequest(e.to_string()).into_response()
        }
        NotAccepted::DeliverAgain(e) => {
            match &e {
                DeliverAgain::Record {
                    tally,
                    users,
                    error,
                } => tracing::error!(
                    route,
                    items = tally.items,
                    accepted = tally.accepted,
                    rejected = tally.rejected.len(),
                    published = tally.published,
                    failed = users.len(),
                    user_id = users.first().map(String::as_str).unwrap_or(""),
                    %error,
                    "{e}"
                ),
                _ => tracing::error!(
                    route,
                    error = %std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default(),
                    "{e}"
                ),
            }
            ApiError::Unavailable(format!("{e}; deliver again later")).into_response()
        }
    }
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
    let outbox = outbox.map(|Extension(o)| o);
    match notifications::accept(checks(&state), outbox.as_ref(), &body, Utc::now()).await {
        Ok(tally) => {
            tracing::info!(
                items = tally.items,
                accepted = tally.accepted,
                rejected = tally.rejected.len(),
                published = tally.published,
                unpublished = tally.unpublished.len(),
                rejections = %tally.rejections(),
                "notification batch"
            );
            StatusCode::ACCEPTED.into_response()
        }
        Err(e) => not_accepted(e, "notifications", body.len()),
    }
}

async fn lifecycle(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    if let Some(token) = validation_token(query.as_deref()) {
        return handshake(token, "lifecycle");
    }
    match notifications::accept_lifecycle(checks(&state), &body, Utc::now()).await {
        Ok(tally) => {
            tracing::info!(
                items = tally.items,
                recorded = tally.recorded,
                rejected = tally.rejected.len(),
                rejections = %notifications::rejections(&tally.rejected),
                "lifecycle batch"
            );
            StatusCode::ACCEPTED.into_response()
        }
        Err(e) => not_accepted(e, "lifecycle", body.len()),
    }
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
