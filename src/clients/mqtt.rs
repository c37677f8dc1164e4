//! MQTT with Home Assistant discovery: **the only module that knows the MQTT topics and
//! payloads**. Topics (prefix `MQTT_TOPIC_PREFIX`, discovery `MQTT_DISCOVERY_PREFIX`):
//!
//! * `{prefix}/{userId}/state`, retained: `{"availability", "activity", "color": "#rrggbb",
//!   "brightness", "observedAt"}` (`color` is `null` and `brightness` absent when the lamp is
//!   left as it is: outside working hours with `outside = "keep"`);
//! * `{prefix}/status`, retained: `online`, and `offline` as the last will (the broker
//!   publishes it when the connection drops without a goodbye);
//! * Home Assistant discovery, retained, one config per entity of [`ENTITIES`]:
//!   `{discovery}/sensor/teams_presence_{userId}/config` (the activity, an `enum` sensor with
//!   the state as attributes), `{discovery}/sensor/teams_presence_{userId}_availability/config`
//!   (the availability, an `enum` sensor for automations) and
//!   `{discovery}/light/teams_presence_{userId}/config` (the lamp colour as a light), so
//!   presence appears in Home Assistant with no YAML. Each names the person's device after
//!   their display name where it is known, sets `default_entity_id` (and `object_id` for
//!   Home Assistant before 2025.10) and an `origin` naming this program. An empty retained
//!   payload on those topics removes the entities ([`clear_user`], `users remove`).
//!
//! Facts from home-assistant/core `homeassistant/components/mqtt/` (2026.2): `entity.py`
//! (`_init_entity_id`: `default_entity_id` wins over `object_id`, which logs a deprecation
//! warning when alone and stops working in 2026.4), `schemas.py` (`origin`: `name`,
//! `sw_version`, `support_url`; unknown keys are dropped by every discovery schema, so older
//! versions ignore `default_entity_id`), `sensor.py` (`options` only with `device_class:
//! enum`; a value outside them is logged and ignored, `None` makes the state unknown),
//! `light/schema_template.py` (an empty rendered value is ignored, so a template that
//! renders nothing leaves the light as it was) and `discovery.py` (an empty payload removes
//! the entity).
//!
//! The connection is driven by its own task: it reconnects with back-off (1 s doubling to
//! 30 s) and after every (re)connect publishes `online` and every retained topic again, so a
//! broker restarted without persistence has the latest state at once. It also listens on
//! each shown person's sensor config: an empty one (published by `users remove` in another
//! process) means the person was removed, so it is not published again. Payload builders
//! are pure functions, tested with tables; the connection is tested against a real
//! mosquitto.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, Transport};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::config::sinks::MqttSettings;
use crate::core::backoff::Backoff;
use crate::core::presence::{Activity, Availability};

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
    fn new(s: &MqttSettings) -> Self {
        Self {
            prefix: s.topic_prefix.clone(),
            discovery: s.discovery_prefix.clone(),
        }
    }

    /// `{prefix}/status`.
    pub fn status(&self) -> String {
        format!("{}/status", self.prefix)
    }

    /// `{prefix}/{userId}/state`.
    pub fn state(&self, user: &str) -> String {
        format!("{}/{}/state", self.prefix, topic_safe(user))
    }

    /// `{discovery}/{component}/teams_presence_{userId}/config`: the first entity of that
    /// component (the activity sensor, the light).
    pub fn discovery(&self, component: &str, user: &str) -> String {
        format!("{}/{component}/{}/config", self.discovery, object_id(user))
    }

    /// The discovery topic of one entity.
    fn entity_config(&self, e: &EntityKind, user: &str) -> String {
        format!(
            "{}/{}/{}{}/config",
            self.discovery,
            e.component,
            object_id(user),
            e.topic_suffix
        )
    }

    /// The config topic whose removal means the person was removed (the activity sensor's).
    fn removal_signal(&self, user: &str) -> String {
        self.entity_config(&ENTITIES[0], user)
    }

    /// Every retained topic of a person: their discovery configs first (so Home Assistant
    /// drops the entities before their state goes), then their state.
    pub fn person_topics(&self, user: &str) -> Vec<String> {
        ENTITIES
            .iter()
            .map(|e| self.entity_config(e, user))
            .chain([self.state(user)])
            .collect()
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

/// The activity `SignInRequired` (not Graph's: the state of a user whose sign-in expired).
pub const SIGN_IN_REQUIRED: &str = "SignInRequired";

/// Every value the activity sensor can show: Graph's known activities and
/// [`SIGN_IN_REQUIRED`]. Anything else Graph sends (its lists grow) is shown as
/// `PresenceUnknown`, which is among them: Home Assistant ignores a value outside `options`.
pub fn activity_options() -> Vec<&'static str> {
    let mut v = Activity::KNOWN.to_vec();
    v.push(SIGN_IN_REQUIRED);
    v
}

/// Every value the availability sensor can show (unknown ones as `PresenceUnknown`).
pub fn availability_options() -> Vec<&'static str> {
    Availability::KNOWN.to_vec()
}

/// A Jinja expression for one field of the state JSON: `none` when the payload is not a JSON
/// object (an empty retained payload while a person is removed) or lacks the field.
fn field(name: &str) -> String {
    format!(
        "(value_json.get('{name}') if value_json is defined and value_json is mapping else none)"
    )
}

/// A sensor template showing `field` when it is one of `options`, `PresenceUnknown` for any
/// other value, and `None` (Home Assistant's "unknown") when there is none.
fn enum_template(name: &str, options: &[&str]) -> String {
    let list = serde_json::to_string(options).unwrap_or_default();
    format!(
        "{{% set v = {} %}}{{{{ v if v in {list} else ('None' if v is none else 'PresenceUnknown') }}}}",
        field(name)
    )
}

/// A light template that renders `expr` (with `c` the colour, `b` the brightness) only
/// when the state has a colour: with `"color": null` (the lamp left as it is) it renders
/// nothing, which Home Assistant's template light ignores, so the light stays as it was
/// instead of logging a template error on every message.
fn light_template(expr: &str) -> String {
    format!(
        "{{% set c = {} %}}{{% set b = {} %}}{{% if c is string and c | length == 7 %}}{expr}{{% endif %}}",
        field("color"),
        field("brightness")
    )
}

/// One kind of Home Assistant entity shown per person. Adding one (a `select` with a
/// command topic, say) is one more entry in [`ENTITIES`] and its `config` function; the
/// common part (ids, device, origin, availability) and removal follow from the entry.
#[derive(Debug)]
pub struct EntityKind {
    /// Home Assistant's component (`sensor`, `light`, ...).
    pub component: &'static str,
    /// After `teams_presence_{userId}` in the discovery topic.
    pub topic_suffix: &'static str,
    /// After `teams_presence_{userId}` in the unique id and the default entity id.
    pub id_suffix: &'static str,
    /// Its own part of the config.
    config: fn(&Topics, &str) -> Value,
}

/// Every entity shown per person. The first one's config is the removal signal.
pub const ENTITIES: [EntityKind; 3] = [
    EntityKind {
        component: "sensor",
        topic_suffix: "",
        id_suffix: "",
        config: activity_sensor,
    },
    EntityKind {
        component: "sensor",
        topic_suffix: "_availability",
        id_suffix: "_availability",
        config: availability_sensor,
    },
    EntityKind {
        component: "light",
        topic_suffix: "",
        id_suffix: "_light",
        config: presence_light,
    },
];

/// The activity: `InACall`, `Presenting`, ... with the whole state as attributes.
fn activity_sensor(t: &Topics, user: &str) -> Value {
    let options = activity_options();
    json!({
        "name": "Presence",
        "state_topic": t.state(user),
        "device_class": "enum",
        "value_template": enum_template("activity", &options),
        "options": options,
        "json_attributes_topic": t.state(user),
        "icon": "mdi:account-circle",
    })
}

/// The availability (`Available`, `Busy`, `Away`, ...): coarse, for automations.
fn availability_sensor(t: &Topics, user: &str) -> Value {
    let options = availability_options();
    json!({
        "name": "Availability",
        "state_topic": t.state(user),
        "device_class": "enum",
        "value_template": enum_template("availability", &options),
        "options": options,
        "icon": "mdi:account-clock",
    })
}

/// The lamp colour as Home Assistant shows lights: a template light that only reads. Home
/// Assistant requires a command topic; nothing listens on it yet.
fn presence_light(t: &Topics, user: &str) -> Value {
    json!({
        "name": "Presence light",
        "schema": "template",
        "state_topic": t.state(user),
        "command_topic": format!("{}/{}/light/set", t.prefix, topic_safe(user)),
        "command_on_template": "on",
        "command_off_template": "off",
        "state_template": light_template("{{ 'off' if c == '#000000' else 'on' }}"),
        "red_template": light_template("{{ c[1:3] | int(base=16) }}"),
        "green_template": light_template("{{ c[3:5] | int(base=16) }}"),
        "blue_template": light_template("{{ c[5:7] | int(base=16) }}"),
        "brightness_template": light_template(
            "{% if b is number %}{{ (b * 2.55) | round(0) | int }}{% endif %}"
        ),
    })
}

/// The person's device: named after them where their display name is known (signed-in
/// users in `serve`; `MQTT_NAMES` on an edge), otherwise after their id.
fn device(user: &str, name: Option<&str>) -> Value {
    let name = match name.map(str::trim) {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => format!("Teams presence {user}"),
    };
    json!({
        "identifiers": [object_id(user)],
        "name": name,
        "manufacturer": "teams-presence",
        "model": "Microsoft Teams presence",
        "sw_version": env!("CARGO_PKG_VERSION"),
    })
}

/// Who published the configs (Home Assistant names it in its logs and the device page).
fn origin() -> Value {
    let mut o = json!({"name": "teams-presence", "sw_version": env!("CARGO_PKG_VERSION")});
    let url = env!("CARGO_PKG_REPOSITORY");
    if !url.is_empty() {
        o["support_url"] = json!(url);
    }
    o
}

/// Every discovery config for a person, `(topic, payload)` in [`ENTITIES`] order. Nothing
/// secret goes in: ids, the display name, topics and templates.
pub fn discovery_payloads(t: &Topics, user: &str, name: Option<&str>) -> Vec<(String, Value)> {
    ENTITIES
        .iter()
        .map(|e| {
            let id = format!("{}{}", object_id(user), e.id_suffix);
            let mut config = (e.config)(t, user);
            let common = json!({
                "unique_id": id,
                // Home Assistant 2025.10 and later; `object_id` for older ones (2026.4
                // ignores it, and it only warns when `default_entity_id` is missing).
                "default_entity_id": format!("{}.{id}", e.component),
                "object_id": id,
                "availability_topic": t.status(),
                "payload_available": "online",
                "payload_not_available": "offline",
                "device": device(user, name),
                "origin": origin(),
            });
            if let (Some(c), Value::Object(common)) = (config.as_object_mut(), common) {
                c.extend(common);
            }
            (t.entity_config(e, user), config)
        })
        .collect()
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

/// `users remove`: removes a person's entities from Home Assistant and their retained state
/// from the broker (an empty retained payload on each of [`Topics::person_topics`]). A
/// running instance that shows the person hears the removal on its sensor config and stops
/// publishing them. Connects without a will (a running instance's `online` stays) and
/// returns once the broker has acknowledged every removal.
pub async fn clear_user(s: &MqttSettings, user: &str, timeout: Duration) -> Result<(), MqttError> {
    let id = format!("teams-presence-cli-{}", uuid::Uuid::new_v4().simple());
    let (client, mut eventloop) = AsyncClient::new(connection_options(s, &id), 16);
    let topics = Topics::new(s).person_topics(user);
    let count = topics.len();
    let run = async {
        let mut acked = 0;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    for t in &topics {
                        // Queued in the client (room for all); sent by this loop.
                        client
                            .try_publish(t, QoS::AtLeastOnce, true, Vec::new())
                            .map_err(|_| MqttError::Stopped)?;
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acked += 1;
                    if acked == count {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(MqttError::Disconnected(Some(e.to_string()))),
            }
        }
    };
    let r = tokio::time::timeout(timeout, run)
        .await
        .unwrap_or_else(|_| Err(MqttError::Disconnected(Some("timed out".into()))));
    if r.is_ok() {
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
    }
    r
}

/// What is kept of one person shown, to publish again after a reconnect.
#[derive(Debug, Clone)]
struct Shown {
    /// Their display name as last published in their device.
    name: Option<String>,
    /// Their state payload.
    state: Value,
}

/// Everything retained, kept to publish again after a reconnect.
#[derive(Debug, Default)]
struct Retained {
    /// Per user.
    people: BTreeMap<String, Shown>,
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

/// Publishes a person's discovery configs and listens for their removal.
async fn announce(
    client: &AsyncClient,
    topics: &Topics,
    user: &str,
    name: Option<&str>,
) -> Result<(), MqttError> {
    for (topic, payload) in discovery_payloads(topics, user, name) {
        client
            .publish(topic, QoS::AtLeastOnce, true, payload.to_string())
            .await
            .map_err(|_| MqttError::Stopped)?;
    }
    client
        .subscribe(topics.removal_signal(user), QoS::AtLeastOnce)
        .await
        .map_err(|_| MqttError::Stopped)
}

/// Publishes `online`, every person's discovery configs and state (after a (re)connect).
async fn publish_all(client: &AsyncClient, topics: &Topics, people: Vec<(String, Shown)>) {
    let _ = client
        .publish(topics.status(), QoS::AtLeastOnce, true, "online")
        .await;
    for (user, shown) in people {
        let _ = announce(client, topics, &user, shown.name.as_deref()).await;
        let _ = client
            .publish(
                topics.state(&user),
                QoS::AtLeastOnce,
                true,
                shown.state.to_string(),
            )
            .await;
    }
}

/// An empty retained config on a person's removal signal: they were removed (by
/// `users remove`, maybe in another process). Forgets them, so neither a reconnect nor a
/// repeated change brings their entities back; a newer change does (they are shown again).
fn heard(client: &AsyncClient, topics: &Topics, retained: &Mutex<Retained>, p: &rumqttc::Publish) {
    if !p.payload.is_empty() {
        return;
    }
    let mut r = lock(retained);
    let Some(user) = r
        .people
        .keys()
        .find(|u| topics.removal_signal(u) == p.topic)
        .cloned()
    else {
        return;
    };
    r.people.remove(&user);
    drop(r);
    tracing::info!(user_id = %user, "removed from Home Assistant; no longer published");
    let _ = client.try_unsubscribe(topics.removal_signal(&user));
}

/// First reconnect delay after the broker is lost; doubles per failure up to
/// [`RECONNECT_CAP`] (with jitter: [`Backoff`]).
const RECONNECT_FIRST: Duration = Duration::from_secs(1);
/// Longest reconnect delay.
const RECONNECT_CAP: Duration = Duration::from_secs(30);

impl MqttSink {
    /// Starts the connection task (returns at once; [`MqttSink::wait_connected`] waits).
    pub fn start(s: &MqttSettings, client_id: &str) -> Self {
        let topics = Topics::new(s);
        let (client, mut eventloop) = AsyncClient::new(options(s, client_id), 256);
        let retained: Arc<Mutex<Retained>> = Arc::default();
        let (tx, rx) = watch::channel(Err("connecting".to_owned()));
        let driver = {
            let (client, topics, retained) = (client.clone(), topics.clone(), retained.clone());
            tokio::spawn(async move {
                let mut backoff = Backoff::new(RECONNECT_FIRST, RECONNECT_CAP);
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            tracing::info!("connected to the MQTT broker");
                            backoff.reset();
                            let _ = tx.send(Ok(()));
                            let people: Vec<(String, Shown)> = lock(&retained)
                                .people
                                .iter()
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect();
                            // Not in this task: publishing waits for room in the queue that
                            // only this task's polling empties.
                            let (client, topics) = (client.clone(), topics.clone());
                            tokio::spawn(
                                async move { publish_all(&client, &topics, people).await },
                            );
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            heard(&client, &topics, &retained, &p);
                        }
                        // Ours ([`MqttSink::close`]): everything queued before it is out.
                        Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                        Ok(_) => {}
                        Err(e) => {
                            let e = e.to_string();
                            if tx.borrow().is_ok() {
                                tracing::warn!(error = %e, "lost the MQTT broker; reconnecting");
                            }
                            let _ = tx.send(Err(e));
                            tokio::time::sleep(backoff.next_delay()).await;
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

    /// A clean stop: `offline` on the status topic (a broker drops the last will on a clean
    /// disconnect, so it is said here), then a disconnect queued after every publish before
    /// it; waits up to `within` for them to go out.
    pub async fn close(mut self, within: Duration) {
        let status = self.topics.status();
        let _ = self
            .client
            .publish(status, QoS::AtLeastOnce, true, "offline")
            .await;
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(within, &mut self.driver).await;
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

    /// What [`MqttSink::publish`] would send, to skip repeats: the state, the name, and
    /// whether the person is shown (after a removal the same state is news again).
    pub fn fingerprint(&self, user: &str, name: Option<&str>, state: &UserState) -> String {
        let shown = lock(&self.retained).people.contains_key(user);
        format!(
            "{shown}|{}|{}",
            name.unwrap_or_default(),
            state_payload(state)
        )
    }

    /// Publishes a person's state and, the first time (or when their name changed), their
    /// discovery configs, retained. Remembered either way, so a reconnect publishes it; an
    /// error while disconnected lets the caller retry (the last state wins).
    pub async fn publish(
        &self,
        user: &str,
        name: Option<&str>,
        state: &UserState,
    ) -> Result<(), MqttError> {
        let payload = state_payload(state);
        let shown = Shown {
            name: name.map(str::to_owned),
            state: payload.clone(),
        };
        let announce_now = match lock(&self.retained).people.insert(user.to_owned(), shown) {
            None => true,
            Some(before) => before.name.as_deref() != name,
        };
        // At start (and while reconnecting) give the broker a moment rather than failing
        // the first change; the sink task retries after that.
        self.wait_connected(Duration::from_secs(5)).await?;
        if announce_now {
            announce(&self.client, &self.topics, user, name).await?;
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

    /// Stops showing a person: removes their entities and retained state (as [`clear_user`]
    /// does from another process).
    pub async fn remove(&self, user: &str) -> Result<(), MqttError> {
        lock(&self.retained).people.remove(user);
        self.wait_connected(Duration::from_secs(5)).await?;
        for topic in self.topics.person_topics(user) {
            self.client
                .publish(topic, QoS::AtLeastOnce, true, Vec::new())
                .await
                .map_err(|_| MqttError::Stopped)?;
        }
        let _ = self
            .client
            .unsubscribe(self.topics.removal_signal(user))
            .await;
        Ok(())
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

    fn busy() -> UserState {
        UserState {
            availability: "Busy".into(),
            activity: "InACall".into(),
            color: Some("#ff0000".into()),
            brightness: Some(100.0),
            observed_at: "2026-11-22T10:15:00.000Z".into(),
        }
    }

    #[test]
    fn state_payload_carries_presence_colour_and_brightness() {
        assert_eq!(
            state_payload(&busy()),
            json!({"availability": "Busy", "activity": "InACall", "color": "#ff0000",
                   "brightness": 100, "observedAt": "2026-11-22T10:15:00.000Z"})
        );
        let keep = UserState {
            color: None,
            brightness: None,
            ..busy()
        };
        assert_eq!(state_payload(&keep)["color"], Value::Null);
        assert!(state_payload(&keep).get("brightness").is_none());
    }

    #[test]
    fn discovery_has_one_config_per_entity_with_ids_device_origin_and_availability() {
        let d = discovery_payloads(&topics(), "u1", Some("Adele Vance"));
        let topics_: Vec<&str> = d.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            topics_,
            [
                "homeassistant/sensor/teams_presence_u1/config",
                "homeassistant/sensor/teams_presence_u1_availability/config",
                "homeassistant/light/teams_presence_u1/config",
            ]
        );
        let ids = [
            ("sensor", "teams_presence_u1"),
            ("sensor", "teams_presence_u1_availability"),
            ("light", "teams_presence_u1_light"),
        ];
        for ((_, p), (component, id)) in d.iter().zip(ids) {
            assert_eq!(p["unique_id"], id);
            assert_eq!(p["object_id"], id);
            assert_eq!(p["default_entity_id"], format!("{component}.{id}"));
            assert_eq!(p["state_topic"], "teams-presence/u1/state");
            assert_eq!(p["availability_topic"], "teams-presence/status");
            assert_eq!(p["device"]["identifiers"][0], "teams_presence_u1");
            assert_eq!(p["device"]["name"], "Adele Vance");
            assert_eq!(p["origin"]["name"], "teams-presence");
            assert_eq!(p["origin"]["sw_version"], env!("CARGO_PKG_VERSION"));
            assert!(p["name"].as_str().is_some_and(|n| !n.is_empty()));
        }
        // Unknown or blank names fall back to the id.
        for name in [None, Some("  ")] {
            let d = discovery_payloads(&topics(), "u1", name);
            assert_eq!(d[0].1["device"]["name"], "Teams presence u1");
        }
    }

    #[test]
    fn enum_sensors_list_every_value_they_can_show() {
        let d = discovery_payloads(&topics(), "u1", None);
        let (sensor, availability) = (&d[0].1, &d[1].1);
        for (p, field, extra) in [
            (sensor, "activity", vec![SIGN_IN_REQUIRED]),
            (availability, "availability", vec![]),
        ] {
            assert_eq!(p["device_class"], "enum");
            let options: Vec<&str> = p["options"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            // Every known value, ours, and the one unknown values are shown as.
            let known = if field == "activity" {
                Activity::KNOWN
            } else {
                Availability::KNOWN
            };
            for v in known.iter().chain(&extra).chain(&["PresenceUnknown"]) {
                assert!(options.contains(v), "{v} not in {field} options");
            }
            let t = p["value_template"].as_str().unwrap();
            assert!(t.contains(&format!("value_json.get('{field}')")), "{t}");
            assert!(t.contains("else 'PresenceUnknown'"), "{t}");
        }
        // What the sinks publish for a sign-in-required user is among them.
        assert!(activity_options().contains(&"SignInRequired"));
        assert!(availability_options().contains(&"PresenceUnknown"));
    }

    #[test]
    fn light_templates_render_nothing_without_a_colour() {
        let d = discovery_payloads(&topics(), "u1", None);
        let light = &d[2].1;
        assert_eq!(light["schema"], "template");
        for k in [
            "state_template",
            "red_template",
            "green_template",
            "blue_template",
            "brightness_template",
        ] {
            let t = light[k].as_str().unwrap();
            assert!(
                t.contains("{% if c is string and c | length == 7 %}")
                    && t.ends_with("{% endif %}"),
                "{k}: {t}"
            );
            assert!(
                t.contains("value_json is defined and value_json is mapping"),
                "{k}: {t}"
            );
        }
    }

    #[test]
    fn nothing_secret_reaches_discovery() {
        // The builders take only topics, the id and the name: no setting can leak into them.
        let d = discovery_payloads(&topics(), "u1", Some("Adele Vance")).into_iter();
        for (_, p) in d {
            let text = p.to_string().to_lowercase();
            for word in ["password", "secret", "token", "key"] {
                assert!(!text.contains(word), "{word} in {text}");
            }
        }
    }

    #[test]
    fn person_topics_list_every_config_then_the_state() {
        assert_eq!(
            topics().person_topics("u1"),
            [
                "homeassistant/sensor/teams_presence_u1/config",
                "homeassistant/sensor/teams_presence_u1_availability/config",
                "homeassistant/light/teams_presence_u1/config",
                "teams-presence/u1/state",
            ]
        );
        assert_eq!(
            topics().removal_signal("u1"),
            "homeassistant/sensor/teams_presence_u1/config"
        );
    }

    #[test]
    fn options_pick_tls_ports_credentials_and_the_will() {
        let s = MqttSettings {
            url: "mqtts://broker.lan".parse().unwrap(),
            username: Some("ha".into()),
            password: Some("pw".to_owned().into()),
            topic_prefix: "tp".into(),
            discovery_prefix: "homeassistant".into(),
            names: Default::default(),
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
