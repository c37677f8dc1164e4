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
