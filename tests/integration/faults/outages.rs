//! Outages of what the cloud and the edge depend on: the store (Azurite), the topic (Service
//! Bus), the bridge (Hue), and a peek-lock that runs out. Real outage durations: these tests
//! wait for real (20 s, 30 s, 60 s), in parallel with the rest of the suite.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{json, Value};
use teams_presence::store::{sqlite::SqliteStore, PresenceRecord, Store};

use super::{assert_no_repeats, t0, Cloud, Lamp, TENANT};
use crate::support;

fn message(user: &str, seq: u32, availability: &str, activity: &str) -> Value {
    json!({
        "type": "presence.changed", "version": 1, "userId": user, "tenantId": TENANT,
        "availability": availability, "activity": activity, "source": "notification",
        "observedAt": format!("2026-11-23T09:00:{:02}.000Z", seq % 60),
        "sequence": format!("{seq:020}-000000"),
    })
}

/// The bridge is unreachable (connections refused) for 60 s while three changes arrive: the
/// edge keeps the newest message locked (renewing the lock) while it backs off, completes
/// what that supersedes, abandons nothing (no delivery is spent, nothing dead-lettered), and
/// once the bridge is back the lamp gets the latest state, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hue_bridge_down_for_60_s_gets_only_the_latest_state_once_when_back() {
    let started = Instant::now();
    let lamp = Lamp::start().await;
    lamp.sb.enqueue(message("u1", 1, "Available", "Available"));
    lamp.wait_for(15, "green").await;

    lamp.bridge.refuse();
    let down = Instant::now();
    let during = [
        ("Busy", "InACall"),
        ("Away", "Away"),
        ("Busy", "InAMeeting"),
    ];
    for (i, (availability, activity)) in during.iter().enumerate() {
        lamp.sb
            .enqueue(message("u1", 2 + i as u32, availability, activity));
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(60).saturating_sub(down.elapsed())).await;
    assert_eq!(
        lamp.shown(),
        ["green"],
        "nothing reached an unplugged bridge"
    );
    lamp.bridge.up().await;

    // The sink back-off is at most 30 s (± jitter).
    lamp.wait_for(60, "orange").await;
    lamp.sb
        .wait_for(30, "all four completed", |b| b.completed.len() == 4)
        .await;
    let (abandoned, dead, renewed, deliveries) = lamp.sb.with(|b| {
        (
            b.abandoned,
            b.dead_lettered.len(),
            b.renewed,
            b.completed.iter().map(|m| m.delivery_count).max(),
        )
    });
    let shown = lamp.shown();
    let applied = lamp.stop().await;
    assert_eq!(
        (abandoned, dead),
        (0, 0),
        "nothing abandoned or dead-lettered"
    );
    assert_eq!(deliveries, Some(1), "every message delivered once");
    assert!(renewed >= 1, "the held lock was kept alive");
    assert_eq!(shown, ["green", "orange"], "only the latest, once");
    applied.assert_strictly_increasing("u1");
    assert_eq!(
        applied.of("u1").last().map(String::as_str),
        Some("00000000000000000004-000000")
    );
    eprintln!(
        "hue down 60 s: {renewed} lock renewals, 0 abandons, lamp {shown:?}, {:?}",
        started.elapsed()
    );
}

/// The edge applied a message but its lock ran out before the completion: the broker
/// delivers it again (DeliveryCount 2) and the edge completes it without a second command.
#[tokio::test]
async fn a_lost_peek_lock_redelivers_the_message_and_the_lamp_is_not_commanded_twice() {
    let started = Instant::now();
    let lamp = Lamp::start().await;
    lamp.sb.lose_next_locks(1);
    lamp.sb.enqueue(message("u1", 1, "Busy", "InACall"));
    lamp.sb
        .wait_for(20, "the redelivery completed", |b| b.completed.len() == 1)
        .await;
    let (lost, count) = lamp
        .sb
        .with(|b| (b.lost_locks, b.completed[0].delivery_count));
    assert_eq!(lost, 1);
    assert_eq!(count, 2, "completed on its second delivery");
    // The next change goes through normally.
    lamp.sb.enqueue(message("u1", 2, "Available", "Available"));
    lamp.wait_for(15, "green").await;
    let shown = lamp.shown();
    let applied = lamp.stop().await;
    assert_eq!(shown, ["red", "green"]);
    applied.assert_strictly_increasing("u1");
    assert_eq!(applied.of("u1").len(), 2);
    eprintln!(
        "lost peek-lock: completed on delivery {count}, lamp {shown:?}, {:?}",
        started.elapsed()
    );
}

/// Service Bus answers 500 for 15 s, then takes sends but answers too late (past the
/// client's 30 s timeout) for 15 s. Durable publishing keeps the change pending and sends it
/// again; the edge shows each final state once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_bus_answering_500_then_timing_out_for_30_s_loses_nothing_and_repeats_nothing() {
    let started = Instant::now();
    let lamp = Lamp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(SqliteStore::open(&dir.path().join("c.sqlite3")).unwrap());
    let cloud = Cloud::start(&lamp, store.clone(), &[("POLL_INTERVAL", "30")]).await;
    cloud.world.sign_in(&cloud.app, "alice").await;
    cloud.world.graph.set("alice", "Available", "Available");
    let mut now = t0();
    assert_eq!(cloud.tick(now).await.0, StatusCode::OK);
    lamp.wait_for(15, "green").await;

    let start = Instant::now();
    lamp.sb.set_failing_sends(true);
    // Three changes while every send is answered 500; each invocation fails (the host
    // retries nothing: the next tick re-sends what is pending).
    for (availability, activity) in [
        ("Busy", "InACall"),
        ("Away", "Away"),
        ("Busy", "InAMeeting"),
    ] {
        cloud.world.graph.set("alice", availability, activity);
        now += chrono::Duration::seconds(30);
        let (status, v) = cloud.tick(now).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{v}");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let pending = pending_of(&store, "alice").await;
    assert!(pending, "stored, not confirmed");
    // 15 s in: sends are accepted but answered after 40 s; the client gives up at 30 s.
    lamp.sb.set_failing_sends(false);
    lamp.sb.set_hanging_sends(Some(Duration::from_secs(40)));
    tokio::time::sleep(Duration::from_secs(15).saturating_sub(start.elapsed())).await;
    now += chrono::Duration::seconds(15);
    let (status, v) = cloud.tick(now).await;
    assert_eq!(
        status,
        StatusCode::BAD_GATEWAY,
        "a timed-out send fails: {v}"
    );
    assert!(
        start.elapsed() >= Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    lamp.sb.set_hanging_sends(None);
    assert!(
        pending_of(&store, "alice").await,
        "unconfirmed: still pending"
    );

    // After the outage the next tick sends the pending change again and confirms it.
    now += chrono::Duration::seconds(15);
    let (status, v) = cloud.tick(now).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(!pending_of(&store, "alice").await);
    lamp.wait_for(15, "orange").await;
    // A tick later nothing more is sent.
    now += chrono::Duration::seconds(15);
    cloud.tick(now).await;
    let sent = lamp.sb.all_bodies().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (failed, hung, duplicates) = lamp
        .sb
        .with(|b| (b.failed_sends, b.hung_sends, b.duplicates));
    let shown = lamp.shown();
    let applied = lamp.stop().await;
    assert_eq!(shown, ["green", "orange"], "each final state once");
    assert_no_repeats(&shown);
    applied.assert_strictly_increasing("alice");
    let last = store
        .get::<PresenceRecord>("alice", "presence")
        .await
        .unwrap()
        .unwrap()
        .value
        .last
        .sequence;
    assert_eq!(applied.of("alice").last(), Some(&last));
    eprintln!(
        "service bus 30 s: {failed} sends answered 500, {hung} held past the timeout, \
         {duplicates} dropped as duplicates, {sent} messages on the topic, lamp {shown:?}, {:?}",
        started.elapsed()
    );
}

async fn pending_of(store: &Store, user: &str) -> bool {
    store
        .get::<PresenceRecord>(user, "presence")
        .await
        .unwrap()
        .is_some_and(|r| r.value.pending_publish.is_some())
}

/// A private Azurite with its data on disk, so it can be killed and started again on the
/// same port with the same data.
struct DiskAzurite {
    port: u16,
    pid: u32,
    wrapper: std::process::Child,
}

impl DiskAzurite {
    fn start(port: u16, location: &Path) -> Self {
        let bin = std::env::var("AZURITE_TABLE_BIN").map_or_else(
            |_| {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/azurite/node_modules/.bin/azurite-table")
            },
            Into::into,
        );
        assert!(
            bin.exists(),
            "Azurite is not installed at {}",
            bin.display()
        );
        // The same guard as support::azurite: the server dies with this test process. The
        // first line out is the server's own pid (the one to kill).
        let me = std::process::id();
        let script = format!(
            "\"$0\" --tableHost 127.0.0.1 --tablePort {port} --location \"$1\" --silent --skipApiVersionCheck --disableTelemetry --loose >/dev/null & child=$!; echo $child; \
             trap 'kill $child 2>/dev/null' EXIT; \
             while kill -0 {me} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.5; done"
        );
        let mut wrapper = Command::new("bash")
            .arg("-c")
            .arg(script)
            .arg(&bin)
            .arg(location)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // bash's "Killed" notice after the kill -9 is expected; Azurite itself is silent.
            .stderr(Stdio::null())
            .spawn()
            .expect("start Azurite");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(wrapper.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let pid = line.trim().parse().expect("the server's pid");
        assert!(
            support::wait_for_port(
                format!("127.0.0.1:{port}").parse().unwrap(),
                Duration::from_secs(30)
            ),
            "Azurite did not start on {port}"
        );
        Self { port, pid, wrapper }
    }

    fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;TableEndpoint=http://127.0.0.1:{}/devstoreaccount1;",
            self.port
        )
    }

    /// `kill -9` of the server.
    fn kill(mut self) {
        let ok = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -9 {}", self.pid);
        self.wrapper.wait().unwrap();
    }
}

impl Drop for DiskAzurite {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.pid.to_string())
            .stderr(Stdio::null())
            .status();
    }
}

/// The cloud's store (Azurite, `STORE=table`) is killed for 20 s while the user's presence
/// changes twice. The ticks during the outage fail and publish nothing; after Azurite is
/// back on the same port with the same data, the next due poll stores and publishes the last
/// change, and the lamp shows it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_killed_for_20_s_then_restarted_ends_with_the_last_change_on_the_lamp() {
    let started = Instant::now();
    let lamp = Lamp::start().await;
    let data = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let azurite = DiskAzurite::start(port, data.path());
    let settings = support::settings(&[
        ("STORE", "table"),
        ("TABLES_CONNECTION_STRING", &azurite.connection_string()),
    ]);
    let store = teams_presence::store::open(
        &settings,
        teams_presence::config::StoreKind::Table,
        data.path(),
    )
    .unwrap();
    store.ensure_tables().await.unwrap();
    let cloud = Cloud::start(&lamp, store.clone(), &[("POLL_INTERVAL", "30")]).await;
    cloud.world.sign_in(&cloud.app, "alice").await;
    cloud.world.graph.set("alice", "Available", "Available");
    let mut now = t0();
    assert_eq!(cloud.tick(now).await.0, StatusCode::OK);
    lamp.wait_for(15, "green").await;
    // Azurite writes its data to disk every 5 s: what it acknowledged before the fault is
    // given time to reach the disk (a real table never loses an acknowledged write).
    tokio::time::sleep(Duration::from_secs(6)).await;

    azurite.kill();
    let down = Instant::now();
    let mut failed = 0;
    for (availability, activity) in [("Busy", "InACall"), ("Busy", "InAMeeting")] {
        cloud.world.graph.set("alice", availability, activity);
        for _ in 0..2 {
            now += chrono::Duration::seconds(15);
            let (status, v) = cloud.tick(now).await;
            failed += usize::from(status != StatusCode::OK || v.to_string().contains("fail"));
            tokio::time::sleep(Duration::from_secs(4)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(down.elapsed())).await;
    assert_eq!(
        lamp.shown(),
        ["green"],
        "nothing published without the store"
    );
    let azurite = DiskAzurite::start(port, data.path());

    // The next ticks (every 15 s of the clock) store and publish the last change.
    let mut ticks = 0;
    while lamp.shown().last() != Some(&"orange") {
        ticks += 1;
        assert!(
            ticks <= 8,
            "not published after the restart: {:?}",
            lamp.shown()
        );
        now += chrono::Duration::seconds(15);
        let (status, v) = cloud.tick(now).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while lamp.shown().last() != Some(&"orange") && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let shown = lamp.shown();
    let sent = lamp.sb.all_bodies();
    let applied = lamp.stop().await;
    assert_eq!(shown, ["green", "orange"], "the last change, once");
    applied.assert_strictly_increasing("alice");
    let rec = store
        .get::<PresenceRecord>("alice", "presence")
        .await
        .unwrap()
        .unwrap()
        .value;
    assert_eq!(applied.of("alice").last(), Some(&rec.last.sequence));
    assert!(rec.pending_publish.is_none());
    drop(azurite);
    eprintln!(
        "azurite down 20 s: {failed} ticks failed during the outage, {ticks} tick(s) after the restart, {} messages sent, lamp {shown:?}, {:?}",
        sent.len(),
        started.elapsed()
    );
}
