//! `POST /api/auth/device`: "Sign in with a code" on `serve`'s status page. The device-code
//! flow of `teams-presence login`, started from the page for a machine without a terminal at
//! hand (the Home Assistant add-on, a Pi): the page shows the code and Microsoft's address
//! until the person has entered it, then who signed in or why not.
//!
//! Guarded like the page (`crate::http::access`), and the form carries the page's form token,
//! so a page on another site cannot start a flow through a visitor's browser. One flow at a
//! time. The browser sign-in (`/api/auth/start`) needs a redirect back to this server, which
//! an authenticating proxy such as Home Assistant's ingress does not let through; a device code
//! needs nothing back.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use chrono::Utc;
use serde::Deserialize;

use crate::engine::device_code::{DeviceSignInError, Flow};
use crate::http::state::{AppState, Mode};

/// The route, behind the status page's guard.
pub fn routes(state: AppState) -> axum::Router<AppState> {
    axum::Router::new().route(
        "/api/auth/device",
        axum::routing::post(start).route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::http::access::guard,
        )),
    )
}

#[derive(Deserialize)]
struct StartForm {
    form_token: String,
}

/// Back to the status page, relative so a path prefix in front of the server stays.
fn back_to_page() -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "../../"),
            (header::CACHE_CONTROL, "no-store"),
        ],
    )
        .into_response()
}

async fn start(State(state): State<AppState>, Form(form): Form<StartForm>) -> Response {
    if state.mode != Mode::Serve {
        return super::ApiError::NotFound.into_response();
    }
    if !state.page_sign_in.form_token_matches(&form.form_token) {
        return (
            StatusCode::FORBIDDEN,
            "This form is out of date: reload the status page and press the button again.",
        )
            .into_response();
    }
    let now = Utc::now();
    if !state.page_sign_in.begin(now) {
        // A flow is already waiting: the page shows its code.
        return back_to_page();
    }
    let entra = match state.tokens.entra() {
        Ok(e) => e.clone(),
        Err(e) => {
            state.page_sign_in.set(Flow::Failed {
                reason: e.to_string(),
                at: now,
            });
            return back_to_page();
        }
    };
    let code = match entra.device_code().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a device-code sign-in");
            state.page_sign_in.set(Flow::Failed {
                reason: format!("Microsoft did not hand out a code: {e} (the app registration needs \"Allow public client flows\")"),
                at: Utc::now(),
            });
            return back_to_page();
        }
    };
    tracing::info!("device-code sign-in started from the status page");
    state.page_sign_in.set(Flow::Waiting {
        user_code: code.user_code.clone(),
        verification_uri: code.verification_uri.clone(),
        expires_at: now + chrono::Duration::seconds(i64::try_from(code.expires_in).unwrap_or(900)),
    });
    tokio::spawn(async move {
        let result = crate::engine::device_code::finish(
            &state.ctx,
            &state.token_keys,
            &entra,
            &code,
            std::time::Duration::from_secs(3600),
            || {},
        )
        .await;
        let at = Utc::now();
        let next = match result {
            Ok(user) => {
                tracing::info!(user_id = %user.user_id, "signed in with a device code from the status page");
                state.on_signed_in(&user.user_id).await;
                Flow::SignedIn {
                    who: if user.display_name.is_empty() {
                        user.upn
                    } else {
                        user.display_name
                    },
                    at,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "device-code sign-in from the status page ended");
                let reason = match e {
                    DeviceSignInError::Expired => {
                        "the code expired before anyone entered it".to_owned()
                    }
                    e => format!("{e:#}"),
                };
                Flow::Failed { reason, at }
            }
        };
        state.page_sign_in.set(next);
    });
    back_to_page()
}
