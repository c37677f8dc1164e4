//! The status page in a real headless browser (Debian's `chromium`, installed by the test
//! command): what a person sees, not just the HTML string.

use chrono::Utc;
use teams_presence::core::presence::{Observation, Presence, Source};
use teams_presence::http::state::{AppState, Mode};
use teams_presence::store::{sqlite::SqliteStore, Store};

use crate::fakes::entra::FakeEntra;
use crate::support;

fn chromium() -> String {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&path).exists(),
        "headless Chromium not found at {path}: run `scripts/test.sh` (it installs Debian's chromium) or set CHROMIUM"
    );
    path
}

/// Runs headless Chromium with the flags this machine needs (no sandbox as root, no
/// background networking) and returns its stdout.
fn headless(args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn the_status_page_shows_the_user_and_their_presence_in_a_browser() {
    let entra = FakeEntra::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(SqliteStore::open(&dir.path().join("s.sqlite3")).unwrap());
    let app = AppState::new(
        support::settings(&[
            ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
            ("AZURE_AUTHORITY_HOST", &entra.url),
            (
                "TOKEN_ENCRYPTION_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ),
        ]),
        store,
        Mode::Serve,
    );
    support::sign_in_directly(&app, &entra, "ada", "tenant-1").await;
    let obs = Observation {
        user_id: "ada".into(),
        tenant_id: "tenant-1".into(),
        presence: Presence::new("Busy", "InACall"),
        source: Source::Notification,
        observed_at: Utc::now(),
        graph_sequence: None,
        item_digest: None,
    };
    teams_presence::engine::pipeline::record(&app.store, &obs)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let router = teams_presence::serve::router(app);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let shot = dir.path().join("status.png");
    let (dom, shot_arg) = (url.clone(), format!("--screenshot={}", shot.display()));
    let dom = tokio::task::spawn_blocking(move || headless(&["--dump-dom", &dom]))
        .await
        .unwrap();
    // The rendered DOM has the person, their presence and the lamp-coloured dot.
    assert!(dom.contains("data-user-id=\"ada\""), "{dom}");
    assert!(dom.contains("Busy / InACall"), "{dom}");
    assert!(dom.contains("background:#d13438"), "busy is red: {dom}");
    assert!(dom.contains("polling every 30 s"), "{dom}");
    // Settings still missing are listed, and no secret shows.
    assert!(dom.contains("HUE_BRIDGE"), "{dom}");
    assert!(!dom.contains("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"));
    // A phone-sized screenshot renders.
    tokio::task::spawn_blocking(move || headless(&["--window-size=412,900", &shot_arg, &url]))
        .await
        .unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.len() > 5_000 && png.starts_with(b"\x89PNG"),
        "screenshot of {} bytes",
        png.len()
    );
    // `STATUS_PAGE_SCREENSHOT=path` keeps the picture (docs/status-page.png was made so).
    if let Ok(keep) = std::env::var("STATUS_PAGE_SCREENSHOT") {
        std::fs::write(keep, &png).unwrap();
    }
}
