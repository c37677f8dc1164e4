//! `POST /api/pbx/events`: the generic PBX adapter's inbound side, the same in `serve` and
//! under the Functions host (`pbx-events`). The body, its authentication (bearer secret or
//! HMAC signature) and replay protection are `clients::pbx::events`; this route turns the
//! outcome into a status and hands accepted events to the sync. On any error nothing
//! changes.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use serde_json::json;

use crate::clients::pbx::events::{accept, AuthHeaders, EventsError};
use crate::http::state::AppState;
use crate::http::ApiError;

/// The route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/pbx/events", post(events))
}

async fn events(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(sync) = state.pbx.clone() else {
        return ApiError::NotFound.into_response();
    };
    let Some(secret) = state
        .settings
        .pbx
        .as_ref()
        .and_then(|p| p.events_secret.clone())
    else {
        tracing::warn!("a PBX event arrived but PBX_EVENTS_SECRET is not set: refused");
        return unauthorized();
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let auth = AuthHeaders {
        authorization: header("authorization"),
        signature: header("x-signature"),
    };
    let now = Utc::now();
    let accepted = {
        let mut guard = state.pbx_replay.lock().unwrap_or_else(|p| p.into_inner());
        accept(auth, &body, &secret, now, &mut guard)
    };
    match accepted {
        Ok(events) => {
            let n = events.len();
            sync.on_events(events, now).await;
            (StatusCode::ACCEPTED, Json(json!({ "accepted": n }))).into_response()
        }
        Err(e @ EventsError::Unauthorized { .. }) => {
            tracing::warn!(reason = %e.log_reason(), "PBX event refused");
            unauthorized()
        }
        Err(e) => {
            tracing::info!(error = %e, "malformed PBX event refused");
            ApiError::BadRequest(e.to_string()).into_response()
        }
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "error": "unauthorized", "message": "unauthorized" })),
    )
        .into_response()
}
