//! A fake of the Microsoft identity platform's signing-key endpoint
//! (`/common/discovery/v2.0/keys`) plus the matching private key, so tests can mint the
//! validation tokens Graph would put into a notification batch.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// Graph's change-tracking app, the `appid` of real validation tokens.
pub const GRAPH_APP_ID: &str = "0bf30f3b-4a52-48df-9a82-234910c4a086";

/// The key id the fake publishes.
pub const KID: &str = "fake-kid-1";

/// A running fake.
pub struct FakeEntraKeys {
    /// `http://127.0.0.1:PORT` (what `AZURE_AUTHORITY_HOST` is set to).
    pub base_url: String,
    signing: EncodingKey,
    fetches: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
}

impl FakeEntraKeys {
    /// Starts the server with a fresh RSA key.
    pub async fn start() -> Self {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let b64 = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jwks = json!({"keys": [{
            "kty": "RSA", "use": "sig", "kid": KID, "x5t": KID,
            "n": b64.encode(rsa.n().to_vec()), "e": b64.encode(rsa.e().to_vec()),
            "x5c": [], "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
        }]})
        .to_string();
        let fetches = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let (f, down) = (fetches.clone(), failing.clone());
        let app = Router::new().route(
            "/common/discovery/v2.0/keys",
            get(move || {
                let (f, down, jwks) = (f.clone(), down.clone(), jwks.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    if down.load(Ordering::SeqCst) {
                        return StatusCode::SERVICE_UNAVAILABLE.into_response();
                    }
                    ([("content-type", "application/json")], jwks).into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base_url: format!("http://{addr}"),
            signing: EncodingKey::from_rsa_der(&rsa.private_key_to_der().unwrap()),
            fetches,
            failing,
        }
    }

    /// How many times the keys were fetched.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Makes the endpoint answer 503 (or work again).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// The claims of a valid validation token for `client_id` and `tenant`.
    pub fn claims(client_id: &str, tenant: &str) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "aud": client_id,
            "iss": format!("https://sts.windows.net/{tenant}/"),
            "iat": now - 60, "nbf": now - 60, "exp": now + 3600,
            "aio": "fake", "appid": GRAPH_APP_ID, "appidacr": "2",
            "idp": format!("https://sts.windows.net/{tenant}/"),
            "tid": tenant, "ver": "1.0",
        })
    }

    /// Signs `claims` with the published key (or with `kid` as the header's key id).
    pub fn sign(&self, claims: &Value, kid: &str) -> String {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, claims, &self.signing).unwrap()
    }

    /// A valid token.
    pub fn token(&self, client_id: &str, tenant: &str) -> String {
        self.sign(&Self::claims(client_id, tenant), KID)
    }
}
