//! Sign-in against an attacker (issue 13): unbounded pending sign-ins, crafted callbacks,
//! and who may sign in. Uses `auth`'s harness (the fake Entra ID).

use axum::body::Body;
use axum::http::{Request, StatusCode};

use teams_presence::clients::entra::{validate_id_token, IdTokenError};
use teams_presence::clients::graph::validation_token::SigningKeys;
use teams_presence::store::Table;

use crate::auth::{harness, person, send};

async fn start_from(h: &crate::auth::Harness, client: &str) -> StatusCode {
    send(
        &h.app,
        Request::get("/api/auth/start")
            .header("x-forwarded-for", client)
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .0
}

/// Issue 13, item 2: anonymous `GET /api/auth/start` inserted a row every time, forever.
#[tokio::test]
async fn auth_start_is_rate_limited_and_expired_pending_sign_ins_are_purged() {
    let h = harness("PS256").await;
    // One client: a few per minute, then 429.
    let mut codes = Vec::new();
    for _ in 0..11 {
        codes.push(start_from(&h, "203.0.113.7").await);
    }
    assert!(
        codes[..10].iter().all(|c| *c == StatusCode::FOUND),
        "{codes:?}"
    );
    assert_eq!(codes[10], StatusCode::TOO_MANY_REQUESTS);
    // Many clients (or a forged X-Forwarded-For each time): a global cap still holds.
    let mut limited = 0;
    for i in 0..489 {
        if start_from(&h, &format!("198.51.{}.{}", i / 250, i % 250)).await
            == StatusCode::TOO_MANY_REQUESTS
        {
            limited += 1;
        }
    }
    assert!(limited > 0, "500 starts in a minute must hit the cap");
    let rows = h
        .app
        .store
        .scan_entities(Table::PendingSignIns, None)
        .await
        .unwrap();
    assert!(!rows.is_empty() && rows.len() < 500, "{}", rows.len());
    // The minute timer, past their expiry, leaves none.
    let later = chrono::Utc::now() + chrono::Duration::minutes(11);
    teams_presence::engine::subscriptions::maintain(&h.app, &h.app.poller, later).await;
    let rows = h
        .app
        .store
        .scan_entities(Table::PendingSignIns, None)
        .await
        .unwrap();
    assert_eq!(rows.len(), 0);
}

async fn signing_keys(h: &crate::auth::Harness) -> SigningKeys {
    let jwks = reqwest::get(format!("{}/common/discovery/v2.0/keys", h.entra.url))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    SigningKeys::from_jwks(&jwks).unwrap()
}

/// Issue 13, item 10: a GUID's case is not part of it; Entra may echo the client id in
/// another case than AZURE_CLIENT_ID was typed in.
#[tokio::test]
async fn id_token_audience_is_compared_case_insensitively() {
    let h = harness("PS256").await;
    let keys = signing_keys(&h).await;
    let client_id = "c0ffee00-abcd-4ef0-8abc-0000000000ab";
    let token = h
        .entra
        .id_token(&person(), &client_id.to_uppercase(), Some("n1"));
    let id = validate_id_token(&token, &keys, client_id, Some("n1"), chrono::Utc::now())
        .expect("same GUID in upper case");
    assert_eq!(id.user_id, person().oid);
    assert_eq!(
        validate_id_token(&token, &keys, "another-app", Some("n1"), chrono::Utc::now()),
        Err(IdTokenError::WrongClaims("audience"))
    );
}
