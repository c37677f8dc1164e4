//! `teams-presence doctor` on a healthy and on a broken configuration.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use teams_presence::config::StoreKind;

use crate::fakes::entra::FakeEntra;
use crate::fakes::graph::FakeGraph;
use crate::support;

/// The v1 bridge endpoints doctor reads: config (public part for any key), lights and
/// groups with a key.
async fn tiny_bridge() -> String {
    let app = Router::new()
        .route("/api/config", get(|| async { Json(json!({"name": "Hue Bridge", "bridgeid": "001788FFFE000000", "apiversion": "1.65.0"})) }))
        // Like a real v1 bridge, the public part of the config for any key.
        .route("/api/{key}/config", get(|| async { Json(json!({"name": "Hue Bridge", "bridgeid": "001788FFFE000000", "apiversion": "1.65.0"})) }))
        .route("/api/{key}/groups", get(|| async { Json(json!({})) }))
        .route(
            "/api/{key}/lights",
            get(|axum::extract::Path(key): axum::extract::Path<String>| async move {
                if key == "good-key" {
                    Json(json!({"1": {"name": "Desk", "state": {"on": false}}}))
                } else {
                    Json(json!([{"error": {"type": 1, "address": "/lights", "description": "unauthorized user"}}]))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn doctor_passes_a_healthy_configuration() {
    let (entra, graph, bridge) = (
        FakeEntra::start().await,
        FakeGraph::start().await,
        tiny_bridge().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let settings = support::settings(&[
        ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
        ("AZURE_CLIENT_SECRET", "a-secret-value"),
        ("AZURE_AUTHORITY_HOST", &entra.url),
        ("GRAPH_ENDPOINT", &graph.url),
        ("PUBLIC_BASE_URL", "https://presence.example"),
        ("HUE_BRIDGE", &bridge),
        ("HUE_APPLICATION_KEY", "good-key"),
        ("HUE_TARGETS", "light:1"),
    ]);
    let mut out = Vec::new();
    let ok = teams_presence::cli::doctor::run(&settings, dir.path(), StoreKind::Sqlite, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(ok, "{text}");
    assert!(!text.contains("FAIL"), "{text}");
    for line in [
        "ok    app registration",
        "ok    sign-in authority",
        "ok    clock",
        "ok    Microsoft Graph",
        "ok    store",
        "ok    Hue bridge",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(
        !text.contains("a-secret-value") && !text.contains("good-key"),
        "{text}"
    );
}

#[tokio::test]
async fn doctor_names_each_problem_and_its_fix() {
    let graph = FakeGraph::start().await;
    let bridge = tiny_bridge().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = support::settings(&[
        ("AZURE_CLIENT_ID", "not-a-guid"),
        ("AZURE_AUTHORITY_HOST", "http://127.0.0.1:9"),
        ("GRAPH_ENDPOINT", &graph.url),
        ("HUE_BRIDGE", &bridge),
        ("HUE_APPLICATION_KEY", "stale-key"),
        (
            "ServiceBusConnection",
            "Endpoint=sb://127.0.0.1:9/;SharedAccessKeyName=listen",
        ),
    ]);
    let mut out = Vec::new();
    let ok = teams_presence::cli::doctor::run(&settings, dir.path(), StoreKind::Sqlite, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(!ok);
    assert!(
        text.contains("FAIL  app registration: AZURE_CLIENT_ID \"not-a-guid\" is not a GUID"),
        "{text}"
    );
    assert!(
        text.contains("FAIL  sign-in authority: cannot reach"),
        "{text}"
    );
    assert!(
        text.contains("FAIL  Hue bridge: the bridge does not know HUE_APPLICATION_KEY"),
        "{text}"
    );
    assert!(
        text.contains("fix: run `teams-presence hue pair` again"),
        "{text}"
    );
    assert!(
        text.contains("FAIL  Service Bus: ServiceBusConnection: no SharedAccessKey"),
        "{text}"
    );
    assert!(text.contains("warn  users: nobody is signed in"), "{text}");
    assert!(text
        .trim_end()
        .ends_with("Some checks failed: see the fixes above."));
}

#[test]
fn the_doctor_command_exits_non_zero_when_something_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(support::binary())
        .args(["doctor", "--data-dir", "d"])
        .env_clear()
        .env("AZURE_AUTHORITY_HOST", "http://127.0.0.1:9")
        .env("GRAPH_ENDPOINT", "http://127.0.0.1:9")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAIL  app registration: AZURE_CLIENT_ID is not set"),
        "{stdout}"
    );
}
