//! The edge end to end: the subscribe loop against a fake Service Bus (peek-lock, lock
//! tokens, delivery counts, abandon and redelivery, dead-lettering) and fake Hue bridges
//! (v1 and v2), plus the `hue-subscriber` path (`Applier::handle_body`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;
use serde_json::{json, Value};
use teams_presence::clients::hue::{self, Address, HueSink};
use teams_presence::clients::servicebus::{
    self, BrokerProperties, ConnectionString, ServiceBusError,
};
use teams_presence::config::HueTarget;
use teams_presence::core::judge::Verdict;
use teams_presence::core::lights::LightMap;
use teams_presence::core::message::TopicMessage;
use teams_presence::edge::{self, Options};
use teams_presence::engine::applier::Applier;
use teams_presence::engine::publish::send_direct;
use tokio::sync::oneshot;

use crate::fakes::hue::{small_light_id, Api, FakeHue, KEY as HUE_KEY, SMALL_OFFICE_GROUPED_LIGHT};
use crate::fakes::servicebus::FakeServiceBus;
use crate::support;

fn presence(user: &str, seq: u32, availability: &str, activity: &str) -> Value {
    json!({
        "type": "presence.changed", "version": 1, "userId": user, "tenantId": "t",
        "availability": availability, "activity": activity, "source": "notification",
        "observedAt": format!("2026-11-22T10:{:02}:{:02}.000Z", seq / 60 % 60, seq % 60),
        "sequence": format!("{seq:020}-000000"),
    })
}

async fn sink(fake: &FakeHue, targets: &[HueTarget]) -> HueSink {
    let address = Address::parse(&fake.url).unwrap();
    HueSink::connect(&address, &SecretString::from(HUE_KEY), targets)
        .await
        .unwrap()
}

fn client(sb: &FakeServiceBus) -> servicebus::Client {
    let conn = ConnectionString::parse(&sb.connection_string()).unwrap();
    servicebus::Client::new(conn, Some(sb.url.parse().unwrap()), "presence")
        .unwrap()
        .subscription("pi")
}

fn options() -> Options {
    Options {
        wait: Duration::from_secs(1),
        ..Options::default()
    }
}

/// Runs the subscribe loop in the background; dropping or sending on the handle stops it.
struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Applier>,
}

impl Running {
    fn start(sb: &FakeServiceBus, mut applier: Applier) -> Self {
        let client = client(sb);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            edge::run(&client, &mut applier, &options(), async {
                let _ = rx.await;
            })
            .await
            .unwrap();
            applier
        });
        Self {
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) -> Applier {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the loop stops on shutdown")
            .unwrap()
    }
}

#[tokio::test]
async fn each_presence_state_puts_the_right_body_on_v1_and_v2_bridges() {
    // (availability, activity, v1 body, v2 body); colours are the default map's, their xy
    // computed independently (Python, sRGB gamma + Wide gamut matrix).
    let red_v1 = json!({"on": true, "bri": 254, "xy": [0.7006, 0.2993]});
    let red_v2 = json!({"on": {"on": true}, "dimming": {"brightness": 100.0}, "color": {"xy": {"x": 0.7006, "y": 0.2993}}});
    let cases = [
        ("Busy", "InACall", red_v1.clone(), red_v2.clone()),
        (
            "Available",
            "Available",
            json!({"on": true, "bri": 178, "xy": [0.1724, 0.7468]}),
            json!({"on": {"on": true}, "dimming": {"brightness": 70.0}, "color": {"xy": {"x": 0.1724, "y": 0.7468}}}),
        ),
        (
            "Busy",
            "InAMeeting",
            json!({"on": true, "bri": 203, "xy": [0.6187, 0.3687]}),
            json!({"on": {"on": true}, "dimming": {"brightness": 80.0}, "color": {"xy": {"x": 0.6187, "y": 0.3687}}}),
        ),
        ("DoNotDisturb", "Presenting", red_v1, red_v2),
        (
            "Away",
            "Away",
            json!({"on": true, "bri": 127, "xy": [0.5143, 0.4572]}),
            json!({"on": {"on": true}, "dimming": {"brightness": 50.0}, "color": {"xy": {"x": 0.5143, "y": 0.4572}}}),
        ),
        (
            "DoNotDisturb",
            "DoNotDisturb",
            json!({"on": true, "bri": 203, "xy": [0.2181, 0.0778]}),
            json!({"on": {"on": true}, "dimming": {"brightness": 80.0}, "color": {"xy": {"x": 0.2181, "y": 0.0778}}}),
        ),
        (
            "Offline",
            "OffWork",
            json!({"on": false}),
            json!({"on": {"on": false}}),
        ),
    ];
    for api in [Api::V1, Api::V2] {
        let fake = FakeHue::start(api).await;
        let targets = [HueTarget::Light("1".into()), HueTarget::Room("2".into())];
        let mut applier = Applier::new(
            LightMap::default(),
            sink(&fake, &targets).await,
            vec![],
            None,
        );
        for (i, (av, ac, _, _)) in cases.iter().enumerate() {
            let body = presence("u1", i as u32 + 1, av, ac).to_string();
            let verdict = applier
                .handle_body(body.as_bytes(), Utc::now())
                .await
                .unwrap();
            assert!(matches!(verdict, Verdict::Apply { .. }), "{av}/{ac}");
        }
        let puts = fake.puts();
        assert_eq!(puts.len(), cases.len() * 2, "{api:?}: {puts:?}");
        for (i, (av, ac, v1, v2)) in cases.iter().enumerate() {
            let (light, group) = (&puts[2 * i], &puts[2 * i + 1]);
            let (want, light_path, group_path) = match api {
                // v1: light numbers as given; a room is a group.
                Api::V1 => (v1, "/lights/1/state".into(), "/groups/2/action".into()),
                // v2: light 1 and room 2 resolved through id_v1, the room to its grouped_light.
                Api::V2 => (
                    v2,
                    format!("/light/{}", small_light_id(1)),
                    format!("/grouped_light/{SMALL_OFFICE_GROUPED_LIGHT}"),
                ),
            };
            let (light_path, group_path): (String, String) = (light_path, group_path);
            assert_eq!(light.path, light_path, "{api:?} {av}/{ac}");
            assert_eq!(group.path, group_path, "{api:?} {av}/{ac}");
            assert_eq!(&light.body, want, "{api:?} {av}/{ac}");
            assert_eq!(&group.body, want, "{api:?} {av}/{ac}");
        }
        // user.signin_required: the slow blue breathe.
        let signin = json!({"type": "user.signin_required", "version": 1, "userId": "u1",
                            "tenantId": "t", "observedAt": "2026-11-22T11:00:00.000Z", "reason": "x"});
        applier
            .handle_body(signin.to_string().as_bytes(), Utc::now())
            .await
            .unwrap();
        let last = fake.puts().pop().unwrap();
        match api {
            Api::V1 => assert_eq!(
                last.body,
                json!({"on": true, "bri": 102, "xy": [0.1369, 0.066], "alert": "lselect"})
            ),
            Api::V2 => assert_eq!(last.body["alert"], json!({"action": "breathe"})),
        }
        assert_eq!(fake.rejected(), 0);
    }
}

#[tokio::test]
async fn a_sink_failure_abandons_and_the_message_is_applied_after_recovery() {
    let sb = FakeServiceBus::start(10).await;
    let fake = FakeHue::start(Api::V1).await;
    let applier = Applier::new(
        LightMap::default(),
        sink(&fake, &[HueTarget::Light("1".into())]).await,
        vec![],
        None,
    );
    fake.set_failing(true);
    sb.enqueue(presence("u1", 1, "Busy", "InACall"));
    let running = Running::start(&sb, applier);
    sb.wait_for(10, "an abandon", |b| b.abandoned >= 1).await;
    assert!(sb.with(|b| b.completed.is_empty()));
    fake.set_failing(false);
    sb.wait_for(15, "completion after recovery", |b| b.completed.len() == 1)
        .await;
    let delivered = sb.with(|b| b.completed[0].delivery_count);
    assert!(delivered >= 2, "redelivered after abandon: {delivered}");
    assert_eq!(fake.puts().len(), 1);
    assert_eq!(fake.puts()[0].body["on"], true);
    running.stop().await;
}

#[tokio::test]
async fn a_message_that_keeps_failing_is_dead_lettered_and_the_loop_goes_on() {
    let sb = FakeServiceBus::start(2).await;
    let fake = FakeHue::start(Api::V1).await;
    let applier = Applier::new(
        LightMap::default(),
        sink(&fake, &[HueTarget::Light("1".into())]).await,
        vec![],
        None,
    );
    fake.set_failing(true);
    sb.enqueue(presence("u1", 1, "Busy", "InACall"));
    let running = Running::start(&sb, applier);
    sb.wait_for(15, "dead-lettering", |b| b.dead_lettered.len() == 1)
        .await;
    fake.set_failing(false);
    sb.enqueue(presence("u1", 2, "Available", "Available"));
    sb.wait_for(15, "the next message", |b| b.completed.len() == 1)
        .await;
    running.stop().await;
}

#[tokio::test]
async fn an_older_message_is_ignored_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state: PathBuf = dir.path().join("edge-state.json");
    let sb = FakeServiceBus::start(10).await;
    let fake = FakeHue::start(Api::V1).await;
    let targets = [HueTarget::Light("1".into())];
    let applier = Applier::new(
        LightMap::default(),
        sink(&fake, &targets).await,
        vec![],
        Some(state.clone()),
    );
    let running = Running::start(&sb, applier);
    sb.enqueue(presence("u1", 5, "Busy", "InACall"));
    sb.wait_for(10, "first", |b| b.completed.len() == 1).await;
    sb.enqueue(presence("u1", 4, "Available", "Available"));
    sb.wait_for(10, "older completed", |b| b.completed.len() == 2)
        .await;
    running.stop().await;
    assert_eq!(fake.puts().len(), 1, "the older message changed nothing");

    // A new process with the same state file still refuses the older message.
    let applier = Applier::new(
        LightMap::default(),
        sink(&fake, &targets).await,
        vec![],
        Some(state),
    );
    let running = Running::start(&sb, applier);
    sb.enqueue(presence("u1", 3, "Away", "Away"));
    sb.wait_for(10, "older completed after restart", |b| {
        b.completed.len() == 3
    })
    .await;
    running.stop().await;
    assert_eq!(fake.puts().len(), 1);
}

/// A burst is coalesced, never waited for: the first message goes out at once, what arrives
/// while a command is in flight is folded into the next one, and the lamp ends in the last
/// state without the bridge ever answering 429.
#[tokio::test]
async fn a_burst_of_24_changes_ends_in_the_last_state_within_the_bridge_limits() {
    let sb = FakeServiceBus::start(10).await;
    let fake = FakeHue::start(Api::V2).await;
    let applier = Applier::new(
        LightMap::default(),
        sink(
            &fake,
            &[HueTarget::Light("1".into()), HueTarget::Room("2".into())],
        )
        .await,
        vec![],
        None,
    );
    let running = Running::start(&sb, applier);
    for seq in 1..=23 {
        let (av, ac) = if seq % 2 == 0 {
            ("Busy", "InACall")
        } else {
            ("Available", "Available")
        };
        sb.enqueue(presence("u1", seq, av, ac));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sb.enqueue(presence("u1", 24, "Away", "Away"));
    sb.wait_for(20, "all completed", |b| b.completed.len() == 24)
        .await;
    running.stop().await;
    let puts = fake.puts();
    let last_light = puts
        .iter()
        .rev()
        .find(|p| p.path.starts_with("/light/"))
        .unwrap();
    let last_room = puts
        .iter()
        .rev()
        .find(|p| p.path.starts_with("/grouped_light/"))
        .unwrap();
    assert_eq!(
        last_light.body["color"]["xy"]["x"],
        json!(0.5143),
        "{puts:?}"
    );
    assert_eq!(
        last_room.body["color"]["xy"]["x"],
        json!(0.5143),
        "{puts:?}"
    );
    assert_eq!(fake.rejected(), 0, "the bridge never had to say 429");
    // Coalesced: the room (1 command/s) did not replay 24 states.
    assert!(puts.len() < 24, "{} commands", puts.len());
}

#[tokio::test]
async fn a_burst_already_waiting_for_one_user_ends_in_the_latest_and_completes_all() {
    let sb = FakeServiceBus::start(10).await;
    let fake = FakeHue::start(Api::V2).await;
    let applier = Applier::new(
        LightMap::default(),
        sink(&fake, &[HueTarget::Light("1".into())]).await,
        vec![],
        None,
    );
    for seq in 1..=20 {
        let (av, ac) = if seq % 2 == 0 {
            ("Busy", "InACall")
        } else {
            ("Available", "Available")
        };
        sb.enqueue(presence("u1", seq, av, ac));
    }
    sb.enqueue(presence("u1", 21, "Away", "Away"));
    let running = Running::start(&sb, applier);
    sb.wait_for(10, "all completed", |b| b.completed.len() == 21)
        .await;
    running.stop().await;
    let puts = fake.puts();
    // The first is applied at once; the rest arrive while it is in flight and coalesce.
    assert!(puts.len() <= 4, "{puts:?}");
    assert_eq!(puts.last().unwrap().body["color"]["xy"]["x"], json!(0.5143));
}

#[tokio::test]
async fn a_burst_for_several_users_shows_the_last_and_records_every_user() {
    let sb = FakeServiceBus::start(10).await;
    let fake = FakeHue::start(Api::V1).await;
    let applier = Applier::new(
        LightMap::default(),
        sink(&fake, &[HueTarget::Light("1".into())]).await,
        vec![],
        None,
    );
    for seq in 1..=5 {
        sb.enqueue(presence("a", seq, "Busy", "InACall"));
        sb.enqueue(presence("b", seq, "Away", "Away"));
    }
    let running = Running::start(&sb, applier);
    sb.wait_for(10, "all completed", |b| b.completed.len() == 10)
        .await;
    // An older message for the user whose state was not shown is still recognised as older.
    sb.enqueue(presence("a", 4, "Available", "Available"));
    sb.wait_for(10, "older completed", |b| b.completed.len() == 11)
        .await;
    let applier = running.stop().await;
    let puts = fake.puts();
    assert!(puts.len() <= 4, "{puts:?}");
    assert_eq!(
        puts.last().unwrap().body["xy"],
        json!([0.5143, 0.4572]),
        "b (away) arrived last"
    );
    assert_eq!(
        applier.applied()["a"].sequence.as_deref(),
        Some("00000000000000000005-000000")
    );
}

#[tokio::test]
async fn unknown_types_poison_messages_and_unwatched_users_are_completed() {
    let sb = FakeServiceBus::start(10).await;
    let fake = FakeHue::start(Api::V1).await;
    let applier = Applier::new(
        LightMap::default(),
        sink(&fake, &[HueTarget::Light("1".into())]).await,
        vec!["watched".into()],
        None,
    );
    sb.enqueue(json!({"type": "lamp.exploded", "version": 9}));
    sb.enqueue(json!("not an object"));
    sb.enqueue(json!({"type": "presence.changed", "userId": 7}));
    sb.enqueue(presence("someone-else", 1, "Busy", "InACall"));
    let running = Running::start(&sb, applier);
    sb.wait_for(10, "skips completed", |b| b.completed.len() == 4)
        .await;
    sb.enqueue(presence("watched", 1, "Busy", "InACall"));
    sb.wait_for(10, "watched applied", |b| b.completed.len() == 5)
        .await;
    running.stop().await;
    assert_eq!(fake.puts().len(), 1);
    assert!(sb.with(|b| b.dead_lettered.is_empty() && b.abandoned == 0));
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_commands_stays_within_the_bridge_rate_limits() {
    let fake = FakeHue::start(Api::V1).await;
    let mut targets: Vec<HueTarget> = (1..=12).map(|i| HueTarget::Light(i.to_string())).collect();
    targets.push(HueTarget::Group("1".into()));
    targets.push(HueTarget::Room("2".into()));
    let mut sink = sink(&fake, &targets).await;
    let mut states: Vec<_> = LightMap::default()
        .showcase()
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    states.dedup(); // e.g. "in a call" and "presenting" are both red
    states.truncate(5);
    let start = tokio::time::Instant::now();
    for s in &states {
        sink.apply(s).await.unwrap();
    }
    // The same state again is skipped entirely.
    sink.apply(states.last().unwrap()).await.unwrap();
    let puts = fake.puts();
    assert_eq!(puts.len(), 5 * 14);
    assert_eq!(fake.rejected(), 0, "the bridge never had to say 429");
    for (group, limit) in [(false, 10), (true, 1)] {
        let times: Vec<_> = puts
            .iter()
            .filter(|p| p.path.contains("/groups/") == group)
            .map(|p| p.at)
            .collect();
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|u| u.duration_since(*t) < Duration::from_secs(1))
                .count();
            assert!(
                in_window <= limit,
                "{in_window} commands within 1 s (group: {group})"
            );
        }
    }
    // 60 light commands at 10/s and 10 group commands at 1/s, interleaved: bounded by groups.
    assert!(
        start.elapsed() >= Duration::from_secs(9),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_wrong_key_is_refused_with_a_clear_error() {
    let sb = FakeServiceBus::start(10).await;
    let cs = sb
        .connection_string()
        .replace("ZmFrZS1rZXk9PQ==", "d3Jvbmc=");
    let conn = ConnectionString::parse(&cs).unwrap();
    let client = servicebus::Client::new(conn, Some(sb.url.parse().unwrap()), "presence")
        .unwrap()
        .subscription("pi");
    let e = client.peek_lock(Duration::ZERO).await.unwrap_err();
    assert!(
        matches!(e, ServiceBusError::Unauthorized { status: 401, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("Listen"));
    assert!(!e.to_string().contains("d3Jvbmc"));
    assert_eq!(sb.with(|b| b.unauthorized), 1);
}

#[tokio::test]
async fn direct_publish_sends_custom_properties_that_come_back_on_receive() {
    let sb = FakeServiceBus::start(10).await;
    let client = client(&sb);
    let props = BrokerProperties {
        message_id: Some("m-1".into()),
        content_type: Some("application/json".into()),
        ..Default::default()
    };
    let custom: BTreeMap<String, String> = [("userId".to_string(), "u1".to_string())].into();
    let body = presence("u1", 1, "Busy", "InACall").to_string();
    client.send(body.as_bytes(), &props, &custom).await.unwrap();
    let m = client.peek_lock(Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(m.body, body.as_bytes());
    assert_eq!(m.custom.get("userid").map(String::as_str), Some("u1"));
    assert_eq!(m.props.delivery_count, Some(1));
    // The lock URI came back with the broker's host and was rebased onto the fake.
    assert!(m.lock.url().as_str().starts_with(&sb.url));
    client.renew_lock(&m.lock).await.unwrap();
    client.abandon(&m.lock).await.unwrap();
    let again = client.peek_lock(Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(again.props.delivery_count, Some(2));
    client.complete(&again.lock).await.unwrap();
    // A settled lock is gone.
    assert!(matches!(
        client.complete(&again.lock).await,
        Err(ServiceBusError::LockLost(410))
    ));
    assert!(client.peek_lock(Duration::ZERO).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn pairing_retries_until_the_link_button_is_pressed() {
    let fake = FakeHue::start(Api::V1).await;
    let Address::Url(base) = Address::parse(&fake.url).unwrap() else {
        panic!()
    };
    let http = reqwest::Client::new();
    let devicetype = hue::devicetype("raspberrypi");
    let mut attempts = 0;
    let key = loop {
        attempts += 1;
        if let Some(k) = hue::pair_once(&http, &base, &devicetype).await.unwrap() {
            break k;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(attempts, 3);
    assert_eq!(secrecy::ExposeSecret::expose_secret(&key), HUE_KEY);
}

#[tokio::test]
async fn a_wrong_hue_key_is_named() {
    for api in [Api::V1, Api::V2] {
        let fake = FakeHue::start(api).await;
        let address = Address::parse(&fake.url).unwrap();
        let e = hue::connect(&address, &SecretString::from("wrong"))
            .await
            .unwrap_err();
        // A v1 bridge answers the public config for any key: the check is an authorised
        // call, and the error says how to get a key (issue 28, item 4).
        assert!(matches!(e, hue::HueError::Unauthorized), "{api:?}: {e}");
        assert!(
            e.to_string().contains("HUE_APPLICATION_KEY")
                && e.to_string().contains("teams-presence hue pair"),
            "{api:?}: {e}"
        );
    }
}

/// Sends like the cloud part with `PUBLISH_MODE=rest`: to the topic, with the namespace key.
async fn publish(sb: &FakeServiceBus, bodies: &[Value]) {
    let conn = ConnectionString::parse(&sb.connection_string()).unwrap();
    let topic = servicebus::Client::new(conn, Some(sb.url.parse().unwrap()), "presence").unwrap();
    let msgs: Vec<TopicMessage> = bodies
        .iter()
        .map(|b| TopicMessage::parse(b.to_string().as_bytes()).unwrap())
        .collect();
    send_direct(&topic, &msgs).await.unwrap();
}

/// Receives and completes everything waiting; the users the messages were for.
async fn drain(client: &servicebus::Client) -> Vec<String> {
    let mut users = Vec::new();
    while let Some(m) = client.peek_lock(Duration::ZERO).await.unwrap() {
        let body: Value = serde_json::from_slice(&m.body).unwrap();
        users.push(body["userId"].as_str().unwrap().to_owned());
        client.complete(&m.lock).await.unwrap();
    }
    users
}

#[tokio::test]
async fn each_edge_reads_only_its_users_through_its_own_queue_and_cannot_read_the_other() {
    let sb = FakeServiceBus::start(10).await;
    // The filters as infra/modules/servicebus.bicep writes them.
    let cs_home = sb.add_edge("pi-home", "userId IN ('u1', 'u2')");
    let cs_office = sb.add_edge("pi-office", "userId IN ('u3')");
    publish(
        &sb,
        &[
            presence("u1", 1, "Busy", "InACall"),
            presence("u3", 1, "Away", "Away"),
            presence("u2", 1, "Available", "Available"),
            presence("u4", 1, "Busy", "InACall"),
        ],
    )
    .await;
    // Each edge configured as a Pi is: its queue and that queue's listen-only key.
    let edge_settings = |cs: &str, queue: &str| {
        support::settings(&[
            ("ServiceBusConnection", cs),
            ("PRESENCE_QUEUE", queue),
            ("PRESENCE_SUBSCRIPTION", "ignored-when-a-queue-is-set"),
            ("SERVICEBUS_ENDPOINT", sb.url.as_str()),
        ])
    };
    let (home, _) = edge::client_from(&edge_settings(&cs_home, "edge-pi-home")).unwrap();
    let (office, _) = edge::client_from(&edge_settings(&cs_office, "edge-pi-office")).unwrap();
    assert_eq!(home.source(), Some("edge-pi-home"));
    assert_eq!(drain(&home).await, ["u1", "u2"]);
    assert_eq!(drain(&office).await, ["u3"]);
    // u4 is no edge's user: no queue got it.
    assert_eq!(sb.with(|b| b.completed.len()), 3);
    assert!(sb.with(|b| b.queue.is_empty() && b.queues.values().all(|q| q.is_empty())));

    // The home key, pointed at the office queue, is refused by the broker...
    let stolen = ConnectionString::parse(&cs_home).unwrap();
    let snoop = servicebus::Client::queue(
        stolen.clone(),
        Some(sb.url.parse().unwrap()),
        "edge-pi-office",
    )
    .unwrap();
    publish(&sb, &[presence("u3", 2, "Busy", "InACall")]).await;
    let e = snoop.peek_lock(Duration::ZERO).await.unwrap_err();
    assert!(
        matches!(e, ServiceBusError::Unauthorized { status: 401, .. }),
        "{e}"
    );
    // ...as on the topic's subscriptions and for sending.
    let topic = servicebus::Client::new(stolen, Some(sb.url.parse().unwrap()), "presence").unwrap();
    let e = topic
        .send(b"{}", &BrokerProperties::default(), &BTreeMap::new())
        .await
        .unwrap_err();
    assert!(
        matches!(e, ServiceBusError::Unauthorized { status: 401, .. }),
        "{e}"
    );
    assert_eq!(sb.with(|b| b.unauthorized), 2);
    // The message stayed for its edge.
    assert_eq!(drain(&office).await, ["u3"]);
    // And `subscribe` refuses at start to use one queue's key for another queue.
    let e = edge::client_from(&edge_settings(&cs_home, "edge-pi-office")).unwrap_err();
    assert!(e.to_string().contains("PRESENCE_QUEUE"), "{e}");
}

#[test]
fn subscribe_without_a_queue_or_subscription_names_both_settings() {
    let e = edge::client_from(&support::settings(&[(
        "ServiceBusConnection",
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=l;SharedAccessKey=k",
    )]))
    .unwrap_err();
    let e = e.to_string();
    assert!(e.contains("PRESENCE_QUEUE or PRESENCE_SUBSCRIPTION"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_is_0_while_subscribe_runs_and_1_when_its_loop_is_stuck() {
    use std::process::{Command, Stdio};
    let sb = FakeServiceBus::start(10).await;
    let cs = sb.add_edge("pi", "userId IN ('u1')");
    let hue = FakeHue::start(Api::V1).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [
        ("ServiceBusConnection", cs.as_str()),
        ("PRESENCE_QUEUE", "edge-pi"),
        ("SERVICEBUS_ENDPOINT", sb.url.as_str()),
        ("HUE_BRIDGE", hue.url.as_str()),
        ("HUE_APPLICATION_KEY", HUE_KEY),
        ("HUE_TARGETS", "light:1"),
    ];
    let command = |args: &[&str]| {
        let mut c = Command::new(support::binary());
        c.args(args)
            .arg("--data-dir")
            .arg(&data)
            .env_clear()
            .envs(env)
            .current_dir(dir.path());
        c
    };
    let healthcheck = |extra: &[&str]| {
        let out = command(&[&["healthcheck"], extra].concat())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        assert!(stderr.lines().count() <= 1, "{stderr}");
        (out.status.code(), stderr)
    };
    let (code, why) = healthcheck(&[]);
    assert_eq!(code, Some(1), "nothing ran yet");
    assert!(why.contains("no heartbeat file"), "{why}");

    let mut child = command(&["subscribe"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let heartbeat = data.join("heartbeat");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !heartbeat.exists() {
        assert!(std::time::Instant::now() < deadline, "no heartbeat");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(healthcheck(&[]).0, Some(0));
    // The loop is really reading its queue: a change for its user reaches the lamp.
    publish(&sb, &[presence("u1", 1, "Busy", "InACall")]).await;
    while hue.puts().is_empty() {
        assert!(std::time::Instant::now() < deadline, "nothing applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(healthcheck(&["--max-age", "60"]).0, Some(0));

    // Frozen, the loop stops beating and the heartbeat ages past the limit.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (code, why) = healthcheck(&["--max-age", "1"]);
    let _ = Command::new("kill").args(["-CONT", &pid]).status();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(code, Some(1), "{why}");
    assert!(why.contains("stuck"), "{why}");
}
