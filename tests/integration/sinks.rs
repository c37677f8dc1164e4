//! The sinks beside Hue (issue 17): MQTT against a real mosquitto (retained state,
//! Home Assistant discovery, the last will, state published again after the broker
//! restarts), the signed webhook (signature, retry after 500, tamper rejected), WLED's
//! `/json/state`, and one change fanned out to Hue, MQTT, webhook and WLED in `serve`.

use std::time::Duration;

use serde_json::{json, Value};
use teams_presence::clients::webhook::{self, WebhookClient};
use teams_presence::core::lights::LightMap;
use teams_presence::core::message::TopicMessage;
use teams_presence::engine::sinks::Fanout;

use crate::fakes::sinks::{FakeWebhook, FakeWled, Mosquitto, Subscriber};
use crate::support;

fn change(user: &str, seq: u32, av: &str, ac: &str) -> TopicMessage {
    let v = json!({
        "type": "presence.changed", "version": 1, "userId": user, "tenantId": "t",
        "availability": av, "activity": ac, "source": "notification",
        "observedAt": format!("2026-11-22T10:00:{:02}.000Z", seq % 60),
        "sequence": format!("{seq:020}-000000"),
    });
    TopicMessage::parse(v.to_string().as_bytes()).unwrap()
}

fn json_of(p: &[u8]) -> Value {
    serde_json::from_slice(p).unwrap()
}

#[tokio::test]
async fn mqtt_publishes_retained_state_discovery_and_the_will_to_a_real_broker() {
    let broker = Mosquitto::start();
    let settings = support::settings(&[("MQTT_URL", &broker.url())]);
    let fanout = Fanout::from_settings(&settings, LightMap::default()).expect("MQTT is set");
    fanout.offer(&change("u1", 1, "Available", "Available"));
    fanout.offer(&change("u1", 2, "Busy", "InACall"));
    // Stale: an older sequence after a newer one changes nothing.
    fanout.offer(&change("u1", 1, "Away", "Away"));

    // A subscriber that arrives later sees everything retained.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sub = Subscriber::connect(broker.port).await;
    let state = sub
        .wait_for("teams-presence/u1/state", 10, |p| {
            json_of(p)["activity"] == "InACall"
        })
        .await;
    assert_eq!(
        json_of(&state),
        json!({"availability": "Busy", "activity": "InACall", "color": "#ff0000",
               "brightness": 100, "observedAt": "2026-11-22T10:00:02.000Z"})
    );
    assert_eq!(
        sub.wait_for("teams-presence/status", 10, |_| true).await,
        b"online"
    );
    let sensor = sub
        .json("homeassistant/sensor/teams_presence_u1/config", 10)
        .await;
    let light = sub
        .json("homeassistant/light/teams_presence_u1/config", 10)
        .await;
    for config in [&sensor, &light] {
        assert_eq!(config["state_topic"], "teams-presence/u1/state");
        assert_eq!(config["availability_topic"], "teams-presence/status");
        assert_eq!(config["device"]["identifiers"][0], "teams_presence_u1");
    }
    assert_eq!(sensor["unique_id"], "teams_presence_u1");
    assert_eq!(light["unique_id"], "teams_presence_u1_light");
    let status = &fanout.statuses()[0];
    assert!(status.last_error.is_none(), "{status:?}");
    assert!(status.last_command.as_deref().unwrap().contains("u1"));

    // The publishing client goes away without a goodbye: the broker publishes the will.
    drop(fanout);
    sub.wait_for("teams-presence/status", 10, |p| p == b"offline")
        .await;
}

#[tokio::test]
async fn mqtt_publishes_the_state_again_after_the_broker_restarts() {
    let mut broker = Mosquitto::start();
    let settings = support::settings(&[
        ("MQTT_URL", &broker.url()),
        ("MQTT_TOPIC_PREFIX", "office"),
        ("MQTT_DISCOVERY_PREFIX", "ha"),
    ]);
    let fanout = Fanout::from_settings(&settings, LightMap::default()).unwrap();
    fanout.offer(&change("u2", 1, "DoNotDisturb", "Presenting"));
    let sub = Subscriber::connect(broker.port).await;
    sub.wait_for("office/u2/state", 10, |_| true).await;
    drop(sub);

    // No persistence: the restarted broker knows nothing until the sink reconnects.
    broker.restart();
    let sub = Subscriber::connect(broker.port).await;
    let state = sub.json("office/u2/state", 20).await;
    assert_eq!(state["activity"], "Presenting");
    assert_eq!(state["color"], "#ff0000");
    sub.wait_for("office/status", 10, |p| p == b"online").await;
    sub.json("ha/sensor/teams_presence_u2/config", 10).await;
    drop(fanout);
}

#[tokio::test]
async fn webhook_is_signed_retried_after_500_and_a_tampered_body_is_rejected() {
    let hook = FakeWebhook::start("s3cret").await;
    hook.script(&[500]);
    let client = WebhookClient::with_timing(
        hook.url.parse().unwrap(),
        "s3cret".to_owned().into(),
        Duration::from_secs(5),
        3,
        Duration::from_millis(50),
    );
    let body = change("u3", 7, "Away", "Away").to_json().to_string();
    client.deliver(body.as_bytes()).await.unwrap();
    let d = hook.deliveries();
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!((d[0].answered, d[1].answered), (500, 200));
    assert!(d.iter().all(|d| d.verified && d.body == body.as_bytes()));

    // The same signature over a changed body: the receiver's check refuses it.
    let sig = d[1].signature.clone().unwrap();
    let tampered = body.replace("Away", "Available");
    let r = reqwest::Client::new()
        .post(&hook.url)
        .header(webhook::SIGNATURE_HEADER, &sig)
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(!hook.deliveries()[2].verified);

    // A receiver that refuses (4xx) is not retried.
    hook.script(&[]);
    let wrong = WebhookClient::with_timing(
        hook.url.parse().unwrap(),
        "wrong".to_owned().into(),
        Duration::from_secs(5),
        3,
        Duration::from_millis(50),
    );
    let before = hook.deliveries().len();
    assert!(wrong.deliver(body.as_bytes()).await.is_err());
    assert_eq!(hook.deliveries().len(), before + 1);
}

#[tokio::test]
async fn wled_gets_colour_and_brightness_and_only_changes() {
    let wled = FakeWled::start().await;
    let settings = support::settings(&[("WLED_URL", &wled.url)]);
    let fanout = Fanout::from_settings(&settings, LightMap::default()).unwrap();
    fanout.offer(&change("u4", 1, "Busy", "InACall"));
    let states = wled.wait_for(1, 10).await;
    assert_eq!(
        states[0],
        json!({"on": true, "bri": 255, "seg": [{"col": [[255, 0, 0]], "fx": 0}]})
    );
    // Presenting looks the same as a call: nothing is sent. Away is a change.
    fanout.offer(&change("u4", 2, "DoNotDisturb", "Presenting"));
    fanout.offer(&change("u4", 3, "Away", "Away"));
    let states = wled.wait_for(2, 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(wled.states().len(), 2, "{states:?}");
    assert_eq!(states[1]["seg"][0]["col"], json!([[255, 200, 0]]));
    assert_eq!(states[1]["bri"], 128);
    let info = teams_presence::clients::wled::WledClient::new(wled.url.parse().unwrap())
        .info()
        .await
        .unwrap();
    assert_eq!(info, "Desk (0.14.4)");
}

/// One presence change in `serve` reaches Hue, MQTT, the webhook and WLED.
#[tokio::test]
async fn serve_fans_one_change_out_to_hue_mqtt_webhook_and_wled() {
    use crate::fakes::hue::{Api, FakeHue, KEY};
    use std::sync::Arc;
    use teams_presence::http::state::{AppState, Mode};
    use teams_presence::store::{sqlite::SqliteStore, Store};

    let hue = FakeHue::start(Api::V1).await;
    let broker = Mosquitto::start();
    let hook = FakeWebhook::start("fan-out").await;
    let wled = FakeWled::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(SqliteStore::open(&dir.path().join("s.sqlite3")).unwrap());
    store.ensure_tables().await.unwrap();
    let settings = support::settings(&[
        ("HUE_BRIDGE", &hue.url),
        ("HUE_APPLICATION_KEY", KEY),
        ("HUE_TARGETS", "light:1"),
        ("MQTT_URL", &broker.url()),
        ("WEBHOOK_URL", &hook.url),
        ("WEBHOOK_SECRET", "fan-out"),
        ("WLED_URL", &wled.url),
        // The busylight sink is on by default now (issue 30); this test is about the others.
        ("BUSYLIGHT", "off"),
    ]);
    let mut app = AppState::new(settings, store, Mode::Serve);
    app.sinks = Fanout::from_settings(&app.settings, LightMap::default()).map(Arc::new);
    let sinks = teams_presence::serve::sinks::spawn(&app);
    let sub = Subscriber::connect(broker.port).await;

    let msg = change("u5", 1, "Busy", "InACall");
    app.publisher.publish(None, vec![msg.clone()]).unwrap();

    let state = sub.wait_for("teams-presence/u5/state", 10, |_| true).await;
    assert_eq!(json_of(&state)["color"], "#ff0000");
    let d = hook.wait_for(1, 10).await;
    assert!(d[0].verified);
    assert_eq!(json_of(&d[0].body), msg.to_json());
    let w = wled.wait_for(1, 10).await;
    assert_eq!(w[0]["seg"][0]["col"], json!([[255, 0, 0]]));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while hue.puts().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no Hue command");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hue.puts()[0].body["xy"], json!([0.7006, 0.2993]));
    let statuses = app.sinks.as_ref().unwrap().statuses();
    assert_eq!(statuses.len(), 3);
    for s in &statuses {
        assert!(s.last_error.is_none() && s.last_command.is_some(), "{s:?}");
    }
    sinks.abort();
}

/// `doctor` checks each sink: the broker's connection, the webhook URL, WLED's `/json/info`.
#[tokio::test]
async fn doctor_checks_mqtt_webhook_and_wled() {
    let broker = Mosquitto::start();
    let hook = FakeWebhook::start("doc").await;
    let wled = FakeWled::start().await;
    let dir = tempfile::tempdir().unwrap();
    let run = |settings: teams_presence::config::Settings| {
        let dir = dir.path().to_owned();
        async move {
            let mut out = Vec::new();
            teams_presence::cli::doctor::run(
                &settings,
                &dir,
                teams_presence::config::StoreKind::Sqlite,
                &mut out,
            )
            .await
            .unwrap();
            String::from_utf8(out).unwrap()
        }
    };
    let text = run(support::settings(&[
        ("MQTT_URL", &broker.url()),
        ("WEBHOOK_URL", &hook.url),
        ("WEBHOOK_SECRET", "doc"),
        ("WLED_URL", &wled.url),
    ]))
    .await;
    for line in [
        "ok    MQTT: broker 127.0.0.1",
        "ok    webhook: 127.0.0.1",
        "ok    WLED: 127.0.0.1:",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(text.contains("Desk (0.14.4)"), "{text}");
    // The check connects without a will: nothing marks a running instance offline.
    let sub = Subscriber::connect(broker.port).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sub.get("teams-presence/status"), None);

    let closed = support::free_port();
    let text = run(support::settings(&[
        ("MQTT_URL", &format!("mqtt://127.0.0.1:{closed}")),
        ("WLED_URL", &format!("http://127.0.0.1:{closed}")),
    ]))
    .await;
    assert!(text.contains("FAIL  MQTT: broker 127.0.0.1"), "{text}");
    assert!(text.contains("FAIL  WLED: 127.0.0.1"), "{text}");
    assert!(text.contains("skip  webhook"), "{text}");
}

/// Issue 28 (Home Assistant, items 5–6): the discovery configs a real Home Assistant reads
/// (home-assistant/core `homeassistant/components/mqtt/entity.py`, `schemas.py`,
/// `sensor.py`): `default_entity_id` beside `object_id`, an `origin`, the person's display
/// name on their device, and `enum` sensors whose `options` hold every value published.
#[tokio::test]
async fn mqtt_discovery_names_the_person_and_sends_default_entity_ids_an_origin_and_enum_sensors() {
    let broker = Mosquitto::start();
    let settings = support::settings(&[
        ("MQTT_URL", &broker.url()),
        ("MQTT_NAMES", "u6=Adele Vance"),
    ]);
    let fanout = Fanout::from_settings(&settings, LightMap::default()).unwrap();
    fanout.offer(&change("u6", 1, "Busy", "InACall"));
    let sub = Subscriber::connect(broker.port).await;
    let sensor = sub
        .json("homeassistant/sensor/teams_presence_u6/config", 10)
        .await;
    let availability = sub
        .json(
            "homeassistant/sensor/teams_presence_u6_availability/config",
            10,
        )
        .await;
    let light = sub
        .json("homeassistant/light/teams_presence_u6/config", 10)
        .await;
    for (config, entity_id) in [
        (&sensor, "sensor.teams_presence_u6"),
        (&availability, "sensor.teams_presence_u6_availability"),
        (&light, "light.teams_presence_u6_light"),
    ] {
        assert_eq!(config["default_entity_id"], entity_id, "{config}");
        // Home Assistant before 2025.10 reads only `object_id`.
        assert_eq!(
            format!(
                "{}.{}",
                &entity_id[..entity_id.find('.').unwrap()],
                config["object_id"].as_str().unwrap()
            ),
            entity_id
        );
        assert_eq!(config["origin"]["name"], "teams-presence");
        assert_eq!(config["origin"]["sw_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(config["device"]["name"], "Adele Vance");
        assert_eq!(config["device"]["identifiers"][0], "teams_presence_u6");
    }
    let options = |c: &Value| -> Vec<String> {
        c["options"]
            .as_array()
            .unwrap_or_else(|| panic!("no options in {c}"))
            .iter()
            .map(|o| o.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(sensor["device_class"], "enum");
    let activities = options(&sensor);
    for v in [
        "InACall",
        "Presenting",
        "OffWork",
        "PresenceUnknown",
        "SignInRequired",
    ] {
        assert!(
            activities.contains(&v.to_owned()),
            "{v} not in {activities:?}"
        );
    }
    assert_eq!(availability["device_class"], "enum");
    assert_eq!(availability["state_topic"], "teams-presence/u6/state");
    let availabilities = options(&availability);
    for v in [
        "Available",
        "Busy",
        "BusyIdle",
        "DoNotDisturb",
        "PresenceUnknown",
    ] {
        assert!(
            availabilities.contains(&v.to_owned()),
            "{v} not in {availabilities:?}"
        );
    }
    // A value Graph adds later is shown as one of the options, never outside them.
    for c in [&sensor, &availability] {
        assert!(
            c["value_template"]
                .as_str()
                .unwrap()
                .contains("'PresenceUnknown'"),
            "{c}"
        );
    }
    // `"color": null` (lamp left as it is) must not break the light's templates.
    for k in [
        "state_template",
        "red_template",
        "green_template",
        "blue_template",
        "brightness_template",
    ] {
        assert!(
            light[k].as_str().unwrap().contains("c is string"),
            "{k}: {}",
            light[k]
        );
    }
    drop(fanout);
}

/// Issue 28 (Home Assistant, item 7): `users remove` clears the person's discovery configs and
/// retained state, and a running sink that showed them does not bring them back after the
/// broker restarts.
#[tokio::test]
async fn users_remove_clears_the_persons_entities_and_a_running_sink_does_not_republish_them() {
    use teams_presence::store::{sqlite::SqliteStore, Store, UserRecord, UserState};

    let mut broker = Mosquitto::start();
    let settings = support::settings(&[("MQTT_URL", &broker.url())]);
    let fanout = Fanout::from_settings(&settings, LightMap::default()).unwrap();
    fanout.offer(&change("u7", 1, "Busy", "InACall"));
    fanout.offer(&change("u8", 1, "Away", "Away"));
    let sub = Subscriber::connect(broker.port).await;
    sub.json("homeassistant/sensor/teams_presence_u7/config", 10)
        .await;
    sub.json("teams-presence/u8/state", 10).await;

    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(SqliteStore::open(&dir.path().join("s.sqlite3")).unwrap());
    store.ensure_tables().await.unwrap();
    let now = chrono::Utc::now();
    store
        .insert(&UserRecord {
            user_id: "u7".into(),
            tenant_id: "t".into(),
            upn: "u7@example.com".into(),
            display_name: "Megan Bowen".into(),
            state: UserState::Active,
            refresh_token_sealed: None,
            refresh_token_updated_at: None,
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
    // An id not in the store (an edge knows only ids): its entities are removed all the
    // same; nobody else's are touched (u8 is checked below).
    teams_presence::cli::users::remove(&store, &settings, "nobody")
        .await
        .unwrap();
    // A broker it cannot reach: an error, and the user stays.
    let closed = support::settings(&[(
        "MQTT_URL",
        &format!("mqtt://127.0.0.1:{}", support::free_port()),
    )]);
    let e = teams_presence::cli::users::remove(&store, &closed, "u7")
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("nothing was removed"), "{e:#}");
    assert!(store
        .get::<UserRecord>("u7", "user")
        .await
        .unwrap()
        .is_some());
    teams_presence::cli::users::remove(&store, &settings, "u7")
        .await
        .unwrap();
    assert!(store
        .get::<UserRecord>("u7", "user")
        .await
        .unwrap()
        .is_none());

    let gone = [
        "homeassistant/sensor/teams_presence_u7/config",
        "homeassistant/sensor/teams_presence_u7_availability/config",
        "homeassistant/light/teams_presence_u7/config",
        "teams-presence/u7/state",
    ];
    let check = |sub: Subscriber| async move {
        // The others stay.
        sub.json("teams-presence/u8/state", 20).await;
        sub.json("homeassistant/sensor/teams_presence_u8/config", 10)
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        for t in gone {
            assert!(
                sub.get(t).filter(|p| !p.is_empty()).is_none(),
                "{t} is still retained"
            );
        }
    };
    check(Subscriber::connect(broker.port).await).await;

    // No persistence: everything the running sink still shows comes back, u7 does not.
    broker.restart();
    let sub = Subscriber::connect(broker.port).await;
    sub.wait_for("teams-presence/status", 20, |p| p == b"online")
        .await;
    check(sub).await;
    drop(fanout);
}
