//! The boundary error every `/api` route answers with, and the one way a caller-supplied
//! value reaches a log line. Re-exported by `http`, so its users name `crate::http::ApiError`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

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
    /// 503: a dependency (store, Graph) is unavailable; retry later.
    #[error("{0}")]
    Unavailable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        (
            status,
            Json(json!({"error": code, "message": self.to_string()})),
        )
            .into_response()
    }
}
