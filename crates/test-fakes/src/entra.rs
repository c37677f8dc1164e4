//! A fake Microsoft Entra ID (v2.0 endpoints) that is strict where the real one is:
//!
//! * `/{tenant}/oauth2/v2.0/token`: `authorization_code` (checks the PKCE verifier against
//!   the challenge it was issued for, single-use codes, the redirect URI), `refresh_token`
//!   (rotates on every use; a rotated-away token is rejected with `invalid_grant`, stricter
//!   than Entra, so a test proves the old token is never sent again), `client_credentials`
//!   and the device-code grant (`authorization_pending`, `slow_down`, `expired_token`);
//! * client authentication by secret or by a client assertion, which it records so tests can
//!   verify the assertion with the certificate's public key;
//! * `/{tenant}/oauth2/v2.0/devicecode`;
//! * `/common/discovery/v2.0/keys` (JWKS) for the id_tokens it signs with its own RSA key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A scripted answer for the next token call.
#[derive(Clone, Debug)]
pub enum Script {
    /// Answer with this status and error code.
    Error(u16, &'static str, &'static str),
}

/// A signed-in person the fake knows.
#[derive(Clone, Debug)]
pub struct Person {
    /// `oid`.
    pub oid: String,
    /// `tid`.
    pub tid: String,
    /// `preferred_username`.
    pub upn: String,
    /// `name`.
    pub name: String,
}

/// What the fake saw and holds.
#[derive(Default)]
pub struct EntraState {
    /// code → (person, code_challenge, redirect_uri, nonce)
    pub codes: HashMap<String, (Person, String, String, Option<String>)>,
    /// Live refresh tokens → person.
    pub refresh_tokens: HashMap<String, Person>,
    /// Refresh tokens rotated away (sending one again is a test failure signal).
    pub dead_refresh_tokens: Vec<String>,
    /// Every refresh token sent to the token endpoint, in order.
    pub refresh_tokens_seen: Vec<String>,
    /// Every form posted to the token endpoint (secrets and assertions included: tests only).
    pub token_requests: Vec<HashMap<String, String>>,
    /// Answers to use instead of the normal ones, in order.
    pub script: Vec<Script>,
    /// Device codes: code → (person, polls left before success).
    pub device_codes: HashMap<String, (Person, u32)>,
    /// Counter for unique tokens.
    pub counter: u64,
    /// Access token → person.
    pub access_tokens: HashMap<String, Person>,
    /// When set, `client_credentials` answers with a JWT whose `roles` claim is this list
    /// (the application permissions consented), as Entra ID does; otherwise an opaque token.
    pub app_roles: Option<Vec<String>>,
}

/// A running fake.
#[derive(Clone)]
pub struct FakeEntra {
    /// Its base URL (`AZURE_AUTHORITY_HOST`).
    pub url: String,
    /// State to script and inspect.
    pub state: Arc<Mutex<EntraState>>,
    key: Arc<(jsonwebtoken::EncodingKey, Value)>,
}

impl FakeEntra {
    /// Starts on a free loopback port.
    pub async fn start() -> Self {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let enc = jsonwebtoken::EncodingKey::from_rsa_der(&rsa.private_key_to_der().unwrap());
        let jwk = json!({
            "kty": "RSA", "use": "sig", "kid": "fake-kid-1", "alg": "RS256",
            "n": B64.encode(rsa.n().to_vec()), "e": B64.encode(rsa.e().to_vec()),
        });
        let state = Arc::new(Mutex::new(EntraState::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fake = Self {
            url,
            state,
            key: Arc::new((enc, jwk)),
        };
        let app = Router::new()
            .route("/common/discovery/v2.0/keys", get(keys))
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/{tenant}/oauth2/v2.0/devicecode", post(devicecode))
            .route(
                "/{tenant}/v2.0/.well-known/openid-configuration",
                get(openid_configuration),
            )
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    /// Issues an authorization code for `person` as if they signed in at the authorize URL.
    pub fn issue_code(
        &self,
        person: &Person,
        code_challenge: &str,
        redirect_uri: &str,
        nonce: Option<&str>,
    ) -> String {
        let mut s = self.state.lock().unwrap();
        s.counter += 1;
        let code = format!("code-{}", s.counter);
        s.codes.insert(
            code.clone(),
            (
                person.clone(),
                code_challenge.to_owned(),
                redirect_uri.to_owned(),
                nonce.map(str::to_owned),
            ),
        );
        code
    }

    /// Signs `claims` with the key the fake publishes.
    fn sign(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("fake-kid-1".into());
        jsonwebtoken::encode(&header, claims, &self.key.0).unwrap()
    }

    /// A validation token as Graph puts into a notification batch for `client_id` in
    /// `tenant`, signed with the key this fake publishes (so one fake can be the authority
    /// for app tokens and for the webhook's validation tokens).
    pub fn validation_token(&self, client_id: &str, tenant: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        self.sign(&json!({
            "aud": client_id,
            "iss": format!("https://sts.windows.net/{tenant}/"),
            "iat": now - 60, "nbf": now - 60, "exp": now + 3600,
            // Graph's change-tracking app, the `appid` of real validation tokens.
            "appid": "0bf30f3b-4a52-48df-9a82-234910c4a086", "appidacr": "2",
            "tid": tenant, "ver": "1.0",
        }))
    }

    /// Signs an id_token (tests also use it to forge tampered ones).
    pub fn id_token(&self, person: &Person, aud: &str, nonce: Option<&str>) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("fake-kid-1".into());
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "aud": aud, "iss": format!("https://login.microsoftonline.com/{}/v2.0", person.tid),
            "tid": person.tid, "oid": person.oid, "preferred_username": person.upn, "name": person.name,
            "iat": now, "nbf": now, "exp": now + 3600, "ver": "2.0",
        });
        if let Some(n) = nonce {
            claims["nonce"] = json!(n);
        }
        jsonwebtoken::encode(&header, &claims, &self.key.0).unwrap()
    }

    fn mint(
        &self,
        s: &mut EntraState,
        person: &Person,
        aud: &str,
        nonce: Option<&str>,
        with_refresh: bool,
    ) -> Value {
        s.counter += 1;
        let access = format!("at-{}-{}", person.oid, s.counter);
        s.access_tokens.insert(access.clone(), person.clone());
        let mut body = json!({
            "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
            "scope": "https://graph.microsoft.com/Presence.Read.All",
            "access_token": access,
            "id_token": self.id_token(person, aud, nonce),
        });
        if with_refresh {
            let rt = format!("rt-{}-{}", person.oid, s.counter);
            s.refresh_tokens.insert(rt.clone(), person.clone());
            body["refresh_token"] = json!(rt);
        }
        body
    }
}

fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        Json(json!({
            "error": error,
            "error_description": format!("{description}\r\nTrace ID: 0000 Correlation ID: 1111 Timestamp: 2026-11-23 01:00:00Z"),
            "error_codes": [70000],
        })),
    )
        .into_response()
}

async fn openid_configuration(State(f): State<FakeEntra>, Path(tenant): Path<String>) -> Response {
    if tenant.contains(' ') || tenant == "no-such-tenant" {
        return oauth_error(400, "invalid_tenant", "AADSTS90002: Tenant not found.");
    }
    Json(json!({
        "issuer": format!("https://login.microsoftonline.com/{tenant}/v2.0"),
        "authorization_endpoint": format!("{}/{tenant}/oauth2/v2.0/authorize", f.url),
        "token_endpoint": format!("{}/{tenant}/oauth2/v2.0/token", f.url),
        "jwks_uri": format!("{}/common/discovery/v2.0/keys", f.url),
    }))
    .into_response()
}

async fn keys(State(f): State<FakeEntra>) -> Json<Value> {
    Json(json!({ "keys": [f.key.1.clone()] }))
}

async fn devicecode(
    State(f): State<FakeEntra>,
    Path(_tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut s = f.state.lock().unwrap();
    s.counter += 1;
    let code = format!("dc-{}", s.counter);
    let person = Person {
        oid: "device-user-oid".into(),
        tid: "tenant-1".into(),
        upn: "pi@contoso.example".into(),
        name: "Pi Owner".into(),
    };
    // Two polls are pending, the third succeeds.
    s.device_codes.insert(code.clone(), (person, 2));
    let _ = form;
    Json(json!({
        "device_code": code, "user_code": "ABCD-1234", "verification_uri": "https://microsoft.com/devicelogin",
        "expires_in": 900, "interval": 1,
        "message": "To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code ABCD-1234 to authenticate."
    }))
    .into_response()
}

async fn token(
    State(f): State<FakeEntra>,
    Path(_tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut s = f.state.lock().unwrap();
    s.token_requests.push(form.clone());
    if !s.script.is_empty() {
        let Script::Error(status, error, desc) = s.script.remove(0);
        return oauth_error(status, error, desc);
    }
    let client_id = form.get("client_id").cloned().unwrap_or_default();
    let grant = form.get("grant_type").map(String::as_str).unwrap_or("");
    match grant {
        "authorization_code" => {
            let code = form.get("code").cloned().unwrap_or_default();
            let Some((person, challenge, redirect, nonce)) = s.codes.remove(&code) else {
                return oauth_error(400, "invalid_grant", "AADSTS70008: The provided authorization code or refresh token has expired or was already used.");
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            if B64.encode(Sha256::digest(verifier.as_bytes())) != challenge {
                return oauth_error(400, "invalid_grant", "AADSTS501481: The Code_Verifier does not match the code_challenge supplied in the authorization request.");
            }
            if form.get("redirect_uri") != Some(&redirect) {
                return oauth_error(
                    400,
                    "invalid_grant",
                    "AADSTS50148: The redirect_uri does not match.",
                );
            }
            let body = f.mint(&mut s, &person, &client_id, nonce.as_deref(), true);
            Json(body).into_response()
        }
        "refresh_token" => {
            let rt = form.get("refresh_token").cloned().unwrap_or_default();
            s.refresh_tokens_seen.push(rt.clone());
            let Some(person) = s.refresh_tokens.remove(&rt) else {
                return oauth_error(
                    400,
                    "invalid_grant",
                    "AADSTS700082: The refresh token has expired due to inactivity.",
                );
            };
            s.dead_refresh_tokens.push(rt);
            let body = f.mint(&mut s, &person, &client_id, None, true);
            Json(body).into_response()
        }
        "client_credentials" => {
            s.counter += 1;
            let access = match &s.app_roles {
                None => format!("app-{}", s.counter),
                Some(roles) => {
                    let now = chrono::Utc::now().timestamp();
                    let claims = json!({
                        "aud": "https://graph.microsoft.com", "appid": client_id,
                        "iat": now, "nbf": now, "exp": now + 3600, "roles": roles,
                    });
                    f.sign(&claims)
                }
            };
            Json(json!({"token_type": "Bearer", "expires_in": 3599, "access_token": access}))
                .into_response()
        }
        "urn:ietf:params:oauth:grant-type:device_code" => {
            let code = form.get("device_code").cloned().unwrap_or_default();
            let Some((person, left)) = s.device_codes.get(&code).cloned() else {
                return oauth_error(
                    400,
                    "expired_token",
                    "AADSTS70019: Verification code expired.",
                );
            };
            if left > 0 {
                s.device_codes.insert(code, (person, left - 1));
                return if left == 2 {
                    oauth_error(
                        400,
                        "authorization_pending",
                        "AADSTS70016: OAuth 2.0 device flow error. Authorization is pending.",
                    )
                } else {
                    oauth_error(400, "slow_down", "slow down")
                };
            }
            s.device_codes.remove(&code);
            let body = f.mint(&mut s, &person, &client_id, None, true);
            Json(body).into_response()
        }
        _ => oauth_error(
            400,
            "unsupported_grant_type",
            "AADSTS70003: unsupported grant type",
        ),
    }
}
