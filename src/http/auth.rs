//! `GET /api/auth/start` and `POST /api/auth/end`: the browser sign-in.
//!
//! The pending sign-in (state, sealed PKCE verifier, nonce, 10-minute expiry) is kept in the
//! store, not in a cookie: Entra's `form_post` callback is a cross-site POST, so SameSite=Lax
//! cookies would not come back with it. `state` is single use: the pending row is deleted with
//! its ETag before the code is redeemed, so a replay (even a concurrent one) finds nothing.
//! Every failure is a small HTML page that says what to do, with nothing stored.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use chrono::{Duration, Utc};
use serde::Deserialize;

use super::status::esc;
use crate::clients::entra::{pkce_pair, random_token, validate_id_token};
use crate::http::state::AppState;
use crate::store::{PendingSignIn, StoreError};

/// How long a started sign-in stays usable (Entra's codes live about as long).
const PENDING_LIFETIME_MINUTES: i64 = 10;

/// Registers the routes.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/auth/start", axum::routing::get(start))
        .route("/api/auth/end", axum::routing::post(end))
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{t}</title><style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    );
    (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

fn retry_link() -> &'static str {
    // Relative to /api/auth/end and /api/auth/start alike, so a path prefix stays.
    "<p><a href=\"start\">Start the sign-in again</a>.</p>"
}

#[derive(Deserialize)]
struct StartQuery {
    login_hint: Option<String>,
}

/// Who is asking, for the rate limit: the address the nearest proxy saw (the last
/// `X-Forwarded-For` entry: the Functions front end and tunnels append the peer they saw),
/// else one bucket for every direct caller. A forged header only moves a caller to another
/// bucket; the overall limit still holds.
fn client_key(headers: &HeaderMap) -> String {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rfind(|v| !v.is_empty())
        .map(|v| v.chars().take(64).collect())
        .unwrap_or_else(|| "direct".to_owned())
}

async fn start(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<StartQuery>,
) -> Response {
    // The limit is kept in the store, so every instance counts against the same one.
    match crate::engine::guards::sign_in_start(&state.store, &client_key(&headers), Utc::now())
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!("sign-in start rate limited");
            let mut r = page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many sign-ins",
                "<p>Too many sign-ins were started from here. Wait a minute and try again.</p>",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
            return r;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot check the sign-in start limit");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again in a moment",
                "<p>The store is not reachable right now.</p>",
            );
        }
    }
    let entra = match state.tokens.entra() {
        Ok(e) if e.is_confidential() => e.clone(),
        Ok(_) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in is not configured",
                "<p>The browser sign-in needs a client credential: set <code>AZURE_CLIENT_SECRET</code> or <code>AZURE_CLIENT_CERTIFICATE_PATH</code>. On a headless machine, <code>teams-presence login</code> signs in with a device code instead.</p>",
            )
        }
        Err(e) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in is not configured",
                &format!("<p>{}</p>", esc(&e.to_string())),
            )
        }
    };
    let (redirect, seal) = match (state.settings.redirect_uri(), state.tokens.seal()) {
        (Ok(r), Ok(s)) => (r, s.clone()),
        (Err(e), _) | (_, Err(e)) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in is not configured",
                &format!("<p>{}</p>", esc(&e.to_string())),
            )
        }
    };
    let login_hint = q
        .login_hint
        .filter(|h| h.len() <= 256 && !h.trim().is_empty());
    let now = Utc::now();
    let state_token = random_token(32);
    let (verifier, challenge) = pkce_pair();
    let nonce = random_token(16);
    let pending = PendingSignIn {
        state: state_token.clone(),
        code_verifier_sealed: seal.seal(verifier.as_bytes(), &format!("pkce:{state_token}")),
        nonce: nonce.clone(),
        created_at: now,
        expires_at: now + Duration::minutes(PENDING_LIFETIME_MINUTES),
    };
    if let Err(e) = state.store.insert(&pending).await {
        tracing::error!(error = %e, "cannot store the pending sign-in");
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again in a moment",
            "<p>The store is not reachable right now.</p>",
        );
    }
    let url = entra.authorize_url(
        &redirect,
        &state_token,
        &challenge,
        &nonce,
        login_hint.as_deref(),
    );
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, url.to_string()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response()
}

#[derive(Deserialize, Default)]
struct Callback {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn end(State(state): State<AppState>, body: Bytes) -> Response {
    let Ok(cb) = serde_urlencoded::from_bytes::<Callback>(&body) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            &format!(
                "<p>The sign-in answer could not be read.</p>{}",
                retry_link()
            ),
        );
    };
    let Some(state_token) = cb.state.filter(|s| !s.is_empty() && s.len() <= 128) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            &format!(
                "<p>This sign-in answer has no valid <code>state</code>.</p>{}",
                retry_link()
            ),
        );
    };
    // Single use: read, then delete with the ETag read. Whoever deletes it owns it.
    let pending = match state
        .store
        .get::<PendingSignIn>(&state_token, "pending")
        .await
    {
        Ok(Some(p)) => p,
        Ok(None) => {
            tracing::warn!("sign-in callback with an unknown or used state");
            return page(
                StatusCode::BAD_REQUEST,
                "Sign-in expired",
                &format!(
                    "<p>This sign-in was already used or has expired.</p>{}",
                    retry_link()
                ),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the pending sign-in");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again in a moment",
                "<p>The store is not reachable right now.</p>",
            );
        }
    };
    match state
        .store
        .delete::<PendingSignIn>(&state_token, "pending", Some(&pending.etag))
        .await
    {
        Ok(()) => {}
        Err(StoreError::NotFound | StoreError::PreconditionFailed) => {
            tracing::warn!("sign-in callback replayed concurrently");
            return page(
                StatusCode::BAD_REQUEST,
                "Sign-in expired",
                &format!("<p>This sign-in was already used.</p>{}", retry_link()),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot consume the pending sign-in");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again in a moment",
                "<p>The store is not reachable right now.</p>",
            );
        }
    }
    let pending = pending.value;
    let now = Utc::now();
    if pending.expires_at < now {
        return page(
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            &format!(
                "<p>The sign-in took longer than {PENDING_LIFETIME_MINUTES} minutes.</p>{}",
                retry_link()
            ),
        );
    }
    if let Some(error) = cb.error {
        // Entra's own words are safe to show (no secrets), but only the first sentence.
        let description = cb.error_description.unwrap_or_default();
        let first = description.split(['\r', '\n']).next().unwrap_or("");
        tracing::warn!(error = %super::loggable(&error), "Entra ID reported a sign-in error");
        let hint = if error == "access_denied" {
            "You (or your administrator) declined the permissions. Presence.Read.All is needed to see your Teams presence."
        } else {
            "Microsoft sign-in reported a problem."
        };
        return page(
            StatusCode::BAD_REQUEST,
            "Sign-in did not complete",
            &format!(
                "<p>{hint}</p><p><code>{}</code> {}</p>{}",
                esc(&error),
                esc(first),
                retry_link()
            ),
        );
    }
    let Some(code) = cb.code.filter(|c| !c.is_empty()) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            &format!(
                "<p>The answer carried no authorization code.</p>{}",
                retry_link()
            ),
        );
    };
    let (entra, seal, redirect) = match (
        state.tokens.entra(),
        state.tokens.seal(),
        state.settings.redirect_uri(),
    ) {
        (Ok(e), Ok(s), Ok(r)) => (e.clone(), s.clone(), r),
        _ => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in is not configured",
                "<p>See the status page for the settings to add.</p>",
            )
        }
    };
    let verifier = match seal.open(
        &pending.code_verifier_sealed,
        &format!("pkce:{}", pending.state),
    ) {
        Ok(v) => String::from_utf8_lossy(&v).into_owned(),
        Err(e) => {
            tracing::error!(error = %e, "cannot open the sealed PKCE verifier");
            return page(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                &format!(
                    "<p>This sign-in cannot be completed (the server's key changed).</p>{}",
                    retry_link()
                ),
            );
        }
    };
    let tokens = match entra.redeem_code(&code, &verifier, &redirect).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "code redemption failed");
            return page(
                StatusCode::BAD_GATEWAY,
                "Sign-in failed",
                &format!(
                    "<p>Microsoft sign-in refused the code: {}</p>{}",
                    esc(&e.to_string()),
                    retry_link()
                ),
            );
        }
    };
    let Some(id_token) = tokens.id_token.as_deref() else {
        return page(
            StatusCode::BAD_GATEWAY,
            "Sign-in failed",
            "<p>No id_token came back: add <code>openid profile</code> to AUTH_SCOPES.</p>",
        );
    };
    let kid = crate::clients::graph::validation_token::key_id(id_token).unwrap_or_default();
    let identity = match state.token_keys.keys_for(&[kid]).await {
        Ok(keys) => validate_id_token(
            id_token,
            &keys,
            entra.client_id(),
            Some(&pending.nonce),
            now,
        ),
        Err(e) => {
            tracing::error!(error = %e, "signing keys unavailable");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again in a moment",
                "<p>Microsoft's signing keys could not be fetched.</p>",
            );
        }
    };
    let identity = match identity {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "id_token rejected");
            return page(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                &format!(
                    "<p>The sign-in could not be verified ({}).</p>{}",
                    esc(&e.to_string()),
                    retry_link()
                ),
            );
        }
    };
    // Who may use this deployment, decided on the verified identity (never on login_hint).
    if !crate::engine::signins::allowed(&state.settings, &identity) {
        tracing::warn!(user_id = %identity.user_id, tenant_id = %identity.tenant_id, "sign-in refused: not in ALLOWED_TENANTS / ALLOWED_USERS");
        return page(
            StatusCode::FORBIDDEN,
            "Not allowed here",
            "<p>This presence service is limited to certain accounts, and yours is not one of them. Ask whoever runs it to add you.</p>",
        );
    }
    let user = match state.tokens.store_sign_in(&identity, &tokens, now).await {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "cannot store the signed-in user");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in failed",
                &format!("<p>{}</p>{}", esc(&e.to_string()), retry_link()),
            );
        }
    };
    tracing::info!(user_id = %user.user_id, "user signed in");
    state.on_signed_in(&user.user_id).await;
    let name = if user.display_name.is_empty() {
        &user.upn
    } else {
        &user.display_name
    };
    page(
        StatusCode::OK,
        "Connected",
        &format!(
            "<p>Signed in as <b>{}</b> ({}).</p><p>Your lights now follow your Teams presence: changes arrive within seconds, with a slower check as a safety net. If this sign-in ever stops working (for example after 90 days without use or a password reset), the status page and your lamp will say so, and you sign in here again.</p><p>You can close this page.</p>",
            esc(name),
            esc(&user.upn)
        ),
    )
}
