//! The real binary given SIGTERM (issue 31, item 8): `serve` in the middle of a burst
//! delivers what it accepted to its sinks and exits 0 within the 10 s bound; `subscribe`
//! abandons nothing it already applied and delivers its other sinks' queues; `pbx run` takes
//! a Teams change from Service Bus through the edge's receive loop to the PBX (issue 31,
//! item 4) and stops as cleanly.
//!
//! The slow webhook below stands in for a sink that takes its time (a receiver behind a
//! slow link): each delivery is answered after [`SLOW`], and only answered deliveries count.

use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{json, Value};

use crate::fakes::entra::FakeEntra;
use crate::fakes::graph::FakeGraph;
use crate::fakes::hue::{Api, FakeHue, KEY as HUE_KEY};
use crate::fakes::pbx_receiver::FakePbxReceiver;
use crate::fakes::servicebus::FakeServiceBus;
use crate::support;

/// The user `teams-presence login` signs in with the fake Entra's device code.
const OID: &str = "device-user-oid";
/// How long the slow webhook takes to answer.
const SLOW: Duration = Duration::from_millis(1500);
/// The bound every role stops within (`engine::shutdown::DRAIN_BOUND`).
const BOUND: Duration = Duration::from_secs(10);

/// A webhook receiver that answers 200 after [`SLOW`]; keeps the bodies it answered.
#[derive(Clone, Default)]
struct SlowHook(Arc<Mutex<Vec<Value>>>);

impl SlowHook {
    async fn start() -> (Self, String) {
        let hook = Self::default();
        let app = axum::Router::new()
            .route("/hook", post(slow_receive))
            .with_state(hook.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (hook, url)
    }

    fn answered(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }
}

async fn slow_receive(State(hook): State<SlowHook>, body: Bytes) -> StatusCode {
    tokio::time::sleep(SLOW).await;
    hook.0
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
    StatusCode::OK
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A started binary, killed if the test ends (or fails) before it exited.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str], env: &[(String, String)], cwd: &Path, log: &str) -> Running {
    Running(
        support::command(args, env, cwd)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(cwd.join(log)).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// SIGTERM, then waits (up to twice the bound) for the exit; the status and how long it took.
async fn sigterm(running: &mut Running) -> (ExitStatus, Duration) {
    let child = &mut running.0;
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, started.elapsed());
        }
        assert!(
            started.elapsed() < BOUND * 2,
            "still running {:?} after SIGTERM",
            BOUND * 2
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_until(what: &str, secs: u64, log: &Path, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {secs} s\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn activity_shown_by(port: u16) -> Option<String> {
    let status: Value = reqwest::get(format!("http://127.0.0.1:{port}/api/status"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    status["users"][0]["activity"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_given_sigterm_during_a_burst_delivers_what_it_accepted_to_the_sinks_and_exits_0_within_the_bound(
) {
    let (entra, graph) = (FakeEntra::start().await, FakeGraph::start().await);
    let (hook, hook_url) = SlowHook::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_owned();
    let env = env(&[
        ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
        ("AZURE_AUTHORITY_HOST", &entra.url),
        ("GRAPH_ENDPOINT", &graph.url),
        ("POLL_INTERVAL", "1"),
        ("WEBHOOK_URL", &hook_url),
        ("WEBHOOK_SECRET", "s3cret"),
        ("RUST_LOG", "info"),
    ]);
    let (login_env, login_cwd) = (env.clone(), cwd.clone());
    let out = tokio::task::spawn_blocking(move || {
        support::command(&["login", "--data-dir", "data"], &login_env, &login_cwd)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    graph.set(OID, "Available", "Available");
    let port = support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut serve = spawn(
        &["serve", "--listen", &listen, "--data-dir", "data"],
        &env,
        &cwd,
        "serve.log",
    );
    let log = cwd.join("serve.log");
    assert!(support::wait_for_port(
        listen.parse().unwrap(),
        Duration::from_secs(20)
    ));
    wait_until("the first state at the webhook", 20, &log, || {
        hook.answered().iter().any(|b| b["activity"] == "Available")
    })
    .await;

    // A burst faster than the webhook answers: each change is polled (so accepted: stored
    // and handed to the sinks) while the sink is still busy with an older one.
    for (availability, activity) in [
        ("Busy", "InACall"),
        ("Away", "Away"),
        ("DoNotDisturb", "Presenting"),
    ] {
        graph.set(OID, availability, activity);
        let mut shown = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while shown.as_deref() != Some(activity) {
            assert!(Instant::now() < deadline, "serve did not poll {activity}");
            tokio::time::sleep(Duration::from_millis(50)).await;
            shown = activity_shown_by(port).await;
        }
    }
    let before = hook.answered().len();
    let (status, took) = sigterm(&mut serve).await;
    let text = std::fs::read_to_string(&log).unwrap();

    assert!(status.success(), "exit {status:?}\n{text}");
    assert!(took < BOUND, "took {took:?}\n{text}");
    let answered = hook.answered();
    assert!(
        answered.len() > before,
        "the queued change went out after the signal ({before} before)"
    );
    assert_eq!(
        answered.last().map(|b| b["activity"].clone()),
        Some(json!("Presenting")),
        "the last change serve accepted reached the webhook: {answered:?}\n{text}"
    );
    assert!(
        text.contains("the sinks delivered every change they were handed")
            && text.contains("stopped"),
        "{text}"
    );
    eprintln!(
        "serve stopped {took:?} after SIGTERM; the webhook answered {} deliveries, {} after the signal",
        answered.len(),
        answered.len() - before
    );
}

fn presence(user: &str, seq: u32, availability: &str, activity: &str) -> Value {
    json!({
        "type": "presence.changed", "version": 1, "userId": user, "tenantId": "t",
        "availability": availability, "activity": activity, "source": "notification",
        "observedAt": format!("2026-11-22T10:{:02}:{:02}.000Z", seq / 60 % 60, seq % 60),
        "sequence": format!("{seq:020}-000000"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_given_sigterm_abandons_nothing_it_applied_and_delivers_its_sinks_queues() {
    let sb = FakeServiceBus::start(10).await;
    let hue = FakeHue::start(Api::V1).await;
    let (hook, hook_url) = SlowHook::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_owned();
    let env = env(&[
        ("ServiceBusConnection", &sb.connection_string()),
        ("SERVICEBUS_ENDPOINT", &sb.url),
        ("PRESENCE_SUBSCRIPTION", "pi"),
        ("HUE_BRIDGE", &hue.url),
        ("HUE_APPLICATION_KEY", HUE_KEY),
        ("HUE_TARGETS", "light:1"),
        ("WEBHOOK_URL", &hook_url),
        ("WEBHOOK_SECRET", "s3cret"),
        ("RUST_LOG", "info"),
    ]);
    let mut subscribe = spawn(
        &["subscribe", "--data-dir", "data"],
        &env,
        &cwd,
        "subscribe.log",
    );
    let log = cwd.join("subscribe.log");
    wait_until("subscribe receiving", 20, &log, || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("subscribed"))
    })
    .await;

    // Three users changing every 20 ms; SIGTERM at once after, while the edge still works
    // through them and the slow webhook is behind.
    let states = [
        ("Busy", "InACall"),
        ("Away", "Away"),
        ("Available", "Available"),
    ];
    let mut seq = 0;
    for _ in 0..30 {
        for user in ["u1", "u2", "u3"] {
            seq += 1;
            let (a, b) = states[seq as usize % states.len()];
            sb.enqueue(presence(user, seq, a, b));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, took) = sigterm(&mut subscribe).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "exit {status:?}\n{text}");
    assert!(took < BOUND, "took {took:?}\n{text}");

    let applied = super::faults::read_state(&cwd.join("data/edge-state.json"));
    assert!(
        !applied.is_empty(),
        "something was applied before the signal\n{text}"
    );
    let sequence_of = |m: &Value| m["sequence"].as_str().unwrap().to_owned();
    let (completed, redelivered, abandoned) = sb.with(|b| {
        let body = |m: &crate::fakes::servicebus::Msg| -> Value {
            serde_json::from_slice(&m.body).unwrap()
        };
        (
            b.completed.iter().map(body).collect::<Vec<_>>(),
            b.queue
                .iter()
                .filter(|m| m.delivery_count > 0)
                .map(body)
                .collect::<Vec<_>>(),
            b.abandoned,
        )
    });
    // What was applied (or superseded by what was) is completed; what went back to the
    // broker was never applied.
    for m in &redelivered {
        let user = m["userId"].as_str().unwrap();
        assert!(
            applied.get(user).is_none_or(|s| sequence_of(m) > *s),
            "{user}'s message {} was abandoned although {} was applied\n{text}",
            sequence_of(m),
            applied[user]
        );
    }
    for (user, s) in &applied {
        assert!(
            completed
                .iter()
                .any(|m| m["userId"] == user.as_str() && sequence_of(m) == *s),
            "{user}'s applied message {s} is not completed"
        );
    }
    // The webhook got every user's newest completed change, though it answers slowly.
    let answered = hook.answered();
    for user in applied.keys() {
        let newest = completed
            .iter()
            .filter(|m| m["userId"] == user.as_str())
            .map(sequence_of)
            .max()
            .unwrap();
        let delivered = answered
            .iter()
            .filter(|m| m["userId"] == user.as_str())
            .map(sequence_of)
            .max();
        assert_eq!(
            delivered.as_deref(),
            Some(newest.as_str()),
            "{user}: the webhook's last delivery is the newest change\n{text}"
        );
    }
    assert!(
        text.contains("subscriber stopped") && text.contains("stopped"),
        "{text}"
    );
    eprintln!(
        "subscribe stopped {took:?} after SIGTERM: {} completed, {} back to the broker ({abandoned} abandoned), {} webhook deliveries",
        completed.len(),
        redelivered.len(),
        answered.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pbx_run_takes_a_teams_change_from_service_bus_to_the_pbx_and_stops_on_sigterm() {
    const USER: &str = "6b1f4f7e-7d3b-4b8e-9a61-2f5c0d1e3a10";
    let entra = FakeEntra::start().await;
    let (graph, teams) = FakeGraph::start_with_presence_writes().await;
    teams.set_client_session(USER, Some(("Available", "Available")));
    let receiver = FakePbxReceiver::start().await;
    let sb = FakeServiceBus::start(10).await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_owned();
    let set_url = format!("{}/api/users/{{extension}}/status/{{status}}", receiver.url);
    let env = env(&[
        ("AZURE_TENANT_ID", "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"),
        ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
        ("AZURE_CLIENT_SECRET", "app-secret"),
        ("AZURE_AUTHORITY_HOST", &entra.url),
        ("GRAPH_ENDPOINT", &graph.url),
        ("PBX", "http"),
        ("PBX_HTTP_SET_URL", &set_url),
        ("PBX_STABLE_SECONDS", "1"),
        ("ServiceBusConnection", &sb.connection_string()),
        ("SERVICEBUS_ENDPOINT", &sb.url),
        ("PRESENCE_SUBSCRIPTION", "pi"),
        ("RUST_LOG", "info"),
    ]);
    let out = support::command(
        &["pbx", "map", "add", "101", USER, "--data-dir", "data"],
        &env,
        &cwd,
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut run = spawn(&["pbx", "run", "--data-dir", "data"], &env, &cwd, "pbx.log");
    let log = cwd.join("pbx.log");
    wait_until("pbx run receiving", 20, &log, || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("subscribed"))
    })
    .await;
    sb.enqueue(presence(USER, 1, "Away", "Away"));
    wait_until("the PBX status from the Teams change", 20, &log, || {
        receiver
            .received()
            .iter()
            .any(|r| r.body["extension"] == "101" && r.body["status"] == "Away")
    })
    .await;
    sb.wait_for(5, "the message completed", |b| b.completed.len() == 1)
        .await;
    assert!(
        std::fs::metadata(cwd.join("data/heartbeat")).is_ok(),
        "the receive loop beats the heartbeat `healthcheck` reads"
    );

    let (status, took) = sigterm(&mut run).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "exit {status:?}\n{text}");
    assert!(took < BOUND, "took {took:?}\n{text}");
    assert!(
        text.contains("subscriber stopped") && text.contains("stopped"),
        "{text}"
    );
    assert_eq!(sb.with(|b| b.abandoned), 0, "nothing handed back\n{text}");
}
