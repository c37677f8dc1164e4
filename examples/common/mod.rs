//! What the webhook load tools share: the ids they use and a signing-key endpoint standing
//! in for Entra ID, so validation tokens can be minted.

use axum::routing::get;
use axum::Router;
use base64::Engine;
use jsonwebtoken::EncodingKey;
use serde_json::json;

pub const CLIENT_ID: &str = "c0ffee00-0000-4000-8000-000000000001";
pub const TENANT: &str = "7e7e7e7e-0000-4000-8000-000000000002";
pub const SUB: &str = "5b5b5b5b-0000-4000-8000-000000000003";

pub fn user(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// The subscription the load tools seed: `SUB` in `TENANT` for the first `users` users,
/// with `load-state` as its `clientState`, for another hour.
pub fn subscription(users: usize) -> teams_presence::store::SubscriptionRecord {
    let now = chrono::Utc::now();
    teams_presence::store::SubscriptionRecord {
        subscription_id: SUB.into(),
        user_ids: (0..users).map(user).collect(),
        tenant_id: TENANT.into(),
        owner_user_id: user(0),
        resource: String::new(),
        client_state_sha256: teams_presence::clients::graph::notification::client_state_sha256_hex(
            "load-state",
        ),
        expires_at: now + chrono::Duration::minutes(60),
        created_at: now,
        certificate_id: String::new(),
    }
}

/// A signing-key endpoint and the key to mint validation tokens with.
pub async fn fake_entra() -> (String, EncodingKey) {
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    let b64 = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwks = json!({"keys": [{"kty": "RSA", "use": "sig", "kid": "k",
        "n": b64.encode(rsa.n().to_vec()), "e": b64.encode(rsa.e().to_vec())}]})
    .to_string();
    let app = Router::new().route(
        "/common/discovery/v2.0/keys",
        get(move || std::future::ready(jwks.clone())),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let key = EncodingKey::from_rsa_der(&rsa.private_key_to_der().unwrap());
    (format!("http://{addr}"), key)
}
