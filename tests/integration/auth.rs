//! Sign-in and tokens against the fake Entra ID: the browser round trip, single-use state,
//! rotation under concurrency, invalid_grant, the device code, and id_token checks.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use teams_presence::clients::entra::{validate_id_token, IdTokenError};
use teams_presence::clients::graph::validation_token::SigningKeys;
use teams_presence::core::message::TopicMessage;
use teams_presence::engine::tokens::AccessError;
use teams_presence::http::state::{AppState, Mode};
use teams_presence::store::{sqlite::SqliteStore, Store, Table, UserRecord, UserState};

use crate::fakes::entra::{FakeEntra, Person, Script};
use crate::support;

pub(crate) const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub(crate) fn person() -> Person {
    Person {
        oid: "0a1b2c3d-0000-0000-0000-00000000000a".into(),
        tid: "tenant-1".into(),
        upn: "ada@contoso.example".into(),
        name: "Ada Lovelace".into(),
    }
}

/// A certificate + key PEM for client assertions, and its public key PEM.
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    let key =
        teams_presence::clients::graph::certs::generate_self_signed("teams-presence-test-client")
            .unwrap();
    let pem = key.to_pem().unwrap();
    let path = dir.join("client.pem");
    std::fs::write(&path, &pem).unwrap();
    // PKCS#1 DER of the public key, which jsonwebtoken takes without its PEM feature.
    let public = openssl::x509::X509::from_pem(&pem)
        .unwrap()
        .public_key()
        .unwrap()
        .rsa()
        .unwrap()
        .public_key_to_der_pkcs1()
        .unwrap();
    (path, public)
}

pub(crate) struct Harness {
    pub(crate) app: AppState,
    pub(crate) entra: FakeEntra,
    public_key: Vec<u8>,
    _dir: tempfile::TempDir,
}

pub(crate) async fn harness(alg: &str) -> Harness {
    harness_with(alg, &[]).await
}

/// [`harness`] with more settings.
pub(crate) async fn harness_with(alg: &str, extra: &[(&str, &str)]) -> Harness {
    support::init_logging();
    let entra = FakeEntra::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, public_key) = certificate(dir.path());
    let store = Store::Sqlite(SqliteStore::open(&dir.path().join("s.sqlite3")).unwrap());
    let mut pairs: Vec<(&str, &str)> = vec![
        ("AZURE_CLIENT_ID", CLIENT_ID),
        ("AZURE_CLIENT_CERTIFICATE_PATH", cert.to_str().unwrap()),
        ("AZURE_CLIENT_ASSERTION_ALG", alg),
        ("AZURE_AUTHORITY_HOST", &entra.url),
        ("PUBLIC_BASE_URL", "https://presence.example"),
        ("TOKEN_ENCRYPTION_KEY", KEY),
    ];
    pairs.extend_from_slice(extra);
    let settings = support::settings(&pairs);
    let app = AppState::new(settings, store, Mode::Serve);
    Harness {
        app,
        entra,
        public_key,
        _dir: dir,
    }
}

pub(crate) async fn send(
    app: &AppState,
    req: Request<Body>,
) -> (StatusCode, HashMap<String, String>, String) {
    let resp = teams_presence::serve::router(app.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body =
        String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned();
    (status, headers, body)
}

/// GET /api/auth/start and what its redirect asks for.
pub(crate) async fn start(h: &Harness) -> HashMap<String, String> {
    let (status, headers, _) = send(
        &h.app,
        Request::get("/api/auth/start?login_hint=ada@contoso.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FOUND);
    let location = url::Url::parse(&headers["location"]).unwrap();
    assert!(location.as_str().starts_with(&format!(
        "{}/organizations/oauth2/v2.0/authorize?",
        h.entra.url
    )));
    location.query_pairs().into_owned().collect()
}

pub(crate) fn form_post(fields: &[(&str, &str)]) -> Request<Body> {
    Request::post("/api/auth/end")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(serde_urlencoded::to_string(fields).unwrap()))
        .unwrap()
}

pub(crate) async fn users(app: &AppState) -> Vec<UserRecord> {
    app.store
        .list::<UserRecord>()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.value)
        .collect()
}

#[tokio::test]
async fn browser_sign_in_round_trip_stores_the_user_with_the_refresh_token_sealed() {
    let h = harness("PS256").await;
    let q = start(&h).await;
    assert_eq!(q["response_mode"], "form_post");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["scope"].split(' ').any(|s| s == "offline_access"));
    assert!(q["scope"].contains("Presence.Read.All"));
    assert_eq!(q["redirect_uri"], "https://presence.example/api/auth/end");
    assert_eq!(q["login_hint"], "ada@contoso.example");
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
    assert!(body.contains("Ada Lovelace"), "{body}");

    // The fake saw the verifier (it checked it against the challenge) and a client assertion
    // that verifies with the certificate's public key.
    let req = h.entra.state.lock().unwrap().token_requests[0].clone();
    assert_eq!(req["grant_type"], "authorization_code");
    assert!(req.contains_key("code_verifier"));
    assert!(!req.contains_key("client_secret"));
    assert_eq!(
        req["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    let assertion = &req["client_assertion"];
    let header = jsonwebtoken::decode_header(assertion).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::PS256);
    assert!(header.x5t_s256.is_some());
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::PS256);
    v.set_audience(&[format!("{}/organizations/oauth2/v2.0/token", h.entra.url)]);
    v.set_issuer(&[CLIENT_ID]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        assertion,
        &jsonwebtoken::DecodingKey::from_rsa_der(&h.public_key),
        &v,
    )
    .expect("the client assertion verifies with the certificate's public key")
    .claims;
    assert_eq!(claims["sub"], CLIENT_ID);
    assert!(claims["jti"].as_str().unwrap().len() >= 32);

    let stored = users(&h.app).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].user_id, person().oid);
    assert_eq!(stored[0].upn, "ada@contoso.example");
    assert_eq!(stored[0].state, UserState::Active);
    // Raw rows hold no token, code or verifier in plaintext.
    for table in [Table::Users, Table::PendingSignIns] {
        for e in h.app.store.scan_entities(table, None).await.unwrap() {
            let raw = e.data.to_string();
            assert!(
                !raw.contains("rt-"),
                "plaintext refresh token in {table:?}: {raw}"
            );
            assert!(!raw.contains("at-"), "plaintext access token in {table:?}");
            assert!(!raw.contains(&code), "code stored");
        }
    }
    assert!(stored[0]
        .refresh_token_sealed
        .as_deref()
        .unwrap()
        .starts_with("v1."));
    // The pending sign-in is gone.
    assert!(h
        .app
        .store
        .scan_entities(Table::PendingSignIns, None)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn rs256_assertions_carry_the_sha1_thumbprint() {
    let h = harness("RS256").await;
    let q = start(&h).await;
    let code = h.entra.issue_code(
        &person(),
        &q["code_challenge"],
        &q["redirect_uri"],
        Some(&q["nonce"]),
    );
    let (status, _, _) = send(
        &h.app,
        form_post(&[("code", &code), ("state", &q["state"])]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let assertion = h.entra.state.lock().unwrap().token_requests[0]["client_assertion"].clone();
    let header = jsonwebtoken::decode_header(&assertion).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    assert!(header.x5t.is_some() && header.x5t_s256.is_none());
}

#[tokio::test]
async fn a_replayed_or_unknown_state_is_rejected_and_stores_nothing() {
    let h = harness("PS256").await;
    // Unknown state: nothing stored, the token endpoint never called.
    let (status, _, body) = send(
        &h.app,
        form_post(&[("code", "c"), ("state", "forged-state")]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("Start the sign-in again"));
    for bad in [&[("code", "c")][..], &[][..], &[("state", "")][..]] {
        let (status, _, _) = send(&h.app, form_post(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let (status, _, _) = send(
        &h.app,
        Request::post("/api/auth/end")
            .body(Body::from(vec![0xff, 0xfe, b'=', b'%']))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(users(&h.app).await.is_empty());
    assert!(h.entra.state.lock().unwrap().token_requests.is_empty());

    // A real sign-in, then the same callback again.
    let q = start(&h).await;
    let code = h.entra.issue_code(
        &person(),
        &q["code_challenge"],
        &q["redirect_uri"],
        Some(&q["nonce"]),
    );
    let (status, _, _) = send(
        &h.app,
        form_post(&[("code", &code), ("state", &q["state"])]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let before = users(&h.app).await;
    let (status, _, body) = send(
        &h.app,
        form_post(&[("code", &code), ("state", &q["state"])]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("already used"), "{body}");
    assert_eq!(users(&h.app).await, before);
    assert_eq!(h.entra.state.lock().unwrap().token_requests.len(), 1);
}

#[tokio::test]
async fn entra_errors_become_friendly_pages_and_store_nothing() {
    let h = harness("PS256").await;
    let q = start(&h).await;
    let (status, _, body) = send(
        &h.app,
        form_post(&[
            ("state", &q["state"]),
            ("error", "access_denied"),
            (
                "error_description",
                "AADSTS65004: User declined to consent.\r\nTrace ID: x",
            ),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("declined the permissions"));
    assert!(!body.contains("Trace ID"));

    // The token endpoint refuses the code.
    let q = start(&h).await;
    h.entra.state.lock().unwrap().script.push(Script::Error(
        400,
        "invalid_grant",
        "AADSTS70008: expired code.",
    ));
    let (status, _, body) = send(
        &h.app,
        form_post(&[("code", "whatever"), ("state", &q["state"])]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("AADSTS70008"));
    assert!(!body.contains("whatever"));
    assert!(users(&h.app).await.is_empty());
}

async fn signed_in(h: &Harness) {
    let q = start(h).await;
    let code = h.entra.issue_code(
        &person(),
        &q["code_challenge"],
        &q["redirect_uri"],
        Some(&q["nonce"]),
    );
    let (status, _, _) = send(
        &h.app,
        form_post(&[("code", &code), ("state", &q["state"])]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// A second process over the same store: no cached access token.
fn second_process(h: &Harness) -> AppState {
    AppState::new(
        support::settings(&[
            ("AZURE_CLIENT_ID", CLIENT_ID),
            ("AZURE_CLIENT_SECRET", "test-secret"),
            ("AZURE_AUTHORITY_HOST", &h.entra.url),
            ("TOKEN_ENCRYPTION_KEY", KEY),
        ]),
        h.app.store.clone(),
        Mode::Serve,
    )
}

#[tokio::test]
async fn concurrent_callers_refresh_once_and_the_old_refresh_token_is_never_sent_again() {
    let h = harness("PS256").await;
    signed_in(&h).await;
    let user = person().oid;
    for round in 0..3 {
        let other = second_process(&h);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let (t, u) = (other.tokens.clone(), user.clone());
            tasks.spawn(async move { t.access_token(&u, None).await.map(|_| ()) });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
        let s = h.entra.state.lock().unwrap();
        assert_eq!(
            s.refresh_tokens_seen.len(),
            round + 1,
            "one refresh per process, not per caller"
        );
    }
    let s = h.entra.state.lock().unwrap();
    // Every refresh used the newest token: none was sent twice (the fake rejects dead ones,
    // so a second use would also have failed above).
    let mut seen = s.refresh_tokens_seen.clone();
    seen.dedup();
    assert_eq!(seen.len(), 3);
    assert_eq!(s.dead_refresh_tokens, s.refresh_tokens_seen);
}

#[tokio::test]
async fn invalid_grant_marks_the_user_publishes_one_message_and_stops_calling() {
    let h = harness("PS256").await;
    signed_in(&h).await;
    let other = second_process(&h);
    let mut rx = other.publisher.subscribe();
    h.entra.state.lock().unwrap().script.push(Script::Error(
        400,
        "invalid_grant",
        "AADSTS700082: The refresh token has expired due to inactivity. The token was issued on 2026-01-01.",
    ));
    let before = h.entra.state.lock().unwrap().token_requests.len();
    let oid = person().oid;
    let (a, b) = tokio::join!(
        other.tokens.access_token(&oid, None),
        other.tokens.access_token(&oid, None)
    );
    for r in [a, b] {
        assert!(
            matches!(r, Err(AccessError::SignInRequired { .. })),
            "{r:?}"
        );
    }
    let msg = rx.try_recv().expect("one user.signin_required");
    match msg {
        TopicMessage::SignInRequired(m) => {
            assert_eq!(m.user_id, person().oid);
            assert!(m.reason.contains("AADSTS700082"), "{}", m.reason);
            assert!(!m.reason.contains("2026-01-01"), "only the first sentence");
        }
        other => panic!("{other:?}"),
    }
    assert!(rx.try_recv().is_err(), "exactly one message");
    let stored = users(&h.app).await;
    assert!(matches!(stored[0].state, UserState::SignInRequired { .. }));
    assert!(stored[0].refresh_token_sealed.is_none());
    // No further calls for this user.
    let r = other.tokens.access_token(&person().oid, None).await;
    assert!(matches!(r, Err(AccessError::SignInRequired { .. })));
    assert_eq!(
        h.entra.state.lock().unwrap().token_requests.len(),
        before + 1
    );
    // Signing in again makes the user active again.
    signed_in(&h).await;
    assert_eq!(users(&h.app).await[0].state, UserState::Active);
}

#[tokio::test]
async fn transient_token_failures_retry_and_leave_the_user_active() {
    let h = harness("PS256").await;
    signed_in(&h).await;
    let other = second_process(&h);
    h.entra.state.lock().unwrap().script.push(Script::Error(
        503,
        "temporarily_unavailable",
        "AADSTS90033: busy",
    ));
    other
        .tokens
        .access_token(&person().oid, None)
        .await
        .unwrap();
    assert_eq!(users(&h.app).await[0].state, UserState::Active);
}

#[tokio::test]
async fn id_tokens_are_checked_for_signature_audience_nonce_and_expiry() {
    let entra = FakeEntra::start().await;
    let jwks = reqwest::get(format!("{}/common/discovery/v2.0/keys", entra.url))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let keys = SigningKeys::from_jwks(&jwks).unwrap();
    let now = chrono::Utc::now();
    let good = entra.id_token(&person(), CLIENT_ID, Some("n1"));
    let id = validate_id_token(&good, &keys, CLIENT_ID, Some("n1"), now).unwrap();
    assert_eq!(
        (id.user_id.as_str(), id.tenant_id.as_str()),
        (person().oid.as_str(), "tenant-1")
    );
    assert_eq!(
        validate_id_token(&good, &keys, CLIENT_ID, Some("n2"), now),
        Err(IdTokenError::WrongClaims("nonce"))
    );
    assert_eq!(
        validate_id_token(&good, &keys, "other-app", Some("n1"), now),
        Err(IdTokenError::WrongClaims("audience"))
    );
    assert_eq!(
        validate_id_token(
            &good,
            &keys,
            CLIENT_ID,
            Some("n1"),
            now + chrono::Duration::hours(3)
        ),
        Err(IdTokenError::WrongClaims("expired"))
    );
    // Tampered payload: same header and signature, another oid.
    let parts: Vec<&str> = good.split('.').collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: serde_json::Value =
        serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["oid"] = "someone-else".into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    assert_eq!(
        validate_id_token(&forged, &keys, CLIENT_ID, Some("n1"), now),
        Err(IdTokenError::BadSignature)
    );
    assert_eq!(
        validate_id_token("not.a.jwt", &keys, CLIENT_ID, None, now),
        Err(IdTokenError::Malformed)
    );
}

/// Issue 13, item 3: `openssl::memcmp::eq` asserts equal lengths, so a nonce of another
/// length used to panic the sign-in handler instead of refusing the token.
#[tokio::test]
async fn id_token_with_a_nonce_of_another_length_is_refused_without_a_panic() {
    let entra = FakeEntra::start().await;
    let jwks = reqwest::get(format!("{}/common/discovery/v2.0/keys", entra.url))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let keys = SigningKeys::from_jwks(&jwks).unwrap();
    let now = chrono::Utc::now();
    let token = entra.id_token(&person(), CLIENT_ID, Some("a-much-longer-nonce"));
    for expected in ["n1", "", "a-much-longer-nonce-and-more"] {
        let got = std::panic::catch_unwind(|| {
            validate_id_token(&token, &keys, CLIENT_ID, Some(expected), now)
        });
        assert_eq!(
            got.expect("a nonce of another length must not panic"),
            Err(IdTokenError::WrongClaims("nonce")),
            "{expected}"
        );
    }
}

#[tokio::test]
async fn device_code_login_stores_the_user() {
    let entra = FakeEntra::start().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = support::settings(&[
        ("AZURE_CLIENT_ID", CLIENT_ID),
        ("AZURE_AUTHORITY_HOST", &entra.url),
    ]);
    let mut out = Vec::new();
    teams_presence::cli::login::run(
        settings,
        dir.path(),
        &mut out,
        std::time::Duration::from_millis(10),
    )
    .await
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("ABCD-1234") && text.contains("https://microsoft.com/devicelogin"),
        "{text}"
    );
    assert!(text.contains("Signed in as Pi Owner"), "{text}");
    let store =
        Store::Sqlite(SqliteStore::open(&dir.path().join("teams-presence.sqlite3")).unwrap());
    let users = store.list::<UserRecord>().await.unwrap();
    assert_eq!(users[0].value.upn, "pi@contoso.example");
    // Public client: no secret, no assertion; the grant went through pending and slow_down.
    let s = entra.state.lock().unwrap();
    let grants: Vec<_> = s
        .token_requests
        .iter()
        .map(|r| r["grant_type"].clone())
        .collect();
    assert_eq!(grants.len(), 3);
    assert!(s
        .token_requests
        .iter()
        .all(|r| !r.contains_key("client_secret")));
}

/// The real binary with `RUST_LOG=trace`: a browser sign-in, background refreshes, a revoked
/// token and a dead refresh token, a forged callback. Nothing secret may be in its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_code_verifier_or_secret_reaches_a_log_line() {
    let entra = FakeEntra::start().await;
    let graph = crate::fakes::graph::FakeGraph::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log_path = dir.path().join("serve.log");
    let mut serve = std::process::Command::new(support::binary())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            "data",
        ])
        .env_clear()
        .env("RUST_LOG", "trace")
        .env("AZURE_CLIENT_ID", CLIENT_ID)
        .env("AZURE_CLIENT_SECRET", "very-secret-client-secret")
        .env("AZURE_AUTHORITY_HOST", &entra.url)
        .env("GRAPH_ENDPOINT", &graph.url)
        .env("PUBLIC_BASE_URL", &base)
        .env("POLL_INTERVAL", "1")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    assert!(support::wait_for_port(
        format!("127.0.0.1:{port}").parse().unwrap(),
        std::time::Duration::from_secs(20)
    ));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Browser sign-in through the real routes.
    let r = http
        .get(format!("{base}/api/auth/start"))
        .send()
        .await
        .unwrap();
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let q: HashMap<String, String> = location.query_pairs().into_owned().collect();
    let code = entra.issue_code(
        &person(),
        &q["code_challenge"],
        &q["redirect_uri"],
        Some(&q["nonce"]),
    );
    let form = [("code", code.as_str()), ("state", q["state"].as_str())];
    let r = http
        .post(format!("{base}/api/auth/end"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A forged callback.
    let forged = [
        ("code", "forged-code-value"),
        ("state", "forged-state-value"),
    ];
    http.post(format!("{base}/api/auth/end"))
        .form(&forged)
        .send()
        .await
        .unwrap();

    // Polling refreshes; then Graph revokes the access token and Entra the refresh token.
    graph.set(&person().oid, "Busy", "InACall");
    let wait = |what: &'static str, f: Box<dyn Fn() -> bool>| async move {
        let start = std::time::Instant::now();
        while !f() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "timed out waiting for {what}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let g = graph.state.clone();
    wait(
        "a poll",
        Box::new(move || !g.lock().unwrap().calls.is_empty()),
    )
    .await;
    entra.state.lock().unwrap().script.push(Script::Error(
        400,
        "invalid_grant",
        "AADSTS700082: expired.",
    ));
    graph.state.lock().unwrap().reject_tokens = true;
    let e = entra.state.clone();
    wait(
        "the dead refresh token",
        Box::new(move || e.lock().unwrap().script.is_empty()),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    serve.kill().unwrap();
    serve.wait().unwrap();

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("user signed in"), "the log is captured: {log}");
    assert!(log.contains("sign-in required"), "{log}");
    let s = entra.state.lock().unwrap();
    let token_key = std::fs::read_to_string(dir.path().join("data/token-key")).unwrap();
    let mut secrets: Vec<String> = vec![
        "very-secret-client-secret".into(),
        token_key.trim().to_owned(),
        code.clone(),
        "forged-code-value".into(),
    ];
    for form in &s.token_requests {
        for k in [
            "code",
            "code_verifier",
            "refresh_token",
            "client_assertion",
            "client_secret",
        ] {
            if let Some(v) = form.get(k) {
                secrets.push(v.clone());
            }
        }
    }
    secrets.extend(s.access_tokens.keys().cloned());
    secrets.extend(s.dead_refresh_tokens.iter().cloned());
    secrets.extend(s.refresh_tokens.keys().cloned());
    assert!(secrets.len() > 8, "{secrets:?}");
    for secret in secrets {
        assert!(!log.contains(&secret), "a secret reached the log: {secret}");
    }
}
