//! `teams-presence serve` from an empty environment on a fresh machine.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_serve(dir: &std::path::Path, port: u16) -> Running {
    let child = Command::new(support::binary())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        support::wait_for_port(addr, Duration::from_secs(20)),
        "serve did not start"
    );
    Running(child)
}

#[tokio::test]
async fn serve_with_an_empty_environment_answers_health_and_a_status_page_that_says_what_to_configure(
) {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let _serve = start_serve(dir.path(), port);
    let http = reqwest::Client::new();

    let health = http
        .get(format!("http://127.0.0.1:{port}/api/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let v: serde_json::Value = health.json().await.unwrap();
    assert_eq!(
        (
            v["status"].as_str(),
            v["mode"].as_str(),
            v["store"].as_str()
        ),
        (Some("ok"), Some("serve"), Some("sqlite"))
    );

    let page = http
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("Set up"), "{html}");
    assert!(html.contains("AZURE_CLIENT_ID"));
    assert!(html.contains("HUE_TARGETS"));

    let status: serde_json::Value = http
        .get(format!("http://127.0.0.1:{port}/api/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(status["nextSteps"].as_array().unwrap().len() >= 3);
    assert_eq!(status["users"], serde_json::json!([]));

    // The data directory was created with the generated key, readable by its owner only.
    let key = dir.path().join("data/token-key");
    assert!(key.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(dir.path().join("data"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
    }
    assert!(dir.path().join("data/teams-presence.sqlite3").exists());
}

#[tokio::test]
async fn serve_keeps_its_generated_key_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    drop(start_serve(dir.path(), port));
    let first = std::fs::read(dir.path().join("data/token-key")).unwrap();
    let port = support::free_port();
    drop(start_serve(dir.path(), port));
    assert_eq!(
        std::fs::read(dir.path().join("data/token-key")).unwrap(),
        first
    );
}

/// Issue 13.10 and 19: while the bridge is down, `serve`'s lights keep one pending change
/// per user (a burst of 60 changes becomes at most one command per user), and the latest
/// reaches the lamp as soon as the bridge answers.
#[tokio::test]
async fn serve_lights_coalesce_one_change_per_user_while_the_bridge_is_down() {
    use crate::fakes::hue::{Api, FakeHue, KEY};
    use teams_presence::core::message::TopicMessage;
    use teams_presence::http::state::{AppState, Mode};
    use teams_presence::store::{sqlite::SqliteStore, Store};

    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port(); // refusing connections until the fake starts
    let bridge = format!("http://127.0.0.1:{port}");
    let store = Store::Sqlite(SqliteStore::open(&dir.path().join("s.sqlite3")).unwrap());
    store.ensure_tables().await.unwrap();
    let app = AppState::new(
        support::settings(&[
            ("HUE_BRIDGE", &bridge),
            ("HUE_APPLICATION_KEY", KEY),
            ("HUE_TARGETS", "light:1"),
        ]),
        store,
        Mode::Serve,
    );
    let sinks = teams_presence::serve::sinks::spawn(&app);
    let msg = |user: &str, seq: u32, av: &str, ac: &str| {
        let v = serde_json::json!({
            "type": "presence.changed", "version": 1, "userId": user, "tenantId": "t",
            "availability": av, "activity": ac, "source": "notification",
            "observedAt": format!("2026-11-22T10:00:{:02}.000Z", seq % 60),
            "sequence": format!("{seq:020}-000000"),
        });
        TopicMessage::parse(v.to_string().as_bytes()).unwrap()
    };
    for seq in 1..=30 {
        let (av, ac) = if seq % 2 == 0 {
            ("Busy", "InACall")
        } else {
            ("Available", "Available")
        };
        app.publisher
            .publish(
                None,
                vec![msg("a", seq, av, ac), msg("b", seq, "Away", "Away")],
            )
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hue = FakeHue::start_at(Api::V1, format!("127.0.0.1:{port}").parse().unwrap()).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while hue.puts().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "puts: {:?}",
            hue.puts()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let puts = hue.puts();
    assert_eq!(puts.len(), 2, "one command per user: {puts:?}");
    assert_eq!(
        puts[0].body["xy"],
        serde_json::json!([0.7006, 0.2993]),
        "a: last was a call"
    );
    assert_eq!(
        puts[1].body["xy"],
        serde_json::json!([0.5143, 0.4572]),
        "b: away"
    );
    let status = app.sink_status.lock().unwrap().clone();
    assert!(
        status.last_answer_at.is_some() && status.last_error.is_none(),
        "{status:?}"
    );
    sinks.abort();
}
