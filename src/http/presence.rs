//! `GET /api/presence/{userId}`: the last known presence, so a new edge can start with the
//! current state instead of waiting for the next change.
//!
//! The body is a `presence.changed` message (without `previous`), so an edge applies it with
//! the code it uses for the topic. Under the Functions host the function is `authLevel:
//! function` (the host checks the key before the request reaches us); in `serve`, setting
//! `PRESENCE_API_TOKEN` requires `Authorization: Bearer <token>`.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::ExposeSecret;

use super::ApiError;
use crate::core::message::{PresenceChanged, TopicMessage};
use crate::http::state::{AppState, Mode};
use crate::store::PresenceRecord;

/// Registers the route.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new().route("/api/presence/{user_id}", axum::routing::get(get_presence))
}

fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    if state.mode == Mode::Handler {
        return true; // the Functions host enforced the function key
    }
    let Some(expected) = &state.settings.access.presence_api_token else {
        return true;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let expected = expected.expose_secret();
    given.len() == expected.len() && openssl::memcmp::eq(given.as_bytes(), expected.as_bytes())
}

async fn get_presence(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&state, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(serde_json::json!({"error": "unauthorized", "message": "a valid bearer token is required"})),
        )
            .into_response();
    }
    if user_id.is_empty() || user_id.len() > 128 {
        return ApiError::BadRequest("not a user id".into()).into_response();
    }
    match state
        .store
        .get::<PresenceRecord>(&user_id, "presence")
        .await
    {
        Ok(Some(rec)) => {
            let rec = rec.value;
            let msg = TopicMessage::PresenceChanged(PresenceChanged::from_change(
                &rec.user_id,
                &rec.tenant_id,
                &rec.last,
                None,
            ));
            ([(header::CACHE_CONTROL, "no-store")], Json(msg.to_json())).into_response()
        }
        Ok(None) => ApiError::NotFound.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read presence");
            ApiError::Unavailable("the store is unavailable".into()).into_response()
        }
    }
}
