//! The sinks beside Hue (MQTT, the webhook, WLED, busylights): one presence stream in, each
//! sink fed by its own task, chosen by settings (`MQTT_URL`, `WEBHOOK_URL`, `WLED_URL`,
//! `BUSYLIGHT`, or the `[sinks]` table). `subscribe`, `serve` and `pbx run` call
//! [`Fanout::offer`] with every topic message; nothing else.
//!
//! The same rules as Hue:
//! * only changes are sent: a message is judged once ([`crate::core::judge`]: stale and
//!   unwatched ones are dropped), and each sink skips what it already sent for that key;
//! * bursts coalesce: each sink has a bounded queue holding the latest update per user
//!   (per-user sinks: MQTT, webhook) or just the latest (shared lamps: WLED, busylights,
//!   which show whoever changed last, like Hue);
//! * the last state wins after a failure: a failed update goes back unless a newer one
//!   arrived, and is retried with back-off (1 s doubling to 30 s);
//! * one failing sink never blocks the others: [`Fanout::offer`] only fills queues.
//!
//! People's display names (Home Assistant's device names) come from `MQTT_NAMES` and, in
//! `serve`, from the store ([`Fanout::set_names`]); a name learnt after a person's first
//! change is published at once with their latest state.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clients::mqtt::{MqttSink, UserState};
use crate::clients::webhook::WebhookClient;
use crate::clients::wled::WledClient;
use crate::config::Settings;
use crate::core::backoff::Backoff;
use crate::core::judge::{judge, Mark, Verdict};
use crate::core::lights::{Desired, LightMap};
use crate::core::message::TopicMessage;

/// Most users a per-user queue holds; beyond that a new user's update is dropped (logged).
/// Far above any team, it only bounds memory against a runaway producer.
const MAX_PENDING: usize = 10_000;

/// What the status page shows about a sink (Hue or another).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkStatus {
    /// `Hue bridge 192.168.1.20 (v2)`, `MQTT broker …`, or why there is none.
    pub description: String,
    /// The last command that reached the lights.
    pub last_command: Option<String>,
    /// When.
    pub last_command_at: Option<DateTime<Utc>>,
    /// The last failure, if the latest attempt failed.
    pub last_error: Option<String>,
    /// When the bridge last answered (connected, or took a command).
    pub last_answer_at: Option<DateTime<Utc>>,
    /// What is wrong with single targets while the others work (Hue: a lamp the bridge
    /// says may not answer, a target refusing its state), one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Shared sink status.
pub type SharedSinkStatus = Arc<Mutex<SinkStatus>>;

/// Updates the shared status in place.
pub fn set_status(status: &SharedSinkStatus, f: impl FnOnce(&mut SinkStatus)) {
    f(&mut status.lock().unwrap_or_else(|p| p.into_inner()));
}

/// One change, as every sink sees it.
#[derive(Debug, Clone)]
pub struct Update {
    /// The user.
    pub user: String,
    /// The topic message (the webhook sends it as it is).
    pub message: TopicMessage,
    /// The light state for it.
    pub desired: Desired,
    /// The person's display name, where known.
    pub name: Option<String>,
}

/// The sinks this build knows (a closed set).
#[derive(Debug)]
enum Client {
    Mqtt(MqttSink),
    Webhook(WebhookClient),
    Wled(WledClient),
    #[cfg(feature = "busylight")]
    Busylight(crate::clients::busylight::device::BusylightSink),
}

/// What a sink would send for an update, to skip repeats; `None`: nothing to send.
fn fingerprint(client: &Client, u: &Update) -> Option<String> {
    match client {
        Client::Mqtt(m) => Some(m.fingerprint(&u.user, u.name.as_deref(), &user_state(u))),
        Client::Webhook(_) => Some(u.message.to_json().to_string()),
        Client::Wled(_) => match &u.desired {
            Desired::Set(s) => Some(crate::clients::wled::state_body(s).to_string()),
            Desired::Keep => None,
        },
        #[cfg(feature = "busylight")]
        Client::Busylight(_) => match &u.desired {
            Desired::Set(s) => Some(s.hex()),
            Desired::Keep => None,
        },
    }
}

/// The MQTT state of an update.
fn user_state(u: &Update) -> UserState {
    let (availability, activity, observed_at) = match &u.message {
        TopicMessage::PresenceChanged(m) => (
            m.presence.availability.to_string(),
            m.presence.activity.to_string(),
            m.observed_at,
        ),
        TopicMessage::SignInRequired(m) => (
            "PresenceUnknown".to_owned(),
            "SignInRequired".to_owned(),
            m.observed_at,
        ),
        TopicMessage::Unknown { .. } => (String::new(), String::new(), Utc::now()),
    };
    let (color, brightness) = match &u.desired {
        Desired::Set(s) if s.on => (Some(s.hex()), Some(s.brightness.unwrap_or(100.0))),
        Desired::Set(s) => (Some(s.hex()), Some(0.0)),
        Desired::Keep => (None, None),
    };
    UserState {
        availability,
        activity,
        color,
        brightness,
        observed_at: observed_at.to_rfc3339_opts(SecondsFormat::Millis, true),
    }
}

/// A light state or an update in words, for the status page.
fn describe(u: &Update) -> String {
    let what = match &u.desired {
        Desired::Keep => "left as it was".to_owned(),
        Desired::Set(s) if !s.on => "off".to_owned(),
        Desired::Set(s) => format!("{} at {:.0} %", s.hex(), s.brightness.unwrap_or(100.0)),
    };
    match &u.message {
        TopicMessage::PresenceChanged(m) => format!("{}: {} → {what}", u.user, m.presence),
        _ => format!("{}: sign-in required → {what}", u.user),
    }
}

/// Why a sink did not take a change (logged, shown as its last error, retried).
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error(transparent)]
    Mqtt(#[from] crate::clients::mqtt::MqttError),
    #[error(transparent)]
    Webhook(#[from] crate::clients::webhook::WebhookError),
    #[error(transparent)]
    Wled(#[from] crate::clients::wled::WledError),
    #[cfg(feature = "busylight")]
    #[error(transparent)]
    Busylight(#[from] crate::clients::busylight::device::BusylightError),
}

impl Client {
    async fn send(&self, u: &Update) -> Result<(), SendError> {
        match self {
            Client::Mqtt(m) => Ok(m
                .publish(&u.user, u.name.as_deref(), &user_state(u))
                .await?),
            Client::Webhook(w) => Ok(w
                .deliver(u.message.to_json().to_string().as_bytes())
                .await?),
            Client::Wled(w) => match &u.desired {
                Desired::Set(s) => Ok(w.apply(s).await?),
                Desired::Keep => Ok(()),
            },
            #[cfg(feature = "busylight")]
            Client::Busylight(b) => match &u.desired {
                Desired::Set(s) => Ok(b.apply(s).await?),
                Desired::Keep => Ok(()),
            },
        }
    }
}

/// A sink's queue: the latest update per key (the user, or one key for shared lamps).
#[derive(Debug, Default)]
struct Queue {
    pending: Mutex<BTreeMap<String, Update>>,
    wake: Notify,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Update>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One running sink.
#[derive(Debug)]
struct Handle {
    shared: bool,
    /// Shows people's names (MQTT): a name learnt later is sent again.
    named: bool,
    queue: Arc<Queue>,
    status: SharedSinkStatus,
    task: tokio::task::JoinHandle<()>,
}

/// The sinks beside Hue, each in its own task. Dropping it stops them; [`Fanout::drain`]
/// lets them deliver what is queued first.
#[derive(Debug)]
pub struct Fanout {
    lights: LightMap,
    watch: Vec<String>,
    seen: Mutex<HashMap<String, Mark>>,
    sinks: Vec<Handle>,
    names: Mutex<Names>,
    /// Cancelled by [`Fanout::drain`]: each sink task ends once its queue is delivered.
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// Display names per user: `MQTT_NAMES` (wins), then the store's; and each named person's
/// latest update, to publish again when their name is learnt.
#[derive(Debug, Default)]
struct Names {
    set: BTreeMap<String, String>,
    stored: HashMap<String, String>,
    latest: HashMap<String, Update>,
}

impl Names {
    fn get(&self, user: &str) -> Option<String> {
        self.set
            .get(user)
            .or_else(|| self.stored.get(user))
            .cloned()
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        for s in &self.sinks {
            s.task.abort();
        }
    }
}

impl Fanout {
    /// Every configured sink, started (connecting in the background); `None` when none is
    /// configured. Needs a Tokio runtime.
    pub fn from_settings(settings: &Settings, lights: LightMap) -> Option<Self> {
        let s = &settings.sinks;
        let mut clients = Vec::new();
        if let Some(m) = &s.mqtt {
            let id = format!(
                "teams-presence-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            );
            let desc = format!(
                "MQTT broker {} (topics {}/…, discovery {}/…)",
                m.url.host_str().unwrap_or_default(),
                m.topic_prefix,
                m.discovery_prefix
            );
            clients.push((desc, Client::Mqtt(MqttSink::start(m, &id))));
        }
        if let Some(w) = &s.webhook {
            let c = WebhookClient::new(w.url.clone(), w.secret.clone());
            clients.push((format!("Webhook to {}", c.host()), Client::Webhook(c)));
        }
        if let Some(u) = &s.wled {
            let c = WledClient::new(u.clone());
            clients.push((format!("WLED {}", c.host()), Client::Wled(c)));
        }
        #[cfg(feature = "busylight")]
        if s.busylight == crate::config::sinks::BusylightMode::Auto {
            let b = crate::clients::busylight::device::BusylightSink::start();
            clients.push((
                "USB busylights (every supported light plugged in)".to_owned(),
                Client::Busylight(b),
            ));
        }
        if clients.is_empty() {
            return None;
        }
        let mut fanout = Self::with_clients(lights, settings.edge.watch_users.clone(), clients);
        if let Some(m) = &s.mqtt {
            fanout
                .names
                .get_mut()
                .unwrap_or_else(|p| p.into_inner())
                .set = m.names.clone();
        }
        Some(fanout)
    }

    fn with_clients(lights: LightMap, watch: Vec<String>, clients: Vec<(String, Client)>) -> Self {
        let (stop, tasks) = (CancellationToken::new(), TaskTracker::new());
        let sinks = clients
            .into_iter()
            .map(|(description, client)| {
                let shared = match &client {
                    Client::Wled(_) => true,
                    #[cfg(feature = "busylight")]
                    Client::Busylight(_) => true,
                    _ => false,
                };
                let queue: Arc<Queue> = Arc::default();
                let status: SharedSinkStatus = Arc::new(Mutex::new(SinkStatus {
                    description,
                    ..Default::default()
                }));
                let named = matches!(client, Client::Mqtt(_));
                let task = tasks.spawn(drive(client, queue.clone(), status.clone(), stop.clone()));
                Handle {
                    shared,
                    named,
                    queue,
                    status,
                    task,
                }
            })
            .collect();
        Self {
            lights,
            watch,
            seen: Mutex::default(),
            sinks,
            names: Mutex::default(),
            stop,
            tasks,
        }
    }

    /// Stops taking changes and lets every sink deliver what it has queued (a failing sink
    /// keeps retrying) until `deadline`. Returns how many queued changes were not delivered
    /// by then (0: everything went out); their sinks are stopped.
    pub async fn drain(&self, deadline: tokio::time::Instant) -> usize {
        self.stop.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout_at(deadline, self.tasks.wait()).await;
        let dropped = self.sinks.iter().map(|s| s.queue.lock().len()).sum();
        for s in &self.sinks {
            s.task.abort();
        }
        dropped
    }

    fn names(&self) -> std::sync::MutexGuard<'_, Names> {
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Display names from the store (`serve`): `MQTT_NAMES` wins. A person whose name
    /// changes (or is learnt after their first change) is published again at once.
    pub fn set_names(&self, names: impl IntoIterator<Item = (String, String)>) {
        let mut again = Vec::new();
        {
            let mut n = self.names();
            for (user, name) in names {
                let name = name.trim().to_owned();
                if name.is_empty() || n.set.contains_key(&user) {
                    continue;
                }
                if n.stored.get(&user) == Some(&name) {
                    continue;
                }
                n.stored.insert(user.clone(), name.clone());
                if let Some(u) = n.latest.get_mut(&user) {
                    u.name = Some(name);
                    again.push(u.clone());
                }
            }
        }
        for u in again {
            self.queue(&u, |s| s.named);
        }
    }

    /// Queues an update for the sinks `which` picks.
    fn queue(&self, update: &Update, which: impl Fn(&Handle) -> bool) {
        for s in self.sinks.iter().filter(|s| which(s)) {
            let key = if s.shared {
                String::new()
            } else {
                update.user.clone()
            };
            let mut q = s.queue.lock();
            if q.len() >= MAX_PENDING && !q.contains_key(&key) {
                tracing::warn!(user_id = %update.user, "a sink's queue is full; dropping a change");
                continue;
            }
            q.insert(key, update.clone());
            drop(q);
            s.queue.wake.notify_one();
        }
    }

    /// Takes one topic message: judged once (stale, unwatched and unknown ones are dropped),
    /// then queued for every sink. Never waits.
    pub fn offer(&self, msg: &TopicMessage) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let verdict = judge(
            &Ok(msg.clone()),
            &self.watch,
            &seen,
            &self.lights,
            Utc::now(),
        );
        let Verdict::Apply {
            user,
            desired,
            mark,
        } = verdict
        else {
            return;
        };
        seen.insert(user.clone(), mark);
        drop(seen);
        let update = {
            let mut n = self.names();
            let update = Update {
                name: n.get(&user),
                user,
                message: msg.clone(),
                desired,
            };
            if self.sinks.iter().any(|s| s.named) {
                n.latest.insert(update.user.clone(), update.clone());
            }
            update
        };
        self.queue(&update, |_| true);
    }

    /// Every sink's status, for the status page.
    pub fn statuses(&self) -> Vec<SinkStatus> {
        self.sinks
            .iter()
            .map(|s| s.status.lock().map(|s| s.clone()).unwrap_or_default())
            .collect()
    }
}

/// A failing sink's first retry delay; doubles up to [`RETRY_CAP`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// A failing sink's longest retry delay.
const RETRY_CAP: Duration = Duration::from_secs(30);

/// One sink's task: sends what is queued the moment it is, skipping repeats; after a failure
/// retries the latest with back-off. Once `stop` is cancelled it ends as soon as its queue
/// is delivered (an MQTT sink says `offline` and disconnects cleanly).
async fn drive(
    client: Client,
    queue: Arc<Queue>,
    status: SharedSinkStatus,
    stop: CancellationToken,
) {
    let mut sent: HashMap<String, String> = HashMap::new();
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_CAP);
    let mut failing = false;
    loop {
        if failing {
            tokio::select! {
                _ = queue.wake.notified() => {}
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        } else {
            tokio::select! {
                _ = queue.wake.notified() => {}
                _ = stop.cancelled() => {}
            }
        }
        let taken = std::mem::take(&mut *queue.lock());
        failing = false;
        for (key, update) in taken {
            if failing {
                queue.lock().entry(key).or_insert(update);
                continue;
            }
            let Some(fp) = fingerprint(&client, &update) else {
                continue;
            };
            if sent.get(&key) == Some(&fp) {
                continue;
            }
            match client.send(&update).await {
                Ok(()) => {
                    sent.insert(key, fp);
                    set_status(&status, |s| {
                        s.last_command = Some(describe(&update));
                        s.last_command_at = Some(Utc::now());
                        s.last_answer_at = s.last_command_at;
                        s.last_error = None;
                    });
                }
                Err(e) => {
                    tracing::warn!(user_id = %update.user, error = %e, "a sink did not take a change; will retry");
                    set_status(&status, |s| s.last_error = Some(e.to_string()));
                    // A newer update that arrived meanwhile wins.
                    queue.lock().entry(key).or_insert(update);
                    failing = true;
                }
            }
        }
        if !failing {
            backoff.reset();
        }
        if !failing && !queue.lock().is_empty() {
            queue.wake.notify_one();
        } else if !failing && stop.is_cancelled() {
            if let Client::Mqtt(m) = client {
                m.close(MQTT_CLOSE_WITHIN).await;
            }
            return;
        }
    }
}

/// How long a draining MQTT sink waits for its last publishes and its goodbye to go out.
const MQTT_CLOSE_WITHIN: Duration = Duration::from_secs(2);
