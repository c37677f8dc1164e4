//! The custom handler driven the way the Functions host drives it: readiness probe,
//! payload-mode invocations with the host's double encoding, forwarded HTTP requests.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use teams_presence::http::state::{AppState, Mode};
use teams_presence::store::{sqlite::SqliteStore, Store};

use crate::support;

fn app() -> axum::Router {
    support::init_logging();
    let dir = tempfile::tempdir().unwrap().keep();
    let store = Store::Sqlite(SqliteStore::open(&dir.join("h.sqlite3")).unwrap());
    let state = AppState::new(
        support::settings(&[("STORE", "sqlite")]),
        store,
        Mode::Handler,
    );
    teams_presence::host::handler::router(state)
}

async fn call(app: axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}

fn invocation(function: &str, body: &Value) -> Request<Body> {
    Request::post(format!("/{function}"))
        .header("content-type", "application/json")
        .header(
            "x-azure-functions-invocationid",
            "11111111-2222-3333-4444-555555555555",
        )
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn readiness_probe_answers_any_method_on_root() {
    for method in ["GET", "POST", "HEAD"] {
        let req = Request::builder()
            .method(method)
            .uri("/")
            .body(Body::empty())
            .unwrap();
        let (status, _) = call(app(), req).await;
        assert_eq!(status, StatusCode::OK, "{method}");
    }
}

#[tokio::test]
async fn payload_mode_health_with_double_encoded_metadata_answers_through_res() {
    let body = support::host_http_invocation(
        "GET",
        "https://app.example/api/health?probe=%22x%22",
        &[("Accept", "application/json")],
        "",
    );
    let (status, v) = call(app(), invocation("health", &body)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let res = &v["Outputs"]["res"];
    assert_eq!(res["statusCode"], "200");
    assert!(res["headers"]["content-type"]
        .as_str()
        .unwrap()
        .starts_with("application/json"));
    let inner: Value = serde_json::from_str(res["body"].as_str().unwrap()).unwrap();
    assert_eq!(inner["status"], "ok");
    assert_eq!(inner["mode"], "handler");
    // A function without a message binding never writes one.
    assert!(v["Outputs"].get("message").is_none());
    assert!(v["Logs"].is_array());
}

#[tokio::test]
async fn payload_mode_without_a_url_falls_back_to_the_function_route() {
    let body = json!({
        "Data": {"req": {"Method": "\"GET\"", "Query": "{}", "Headers": {}, "Params": {"userId": "\"abc\""}}},
        "Metadata": {}
    });
    let (status, v) = call(app(), invocation("health", &body)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["Outputs"]["res"]["statusCode"], "200");
}

#[tokio::test]
async fn forwarded_health_is_served_as_is() {
    let (status, v) = call(
        app(),
        Request::get("/api/health").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["store"], "sqlite");
}

#[tokio::test]
async fn subscriptions_renew_without_a_public_url_says_presence_is_polled() {
    let timer = json!({"Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false}}, "Metadata": {}});
    let (status, v) = call(app(), invocation("subscriptions-renew", &timer)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(
        v["Logs"][0].as_str().unwrap().contains("PUBLIC_BASE_URL"),
        "{v}"
    );
    assert!(v["Outputs"].get("message").is_none());
}

#[tokio::test]
async fn presence_refresh_with_nobody_signed_in_succeeds_with_no_messages() {
    let timer = json!({"Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": true}}, "Metadata": {}});
    let (status, v) = call(app(), invocation("presence-refresh", &timer)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["Outputs"].get("message").is_none());
    assert!(v["Logs"][0]
        .as_str()
        .unwrap()
        .starts_with("presence-refresh:"));
}

#[tokio::test]
async fn sign_in_without_settings_says_which_setting_is_missing() {
    let (status, v) = call(
        app(),
        Request::get("/api/auth/start").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(v.as_str().unwrap().contains("AZURE_CLIENT_ID"), "{v}");
}

#[tokio::test]
async fn bad_invocations_get_4xx_and_no_outputs() {
    let cases: Vec<(&str, Vec<u8>, StatusCode)> = vec![
        ("health", b"{not json".to_vec(), StatusCode::BAD_REQUEST),
        ("health", b"[]".to_vec(), StatusCode::BAD_REQUEST),
        (
            "health",
            br#"{"Data":{}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "health",
            br#"{"Data":{"req":42}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        ("no-such-function", b"{}".to_vec(), StatusCode::NOT_FOUND),
        (
            "presence-refresh",
            br#"{"Data":{"timer":7}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (f, body, want) in cases {
        let req = Request::post(format!("/{f}"))
            .body(Body::from(body))
            .unwrap();
        let (status, v) = call(app(), req).await;
        assert_eq!(status, want, "{f}: {v}");
        assert_eq!(v["Outputs"], json!({}));
    }
}

#[tokio::test]
async fn oversized_invocations_are_refused() {
    let big = vec![b' '; teams_presence::host::envelope::MAX_INVOCATION_BYTES + 1];
    let req = Request::post("/health").body(Body::from(big)).unwrap();
    let resp = app().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

/// One real-socket test: the binary as `func start` runs it.
#[tokio::test]
async fn the_binary_listens_on_the_port_the_host_assigns() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let mut child = std::process::Command::new(support::binary())
        .arg("handler")
        .env_clear()
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("STORE", "sqlite")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let up = tokio::task::spawn_blocking(move || {
        support::wait_for_port(addr, std::time::Duration::from_secs(20))
    })
    .await
    .unwrap();
    let result = async {
        assert!(up, "handler did not listen");
        let http = reqwest::Client::new();
        let ready = http
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
        let body = support::host_http_invocation("GET", "https://x/api/health", &[], "");
        let inv: Value = http
            .post(format!("http://127.0.0.1:{port}/health"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(inv["Outputs"]["res"]["statusCode"], "200");
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}
