//! The change-notification webhook end to end: notifications encrypted by an independent
//! implementation (tests/fixtures/encrypt_notification.py, Python's `cryptography`), signed
//! validation tokens checked against a fake JWKS endpoint, `serve`'s router (forwarded mode)
//! and the handler's payload mode.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;
use tower::ServiceExt;

use crate::fakes::entra_keys::{self, FakeEntraKeys};
use teams_presence::clients::graph::notification::client_state_sha256_hex;
use teams_presence::config::{Settings, Sources};
use teams_presence::core::message::TopicMessage;
use teams_presence::http::state::AppState;
use teams_presence::store::{PresenceRecord, SubscriptionRecord};

pub(crate) const CLIENT_ID: &str = "c0ffee00-0000-4000-8000-000000000001";
pub(crate) const TENANT: &str = "7e7e7e7e-0000-4000-8000-000000000002";
pub(crate) const SUB: &str = "5b5b5b5b-0000-4000-8000-000000000003";
pub(crate) const CLIENT_STATE: &str = "per-subscription-secret-4f1c";

pub(crate) fn user(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

pub(crate) struct TestApp {
    _dir: tempfile::TempDir,
    pub(crate) state: AppState,
    pub(crate) entra: FakeEntraKeys,
    /// The certificate alone (what Graph has), for the Python encryptor.
    cert_only: PathBuf,
    cert_id: String,
    rx: std::sync::Mutex<UnboundedReceiver<TopicMessage>>,
}

impl TestApp {
    pub(crate) async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let entra = FakeEntraKeys::start().await;
        let key =
            teams_presence::clients::graph::certs::generate_self_signed("webhook test").unwrap();
        let pair = dir.path().join("notification.pem");
        std::fs::write(&pair, key.to_pem().unwrap()).unwrap();
        let cert_only = dir.path().join("cert-only.pem");
        let der = key.certificate_der();
        std::fs::write(
            &cert_only,
            openssl::x509::X509::from_der(der)
                .unwrap()
                .to_pem()
                .unwrap(),
        )
        .unwrap();
        let env = [
            ("AZURE_CLIENT_ID", CLIENT_ID.to_owned()),
            ("AZURE_AUTHORITY_HOST", entra.base_url.clone()),
            ("NOTIFICATION_CERTIFICATE_PATH", pair.display().to_string()),
            ("STORE", "sqlite".to_owned()),
        ];
        let settings = Settings::parse(&Sources::from_map(
            env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        ))
        .unwrap();
        let state = teams_presence::serve::build_state(settings, &dir.path().join("data"))
            .await
            .unwrap();
        assert_eq!(
            state.notification_keys.current().unwrap().id(),
            key.id(),
            "serve uses NOTIFICATION_CERTIFICATE_PATH when it is set"
        );
        let now = chrono::Utc::now();
        state
            .store
            .insert(&SubscriptionRecord {
                subscription_id: SUB.into(),
                user_ids: (0..100).map(user).collect(),
                tenant_id: TENANT.into(),
                owner_user_id: user(0),
                resource: "/communications/presences?$filter=id in (...)".into(),
                client_state_sha256: client_state_sha256_hex(CLIENT_STATE),
                expires_at: now + chrono::Duration::minutes(55),
                created_at: now,
                certificate_id: String::new(),
            })
            .await
            .unwrap();
        let rx = state.publisher.subscribe();
        Self {
            _dir: dir,
            cert_id: key.id().to_owned(),
            state,
            entra,
            cert_only,
            rx: std::sync::Mutex::new(rx),
        }
    }

    pub(crate) fn serve_router(&self) -> Router {
        teams_presence::serve::router(self.state.clone())
    }

    /// Graph-shaped notification items, encrypted by the Python script.
    pub(crate) fn encrypt(&self, items: &[Value]) -> Value {
        encrypt_with_python(&self.cert_only, items)
    }

    pub(crate) fn item(&self, n: usize, availability: &str, activity: &str) -> Value {
        json!({
            "subscriptionId": SUB, "clientState": CLIENT_STATE, "tenantId": TENANT,
            "certificateId": self.cert_id,
            "resource": {
                "@odata.id": format!("users/{}/presence", user(n)),
                "@odata.type": "#microsoft.graph.presence",
                "id": user(n), "availability": availability, "activity": activity,
            },
        })
    }

    /// A batch with a valid validation token.
    pub(crate) fn batch(&self, items: &[Value]) -> Value {
        let mut b = self.encrypt(items);
        b["validationTokens"] = json!([self.entra.token(CLIENT_ID, TENANT)]);
        b
    }

    pub(crate) async fn post(&self, path: &str, body: impl Into<Body>) -> (StatusCode, String) {
        let resp = self
            .serve_router()
            .oneshot(
                Request::post(path)
                    .header("content-type", "application/json")
                    .body(body.into())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    pub(crate) async fn notify(&self, batch: &Value) -> StatusCode {
        self.post("/api/notifications", batch.to_string()).await.0
    }

    pub(crate) fn published(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut rx = self.rx.lock().unwrap();
        while let Ok(m) = rx.try_recv() {
            out.push(m.to_json());
        }
        out
    }

    pub(crate) async fn stored_presence(&self, n: usize) -> Option<PresenceRecord> {
        self.state
            .store
            .get::<PresenceRecord>(&user(n), "presence")
            .await
            .unwrap()
            .map(|v| v.value)
    }
}

fn encrypt_with_python(cert: &Path, items: &[Value]) -> Value {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/encrypt_notification.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(cert)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (CI installs the `cryptography` package)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(json!({ "items": items }).to_string().as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "encrypt_notification.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn flip_base64(v: &mut Value) {
    use base64::Engine;
    let b64 = &base64::engine::general_purpose::STANDARD;
    let mut bytes = b64.decode(v.as_str().unwrap()).unwrap();
    bytes[3] ^= 0x40;
    *v = json!(b64.encode(bytes));
}

#[tokio::test]
async fn webhook_publishes_a_python_encrypted_notification_once_with_every_contract_field() {
    let app = TestApp::start().await;
    let status = app
        .notify(&app.batch(&[app.item(1, "Available", "Available")]))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(app.published().len(), 1);

    let status = app
        .notify(&app.batch(&[app.item(1, "Busy", "InACall")]))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let msgs = app.published();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let m = msgs[0].as_object().unwrap();
    assert_eq!(m["type"], "presence.changed");
    assert_eq!(m["version"], 1);
    assert_eq!(m["userId"], user(1).as_str());
    assert_eq!(m["tenantId"], TENANT);
    assert_eq!(m["availability"], "Busy");
    assert_eq!(m["activity"], "InACall");
    assert_eq!(
        m["previous"],
        json!({"availability": "Available", "activity": "Available"})
    );
    assert_eq!(m["source"], "notification");
    let observed = m["observedAt"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(observed).is_ok() && observed.ends_with('Z'));
    assert!(!m["sequence"].as_str().unwrap().is_empty());
    assert_eq!(m.len(), 10, "exactly the contract's fields: {m:?}");
    assert_eq!(
        app.stored_presence(1).await.unwrap().last.presence,
        teams_presence::core::presence::Presence::new("Busy", "InACall")
    );
}

#[tokio::test]
async fn webhook_drops_forged_or_misdirected_notifications_without_5xx() {
    let app = TestApp::start().await;
    let good = app.batch(&[app.item(2, "Busy", "Busy")]);
    let token = |claims: Value| app.entra.sign(&claims, entra_keys::KID);
    let claims = || FakeEntraKeys::claims(CLIENT_ID, TENANT);
    let with_claim = |k: &str, v: Value| {
        let mut c = claims();
        c[k] = v;
        token(c)
    };
    let now = chrono::Utc::now().timestamp();

    let mut cases: Vec<(&str, Value)> = Vec::new();
    let mut b = good.clone();
    flip_base64(&mut b["value"][0]["encryptedContent"]["dataSignature"]);
    cases.push(("tampered signature", b));
    let mut b = good.clone();
    flip_base64(&mut b["value"][0]["encryptedContent"]["data"]);
    cases.push(("tampered ciphertext", b));
    let mut b = good.clone();
    b["value"][0]["clientState"] = json!("guessed-client-state");
    cases.push(("wrong clientState", b));
    let mut b = good.clone();
    b["value"][0]["encryptedContent"]["encryptionCertificateId"] = json!("sha256-00000000");
    cases.push(("wrong certificate id", b));
    let mut b = good.clone();
    b["value"][0]["subscriptionId"] = json!("not-ours");
    cases.push(("unknown subscription", b));
    let mut b = good.clone();
    b["value"][0]["tenantId"] = json!("another-tenant");
    cases.push(("other tenant", b));
    let mut b = good.clone();
    b["validationTokens"] = json!([]);
    cases.push(("no validation token", b));
    let mut b = good.clone();
    b["validationTokens"] = json!([with_claim("exp", json!(now - 3600))]);
    cases.push(("expired token", b));
    let mut b = good.clone();
    b["validationTokens"] = json!([with_claim(
        "iss",
        json!("https://sts.windows.net/another-tenant/")
    )]);
    cases.push(("token for another tenant", b));
    let mut b = good.clone();
    b["validationTokens"] = json!([with_claim(
        "iss",
        json!(format!("https://login.microsoftonline.com/{TENANT}/v2.0"))
    )]);
    cases.push(("wrong issuer", b));
    let mut b = good.clone();
    b["validationTokens"] = json!([with_claim("aud", json!("someone-elses-app"))]);
    cases.push(("wrong audience", b));
    let mut b = good.clone();
    b["validationTokens"] = json!([with_claim(
        "appid",
        json!("11111111-1111-1111-1111-111111111111")
    )]);
    cases.push(("wrong appid", b));
    let mut b = good.clone();
    let other_key = FakeEntraKeys::start().await;
    b["validationTokens"] = json!([other_key.token(CLIENT_ID, TENANT)]);
    cases.push(("token signed by another key", b));

    for (what, batch) in cases {
        let status = app.notify(&batch).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{what}");
        assert!(app.published().is_empty(), "{what}: published something");
        assert!(
            app.stored_presence(2).await.is_none(),
            "{what}: stored something"
        );
    }
    // The untouched batch still works afterwards.
    assert_eq!(app.notify(&good).await, StatusCode::ACCEPTED);
    assert_eq!(app.published().len(), 1);
}

#[tokio::test]
async fn webhook_rejects_malformed_and_oversized_bodies_with_4xx() {
    let app = TestApp::start().await;
    for body in ["", "not json", "[]", "{\"value\": 5}"] {
        let (status, _) = app.post("/api/notifications", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
    }
    let big = format!(
        "{{\"value\":[],\"pad\":\"{}\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let (status, _) = app.post("/api/notifications", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Items that are not notifications at all: 202, nothing done.
    let (status, _) = app
        .post(
            "/api/notifications",
            r#"{"value":[1,{"x":2}],"validationTokens":[7]}"#,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(app.published().is_empty());
}

#[tokio::test]
async fn webhook_handles_a_batch_of_100_notifications_in_one_request() {
    let app = TestApp::start().await;
    let items: Vec<Value> = (0..100)
        .map(|n| app.item(n, "DoNotDisturb", "Presenting"))
        .collect();
    let batch = app.batch(&items);
    assert_eq!(app.notify(&batch).await, StatusCode::ACCEPTED);
    let msgs = app.published();
    assert_eq!(msgs.len(), 100);
    let mut users: Vec<&str> = msgs.iter().map(|m| m["userId"].as_str().unwrap()).collect();
    users.sort();
    users.dedup();
    assert_eq!(users.len(), 100);
    // Graph delivering the same batch again (e.g. after a timeout) publishes nothing.
    assert_eq!(app.notify(&batch).await, StatusCode::ACCEPTED);
    assert!(app.published().is_empty());
    assert_eq!(app.entra.fetches(), 1, "signing keys are cached");
}

#[tokio::test]
async fn webhook_publishes_nothing_for_a_duplicate_or_older_notification() {
    let app = TestApp::start().await;
    let with_seq = |av: &str, seq: u64| {
        let mut i = app.item(3, av, av);
        i["resource"]["sequenceNumber"] = json!(seq);
        i
    };
    assert_eq!(
        app.notify(&app.batch(&[with_seq("Busy", 5)])).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(app.published().len(), 1);
    // Duplicate (same content, same sequence) and older (lower sequence, other presence).
    assert_eq!(
        app.notify(&app.batch(&[with_seq("Busy", 5)])).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.notify(&app.batch(&[with_seq("Away", 4)])).await,
        StatusCode::ACCEPTED
    );
    assert!(app.published().is_empty());
    // Newer: published, with the older one's presence as `previous`.
    assert_eq!(
        app.notify(&app.batch(&[with_seq("Away", 6)])).await,
        StatusCode::ACCEPTED
    );
    let msgs = app.published();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["previous"]["availability"], "Busy");
    // Two items for one user in one batch: applied in order, each change published once.
    let items = [
        app.item(4, "Busy", "Busy"),
        app.item(4, "Busy", "Busy"),
        app.item(4, "Away", "Away"),
    ];
    assert_eq!(app.notify(&app.batch(&items)).await, StatusCode::ACCEPTED);
    let av: Vec<Value> = app
        .published()
        .iter()
        .map(|m| m["availability"].clone())
        .collect();
    assert_eq!(av, vec![json!("Busy"), json!("Away")]);
}

#[tokio::test]
async fn webhook_answers_5xx_only_when_it_cannot_record() {
    let app = TestApp::start().await;
    let batch = app.batch(&[app.item(5, "Busy", "Busy")]);
    // The store refuses presence writes.
    let db = app.state.store.describe();
    let path = db.strip_prefix("SQLite at ").unwrap().to_owned();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER fail_presence BEFORE INSERT ON entities
         WHEN NEW.tbl = 'TeamsPresencePresence' BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;",
    )
    .unwrap();
    assert_eq!(app.notify(&batch).await, StatusCode::SERVICE_UNAVAILABLE);
    assert!(app.published().is_empty());
    // Recovered: Graph's retry of the same batch is recorded and published once.
    conn.execute_batch("DROP TRIGGER fail_presence;").unwrap();
    assert_eq!(app.notify(&batch).await, StatusCode::ACCEPTED);
    assert_eq!(app.published().len(), 1);
}

#[tokio::test]
async fn webhook_refetches_signing_keys_on_unknown_kid_at_most_once_a_minute() {
    let app = TestApp::start().await;
    let mut forged = app.batch(&[app.item(6, "Busy", "Busy")]);
    forged["validationTokens"] = json!([app
        .entra
        .sign(&FakeEntraKeys::claims(CLIENT_ID, TENANT), "rotated-kid")]);
    for _ in 0..3 {
        // Graph is asked to deliver again (the key may be published in a moment).
        assert_eq!(app.notify(&forged).await, StatusCode::SERVICE_UNAVAILABLE);
    }
    // First use fetches; the unknown kid may refetch only after a minute.
    assert_eq!(app.entra.fetches(), 1);
    assert!(app.published().is_empty());
}

#[tokio::test]
async fn webhook_asks_graph_to_retry_when_signing_keys_are_unreachable() {
    let app = TestApp::start().await;
    app.entra.set_failing(true);
    let batch = app.batch(&[app.item(7, "Busy", "Busy")]);
    assert_eq!(app.notify(&batch).await, StatusCode::SERVICE_UNAVAILABLE);
    assert!(app.published().is_empty());
    // A batch without validation tokens never reaches the key fetch (nor the store): 202.
    let mut forged = batch.clone();
    forged["validationTokens"] = json!([]);
    assert_eq!(app.notify(&forged).await, StatusCode::ACCEPTED);
}

const TOKEN_RAW: &str =
    "Validation: Testing client application reachability for subscription Request-Id: 3b3f+9c/=";
const TOKEN_ENCODED: &str = "Validation%3A%20Testing%20client%20application%20reachability%20for%20subscription%20Request-Id%3A%203b3f%2B9c%2F%3D";

#[tokio::test]
async fn validation_handshake_answers_the_decoded_token_in_forwarded_mode() {
    let app = TestApp::start().await;
    for route in ["/api/notifications", "/api/lifecycle"] {
        let resp = app
            .serve_router()
            .oneshot(
                Request::post(format!("{route}?validationToken={TOKEN_ENCODED}"))
                    .header("content-type", "text/plain")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{route}");
        assert_eq!(resp.headers()["content-type"], "text/plain");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, TOKEN_RAW.as_bytes(), "{route}");
    }
}

pub(crate) async fn invoke(app: &TestApp, function: &str, envelope: Value) -> Value {
    let resp = teams_presence::host::handler::router(app.state.clone())
        .oneshot(
            Request::post(format!("/{function}"))
                .header("content-type", "application/json")
                .body(Body::from(envelope.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

pub(crate) fn http_envelope(url: &str, query: Value, body: &str) -> Value {
    json!({
        "Data": {"req": {
            "Url": url, "Method": "POST", "Query": query,
            "Headers": {"Content-Type": ["application/json"]},
            "Params": {}, "Body": body,
        }},
        "Metadata": {"sys": {"MethodName": "notifications", "UtcNow": "2026-11-22T10:00:00Z"}},
    })
}

#[tokio::test]
async fn validation_handshake_answers_through_res_in_payload_mode() {
    let app = TestApp::start().await;
    let env = http_envelope(
        &format!(
            "https://example.azurewebsites.net/api/notifications?validationToken={TOKEN_ENCODED}"
        ),
        json!({"validationToken": TOKEN_RAW}),
        "",
    );
    let out = invoke(&app, "notifications", env).await;
    let res = &out["Outputs"]["res"];
    assert_eq!(res["statusCode"], "200");
    assert_eq!(res["headers"]["content-type"], "text/plain");
    assert_eq!(res["body"], TOKEN_RAW);
    assert!(out["Outputs"].get("message").is_none(), "{out}");
}

#[tokio::test]
async fn payload_mode_notification_becomes_the_message_output_binding() {
    let app = TestApp::start().await;
    let batch = app.batch(&[app.item(8, "Busy", "InAMeeting")]);
    let env = http_envelope(
        "https://example.azurewebsites.net/api/notifications",
        json!({}),
        &batch.to_string(),
    );
    let out = invoke(&app, "notifications", env.clone()).await;
    assert_eq!(out["Outputs"]["res"]["statusCode"], "202");
    let msg = &out["Outputs"]["message"];
    assert_eq!(msg["type"], "presence.changed");
    assert_eq!(msg["userId"], user(8).as_str());
    assert_eq!(msg["activity"], "InAMeeting");
    assert!(
        app.published().is_empty(),
        "went to the outbox, not in-process"
    );
    // Graph's retry of the same batch: 202, no message binding.
    let out = invoke(&app, "notifications", env).await;
    assert_eq!(out["Outputs"]["res"]["statusCode"], "202");
    assert!(out["Outputs"].get("message").is_none());
}

#[tokio::test]
async fn lifecycle_event_with_the_right_client_state_is_recorded_for_renewal() {
    let app = TestApp::start().await;
    let event = |client_state: &str, event: &str| {
        json!({"value": [{
            "subscriptionId": SUB, "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
            "tenantId": TENANT, "clientState": client_state, "lifecycleEvent": event,
        }]})
        .to_string()
    };
    let (status, _) = app
        .post("/api/lifecycle", event("wrong", "reauthorizationRequired"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(teams_presence::engine::lifecycle::pending(&app.state.store)
        .await
        .unwrap()
        .is_empty());
    let (status, _) = app
        .post(
            "/api/lifecycle",
            event(CLIENT_STATE, "reauthorizationRequired"),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let marks = teams_presence::engine::lifecycle::pending(&app.state.store)
        .await
        .unwrap();
    assert_eq!(marks.len(), 1);
    assert_eq!(marks[0].subscription_id, SUB);
    assert_eq!(
        marks[0].event(),
        Some(teams_presence::clients::graph::notification::LifecycleEvent::ReauthorizationRequired)
    );
    teams_presence::engine::lifecycle::clear(&app.state.store, SUB)
        .await
        .unwrap();
    assert!(teams_presence::engine::lifecycle::pending(&app.state.store)
        .await
        .unwrap()
        .is_empty());
    let (status, _) = app.post("/api/lifecycle", "nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// The webhook checks and decrypts with its cached copy of the subscription and confirms
/// the copy's ETag in the transaction that records the change. A copy that went stale
/// (the record rotated, renewed or deleted by another writer) must never make it accept or
/// drop what the current record says otherwise.
#[tokio::test]
async fn webhook_never_accepts_or_drops_on_a_stale_cached_subscription() {
    let app = TestApp::start().await;
    let store = &app.state.store;
    let with_state = |n: usize, client_state: &str| {
        let mut item = app.item(n, "Busy", "InACall");
        item["clientState"] = json!(client_state);
        item
    };
    // Another writer changes the subscription record after the webhook cached it.
    let rewrite = |f: fn(&mut SubscriptionRecord)| async move {
        let mut rec = store
            .get::<SubscriptionRecord>(SUB, "subscription")
            .await
            .unwrap()
            .unwrap()
            .value;
        f(&mut rec);
        store.upsert(&rec).await.unwrap();
    };
    assert_eq!(
        app.notify(&app.batch(&[app.item(1, "Busy", "InACall")]))
            .await,
        StatusCode::ACCEPTED
    );
    assert_eq!(app.published().len(), 1, "primes the cache");

    // A new clientState: what the current record says is accepted...
    rewrite(|r| r.client_state_sha256 = client_state_sha256_hex("rotated-secret")).await;
    let batch = app.batch(&[with_state(2, "rotated-secret")]);
    assert_eq!(app.notify(&batch).await, StatusCode::ACCEPTED);
    assert_eq!(app.published().len(), 1, "accepted on the current record");
    assert!(app.stored_presence(2).await.is_some());
    // ...and the old one no longer is.
    let batch = app.batch(&[with_state(3, CLIENT_STATE)]);
    assert_eq!(app.notify(&batch).await, StatusCode::ACCEPTED);
    assert!(app.published().is_empty());
    assert!(app.stored_presence(3).await.is_none());

    // Renewed (a new expiry, so a new ETag): recorded and published once.
    rewrite(|r| r.expires_at += chrono::Duration::minutes(50)).await;
    let batch = app.batch(&[with_state(4, "rotated-secret")]);
    assert_eq!(app.notify(&batch).await, StatusCode::ACCEPTED);
    assert_eq!(app.published().len(), 1);
    assert!(app.stored_presence(4).await.is_some());

    // Deleted: the cached copy still matches, but nothing is recorded against it.
    store
        .delete::<SubscriptionRecord>(SUB, "subscription", None)
        .await
        .unwrap();
    let batch = app.batch(&[with_state(5, "rotated-secret")]);
    assert_eq!(app.notify(&batch).await, StatusCode::ACCEPTED);
    assert!(app.published().is_empty());
    assert!(app.stored_presence(5).await.is_none());
}
