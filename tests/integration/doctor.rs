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

const TENANT: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const APP: &str = "11111111-2222-3333-4444-555555555555";

async fn doctor_text(
    settings: &teams_presence::config::Settings,
    dir: &std::path::Path,
) -> (bool, String) {
    let mut out = Vec::new();
    let ok = teams_presence::cli::doctor::run(settings, dir, StoreKind::Sqlite, &mut out)
        .await
        .unwrap();
    (ok, String::from_utf8(out).unwrap())
}

async fn map_one_extension(settings: &teams_presence::config::Settings, dir: &std::path::Path) {
    let store = teams_presence::store::open(settings, StoreKind::Sqlite, dir).unwrap();
    store.ensure_tables().await.unwrap();
    store
        .upsert(&teams_presence::store::PbxMappingRecord {
            extension: "101".into(),
            user_id: "6b1f4f7e-7d3b-4b8e-9a61-2f5c0d1e3a10".into(),
            user: "jane@contoso.com".into(),
            created_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn doctor_checks_the_generic_pbx_the_presence_write_permission_and_the_mapping() {
    let (entra, graph) = (FakeEntra::start().await, FakeGraph::start().await);
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = vec![
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", APP),
        ("AZURE_CLIENT_SECRET", "a-secret-value"),
        ("AZURE_AUTHORITY_HOST", entra.url.as_str()),
        ("GRAPH_ENDPOINT", graph.url.as_str()),
        ("PBX", "http"),
        (
            "PBX_HTTP_SET_URL",
            "https://pbx.example/api/{extension}/status/{status}",
        ),
    ];

    // Nothing set up yet: no events secret, an app token without the permission, no mapping.
    entra.state.lock().unwrap().app_roles = Some(vec!["User.ReadBasic.All".into()]);
    let (ok, text) = doctor_text(&support::settings(&pairs), dir.path()).await;
    assert!(!ok, "{text}");
    for line in [
        "FAIL  PBX: PBX_EVENTS_SECRET is not set",
        "FAIL  PBX app permission: the app token for tenant 0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d carries User.ReadBasic.All but not Presence.ReadWrite.All",
        "fix: add the application permission Presence.ReadWrite.All",
        "Privileged Role Administrator or Global Administrator grant admin consent",
        "FAIL  PBX mapping: no extension is mapped to a Teams user",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }

    // Fixed: the secret, admin consent, one mapped extension.
    pairs.push(("PBX_EVENTS_SECRET", "pbx-events-secret-0123456789"));
    let settings = support::settings(&pairs);
    entra.state.lock().unwrap().app_roles = Some(vec![
        "Presence.ReadWrite.All".into(),
        "User.ReadBasic.All".into(),
    ]);
    map_one_extension(&settings, dir.path()).await;
    let (_, text) = doctor_text(&settings, dir.path()).await;
    for line in [
        "ok    PBX: events accepted on /api/pbx/events",
        "ok    PBX app permission: the app token for tenant 0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d carries Presence.ReadWrite.All",
        "ok    PBX mapping: 1 extension(s) mapped",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("FAIL  PBX"), "{text}");
    assert!(
        !text.contains("pbx-events-secret") && !text.contains("a-secret-value"),
        "{text}"
    );

    // A bad outbound URL template is named.
    pairs.push(("PBX_HTTP_SET_URL", "not a url {extension}"));
    pairs.retain(|(k, v)| *k != "PBX_HTTP_SET_URL" || !v.starts_with("https"));
    let (_, text) = doctor_text(&support::settings(&pairs), dir.path()).await;
    assert!(text.contains("FAIL  PBX: PBX_HTTP_SET_URL"), "{text}");
}

#[tokio::test]
async fn doctor_fails_while_3cx_runs_its_own_microsoft_365_presence_sync() {
    use crate::fakes::threecx::{self, FakeThreeCx};
    let (entra, graph, pbx) = (
        FakeEntra::start().await,
        FakeGraph::start().await,
        FakeThreeCx::start().await,
    );
    entra.state.lock().unwrap().app_roles = Some(vec!["Presence.ReadWrite.All".into()]);
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = vec![
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", APP),
        ("AZURE_CLIENT_SECRET", "a-secret-value"),
        ("AZURE_AUTHORITY_HOST", entra.url.as_str()),
        ("GRAPH_ENDPOINT", graph.url.as_str()),
        ("PBX", "3cx"),
        ("PBX_3CX_URL", pbx.url.as_str()),
        ("PBX_3CX_CLIENT_ID", threecx::CLIENT_ID),
        ("PBX_3CX_CLIENT_SECRET", "a-wrong-key"),
    ];
    let settings = support::settings(&pairs);
    map_one_extension(&settings, dir.path()).await;

    let (ok, text) = doctor_text(&settings, dir.path()).await;
    assert!(!ok);
    assert!(text.contains("FAIL  PBX: "), "{text}");
    assert!(
        text.contains("3CX refused the API client credentials"),
        "{text}"
    );
    assert!(
        text.contains("fix: copy the client id and the API key"),
        "{text}"
    );
    assert!(!text.contains("a-wrong-key"), "{text}");

    pairs.retain(|(k, _)| *k != "PBX_3CX_CLIENT_SECRET");
    pairs.push(("PBX_3CX_CLIENT_SECRET", threecx::SECRET));
    let settings = support::settings(&pairs);
    pbx.set_native_sync(true);
    let (_, text) = doctor_text(&settings, dir.path()).await;
    assert!(
        text.contains("FAIL  PBX: 3CX's own Microsoft 365 presence sync is on"),
        "{text}"
    );
    assert!(
        text.contains("fix: turn it off in the 3CX Admin Console → Integrations → Microsoft 365"),
        "{text}"
    );

    pbx.set_native_sync(false);
    let (_, text) = doctor_text(&settings, dir.path()).await;
    assert!(text.contains("ok    PBX: 3CX at"), "{text}");
    assert!(
        text.contains("its own Microsoft 365 presence sync is off"),
        "{text}"
    );
    assert!(text.contains("ok    PBX app permission"), "{text}");
    assert!(
        text.contains("ok    PBX mapping: 1 extension(s) mapped"),
        "{text}"
    );
}
