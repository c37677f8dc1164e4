//! The `/api/...` routes, the same in `handler` (forwarded or payload mode) and `serve`.
//!
//! Each capability registers its own routes in its module; this one assembles them and owns
//! the boundary error type that turns into a response.

pub mod access;
pub mod auth;
pub mod pbx;
pub mod presence;
pub mod state;
pub mod status;
pub mod status_words;
pub mod trace;
pub mod webhook;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::http::state::AppState;

/// How many characters of a caller-supplied value a log line keeps.
pub const LOGGED_VALUE_MAX: usize = 100;

/// A caller-supplied value made safe for a log line: control characters (CR, LF, ESC, ...)
/// escaped so it cannot start a forged line or drive a terminal, and at most
/// [`LOGGED_VALUE_MAX`] characters, marked with `…` when cut.
pub fn loggable(value: &str) -> String {
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == LOGGED_VALUE_MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Requests larger than this are refused with 413 before a handler sees them.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The API router.
pub fn api_router(state: AppState) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route(
            "/api/status",
            get(status::status_json).route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                access::guard,
            )),
        )
        .merge(auth::routes())
        .merge(presence::routes())
        .merge(webhook::routes())
        .merge(pbx::routes())
        .fallback(not_found)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
        .with_state(state)
}

/// 200 `ok`; 503 `degraded` with one line per setting App Service left as an unresolved Key
/// Vault reference (the functions that need one answer 503 with the same line). Before the
/// handler's state is built, `host::startup` answers 503 `starting` itself.
async fn health(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let problems: Vec<String> = state
        .settings
        .unresolved_references
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut body = json!({
        "status": if problems.is_empty() { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "mode": match state.mode { crate::http::state::Mode::Handler => "handler", crate::http::state::Mode::Serve => "serve" },
        "store": match state.store { crate::store::Store::Sqlite(_) => "sqlite", crate::store::Store::Table(_) => "table" },
    });
    if problems.is_empty() {
        return Json(body).into_response();
    }
    body["problems"] = json!(problems);
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

async fn not_found() -> Response {
    ApiError::NotFound.into_response()
}

/// The boundary error of every API route. Each variant's doc names its status. Messages
/// are fixed text or ids: never a token, key, clientState or request body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed; nothing was changed.
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such route or resource.
    #[error("not found")]
    NotFound,
    /// 501: the capability is not built yet.
    #[error("{0} is not implemented yet")]
    NotImplemented(&'static str),
    /// 503: a dependency (store, Graph) is unavailable; retry later.
    #[error("{0}")]
    Unavailable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::NotImplemented(_) => (StatusCode::NOT_IMPLEMENTED, "not_implemented"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        (
            status,
            Json(json!({"error": code, "message": self.to_string()})),
        )
            .into_response()
    }
}
