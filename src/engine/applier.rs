//! The applier: verdicts in, light commands out, with the memory of what was applied per
//! user (a small JSON state file, so a restart never moves a lamp backwards). Shared by the
//! edge (`subscribe`, `hue-subscriber`) and `serve`'s in-process lights. The other sinks
//! (MQTT, webhook, WLED) hang off it as a [`Fanout`]; without `HUE_BRIDGE` an edge may run
//! with those alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::clients::hue::{Address, HostPorts, HueError, HueSink};
use crate::config::{ConfigError, Settings};
use crate::core::judge::{judge, Mark, Skip, Verdict};
use crate::core::lights::{Desired, LightMap};
use crate::core::message::{MessageError, TopicMessage};
use crate::engine::sinks::Fanout;

// The status every sink shows (Hue here, the others in `sinks`) lives with the sinks.
pub use crate::engine::sinks::{set_status, SharedSinkStatus, SinkStatus};

/// The state file: what was applied per user.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    users: BTreeMap<String, Mark>,
    /// `HUE_BRIDGE` values that once answered CLIP v2 over verified HTTPS: never again used
    /// over plain HTTP, whatever the network does to port 443.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    v2_bridges: BTreeSet<String>,
}

/// Lights, sink and memory: applies verdicts.
#[derive(Debug)]
pub struct Applier {
    lights: LightMap,
    sink: Option<HueSink>,
    watch: Vec<String>,
    applied: HashMap<String, Mark>,
    v2_bridges: BTreeSet<String>,
    state_file: Option<PathBuf>,
    fanout: Option<Fanout>,
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
        let (applied, v2_bridges) = state_file.as_deref().map(load_state).unwrap_or_default();
        Self {
            lights,
            sink: Some(sink),
            watch,
            applied,
            v2_bridges,
            state_file,
            fanout: None,
        }
    }

    /// Adds the other sinks (every message offered to [`Applier::offer`] goes to them).
    pub fn with_fanout(mut self, fanout: Option<Fanout>) -> Self {
        self.fanout = fanout;
        self
    }

    /// Hands a message to the other sinks (never waits; they judge it themselves, so a
    /// redelivered message is not sent twice).
    pub fn offer(&self, parsed: &Result<TopicMessage, MessageError>) {
        if let (Some(f), Ok(msg)) = (&self.fanout, parsed) {
            f.offer(msg);
        }
    }

    /// The other sinks, if any.
    pub fn fanout(&self) -> Option<&Fanout> {
        self.fanout.as_ref()
    }

    /// Builds everything from settings: the `[lights]` table, HUE_*, WATCH_USERS. Without
    /// `HUE_BRIDGE` but with another sink configured, an applier without Hue (the caller
    /// adds the other sinks with [`Applier::with_fanout`]).
    pub async fn from_settings(
        settings: &Settings,
        state_file: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        Self::from_settings_on(settings, state_file, HostPorts::default()).await
    }

    /// [`Self::from_settings`] with the ports of a bare-host `HUE_BRIDGE` given (tests).
    pub async fn from_settings_on(
        settings: &Settings,
        state_file: Option<PathBuf>,
        ports: HostPorts,
    ) -> anyhow::Result<Self> {
        let lights = lights_from(settings)?;
        if settings.hue.bridge.is_none() && settings.sinks.any() {
            return Ok(Self::new_without_hue(
                lights,
                settings.edge.watch_users.clone(),
                state_file,
            ));
        }
        let raw_address = settings.require_hue_bridge()?;
        let address = Address::parse_setting(raw_address)?;
        let key = settings.require_hue_application_key()?.clone();
        settings.require_hue_targets()?;
        let (_, mut v2_bridges) = state_file.as_deref().map(load_state).unwrap_or_default();
        let remembered = v2_bridges.contains(raw_address);
        let bridge = if remembered {
            crate::clients::hue::connect_v2_only(&address, &key, ports).await
        } else {
            crate::clients::hue::connect_on(&address, &key, ports).await
        }
        .context("cannot use the Hue bridge")?;
        // A bare host that answered verified v2: remember it, so it is never downgraded.
        let learned = !remembered
            && matches!(address, Address::Host(_))
            && matches!(bridge, crate::clients::hue::Bridge::V2(_));
        let sink = HueSink::with_bridge(bridge, &settings.hue.targets)
            .await
            .context("cannot use the Hue bridge")?;
        let applier = Self::new(lights, sink, settings.edge.watch_users.clone(), state_file);
        if learned {
            v2_bridges.insert(raw_address.to_owned());
            let applier = Self {
                v2_bridges,
                ..applier
            };
            applier.save();
            return Ok(applier);
        }
        Ok(applier)
    }

    /// `WATCH_USERS` (empty: every user).
    pub fn watched(&self) -> &[String] {
        &self.watch
    }

    fn new_without_hue(lights: LightMap, watch: Vec<String>, state_file: Option<PathBuf>) -> Self {
        let (applied, v2_bridges) = state_file.as_deref().map(load_state).unwrap_or_default();
        Self {
            lights,
            sink: None,
            watch,
            applied,
            v2_bridges,
            state_file,
            fanout: None,
        }
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

    /// Sends one verdict to the lights (no memory update). `Ok` once at least one target
    /// shows it: a target that refused it keeps it (the newest state) for
    /// [`Applier::retry_lights`], so the caller records the verdict and an older message can
    /// never follow it. An error only when no target took it.
    pub async fn show(&mut self, verdict: &Verdict) -> Result<(), HueError> {
        if let Verdict::Apply {
            desired: Desired::Set(state),
            ..
        } = verdict
        {
            if let Some(sink) = self.sink.as_mut() {
                sink.apply(state).await?;
            }
        }
        Ok(())
    }

    /// Remembers what a batch applied (and saves the state file).
    pub fn record(&mut self, verdicts: &[&Verdict]) {
        for v in verdicts {
            if let Verdict::Apply { user, mark, .. } = v {
                self.applied.insert(user.clone(), mark.clone());
            }
        }
        self.save();
    }

    /// Whether a light target still waits for the newest state it refused.
    pub fn lights_pending(&self) -> bool {
        self.sink.as_ref().is_some_and(HueSink::pending)
    }

    /// Sends the targets that refused their newest state that state again; whether all now
    /// show theirs.
    pub async fn retry_lights(&mut self) -> bool {
        match self.sink.as_mut() {
            Some(s) => s.retry().await,
            None => true,
        }
    }

    /// What is wrong with the light targets now (the bridge's warnings, targets refusing
    /// their state), one line each.
    pub fn lights_problems(&self) -> Vec<String> {
        self.sink
            .as_ref()
            .map(HueSink::problems)
            .unwrap_or_default()
    }

    fn save(&self) {
        if let Some(path) = &self.state_file {
            if let Err(e) = save_state(path, &self.applied, &self.v2_bridges) {
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
        let parsed = TopicMessage::parse(body);
        self.offer(&parsed);
        let verdict = self.judge(&parsed, now);
        log_skip(&verdict, None);
        self.apply(&verdict).await?;
        Ok(verdict)
    }
}

/// The `[lights]` table of the config file, parsed.
pub fn lights_from(settings: &Settings) -> Result<LightMap, ConfigError> {
    match settings.file_tables.get("lights") {
        None => LightMap::from_toml(None).map_err(Into::into),
        Some(toml::Value::Table(t)) => LightMap::from_toml(Some(t)).map_err(Into::into),
        Some(_) => Err(ConfigError {
            setting: "lights".into(),
            problem: "is not valid; expected a [lights] table".into(),
        }),
    }
}

type Loaded = (HashMap<String, Mark>, BTreeSet<String>);

fn load_state(path: &Path) -> Loaded {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice::<StateFile>(&bytes) {
            Ok(s) => (s.users.into_iter().collect(), s.v2_bridges),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable edge state file");
                Loaded::default()
            }
        },
        Err(_) => Loaded::default(),
    }
}

fn save_state(
    path: &Path,
    applied: &HashMap<String, Mark>,
    v2_bridges: &BTreeSet<String>,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file = StateFile {
        users: applied
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        v2_bridges: v2_bridges.clone(),
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(&file).expect("state serializes"),
    )?;
    std::fs::rename(&tmp, path)
}

/// Logs why a message was skipped, once, where it is handled.
pub fn log_skip(v: &Verdict, message_id: Option<&str>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
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
        let bridges: BTreeSet<String> = ["192.168.1.20".to_string()].into();
        save_state(&path, &applied, &bridges).unwrap();
        assert_eq!(load_state(&path), (applied, bridges));
        std::fs::write(&path, b"{oops").unwrap();
        assert!(load_state(&path).0.is_empty());
        assert!(load_state(&dir.path().join("missing")).0.is_empty());
    }
}
