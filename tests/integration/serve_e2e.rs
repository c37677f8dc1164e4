//! The embedded default end to end, as a user runs it: `teams-presence login` (device code)
//! then `teams-presence serve`, with fake Entra ID, fake Graph and a fake Hue bridge on
//! loopback. A presence change in Graph reaches the lamp within a poll interval; after
//! `kill -9` and a restart the user is still signed in and the lamp is right.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fakes::entra::FakeEntra;
use crate::fakes::graph::FakeGraph;
use crate::fakes::hue::{Api, FakeHue, KEY};
use crate::support;

const OID: &str = "device-user-oid";

use support::command;

fn start_serve(env: &[(String, String)], cwd: &std::path::Path) -> (Child, u16) {
    let port = support::free_port();
    let child = command(
        &[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            "data",
        ],
        env,
        cwd,
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    assert!(support::wait_for_port(
        format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(20)
    ));
    (child, port)
}

/// Waits until the bridge received a PUT turning light 1 on with an xy colour near `xy`.
async fn wait_for_colour(hue: &FakeHue, after: usize, xy: (f64, f64), timeout: Duration) -> Value {
    let start = Instant::now();
    loop {
        let puts = hue.puts();
        if let Some(p) = puts.iter().skip(after).find(|p| {
            p.path.contains("/lights/1/state")
                && p.body["on"] == true
                && p.body["xy"]
                    .as_array()
                    .and_then(|a| {
                        Some(
                            ((a.first()?.as_f64()? - xy.0).abs() < 0.02)
                                && ((a.get(1)?.as_f64()? - xy.1).abs() < 0.02),
                        )
                    })
                    .unwrap_or(false)
        }) {
            return p.body.clone();
        }
        assert!(
            start.elapsed() < timeout,
            "no PUT with xy {xy:?} within {timeout:?}; saw {:?}",
            puts.iter().map(|p| (&p.path, &p.body)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_then_serve_drives_the_lamp_and_survives_kill_9() {
    let (entra, graph, hue) = (
        FakeEntra::start().await,
        FakeGraph::start().await,
        FakeHue::start(Api::V1).await,
    );
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(String, String)> = [
        ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
        ("AZURE_AUTHORITY_HOST", entra.url.as_str()),
        ("GRAPH_ENDPOINT", graph.url.as_str()),
        ("POLL_INTERVAL", "1"),
        ("HUE_BRIDGE", hue.url.as_str()),
        ("HUE_APPLICATION_KEY", KEY),
        ("HUE_TARGETS", "light:1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();

    // 1. Device-code sign-in, as on a headless Pi.
    let login_env = env.clone();
    let cwd = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        command(&["login", "--data-dir", "data"], &login_env, &cwd)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ABCD-1234") && stdout.contains("Signed in as Pi Owner"),
        "{stdout}"
    );

    // 2. serve polls Graph and turns the lamp red for a call.
    graph.set(OID, "Busy", "InACall");
    let (mut serve, port) = start_serve(&env, dir.path());
    wait_for_colour(&hue, 0, (0.7006, 0.2993), Duration::from_secs(15)).await;
    let status: Value = reqwest::get(format!("http://127.0.0.1:{port}/api/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["users"][0]["activity"], "InACall", "{status}");
    assert!(
        status["lights"]["lastCommand"]
            .as_str()
            .unwrap()
            .contains("on"),
        "{status}"
    );

    // 3. kill -9, change presence while it is down, restart: still signed in, lamp right.
    serve.kill().unwrap(); // SIGKILL
    serve.wait().unwrap();
    graph.set(OID, "Available", "Available");
    let before = hue.puts().len();
    let device_codes = entra
        .state
        .lock()
        .unwrap()
        .token_requests
        .iter()
        .filter(|r| r["grant_type"].contains("device_code"))
        .count();
    let (mut serve, _) = start_serve(&env, dir.path());
    wait_for_colour(&hue, before, (0.1724, 0.7468), Duration::from_secs(15)).await;
    serve.kill().unwrap();
    serve.wait().unwrap();
    let s = entra.state.lock().unwrap();
    let device_codes_after = s
        .token_requests
        .iter()
        .filter(|r| r["grant_type"].contains("device_code"))
        .count();
    assert_eq!(
        device_codes, device_codes_after,
        "no new sign-in was needed"
    );
    assert!(
        s.token_requests
            .iter()
            .any(|r| r["grant_type"] == "refresh_token"),
        "the stored refresh token was used"
    );
}
