//! `GET /api/auth/start` and `POST /api/auth/end`: the browser sign-in.
//!
//! The pending sign-in (state, sealed PKCE verifier, nonce, 10-minute expiry) is kept in the
//! store, not in a cookie: Entra's `form_post` callback is a cross-site POST, so SameSite=Lax
//! cookies would not come back with it. `state` is single use: the pending row is deleted with
//! its ETag before the code is redeemed, so a replay (even a concurrent one) finds nothing.
//! Every failure is a [`SignInError`]: a small HTML page that says what to do (its variant
//! names the page and the status), with nothing stored, logged once by the route.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use url::Url;

use crate::clients::entra::{
    pkce_pair, random_token, validate_id_token, EntraClient, IdTokenError, Identity, TokenError,
    TokenResponse,
};
use crate::clients::graph::validation_token::KeysUnavailable;
use crate::config::ConfigError;
use crate::core::seal::{KeyRing, SealError};
use crate::engine::guards::{self, SignInStart};
use crate::engine::tokens::AccessError;
use crate::http::html::{esc, Frame, SIGN_IN_CSS};
use crate::http::state::AppState;
use crate::store::{PendingSignIn, StoreError, UserRecord};

/// How long a started sign-in stays usable (Entra's codes live about as long).
const PENDING_LIFETIME_MINUTES: i64 = 10;

/// Registers the routes.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/auth/start", axum::routing::get(start))
        .route("/api/auth/end", axum::routing::post(end))
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

/// Why a sign-in did not go through. Each variant is one page: its doc names the status
/// and what the user reads; its text (and source) is the route's one log line, which never
/// carries a code, token, verifier or Entra's free-text description.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// 429 "Too many sign-ins", with `Retry-After: 60`.
    #[error("sign-in start rate limited")]
    RateLimited,
    /// 503 "Try again in a moment": the store is not reachable.
    #[error("{doing}")]
    Store {
        /// What could not be done ("cannot read the pending sign-in").
        doing: &'static str,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// 503 "Sign-in is not configured": a public client cannot take the browser sign-in.
    #[error("the browser sign-in needs a client credential")]
    NoClientCredential,
    /// 503 "Sign-in is not configured", with the missing setting's line.
    #[error("sign-in is not configured")]
    NotConfigured(#[source] ConfigError),
    /// 503 "Sign-in is not configured" at the callback, pointing to the status page.
    #[error("sign-in is not configured")]
    NotConfiguredAtCallback(#[source] ConfigError),
    /// 400 "Sign-in failed": the callback's form cannot be read.
    #[error("the sign-in answer could not be read")]
    Unreadable,
    /// 400 "Sign-in failed": no usable `state`.
    #[error("sign-in callback without a valid state")]
    NoState,
    /// 400 "Sign-in expired": no pending sign-in has this `state` (used or purged).
    #[error("sign-in callback with an unknown or used state")]
    UnknownState,
    /// 400 "Sign-in expired": another callback consumed it between our read and delete.
    #[error("sign-in callback replayed concurrently")]
    UsedConcurrently,
    /// 400 "Sign-in expired": the pending sign-in outlived `PENDING_LIFETIME_MINUTES`.
    #[error("sign-in callback after the pending sign-in expired")]
    TookTooLong,
    /// 400 "Sign-in did not complete": Entra ID answered with an error (its code and the
    /// first line of its description are shown; only the code is logged).
    #[error("Entra ID reported a sign-in error: {}", super::loggable(.error))]
    Declined {
        /// Entra's error code (`access_denied`, ...).
        error: String,
        /// The first line of `error_description`.
        first_line: String,
    },
    /// 400 "Sign-in failed": the callback carried no code.
    #[error("sign-in callback without an authorization code")]
    NoCode,
    /// 400 "Sign-in failed": the PKCE verifier was sealed with a key we no longer have.
    #[error("cannot open the sealed PKCE verifier")]
    KeyChanged(#[source] SealError),
    /// 502 "Sign-in failed": Entra ID refused the code.
    #[error("code redemption failed")]
    CodeRefused(#[source] TokenError),
    /// 502 "Sign-in failed": no id_token came back (the scopes lack `openid profile`).
    #[error("no id_token in the token response")]
    NoIdToken,
    /// 503 "Try again in a moment": Microsoft's signing keys cannot be fetched.
    #[error("signing keys unavailable")]
    KeysUnavailable(#[source] KeysUnavailable),
    /// 400 "Sign-in failed": the id_token did not verify.
    #[error("id_token rejected")]
    Unverified(#[source] IdTokenError),
    /// 403 "Not allowed here": the verified account is outside `ALLOWED_TENANTS` /
    /// `ALLOWED_USERS`.
    #[error("sign-in refused: not in ALLOWED_TENANTS / ALLOWED_USERS (user {user_id}, tenant {tenant_id})")]
    NotAllowed {
        /// The verified `oid`.
        user_id: String,
        /// The verified `tid`.
        tenant_id: String,
    },
    /// 503 "Sign-in failed": the user could not be stored.
    #[error("cannot store the signed-in user")]
    NotStored(#[source] AccessError),
}

impl SignInError {
    /// Whether this is ours to fix (logged as an error) rather than the visitor's or
    /// Entra's answer (a warning).
    fn on_our_side(&self) -> bool {
        matches!(
            self,
            Self::Store { .. }
                | Self::NotConfigured(_)
                | Self::NotConfiguredAtCallback(_)
                | Self::NoClientCredential
                | Self::KeyChanged(_)
                | Self::KeysUnavailable(_)
                | Self::NotStored(_)
        )
    }

    /// The status, the page's title and its body.
    fn page(&self) -> (StatusCode, &'static str, String) {
        use StatusCode as S;
        const UNREACHABLE: &str = "<p>The store is not reachable right now.</p>";
        let again = |p: &str| format!("{p}{}", retry_link());
        match self {
            Self::RateLimited => (
                S::TOO_MANY_REQUESTS,
                "Too many sign-ins",
                "<p>Too many sign-ins were started from here. Wait a minute and try again.</p>".into(),
            ),
            Self::Store { .. } => (S::SERVICE_UNAVAILABLE, "Try again in a moment", UNREACHABLE.into()),
            Self::NoClientCredential => (
                S::SERVICE_UNAVAILABLE,
                "Sign-in is not configured",
                "<p>The browser sign-in needs a client credential: set <code>AZURE_CLIENT_SECRET</code> or <code>AZURE_CLIENT_CERTIFICATE_PATH</code>. On a headless machine, <code>teams-presence login</code> signs in with a device code instead.</p>".into(),
            ),
            Self::NotConfigured(e) => (
                S::SERVICE_UNAVAILABLE,
                "Sign-in is not configured",
                format!("<p>{}</p>", esc(&e.to_string())),
            ),
            Self::NotConfiguredAtCallback(_) => (
                S::SERVICE_UNAVAILABLE,
                "Sign-in is not configured",
                "<p>See the status page for the settings to add.</p>".into(),
            ),
            Self::Unreadable => (
                S::BAD_REQUEST,
                "Sign-in failed",
                again("<p>The sign-in answer could not be read.</p>"),
            ),
            Self::NoState => (
                S::BAD_REQUEST,
                "Sign-in failed",
                again("<p>This sign-in answer has no valid <code>state</code>.</p>"),
            ),
            Self::UnknownState => (
                S::BAD_REQUEST,
                "Sign-in expired",
                again("<p>This sign-in was already used or has expired.</p>"),
            ),
            Self::UsedConcurrently => (
                S::BAD_REQUEST,
                "Sign-in expired",
                again("<p>This sign-in was already used.</p>"),
            ),
            Self::TookTooLong => (
                S::BAD_REQUEST,
                "Sign-in expired",
                again(&format!(
                    "<p>The sign-in took longer than {PENDING_LIFETIME_MINUTES} minutes.</p>"
                )),
            ),
            Self::Declined { error, first_line } => {
                let hint = if error == "access_denied" {
                    "You (or your administrator) declined the permissions. Presence.Read.All is needed to see your Teams presence."
                } else {
                    "Microsoft sign-in reported a problem."
                };
                (
                    S::BAD_REQUEST,
                    "Sign-in did not complete",
                    again(&format!(
                        "<p>{hint}</p><p><code>{}</code> {}</p>",
                        esc(error),
                        esc(first_line)
                    )),
                )
            }
            Self::NoCode => (
                S::BAD_REQUEST,
                "Sign-in failed",
                again("<p>The answer carried no authorization code.</p>"),
            ),
            Self::KeyChanged(_) => (
                S::BAD_REQUEST,
                "Sign-in failed",
                again("<p>This sign-in cannot be completed (the server's key changed).</p>"),
            ),
            Self::CodeRefused(e) => (
                S::BAD_GATEWAY,
                "Sign-in failed",
                again(&format!(
                    "<p>Microsoft sign-in refused the code: {}</p>",
                    esc(&e.to_string())
                )),
            ),
            Self::NoIdToken => (
                S::BAD_GATEWAY,
                "Sign-in failed",
                "<p>No id_token came back: add <code>openid profile</code> to AUTH_SCOPES.</p>".into(),
            ),
            Self::KeysUnavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                "Try again in a moment",
                "<p>Microsoft's signing keys could not be fetched.</p>".into(),
            ),
            Self::Unverified(e) => (
                S::BAD_REQUEST,
                "Sign-in failed",
                again(&format!(
                    "<p>The sign-in could not be verified ({}).</p>",
                    esc(&e.to_string())
                )),
            ),
            Self::NotAllowed { .. } => (
                S::FORBIDDEN,
                "Not allowed here",
                "<p>This presence service is limited to certain accounts, and yours is not one of them. Ask whoever runs it to add you.</p>".into(),
            ),
            Self::NotStored(e) => (
                S::SERVICE_UNAVAILABLE,
                "Sign-in failed",
                again(&format!("<p>{}</p>", esc(&e.to_string()))),
            ),
        }
    }
}

impl IntoResponse for SignInError {
    fn into_response(self) -> Response {
        let (status, title, body) = self.page();
        let mut r = page(status, title, &body);
        if matches!(self, Self::RateLimited) {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
        }
        r
    }
}

/// A sign-in page: the shared frame, never cached.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = Frame::new(title, SIGN_IN_CSS).render(body);
    (status, [(header::CACHE_CONTROL, "no-store")], html).into_response()
}

fn retry_link() -> &'static str {
    // Relative to /api/auth/end and /api/auth/start alike, so a path prefix stays.
    "<p><a href=\"start\">Start the sign-in again</a>.</p>"
}

/// The one log line of a sign-in that did not go through, with the error's causes.
fn log_failure(route: &'static str, e: &SignInError) {
    let mut causes = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if !causes.is_empty() {
            causes.push_str(": ");
        }
        causes.push_str(&s.to_string());
        source = s.source();
    }
    if e.on_our_side() {
        tracing::error!(route, error = %causes, "{e}");
    } else {
        tracing::warn!(route, error = %causes, "{e}");
    }
}

async fn start(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<StartQuery>,
) -> Response {
    match begin(&state, &headers, q, Utc::now()).await {
        Ok(redirect) => redirect,
        Err(e) => {
            log_failure("auth/start", &e);
            e.into_response()
        }
    }
}

/// `GET /api/auth/start`: the rate limit, the pending sign-in stored, the redirect to Entra.
async fn begin(
    state: &AppState,
    headers: &HeaderMap,
    q: StartQuery,
    now: DateTime<Utc>,
) -> Result<Response, SignInError> {
    // The limit is kept in the store, so every instance counts against the same one.
    let start = guards::sign_in_start(&state.store, &client_key(headers), now)
        .await
        .map_err(|source| SignInError::Store {
            doing: "cannot check the sign-in start limit",
            source,
        })?;
    if start == SignInStart::Limited {
        return Err(SignInError::RateLimited);
    }
    let entra = match state.tokens.entra() {
        Ok(e) if e.is_confidential() => e.clone(),
        Ok(_) => return Err(SignInError::NoClientCredential),
        Err(e) => return Err(SignInError::NotConfigured(e)),
    };
    let redirect = state
        .settings
        .redirect_uri()
        .map_err(SignInError::NotConfigured)?;
    let seal = state.tokens.seal().map_err(SignInError::NotConfigured)?;
    let login_hint = q
        .login_hint
        .filter(|h| h.len() <= 256 && !h.trim().is_empty());
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
    state
        .store
        .insert(&pending)
        .await
        .map_err(|source| SignInError::Store {
            doing: "cannot store the pending sign-in",
            source,
        })?;
    let url = entra.authorize_url(
        &redirect,
        &state_token,
        &challenge,
        &nonce,
        login_hint.as_deref(),
    );
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, url.to_string()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response())
}

#[derive(Deserialize, Default)]
struct Callback {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn end(State(state): State<AppState>, body: Bytes) -> Response {
    match finish(&state, &body).await {
        Ok(user) => {
            tracing::info!(user_id = %user.user_id, "user signed in");
            state.on_signed_in(&user.user_id).await;
            connected(&user)
        }
        Err(e) => {
            log_failure("auth/end", &e);
            e.into_response()
        }
    }
}

/// `POST /api/auth/end`, step by step: the callback read, its pending sign-in consumed,
/// Entra's answer taken, the code redeemed and the id_token verified, the account checked
/// against the allow-lists, the user stored.
async fn finish(state: &AppState, body: &[u8]) -> Result<UserRecord, SignInError> {
    let (cb, state_token) = read_callback(body)?;
    let pending = consume_pending(state, &state_token, Utc::now()).await?;
    let code = code_of(cb)?;
    let now = Utc::now();
    let (identity, tokens) = redeem(state, &pending, &code, now).await?;
    // Who may use this deployment, decided on the verified identity (never on login_hint).
    if !crate::engine::signins::allowed(&state.settings, &identity) {
        return Err(SignInError::NotAllowed {
            user_id: identity.user_id,
            tenant_id: identity.tenant_id,
        });
    }
    state
        .tokens
        .store_sign_in(&identity, &tokens, now)
        .await
        .map_err(SignInError::NotStored)
}

/// The callback's form and its `state`.
fn read_callback(body: &[u8]) -> Result<(Callback, String), SignInError> {
    let mut cb =
        serde_urlencoded::from_bytes::<Callback>(body).map_err(|_| SignInError::Unreadable)?;
    let state_token = cb
        .state
        .take()
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .ok_or(SignInError::NoState)?;
    Ok((cb, state_token))
}

/// Single use: read, then delete with the ETag read. Whoever deletes it owns it; an expired
/// one is consumed all the same.
async fn consume_pending(
    state: &AppState,
    state_token: &str,
    now: DateTime<Utc>,
) -> Result<PendingSignIn, SignInError> {
    let pending = state
        .store
        .get::<PendingSignIn>(state_token, "pending")
        .await
        .map_err(|source| SignInError::Store {
            doing: "cannot read the pending sign-in",
            source,
        })?
        .ok_or(SignInError::UnknownState)?;
    match state
        .store
        .delete::<PendingSignIn>(state_token, "pending", Some(&pending.etag))
        .await
    {
        Ok(()) => {}
        Err(StoreError::NotFound | StoreError::PreconditionFailed) => {
            return Err(SignInError::UsedConcurrently)
        }
        Err(source) => {
            return Err(SignInError::Store {
                doing: "cannot consume the pending sign-in",
                source,
            })
        }
    }
    if pending.value.expires_at < now {
        return Err(SignInError::TookTooLong);
    }
    Ok(pending.value)
}

/// Entra's answer: its error, or the authorization code.
fn code_of(cb: Callback) -> Result<String, SignInError> {
    if let Some(error) = cb.error {
        // Entra's own words are safe to show (no secrets), but only the first line.
        let description = cb.error_description.unwrap_or_default();
        let first_line = description
            .split(['\r', '\n'])
            .next()
            .unwrap_or("")
            .to_owned();
        return Err(SignInError::Declined { error, first_line });
    }
    cb.code.filter(|c| !c.is_empty()).ok_or(SignInError::NoCode)
}

/// What redeeming needs from the settings: Entra, the sealing keys, the redirect URI.
fn sign_in_parts(state: &AppState) -> Result<(EntraClient, KeyRing, Url), ConfigError> {
    Ok((
        state.tokens.entra()?.clone(),
        state.tokens.seal()?.clone(),
        state.settings.redirect_uri()?,
    ))
}

/// The code redeemed with the pending sign-in's PKCE verifier, and the id_token verified
/// against Microsoft's signing keys and the pending sign-in's nonce.
async fn redeem(
    state: &AppState,
    pending: &PendingSignIn,
    code: &str,
    now: DateTime<Utc>,
) -> Result<(Identity, TokenResponse), SignInError> {
    let (entra, seal, redirect) =
        sign_in_parts(state).map_err(SignInError::NotConfiguredAtCallback)?;
    let verifier = seal
        .open(
            &pending.code_verifier_sealed,
            &format!("pkce:{}", pending.state),
        )
        .map_err(SignInError::KeyChanged)?;
    let verifier = String::from_utf8_lossy(&verifier).into_owned();
    let tokens = entra
        .redeem_code(code, &verifier, &redirect)
        .await
        .map_err(SignInError::CodeRefused)?;
    let id_token = tokens.id_token.as_deref().ok_or(SignInError::NoIdToken)?;
    let kid = crate::clients::graph::validation_token::key_id(id_token).unwrap_or_default();
    let keys = state
        .token_keys
        .keys_for(&[kid])
        .await
        .map_err(SignInError::KeysUnavailable)?;
    let identity = validate_id_token(
        id_token,
        &keys,
        entra.client_id(),
        Some(&pending.nonce),
        now,
    )
    .map_err(SignInError::Unverified)?;
    Ok((identity, tokens))
}

/// The page after a sign-in went through.
fn connected(user: &UserRecord) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declined_sign_in_shows_entras_first_line_escaped_but_logs_only_its_code() {
        let e = SignInError::Declined {
            error: "invalid_request\r\nforged line".into(),
            first_line: "AADSTS50011: <b>redirect</b>".into(),
        };
        let logged = e.to_string();
        assert!(
            !logged.contains("AADSTS50011") && !logged.contains('\n'),
            "{logged}"
        );
        let (status, title, body) = e.page();
        assert_eq!(
            (status, title),
            (StatusCode::BAD_REQUEST, "Sign-in did not complete")
        );
        assert!(
            body.contains("AADSTS50011: &lt;b&gt;redirect&lt;/b&gt;"),
            "{body}"
        );
        assert!(body.ends_with(retry_link()));
    }

    #[test]
    fn the_rate_limit_page_says_when_to_come_back_and_is_never_cached() {
        let r = SignInError::RateLimited.into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "60");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    }
}
