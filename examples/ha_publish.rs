//! Publishes a scripted set of presence changes to MQTT through the library's own sinks
//! (`engine::sinks::Fanout`, which `serve`, `subscribe` and `pbx run` use), for
//! `scripts/ha-check.sh` to read back from a real Home Assistant.
//!
//! Settings come from the environment as for the binary (`MQTT_URL`, `MQTT_NAMES`, ...).
//! The people (their ids are printed, one `id role` per line):
//!
//! * `named`: `Busy` / `InACall`, named by `MQTT_NAMES`;
//! * `future`: an availability and an activity Graph may add later (shown as
//!   `PresenceUnknown`), with the lamp off;
//! * `keep`: outside working hours with `outside = "keep"` (`"color": null`), named later
//!   the way `serve` names people from its store;
//! * `signin`: sign-in required;
//! * `removed`: shown, then removed as `users remove` does.
//!
//! Prints `ready` once all of it is published, then keeps the connection (Home Assistant
//! shows the entities unavailable once the last will says `offline`) until it is killed.

use std::time::Duration;

use chrono::{Timelike, Utc};
use serde_json::json;
use teams_presence::config::{Settings, Sources};
use teams_presence::core::lights::LightMap;
use teams_presence::core::message::TopicMessage;
use teams_presence::engine::sinks::Fanout;

/// The ids `scripts/ha-check.sh` expects.
const PEOPLE: [(&str, &str); 5] = [
    ("named", "00000000-0000-4000-8000-00000000a001"),
    ("future", "00000000-0000-4000-8000-00000000a002"),
    ("keep", "00000000-0000-4000-8000-00000000a003"),
    ("signin", "00000000-0000-4000-8000-00000000a004"),
    ("removed", "00000000-0000-4000-8000-00000000a005"),
];

fn id(role: &str) -> &'static str {
    PEOPLE.iter().find(|(r, _)| *r == role).expect("a role").1
}

fn change(user: &str, av: &str, ac: &str) -> TopicMessage {
    let now = Utc::now();
    let v = json!({
        "type": "presence.changed", "version": 1, "userId": user, "tenantId": "t",
        "availability": av, "activity": ac, "source": "notification",
        "observedAt": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "sequence": format!("{:020}-000000", now.timestamp_millis()),
    });
    TopicMessage::parse(v.to_string().as_bytes()).expect("a valid message")
}

fn signin(user: &str) -> TopicMessage {
    let now = Utc::now();
    let v = json!({
        "type": "user.signin_required", "version": 1, "userId": user, "tenantId": "t",
        "observedAt": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "reason": "AADSTS700082: the refresh token has expired",
    });
    TopicMessage::parse(v.to_string().as_bytes()).expect("a valid message")
}

/// Working hours that exclude the present hour, with `outside = "keep"`.
fn keep_lights() -> LightMap {
    let start = match (Utc::now().hour() + 2) % 24 {
        23 => 0,
        s => s,
    };
    let toml = format!(
        "days = \"mon-sun\"\nstart = \"{start:02}:00\"\nend = \"{:02}:00\"\noutside = \"keep\"\n",
        start + 1
    );
    let mut lights = toml::Table::new();
    lights.insert(
        "working_hours".into(),
        toml::Value::Table(toml.parse().expect("valid TOML")),
    );
    LightMap::from_toml(Some(&lights)).expect("valid working hours")
}

/// Waits until every sink took what it was given.
async fn settled(f: &Fanout) {
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if f.statuses()
            .iter()
            .all(|s| s.last_error.is_none() && s.last_command.is_some())
        {
            return;
        }
    }
    panic!("the MQTT sink did not publish: {:?}", f.statuses());
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let settings = Settings::parse(&Sources::from_env_and_file(None, false).expect("settings"))
        .expect("settings");
    let mqtt = settings.sinks.mqtt.clone().expect("MQTT_URL is set");
    for (role, user) in PEOPLE {
        println!("{user} {role}");
    }
    let plain = Fanout::from_settings(&settings, LightMap::default()).expect("MQTT is set");
    plain.offer(&change(id("named"), "Busy", "InACall"));
    plain.offer(&change(
        id("future"),
        "AvailableSomeday",
        "SomethingGraphAddsLater",
    ));
    plain.offer(&signin(id("signin")));
    plain.offer(&change(id("removed"), "Away", "Away"));
    settled(&plain).await;

    let keep = Fanout::from_settings(&settings, keep_lights()).expect("MQTT is set");
    keep.offer(&change(id("keep"), "Away", "Away"));
    settled(&keep).await;
    // As `serve` does for someone who signed in after it started.
    keep.set_names([(id("keep").to_owned(), "Megan Bowen".to_owned())]);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Home Assistant has seen the person by now; remove them as `users remove` does.
    tokio::time::sleep(Duration::from_secs(2)).await;
    teams_presence::clients::mqtt::clear_user(&mqtt, id("removed"), Duration::from_secs(10))
        .await
        .expect("removed");
    println!("ready");
    std::future::pending::<()>().await;
}
