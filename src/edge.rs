//! The edge: topic messages in, light states out. `teams-presence subscribe` runs [`run`]
//! (Service Bus peek-lock over REST); the `hue-subscriber` function runs [`Applier::handle_body`]
//! under the Functions host. Both use the same [`judge`] and [`Applier`].
//!
//! Rules, in order, for each message:
//! * not a message at all (not JSON, a known type with missing fields): completed and logged,
//!   so a poison message never blocks the subscription;
//! * an unknown `type`: completed and ignored (a newer cloud must not break an older Pi);
//! * a user not in `WATCH_USERS` (when set): completed. Messages carry only `userId`, so
//!   entries are matched against the object id; a UPN entry can only match if a later
//!   message version carries the UPN, and a warning says so at start-up;
//! * `presence.changed` whose `sequence` is not greater than the last one applied for that
//!   user: completed without effect. The last applied sequence per user lives in memory and
//!   in a small JSON state file, so a restart never moves a lamp backwards;
//!   `user.signin_required` (no sequence) is stale when observed before the last applied;
//! * a burst: whatever is already waiting is drained (up to [`Options::batch`]); per user only
//!   the newest counts, and since all users share the lights only the newest of those is
//!   sent to the bridge (the others' sequences are recorded); all are completed together;
//! * the sink succeeds: completed. The sink fails: abandoned (the broker redelivers, and
//!   dead-letters after the subscription's max delivery count), and the loop backs off
//!   before receiving again. While a slow sink works, the locks are renewed.
//!
//! With several watched users the lamps show whoever changed last.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Settings};
use crate::hue::{Address, HueError, HueSink};
use crate::lights::{Desired, LightMap};
use crate::message::{MessageError, TopicMessage};
use crate::servicebus::{self, LockUri, ReceivedMessage, ServiceBusError};

/// What was last applied for one user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mark {
    /// The last applied `presence.changed` sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<String>,
    /// When the last applied message (of any type) was observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<DateTime<Utc>>,
}

/// Why a message is completed without touching the lights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Not a message (the parse error, which never contains the body).
    Malformed(String),
    /// A `type` this build does not know.
    UnknownType(String),
    /// The user is not in `WATCH_USERS`.
    NotWatched,
    /// Older than what was applied.
    Stale,
}

/// What to do with one message (pure result of [`judge`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Show `desired`, then record `mark` for `user`.
    Apply {
        /// The user.
        user: String,
        /// The light state (or keep).
        desired: Desired,
        /// What to remember once applied.
        mark: Mark,
    },
    /// Complete and move on.
    Skip(Skip),
}

/// Decides what a parsed message means for the lights (pure: `now` is an argument).
pub fn judge(
    parsed: &Result<TopicMessage, MessageError>,
    watch: &[String],
    applied: &HashMap<String, Mark>,
    lights: &LightMap,
    now: DateTime<Utc>,
) -> Verdict {
    let msg = match parsed {
        Ok(m) => m,
        Err(e) => return Verdict::Skip(Skip::Malformed(e.to_string())),
    };
    let watched =
        |user: &str| watch.is_empty() || watch.iter().any(|w| w.eq_ignore_ascii_case(user));
    match msg {
        TopicMessage::Unknown { kind } => Verdict::Skip(Skip::UnknownType(kind.clone())),
        TopicMessage::PresenceChanged(p) if !watched(&p.user_id) => Verdict::Skip(Skip::NotWatched),
        TopicMessage::SignInRequired(s) if !watched(&s.user_id) => Verdict::Skip(Skip::NotWatched),
        TopicMessage::PresenceChanged(p) => {
            let last = applied.get(&p.user_id);
            if let Some(prev) = last.and_then(|m| m.sequence.as_deref()) {
                if p.sequence.as_str() <= prev {
                    return Verdict::Skip(Skip::Stale);
                }
            }
            Verdict::Apply {
                user: p.user_id.clone(),
                desired: lights.for_presence(&p.presence, now),
                mark: Mark {
                    sequence: Some(p.sequence.clone()),
                    observed_at: Some(p.observed_at),
                },
            }
        }
        TopicMessage::SignInRequired(s) => {
            let last = applied.get(&s.user_id);
            if let Some(prev) = last.and_then(|m| m.observed_at) {
                if s.observed_at <= prev {
                    return Verdict::Skip(Skip::Stale);
                }
            }
            Verdict::Apply {
                user: s.user_id.clone(),
                desired: lights.for_signin_required(now),
                mark: Mark {
                    sequence: last.and_then(|m| m.sequence.clone()),
                    observed_at: Some(s.observed_at),
                },
            }
        }
    }
}

/// For each verdict, the index of the verdict that wins for its user (pure). The newest
/// (by observation time, then sequence, then arrival) wins; skips map to themselves.
pub fn coalesce(verdicts: &[Verdict]) -> Vec<usize> {
    let key = |v: &Verdict| match v {
        Verdict::Apply { mark, .. } => Some((mark.observed_at, mark.sequence.clone())),
        Verdict::Skip(_) => None,
    };
    let mut best: HashMap<&str, usize> = HashMap::new();
    for (i, v) in verdicts.iter().enumerate() {
        if let Verdict::Apply { user, .. } = v {
            let e = best.entry(user.as_str()).or_insert(i);
            if key(&verdicts[i]) >= key(&verdicts[*e]) {
                *e = i;
            }
        }
    }
    verdicts
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Verdict::Apply { user, .. } => best[user.as_str()],
            Verdict::Skip(_) => i,
        })
        .collect()
}

/// The state file: what was applied per user.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    users: BTreeMap<String, Mark>,
}

/// Lights, sink and memory: applies verdicts.
#[derive(Debug)]
pub struct Applier {
    lights: LightMap,
    sink: HueSink,
    watch: Vec<String>,
    applied: HashMap<String, Mark>,
    state_file: Option<PathBuf>,
}

impl Applier {
    /// An applier; loads the state file when there is one (a broken file is ignored with a
    /// warning: the worst case is one stale message shown).
    pub fn new(
        lights: LightMap,
        sink: HueSink,
        watch: Vec<String>,
        state_file: Option<PathBuf>,
    ) -> Self {
        for w in &watch {
            if w.contains('@') {
                tracing::warn!(entry = %w, "WATCH_USERS entry looks like a UPN, but messages carry only the user's object id; use the id");
            }
        }
        let applied = state_file.as_deref().map(load_state).unwrap_or_default();
        Self {
            lights,
            sink,
            watch,
            applied,
            state_file,
        }
    }

    /// Builds everything from settings: the `[lights]` table, HUE_*, WATCH_USERS.
    pub async fn from_settings(
        settings: &Settings,
        state_file: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let lights = lights_from(settings)?;
        let address = settings.hue_bridge.as_deref().ok_or_else(|| {
            ConfigError::missing(
                "HUE_BRIDGE",
                "the bridge's address (see `teams-presence hue discover`)",
            )
        })?;
        let address = Address::parse(address).ok_or_else(|| ConfigError {
            setting: "HUE_BRIDGE".into(),
            problem: "is not valid; expected a host name, an IP address or an http(s) URL".into(),
        })?;
        let key = settings.hue_application_key.clone().ok_or_else(|| {
            ConfigError::missing(
                "HUE_APPLICATION_KEY",
                "a key from `teams-presence hue pair`",
            )
        })?;
        if settings.hue_targets.is_empty() {
            return Err(ConfigError::missing(
                "HUE_TARGETS",
                "what to colour, e.g. room:ID or light:ID (see `teams-presence hue list`)",
            )
            .into());
        }
        let sink = HueSink::connect(&address, &key, &settings.hue_targets)
            .await
            .context("cannot use the Hue bridge")?;
        Ok(Self::new(
            lights,
            sink,
            settings.watch_users.clone(),
            state_file,
        ))
    }

    /// The last applied mark for each user.
    pub fn applied(&self) -> &HashMap<String, Mark> {
        &self.applied
    }

    /// Judges one parsed message now.
    pub fn judge(
        &self,
        parsed: &Result<TopicMessage, MessageError>,
        now: DateTime<Utc>,
    ) -> Verdict {
        judge(parsed, &self.watch, &self.applied, &self.lights, now)
    }

    /// Shows an `Apply` verdict and records it. Skips do nothing.
    pub async fn apply(&mut self, verdict: &Verdict) -> Result<(), HueError> {
        self.show(verdict).await?;
        self.record(&[verdict]);
        Ok(())
    }

    /// Puts an `Apply` verdict's state on the lights (no bookkeeping).
    async fn show(&mut self, verdict: &Verdict) -> Result<(), HueError> {
        if let Verdict::Apply {
            desired: Desired::Set(state),
            ..
        } = verdict
        {
            self.sink.apply(state).await?;
        }
        Ok(())
    }

    /// Remembers what was applied, in memory and in the state file (written once).
    fn record(&mut self, verdicts: &[&Verdict]) {
        for v in verdicts {
            if let Verdict::Apply { user, mark, .. } = v {
                self.applied.insert(user.clone(), mark.clone());
            }
        }
        if let Some(path) = &self.state_file {
            if let Err(e) = save_state(path, &self.applied) {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the edge state file");
            }
        }
    }

    /// One message body, start to end (the `hue-subscriber` function): a sink failure is an
    /// error, so the host answers non-2xx and abandons the message.
    pub async fn handle_body(
        &mut self,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Verdict, HueError> {
        let verdict = self.judge(&TopicMessage::parse(body), now);
        log_skip(&verdict, None);
        self.apply(&verdict).await?;
        Ok(verdict)
    }
}

/// The `[lights]` table of the config file, parsed.
pub fn lights_from(settings: &Settings) -> Result<LightMap, ConfigError> {
    match settings.file_tables.get("lights") {
        None => LightMap::from_toml(None),
        Some(toml::Value::Table(t)) => LightMap::from_toml(Some(t)),
        Some(_) => Err(ConfigError {
            setting: "lights".into(),
            problem: "is not valid; expected a [lights] table".into(),
        }),
    }
}

fn load_state(path: &Path) -> HashMap<String, Mark> {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice::<StateFile>(&bytes) {
            Ok(s) => s.users.into_iter().collect(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable edge state file");
                HashMap::new()
            }
        },
        Err(_) => HashMap::new(),
    }
}

fn save_state(path: &Path, applied: &HashMap<String, Mark>) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file = StateFile {
        users: applied
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(&file).expect("state serializes"),
    )?;
    std::fs::rename(&tmp, path)
}

fn log_skip(v: &Verdict, message_id: Option<&str>) {
    match v {
        Verdict::Skip(Skip::Malformed(e)) => {
            tracing::warn!(message_id, error = %e, "completing a message that is not a valid topic message")
        }
        Verdict::Skip(Skip::UnknownType(t)) => {
            tracing::info!(message_id, kind = %t, "ignoring a message of unknown type")
        }
        Verdict::Skip(Skip::Stale) => tracing::info!(message_id, "ignoring an older message"),
        Verdict::Skip(Skip::NotWatched) => tracing::debug!(message_id, "user not watched"),
        Verdict::Apply { .. } => {}
    }
}

/// Knobs of the receive loop.
#[derive(Debug, Clone)]
pub struct Options {
    /// `PRESENCE_SUBSCRIPTION`.
    pub subscription: String,
    /// Long-poll timeout of a receive.
    pub wait: Duration,
    /// Most messages drained and coalesced in one go.
    pub batch: usize,
    /// Long-poll timeout while draining a burst (kept short: it adds to the latency of the
    /// last message of every burst).
    pub drain_wait: Duration,
}

impl Options {
    /// Defaults for a subscription.
    pub fn new(subscription: &str) -> Self {
        Self {
            subscription: subscription.to_owned(),
            wait: Duration::from_secs(30),
            batch: 32,
            // timeout=0 is not documented as "do not wait", so 1 s it is.
            drain_wait: Duration::from_secs(1),
        }
    }
}

/// Exponential back-off with ±25 % jitter.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            next: min,
            min,
            max,
        }
    }

    fn step(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        // uuid's v4 randomness is enough for jitter; no extra crate.
        let r = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0; // 0..1
        base.mul_f64(0.75 + r * 0.5)
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// The subscribe loop; returns when `shutdown` resolves (the current batch is finished first).
pub async fn run(
    client: &servicebus::Client,
    applier: &mut Applier,
    opts: &Options,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let mut net_backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let mut sink_backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    tracing::info!(topic = client.topic(), subscription = %opts.subscription, "subscribed");
    loop {
        let received = tokio::select! {
            _ = &mut shutdown => break,
            r = client.peek_lock(&opts.subscription, opts.wait) => r,
        };
        let first = match received {
            Ok(Some(m)) => m,
            Ok(None) => {
                net_backoff.reset();
                continue;
            }
            Err(e) => {
                let wait = if e.is_transient() {
                    tracing::warn!(error = %e, "receive failed; retrying");
                    net_backoff.step()
                } else {
                    tracing::error!(error = %e, "receive failed");
                    net_backoff.step().max(Duration::from_secs(30))
                };
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        net_backoff.reset();
        let mut batch = vec![first];
        while batch.len() < opts.batch {
            match client.peek_lock(&opts.subscription, opts.drain_wait).await {
                Ok(Some(m)) => batch.push(m),
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "draining stopped");
                    break;
                }
            }
        }
        if process_batch(client, applier, batch).await {
            sink_backoff.reset();
        } else {
            let wait = sink_backoff.step();
            tracing::info!(?wait, "waiting before receiving again after a sink failure");
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
    tracing::info!("subscriber stopped");
    Ok(())
}

/// Judges, coalesces, applies, then completes or abandons every message of a batch.
/// Returns false if the sink failed.
///
/// All users share the lights, so only the newest user's winner is shown; the other users'
/// winners are recorded (their sequence moves on) without a command that would be
/// overwritten at once. The applied messages share the outcome of that one command.
async fn process_batch(
    client: &servicebus::Client,
    applier: &mut Applier,
    batch: Vec<ReceivedMessage>,
) -> bool {
    let now = Utc::now();
    let verdicts: Vec<Verdict> = batch
        .iter()
        .map(|m| applier.judge(&TopicMessage::parse(&m.body), now))
        .collect();
    for (v, m) in verdicts.iter().zip(&batch) {
        log_skip(v, m.props.message_id.as_deref());
    }
    let winners = coalesce(&verdicts);
    let chosen: Vec<&Verdict> = verdicts
        .iter()
        .enumerate()
        .filter(|(i, v)| winners[*i] == *i && matches!(v, Verdict::Apply { .. }))
        .map(|(_, v)| v)
        .collect();
    let mut ok = true;
    if let Some(shown) = chosen.last() {
        let locks: Vec<LockUri> = batch.iter().map(|m| m.lock.clone()).collect();
        let every = renew_interval(&batch, now);
        match with_renewal(client, &locks, every, applier.show(shown)).await {
            Ok(()) => {
                applier.record(&chosen);
                tracing::info!(messages = batch.len(), users = chosen.len(), "applied");
            }
            Err(e) => {
                let deliveries = batch.iter().filter_map(|m| m.props.delivery_count).max();
                tracing::warn!(error = %e, deliveries, "sink failed; abandoning");
                ok = false;
            }
        }
    }
    for (m, v) in batch.iter().zip(&verdicts) {
        let r = if ok || matches!(v, Verdict::Skip(_)) {
            client.complete(&m.lock).await
        } else {
            client.abandon(&m.lock).await
        };
        if let Err(e) = r {
            // The lock may have expired: the broker redelivers, and the sequence check
            // drops what was already applied.
            log_settle_error(&e, m.props.message_id.as_deref());
        }
    }
    ok
}

fn log_settle_error(e: &ServiceBusError, message_id: Option<&str>) {
    tracing::warn!(message_id, error = %e, "could not settle a message");
}

/// Renew at half the time the earliest lock has left (5 s to 30 s; 20 s if unknown).
fn renew_interval(batch: &[ReceivedMessage], now: DateTime<Utc>) -> Duration {
    batch
        .iter()
        .filter_map(|m| m.props.locked_until())
        .map(|t| (t - now).to_std().unwrap_or_default() / 2)
        .min()
        .unwrap_or(Duration::from_secs(20))
        .clamp(Duration::from_secs(5), Duration::from_secs(30))
}

async fn with_renewal<T>(
    client: &servicebus::Client,
    locks: &[LockUri],
    every: Duration,
    work: impl Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => {
                for lock in locks {
                    if let Err(e) = client.renew_lock(lock).await {
                        tracing::warn!(error = %e, "lock renewal failed");
                    }
                }
            }
        }
    }
}

/// The Service Bus client for `subscribe`, from settings.
pub fn client_from(settings: &Settings) -> anyhow::Result<(servicebus::Client, Options)> {
    let client = servicebus::Client::from_settings(settings, "Listen")?;
    let sub = settings.presence_subscription.as_deref().ok_or_else(|| {
        ConfigError::missing(
            "PRESENCE_SUBSCRIPTION",
            "the name of this edge's subscription on the topic",
        )
    })?;
    Ok((client, Options::new(sub)))
}

static TRIGGER: tokio::sync::OnceCell<tokio::sync::Mutex<Applier>> =
    tokio::sync::OnceCell::const_new();

/// The `hue-subscriber` function: one message through the same applier, built once per
/// process (the bridge connection, rate limits and memory outlive an invocation).
pub async fn run_trigger(settings: &Settings, body: &[u8]) -> anyhow::Result<()> {
    let applier = TRIGGER
        .get_or_try_init(|| async {
            Applier::from_settings(
                settings,
                Some(PathBuf::from(".teams-presence/edge-state.json")),
            )
            .await
            .map(tokio::sync::Mutex::new)
        })
        .await?;
    let mut applier = applier.lock().await;
    applier.handle_body(body, Utc::now()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{PresenceChanged, SignInRequired};
    use crate::presence::{Presence, Source};
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn presence(
        user: &str,
        seq: &str,
        at: i64,
        av: &str,
        ac: &str,
    ) -> Result<TopicMessage, MessageError> {
        Ok(TopicMessage::PresenceChanged(PresenceChanged {
            user_id: user.into(),
            tenant_id: "t".into(),
            presence: Presence::new(av, ac),
            previous: None,
            source: Source::Notification,
            observed_at: t(at),
            sequence: seq.into(),
        }))
    }

    fn signin(user: &str, at: i64) -> Result<TopicMessage, MessageError> {
        Ok(TopicMessage::SignInRequired(SignInRequired {
            user_id: user.into(),
            tenant_id: "t".into(),
            observed_at: t(at),
            reason: "r".into(),
        }))
    }

    #[test]
    fn judge_table() {
        let lights = LightMap::default();
        let applied: HashMap<String, Mark> = [(
            "u1".to_string(),
            Mark {
                sequence: Some("0005".into()),
                observed_at: Some(t(5)),
            },
        )]
        .into();
        let watch_all: Vec<String> = vec![];
        let watch_u1 = vec!["U1".to_string()];
        let cases: Vec<(Result<TopicMessage, MessageError>, &Vec<String>, &str)> = vec![
            (
                presence("u1", "0006", 6, "Busy", "InACall"),
                &watch_all,
                "apply",
            ),
            (
                presence("u1", "0005", 6, "Busy", "InACall"),
                &watch_all,
                "stale",
            ),
            (
                presence("u1", "0004", 9, "Busy", "InACall"),
                &watch_all,
                "stale",
            ),
            (
                presence("u2", "0001", 1, "Busy", "InACall"),
                &watch_all,
                "apply",
            ),
            (
                presence("u2", "0001", 1, "Busy", "InACall"),
                &watch_u1,
                "not-watched",
            ),
            (
                presence("u1", "0007", 7, "Away", "Away"),
                &watch_u1,
                "apply",
            ),
            (signin("u1", 4), &watch_all, "stale"),
            (signin("u1", 6), &watch_all, "apply"),
            (
                TopicMessage::parse(br#"{"type":"lamp.exploded"}"#),
                &watch_all,
                "unknown",
            ),
            (TopicMessage::parse(b"not json"), &watch_all, "malformed"),
            (
                TopicMessage::parse(br#"{"type":"presence.changed"}"#),
                &watch_all,
                "malformed",
            ),
        ];
        for (i, (msg, watch, want)) in cases.iter().enumerate() {
            let v = judge(msg, watch, &applied, &lights, t(10));
            let got = match &v {
                Verdict::Apply { .. } => "apply",
                Verdict::Skip(Skip::Stale) => "stale",
                Verdict::Skip(Skip::NotWatched) => "not-watched",
                Verdict::Skip(Skip::UnknownType(_)) => "unknown",
                Verdict::Skip(Skip::Malformed(_)) => "malformed",
            };
            assert_eq!(got, *want, "case {i}: {v:?}");
        }
        // A sign-in message keeps the last presence sequence.
        let Verdict::Apply { mark, .. } =
            judge(&signin("u1", 6), &watch_all, &applied, &lights, t(10))
        else {
            panic!()
        };
        assert_eq!(mark.sequence.as_deref(), Some("0005"));
    }

    #[test]
    fn bursts_coalesce_to_the_newest_per_user() {
        let lights = LightMap::default();
        let none = HashMap::new();
        let msgs = [
            presence("a", "0001", 1, "Busy", "InACall"),
            presence("b", "0001", 1, "Away", "Away"),
            presence("a", "0003", 3, "Available", "Available"),
            TopicMessage::parse(b"junk"),
            presence("a", "0002", 2, "Busy", "Busy"),
            signin("b", 0),
        ];
        let verdicts: Vec<Verdict> = msgs
            .iter()
            .map(|m| judge(m, &[], &none, &lights, t(10)))
            .collect();
        assert_eq!(coalesce(&verdicts), vec![2, 1, 2, 3, 2, 1]);
    }

    #[test]
    fn state_file_round_trips_and_tolerates_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/edge-state.json");
        let applied: HashMap<String, Mark> = [(
            "u".to_string(),
            Mark {
                sequence: Some("0009".into()),
                observed_at: Some(t(0)),
            },
        )]
        .into();
        save_state(&path, &applied).unwrap();
        assert_eq!(load_state(&path), applied);
        std::fs::write(&path, b"{oops").unwrap();
        assert!(load_state(&path).is_empty());
        assert!(load_state(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let steps: Vec<Duration> = (0..6).map(|_| b.step()).collect();
        let bases = [1, 2, 4, 8, 8, 8];
        for (s, base) in steps.iter().zip(bases) {
            let base = Duration::from_secs(base);
            assert!(
                *s >= base.mul_f64(0.75) && *s <= base.mul_f64(1.25),
                "{s:?} vs {base:?}"
            );
        }
        b.reset();
        assert!(b.step() <= Duration::from_millis(1250));
    }
}
