//! `subscribe` as the real binary, on a Pi that boots before its Hue bridge: it starts,
//! says it is waiting, leaves the messages in the subscription, and shows the latest state
//! as soon as the bridge answers, without ever exiting.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::fakes::hue::{Api, FakeHue, KEY};
use crate::fakes::servicebus::FakeServiceBus;
use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_waits_for_a_bridge_that_is_down_at_boot_and_then_shows_the_change() {
    let sb = FakeServiceBus::start(10).await;
    // Nothing listens here yet: connections are refused.
    let port = support::free_port();
    let bridge = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("subscribe.log");
    let mut child = Command::new(support::binary())
        .args(["subscribe", "--data-dir", "data"])
        .env_clear()
        .current_dir(dir.path())
        .env("ServiceBusConnection", sb.connection_string())
        .env("SERVICEBUS_ENDPOINT", &sb.url)
        .env("PRESENCE_SUBSCRIPTION", "pi")
        .env("HUE_BRIDGE", &bridge)
        .env("HUE_APPLICATION_KEY", KEY)
        .env("HUE_TARGETS", "light:1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    sb.enqueue(json!({
        "type": "presence.changed", "version": 1, "userId": "u1", "tenantId": "t",
        "availability": "Busy", "activity": "InACall", "source": "notification",
        "observedAt": "2026-11-22T10:00:00.000Z", "sequence": "00000000000000000001-000000",
    }));

    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(child.try_wait().unwrap().is_none(), "subscribe exited");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("waiting for the Hue bridge"), "{text}");
    // Nothing completed, nothing even locked: the message waits in the subscription.
    assert!(sb.with(|b| b.completed.is_empty() && b.queue[0].delivery_count == 0));

    let hue = FakeHue::start_at(Api::V1, format!("127.0.0.1:{port}").parse().unwrap()).await;
    sb.wait_for(45, "the change applied", |b| b.completed.len() == 1)
        .await;
    let puts = hue.puts();
    assert_eq!(puts.len(), 1, "{puts:?}");
    assert_eq!(puts[0].path, "/lights/1/state");
    assert_eq!(
        puts[0].body["xy"],
        json!([0.7006, 0.2993]),
        "red: in a call"
    );
    let up = started.elapsed();
    assert!(child.try_wait().unwrap().is_none(), "subscribe exited");
    eprintln!(
        "subscribe pid {} running for {:.1} s across the bridge outage (bridge up after 10 s)",
        child.id(),
        up.as_secs_f64()
    );
    child.kill().unwrap();
    child.wait().unwrap();
    eprintln!("{}", std::fs::read_to_string(&log).unwrap());
}
