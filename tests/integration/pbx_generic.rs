//! The generic HTTP PBX adapter with the `vtx` preset, through the production routes and
//! engine: signed inbound events on `POST /api/pbx/events` (in `serve` and through the
//! custom handler as the Functions host forwards it), and the outbound status request for
//! every row of VTX's Teams → PBX table, against the fake Graph, Entra ID and a loopback
//! receiver standing in for the hosted PBX.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{Duration as TimeDelta, Utc};
use secrecy::SecretString;
use tower::ServiceExt;

use teams_presence::clients::pbx::events::sign;
use teams_presence::core::presence::Presence;
use teams_presence::http::state::{AppState, Mode};

use crate::support::World;

const USER: &str = "6b1f4f7e-7d3b-4b8e-9a61-2f5c0d1e3a10";
const SECRET: &str = "pbx-events-secret-0123456789";

/// The world every test here starts from: the fake Entra ID, a Graph that takes presence
/// writes (the user's own client showing Available), a receiver standing in for VTX's API,
/// the `vtx` preset's settings and extension 101 mapped to the user; the PBX sync loaded.
async fn vtx_world(mode: Mode) -> (World, AppState) {
    let mut w = World::builder()
        .presence_writes()
        .pbx_receiver()
        .tenant("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
        .settings(&[
            ("STORE", "sqlite"),
            ("AZURE_CLIENT_SECRET", "app-secret"),
            ("PBX", "http"),
            ("PBX_EVENTS_SECRET", SECRET),
            (
                "PBX_HTTP_HEADERS",
                "X-C5-Application: 2f6d1c3e-0000-4000-8000-000000000001",
            ),
            ("PBX_HTTP_USERNAME", "openapi@1234.bus.ent"),
            ("PBX_HTTP_PASSWORD", "vtx-password"),
            ("PBX_STABLE_SECONDS", "1"),
        ])
        .start()
        .await;
    w.writes()
        .set_client_session(USER, Some(("Available", "Available")));
    let set_url = format!(
        "{}/api/users/{{extension}}/status/{{status}}",
        w.receiver().url
    );
    w.set("PBX_HTTP_SET_URL", &set_url);
    w.map_extension("101", USER, "jane@contoso.com").await;
    let state = w.app(mode).with_pbx().unwrap();
    state.pbx.as_ref().unwrap().load().await.unwrap();
    (w, state)
}

fn event(state: &str, at: chrono::DateTime<Utc>) -> String {
    serde_json::json!({"extension": "101", "state": state, "timestamp": at.to_rfc3339()})
        .to_string()
}

fn post(body: &str, headers: &[(&str, String)]) -> Request<Body> {
    let mut r = Request::post("/api/pbx/events").header("content-type", "application/json");
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.body(Body::from(body.to_owned())).unwrap()
}

fn signature(body: &str, t: i64) -> String {
    format!(
        "t={t},v1={}",
        sign(&SecretString::from(SECRET), t, body.as_bytes())
    )
}

/// Inbound: a signed call event makes Teams Busy/InACall; unsigned, wrongly signed, stale
/// and replayed events are 401 and change nothing, malformed ones 400.
async fn inbound_rules(router: axum::Router, w: &World) {
    let now = Utc::now();
    let writes_before = w.writes().calls().len();
    let body = event("in_call", now);
    let refused: Vec<(&str, Request<Body>)> = vec![
        ("unsigned", post(&body, &[])),
        (
            "wrong bearer",
            post(&body, &[("authorization", "Bearer nope".into())]),
        ),
        (
            "wrong key",
            post(
                &body,
                &[(
                    "x-signature",
                    format!("t={},v1={}", now.timestamp(), "00".repeat(32)),
                )],
            ),
        ),
        (
            "stale signature",
            post(
                &body,
                &[("x-signature", signature(&body, now.timestamp() - 301))],
            ),
        ),
        ("stale event", {
            let old = event("in_call", now - TimeDelta::minutes(6));
            post(&old, &[("x-signature", signature(&old, now.timestamp()))])
        }),
    ];
    for (why, req) in refused {
        let resp = router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{why}");
    }
    let bad = r#"{"extension":"101","state":"on_fire","timestamp":"2026-11-27T10:00:00Z"}"#;
    let resp = router
        .clone()
        .oneshot(post(bad, &[("authorization", format!("Bearer {SECRET}"))]))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        w.writes().calls().len(),
        writes_before,
        "a refused event wrote to Graph"
    );
    assert!(w.writes().app_sessions(USER).is_empty());

    let resp = router
        .clone()
        .oneshot(post(
            &body,
            &[("x-signature", signature(&body, now.timestamp()))],
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(
        w.writes().aggregate(USER),
        ("Busy".into(), "InACall".into())
    );
    let writes = w.writes().calls().len();
    let replay = router
        .clone()
        .oneshot(post(
            &body,
            &[("x-signature", signature(&body, now.timestamp()))],
        ))
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED, "replayed");
    assert_eq!(w.writes().calls().len(), writes, "a replay wrote to Graph");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_accepts_only_signed_fresh_pbx_events_and_a_call_makes_teams_busy() {
    let (w, state) = vtx_world(Mode::Serve).await;
    let router = teams_presence::serve::router(state.clone());
    inbound_rules(router, &w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pbx_events_function_under_the_host_follows_the_same_rules() {
    let (w, state) = vtx_world(Mode::Handler).await;
    // The host forwards `pbx-events` (an HTTP-only function) to the same path.
    let router = teams_presence::host::handler::router(state.clone());
    inbound_rules(router, &w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vtx_preset_sends_the_documented_status_for_every_teams_state() {
    let (w, state) = vtx_world(Mode::Serve).await;
    let sync = state.pbx.clone().unwrap();
    // The VTX table, row by row: Teams state → the VTX status the phone gets.
    let table = [
        ("BeRightBack", "BeRightBack", "On Break"),
        ("Away", "Away", "Away"),
        ("Offline", "OffWork", "Away"),
        ("Offline", "Offline", "Away"),
        ("DoNotDisturb", "Presenting", "Do Not Disturb"),
        ("Busy", "InAMeeting", "In a Meeting"),
        ("Busy", "Busy", "In a Meeting"),
        ("Away", "OutOfOffice", "Out of Office"),
        ("Available", "Available", "Available"),
    ];
    // Each row a minute apart, so the one-write-per-10-s limit never delays a row.
    let mut t = Utc::now();
    let mut previous = "Available"; // what the phone shows before the first row
    let mut expected = 0;
    for (availability, activity, status) in table {
        sync.on_teams(
            USER,
            &Presence::new(availability, activity),
            teams_presence::engine::pbx::Freshness::ReadNow,
            t,
        )
        .await;
        sync.tick(t + TimeDelta::seconds(2)).await;
        let got = w.receiver().received();
        if status == previous {
            // The phone already shows it: nothing to send.
            assert_eq!(
                got.len(),
                expected,
                "{availability}/{activity} wrote {status} again"
            );
        } else {
            expected += 1;
            let last = got
                .get(expected - 1)
                .unwrap_or_else(|| panic!("no request for {availability}/{activity}: {got:?}"));
            assert_eq!(last.body["status"], status, "{availability}/{activity}");
            assert_eq!(last.body["extension"], "101");
            assert_eq!(last.method, axum::http::Method::PUT);
            let encoded = status.replace(' ', "%20");
            assert!(
                last.path_and_query
                    .ends_with(&format!("/api/users/101/status/{encoded}")),
                "{}",
                last.path_and_query
            );
            assert!(last.headers.get("x-c5-application").is_some());
            assert!(last
                .headers
                .get("authorization")
                .is_some_and(|v| v.to_str().unwrap().starts_with("Basic ")));
        }
        previous = status;
        t += TimeDelta::minutes(1);
    }
    assert_eq!(
        w.receiver().received().len(),
        expected,
        "one request per change of status"
    );
}

#[test]
fn docs_pbx_md_shows_the_presets_exactly_as_they_run() {
    use teams_presence::core::pbx::rules::Preset;
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/pbx.md"))
        .expect("docs/pbx.md exists");
    for preset in Preset::ALL {
        let text = preset.rules().describe();
        assert!(
            doc.contains(&text),
            "docs/pbx.md does not show the `{}` preset as it runs; paste this:\n{text}",
            preset.name()
        );
    }
}
