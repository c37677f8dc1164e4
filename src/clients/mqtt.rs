//! MQTT with Home Assistant discovery: **the only module that knows the MQTT topics and
//! payloads**. Topics (prefix `MQTT_TOPIC_PREFIX`, discovery `MQTT_DISCOVERY_PREFIX`):
//!
//! * `{prefix}/{userId}/state`, retained: `{"availability", "activity", "color": "#rrggbb",
//!   "brightness", "observedAt"}`;
//! * `{prefix}/status`, retained: `online`, and `offline` as the last will (the broker
//!   publishes it when the connection drops without a goodbye);
//! * `{discovery}/sensor/teams_presence_{userId}/config` and
//!   `{discovery}/light/teams_presence_{userId}/config`, retained: a sensor (the activity,
//!   with the state as attributes) and a read-only light-like entity with the lamp colour, so
//!   presence appears in Home Assistant with no YAML.
//!
//! The connection is driven by its own task: it reconnects with back-off (1 s doubling to
//! 30 s) and after every (re)connect publishes `online` and every retained topic again, so a
//! broker restarted without persistence has the latest state at once. Payload builders are
//! pure functions, tested with tables; the connection is tested against a real mosquitto.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, Transport};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::config::sinks::MqttSettings;

/// Why a publish did not reach the broker.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// Not connected right now (the driver is reconnecting); everything retained is sent
    /// again once it is.
    #[error("not connected to the MQTT broker{}", .0.as_deref().map(|e| format!(": {e}")).unwrap_or_default())]
    Disconnected(Option<String>),
    /// The client's request queue is gone (the driver stopped).
    #[error("the MQTT client stopped")]
    Stopped,
}

/// The topics of one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// `MQTT_TOPIC_PREFIX`.
    pub prefix: String,
    /// `MQTT_DISCOVERY_PREFIX`.
    pub discovery: String,
}

impl Topics {
    /// `{prefix}/status`.
    pub fn status(&self) -> String {
        format!("{}/status", self.prefix)
    }

    /// `{prefix}/{userId}/state`.
    pub fn state(&self, user: &str) -> String {
        format!("{}/{}/state", self.prefix, topic_safe(user))
    }

    /// `{discovery}/{component}/teams_presence_{userId}/config`.
    pub fn discovery(&self, component: &str, user: &str) -> String {
        format!("{}/{component}/{}/config", self.discovery, object_id(user))
    }
}

/// A user id as one topic level (object ids are GUIDs; anything else is made safe).
fn topic_safe(user: &str) -> String {
    user.chars()
        .map(|c| {
            if matches!(c, '/' | '+' | '#' | '\0') {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// Home Assistant's object ids allow `[a-zA-Z0-9_-]`.
fn object_id(user: &str) -> String {
    let id: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("teams_presence_{id}")
}

/// What one user's state topic carries.
#[derive(Debug, Clone, PartialEq)]
pub struct UserState {
    /// Graph's availability (`PresenceUnknown` for a sign-in-required user).
    pub availability: String,
    /// Graph's activity (`SignInRequired` when the token stopped working).
    pub activity: String,
    /// `#rrggbb` of the light state (`#000000` when off); `None` when the lamp is left as
    /// it is (outside working hours with `outside = "keep"`).
    pub color: Option<String>,
    /// Brightness in percent, 0 when off.
    pub brightness: Option<f64>,
    /// When the change was observed (RFC 3339, milliseconds).
    pub observed_at: String,
}

/// The retained state payload.
pub fn state_payload(s: &UserState) -> Value {
    let mut v = json!({
        "availability": s.availability,
        "activity": s.activity,
        "color": s.color,
        "observedAt": s.observed_at,
    });
    if let Some(b) = s.brightness {
        v["brightness"] = json!(b.round() as i64);
    }
    v
}

fn device(user: &str) -> Value {
    json!({
        "identifiers": [object_id(user)],
        "name": format!("Teams presence {user}"),
        "manufacturer": "teams-presence",
        "model": "Microsoft Teams presence",
        "sw_version": env!("CARGO_PKG_VERSION"),
    })
}

/// The two discovery configs for a user: `(topic, payload)` for the sensor and the light.
pub fn discovery_payloads(t: &Topics, user: &str) -> Vec<(String, Value)> {
    let id = object_id(user);
    let sensor = json!({
        "name": "Presence",
        "unique_id": id,
        "object_id": id,
        "state_topic": t.state(user),
        "value_template": "{{ value_json.activity }}",
        "json_attributes_topic": t.state(user),
        "availability_topic": t.status(),
        "payload_available": "online",
        "payload_not_available": "offline",
        "icon": "mdi:account-circle",
        "device": device(user),
    });
    // A template light that only reads: the lamp colour as Home Assistant shows lights.
    // Home Assistant requires a command topic; nothing listens on it.
    let light = json!({
        "name": "Presence light",
        "unique_id": format!("{id}_light"),
        "object_id": format!("{id}_light"),
        "schema": "template",
        "state_topic": t.state(user),
        "command_topic": format!("{}/{}/light/set", t.prefix, topic_safe(user)),
        "command_on_template": "on",
        "command_off_template": "off",
        "state_template": "{{ 'off' if value_json.color in (none, '#000000') else 'on' }}",
        "red_template": "{{ value_json.color[1:3] | int(base=16) }}",
        "green_template": "{{ value_json.color[3:5] | int(base=16) }}",
        "blue_template": "{{ value_json.color[5:7] | int(base=16) }}",
        "brightness_template": "{{ ((value_json.brightness | default(100)) * 2.55) | round(0) | int }}",
        "availability_topic": t.status(),
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device(user),
    });
    vec![
        (t.discovery("sensor", user), sensor),
        (t.discovery("light", user), light),
    ]
}

/// The broker options from the settings (pure; the client id is an argument), with the
/// last will `offline` on `{prefix}/status`.
pub fn options(s: &MqttSettings, client_id: &str) -> MqttOptions {
    let mut o = connection_options(s, client_id);
    o.set_last_will(LastWill::new(
        format!("{}/status", s.topic_prefix),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    o
}

/// Address, keep-alive, credentials and TLS, without a will.
fn connection_options(s: &MqttSettings, client_id: &str) -> MqttOptions {
    let tls = matches!(s.url.scheme(), "mqtts" | "ssl");
    let port = s.url.port().unwrap_or(if tls { 8883 } else { 1883 });
    let host = s.url.host_str().unwrap_or_default().to_owned();
    let mut o = MqttOptions::new(client_id, host, port);
    o.set_keep_alive(Duration::from_secs(30));
    if let Some(user) = &s.username {
        let pass = s
            .password
            .as_ref()
            .map(|p| p.expose_secret().to_owned())
            .unwrap_or_default();
        o.set_credentials(user.clone(), pass);
    }
    if tls {
        // The system's trust store, through native-tls like every other client here.
        o.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Native,
        ));
    }
    o
}

/// `doctor`: connects once (without a will, so a running instance's `online` stays) and
/// says goodbye. The broker's refusal or the network error otherwise.
pub async fn probe(s: &MqttSettings, timeout: Duration) -> Result<(), MqttError> {
    let id = format!("teams-presence-doctor-{}", uuid::Uuid::new_v4().simple());
    let (client, mut eventloop) = AsyncClient::new(connection_options(s, &id), 4);
    let connect = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(MqttError::Disconnected(Some(e.to_string()))),
            }
        }
    };
    let r = tokio::time::timeout(timeout, connect)
        .await
        .unwrap_or_else(|_| Err(MqttError::Disconnected(Some("timed out".into()))));
    if r.is_ok() {
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
    }
    r
}

/// Everything retained, kept to publish again after a reconnect.
#[derive(Debug, Default)]
struct Retained {
    /// Per user: the state payload (discovery is derived from the user id).
    states: BTreeMap<String, Value>,
}

/// A connected (or reconnecting) MQTT publisher. Dropping it stops its connection task
/// without a goodbye, so the broker publishes the last will.
#[derive(Debug)]
pub struct MqttSink {
    client: AsyncClient,
    topics: Topics,
    retained: Arc<Mutex<Retained>>,
    connected: watch::Receiver<Result<(), String>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

fn lock(r: &Mutex<Retained>) -> std::sync::MutexGuard<'_, Retained> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

/// Publishes `online`, every user's discovery configs and state (after a (re)connect).
async fn publish_all(client: &AsyncClient, topics: &Topics, states: Vec<(String, Value)>) {
    let _ = client
        .publish(topics.status(), QoS::AtLeastOnce, true, "online")
        .await;
    for (user, state) in states {
        for (topic, payload) in discovery_payloads(topics, &user) {
            let _ = client
                .publish(topic, QoS::AtLeastOnce, true, payload.to_string())
                .await;
        }
        let _ = client
            .publish(
                topics.state(&user),
                QoS::AtLeastOnce,
                true,
                state.to_string(),
            )
            .await;
    }
}

impl MqttSink {
    /// Starts the connection task (returns at once; [`MqttSink::wait_connected`] waits).
    pub fn start(s: &MqttSettings, client_id: &str) -> Self {
        let topics = Topics {
            prefix: s.topic_prefix.clone(),
            discovery: s.discovery_prefix.clone(),
        };
        let (client, mut eventloop) = AsyncClient::new(options(s, client_id), 256);
        let retained: Arc<Mutex<Retained>> = Arc::default();
        let (tx, rx) = watch::channel(Err("connecting".to_owned()));
        let driver = {
            let (client, topics, retained) = (client.clone(), topics.clone(), retained.clone());
            tokio::spawn(async move {
                let mut backoff = Duration::from_secs(1);
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            tracing::info!("connected to the MQTT broker");
                            backoff = Duration::from_secs(1);
                            let _ = tx.send(Ok(()));
                            let states: Vec<(String, Value)> = lock(&retained)
                                .states
                                .iter()
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect();
                            // Not in this task: publishing waits for room in the queue that
                            // only this task's polling empties.
                            let (client, topics) = (client.clone(), topics.clone());
                            tokio::spawn(
                                async move { publish_all(&client, &topics, states).await },
                            );
                        }
                        Ok(_) => {}
                        Err(e) => {
                            let e = e.to_string();
                            if tx.borrow().is_ok() {
                                tracing::warn!(error = %e, "lost the MQTT broker; reconnecting");
                            }
                            let _ = tx.send(Err(e));
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(30));
                        }
                    }
                }
            })
        };
        Self {
            client,
            topics,
            retained,
            connected: rx,
            driver,
        }
    }

    /// The topics in use.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Waits up to `timeout` for the broker; the last connection error otherwise.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), MqttError> {
        let mut rx = self.connected.clone();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|c| c.is_ok())).await;
        let c = self.connected.borrow().clone();
        c.map_err(|e| MqttError::Disconnected(Some(e)))
    }

    /// Publishes a user's state (and, the first time, its discovery configs), retained.
    /// Remembered either way, so a reconnect publishes it; an error while disconnected
    /// lets the caller retry (the last state wins).
    pub async fn publish(&self, user: &str, state: &UserState) -> Result<(), MqttError> {
        let payload = state_payload(state);
        let first = lock(&self.retained)
            .states
            .insert(user.to_owned(), payload.clone())
            .is_none();
        // At start (and while reconnecting) give the broker a moment rather than failing
        // the first change; the sink task retries after that.
        self.wait_connected(Duration::from_secs(5)).await?;
        if first {
            for (topic, p) in discovery_payloads(&self.topics, user) {
                self.client
                    .publish(topic, QoS::AtLeastOnce, true, p.to_string())
                    .await
                    .map_err(|_| MqttError::Stopped)?;
            }
        }
        self.client
            .publish(
                self.topics.state(user),
                QoS::AtLeastOnce,
                true,
                payload.to_string(),
            )
            .await
            .map_err(|_| MqttError::Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> Topics {
        Topics {
            prefix: "teams-presence".into(),
            discovery: "homeassistant".into(),
        }
    }

    #[test]
    fn topics_follow_the_prefixes_and_make_user_ids_safe() {
        let t = topics();
        assert_eq!(t.status(), "teams-presence/status");
        assert_eq!(t.state("a1-b2"), "teams-presence/a1-b2/state");
        assert_eq!(t.state("a/b#"), "teams-presence/a_b_/state");
        assert_eq!(
            t.discovery("sensor", "a1-b2"),
            "homeassistant/sensor/teams_presence_a1-b2/config"
        );
        assert_eq!(
            t.discovery("light", "x@y.z"),
            "homeassistant/light/teams_presence_x_y_z/config"
        );
    }

    #[test]
    fn state_and_discovery_payloads() {
        let s = UserState {
            availability: "Busy".into(),
            activity: "InACall".into(),
            color: Some("#ff0000".into()),
            brightness: Some(100.0),
            observed_at: "2026-11-22T10:15:00.000Z".into(),
        };
        assert_eq!(
            state_payload(&s),
            json!({"availability": "Busy", "activity": "InACall", "color": "#ff0000",
                   "brightness": 100, "observedAt": "2026-11-22T10:15:00.000Z"})
        );
        let d = discovery_payloads(&topics(), "u1");
        assert_eq!(d.len(), 2);
        for (_, p) in &d {
            for k in ["unique_id", "state_topic", "availability_topic", "device"] {
                assert!(p.get(k).is_some(), "{k} in {p}");
            }
            assert_eq!(p["state_topic"], "teams-presence/u1/state");
            assert_eq!(p["availability_topic"], "teams-presence/status");
            assert_eq!(p["device"]["identifiers"][0], "teams_presence_u1");
        }
        assert_eq!(d[0].1["unique_id"], "teams_presence_u1");
        assert_eq!(d[1].1["unique_id"], "teams_presence_u1_light");
    }

    #[test]
    fn options_pick_tls_ports_credentials_and_the_will() {
        let s = MqttSettings {
            url: "mqtts://broker.lan".parse().unwrap(),
            username: Some("ha".into()),
            password: Some("pw".to_owned().into()),
            topic_prefix: "tp".into(),
            discovery_prefix: "homeassistant".into(),
        };
        let o = options(&s, "id");
        assert_eq!(o.broker_address(), ("broker.lan".into(), 8883));
        let will = o.last_will().unwrap();
        assert_eq!(will.topic, "tp/status");
        assert_eq!(&will.message[..], b"offline");
        assert!(will.retain);
        assert!(o.credentials().is_some());
        let plain = MqttSettings {
            url: "mqtt://broker.lan".parse().unwrap(),
            ..s
        };
        assert_eq!(options(&plain, "id").broker_address().1, 1883);
    }
}
