//! Sign-in against an attacker (issue 13): unbounded pending sign-ins, crafted callbacks,
//! and who may sign in. Uses `auth`'s harness (the fake Entra ID).

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};

use teams_presence::clients::entra::{validate_id_token, IdTokenError};
use teams_presence::clients::graph::validation_token::SigningKeys;
use teams_presence::store::Table;

use crate::auth::{form_post, harness, harness_with, person, send, start, users};

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

/// A writer that keeps what the fmt subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Issue 13, item 10: Entra's `error` on the callback is attacker-controlled text; logged
/// raw, a CR/LF in it forged whole log lines, and its length was unbounded.
#[tokio::test(flavor = "current_thread")]
async fn auth_end_error_cannot_forge_log_lines_or_flood_the_log() {
    let h = harness("PS256").await;
    let cap = Captured::default();
    let writer = cap.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let q = start(&h).await;
    let forged = format!(
        "access_denied\r\n2026-01-01T00:00:00Z  INFO teams_presence: user signed in user_id=admin{}",
        "x".repeat(5000)
    );
    let (status, _, _) = send(
        &h.app,
        form_post(&[("state", &q["state"]), ("error", &forged)]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let log = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("Entra ID reported a sign-in error"), "{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("2026-01-01T00:00:00Z")),
        "a forged log line: {log}"
    );
    assert!(!log.contains(&"x".repeat(500)), "the field is capped");
}

/// Issue 13, item 10: ALLOWED_TENANTS / ALLOWED_USERS, checked on the verified id_token.
#[tokio::test]
async fn sign_in_outside_allowed_tenants_or_users_is_refused_and_stores_nothing() {
    for extra in [
        [("ALLOWED_TENANTS", "11111111-0000-0000-0000-000000000000")],
        [(
            "ALLOWED_USERS",
            "someone-else@contoso.example, 0a1b2c3d-0000-0000-0000-00000000000b",
        )],
    ] {
        let h = harness_with("PS256", &extra).await;
        let q = start(&h).await;
        let code = h.entra.issue_code(
            &person(),
            &q["code_challenge"],
            &q["redirect_uri"],
            Some(&q["nonce"]),
        );
        let (status, _, body) = send(
            &h.app,
            form_post(&[("code", &code), ("state", &q["state"])]),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{extra:?}: {body}");
        assert!(users(&h.app).await.is_empty(), "{extra:?}");
    }
    // Listed (by UPN, any case; and by tenant): signed in.
    let h = harness_with(
        "PS256",
        &[
            ("ALLOWED_TENANTS", "Tenant-1"),
            ("ALLOWED_USERS", "ADA@contoso.example"),
        ],
    )
    .await;
    let q = start(&h).await;
    let code = h.entra.issue_code(
        &person(),
        &q["code_challenge"],
        &q["redirect_uri"],
        Some(&q["nonce"]),
    );
    let (status, _, body) = send(
        &h.app,
        form_post(&[("code", &code), ("state", &q["state"])]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(users(&h.app).await.len(), 1);
}
