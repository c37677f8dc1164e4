//! `POST /api/pbx/events`: the generic PBX adapter's inbound side, the same in `serve` and
//! under the Functions host (`pbx-events`). The body, its authentication (bearer secret or
//! HMAC signature) are `clients::pbx::events`, replay protection across instances
//! `engine::guards`; this route turns the outcome into a status and hands accepted events to
//! the sync. On any error nothing changes.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use serde_json::json;

use crate::clients::pbx::events::{AuthHeaders, EventsError};
use crate::engine::guards::{accept_pbx_events, PbxEventsError};
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
        .sync()
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
    // Replays are refused across instances: the guard is in the store.
    match accept_pbx_events(&state.store, auth, &body, &secret, now).await {
        Ok(events) => {
            let n = events.len();
            sync.on_events(events, now).await;
            (StatusCode::ACCEPTED, Json(json!({ "accepted": n }))).into_response()
        }
        Err(PbxEventsError::Refused(e @ EventsError::Unauthorized { .. })) => {
            tracing::warn!(reason = %e.log_reason(), "PBX event refused");
            unauthorized()
        }
        Err(PbxEventsError::Refused(e)) => {
            tracing::info!(error = %e, "malformed PBX event refused");
            ApiError::BadRequest(e.to_string()).into_response()
        }
        Err(PbxEventsError::Store(e)) => {
            tracing::error!(error = %e, "cannot check PBX events for replays");
            ApiError::Unavailable("cannot check for replays; send again later".into())
                .into_response()
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

/// The PBX part of the status page and `/api/status`.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PbxView {
    /// Whether the PBX connection is up.
    pub connected: bool,
    /// One line about it.
    pub detail: String,
    /// One row per mapped extension.
    pub extensions: Vec<PbxRow>,
}

/// One mapped extension as the status page shows it.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PbxRow {
    /// The extension.
    pub extension: String,
    /// The Teams user.
    pub user_id: String,
    /// Line state last seen.
    pub line: Option<String>,
    /// PBX status profile last seen.
    pub profile: Option<String>,
    /// Teams presence last seen.
    pub teams: Option<String>,
    /// Last write to Teams and when.
    pub last_to_teams: Option<(String, chrono::DateTime<Utc>)>,
    /// Last write to the PBX and when.
    pub last_to_pbx: Option<(String, chrono::DateTime<Utc>)>,
    /// Last failed write.
    pub last_error: Option<String>,
}

/// The PBX status, when a PBX is configured.
pub async fn view(state: &AppState) -> Option<PbxView> {
    let sync = state.pbx.as_ref()?;
    let (connected, detail) = sync.health();
    let extensions = sync
        .rows()
        .await
        .into_iter()
        .map(|r| PbxRow {
            extension: r.extension,
            user_id: r.user_id,
            line: r.line,
            profile: r.profile,
            teams: r.teams,
            last_to_teams: r.last_to_teams,
            last_to_pbx: r.last_to_pbx,
            last_error: r.last_error,
        })
        .collect();
    Some(PbxView {
        connected,
        detail,
        extensions,
    })
}
