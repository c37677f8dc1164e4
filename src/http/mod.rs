//! The `/api/...` routes, the same in `handler` (forwarded or payload mode) and `serve`.
//!
//! Each capability registers its own routes in its module; this one assembles them. The
//! boundary error type that turns into a response lives in `error.rs`, a file the routes use
//! without reaching back into the router that uses them (tests/integration/architecture.rs).

pub mod access;
pub mod auth;
pub mod device;
mod error;
pub mod html;
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
pub use error::{loggable, ApiError, LOGGED_VALUE_MAX};

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
        .merge(device::routes(state.clone()))
        .merge(presence::routes())
        .merge(webhook::routes())
        .merge(pbx::routes())
        .fallback(not_found)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
        .with_state(state)
}

/// Problems a role knows of beside the settings, one line each, handed to `/api/health` as a
/// request extension (the handler: Key Vault certificates not loaded yet, `host::certificates`).
/// Lines hold names and fixed text only, never a value or an address with secrets.
#[derive(Debug, Clone, Default)]
pub struct HealthProblems(pub Vec<String>);

/// 200 `ok`; 503 `degraded` with one line per setting App Service left as an unresolved Key
/// Vault reference and per [`HealthProblems`] line (the functions that need one answer 503
/// with the same line). Before the handler's state is built, `host::startup` answers 503
/// `starting` itself.
async fn health(
    axum::extract::State(state): axum::extract::State<AppState>,
    more: Option<axum::Extension<HealthProblems>>,
) -> Response {
    let mut problems: Vec<String> = state
        .settings
        .unresolved_references
        .iter()
        .map(ToString::to_string)
        .collect();
    if let Some(axum::Extension(HealthProblems(more))) = more {
        problems.extend(more);
    }
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
