//! The PBX sync's settings (`PBX`, `PBX_PRESET`, `PBX_3CX_*`, `PBX_EVENTS_SECRET`,
//! `PBX_HTTP_*`, `PBX_STABLE_SECONDS`, `PBX_HOLD_SECONDS`) and the `[pbx]` rules table.
//! Bad rules are refused here, at start, with one line naming the rule.

use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::error::ConfigError;
use super::sources::Sources;
use super::values::HTTP;
use crate::core::pbx::rules::{Preset, Rules};
use crate::core::pbx::sync::{Policy, Settings as Timing};

/// The PBX sync: off, or on with one adapter and that adapter's settings only.
#[derive(Debug, Clone)]
pub enum PbxSettings {
    /// `PBX` unset: no sync.
    Off,
    /// `PBX=3cx`, 3CX V20: Call Control WebSocket for calls, XAPI for status profiles.
    ThreeCx {
        /// The rules, timing and inbound events, as for any PBX.
        sync: SyncSettings,
        /// The API client.
        api: ThreeCxSettings,
    },
    /// `PBX=http`: any PBX that can send and receive HTTP: events in on
    /// `POST /api/pbx/events`, status out through `PBX_HTTP_SET_URL`.
    Http {
        /// The rules, timing and inbound events, as for any PBX.
        sync: SyncSettings,
        /// The outbound status request.
        http: HttpSettings,
    },
}

/// What every adapter's sync needs.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// `PBX_PRESET` (or the default for the adapter).
    pub preset: Preset,
    /// The rules (the preset's, or the `[pbx]` table's) and the timing.
    pub policy: Policy,
    /// `PBX_EVENTS_SECRET`: authenticates `POST /api/pbx/events`.
    pub events_secret: Option<SecretString>,
}

/// The 3CX API client (Admin Console → Integrations → API).
#[derive(Debug, Clone)]
pub struct ThreeCxSettings {
    /// `PBX_3CX_URL`: the PBX's https base URL.
    pub url: Url,
    /// `PBX_3CX_CLIENT_ID`.
    pub client_id: String,
    /// `PBX_3CX_CLIENT_SECRET`.
    pub client_secret: SecretString,
    /// `PBX_PROFILE_POLL_SECONDS` (default 5): how often 3CX profiles are read (3CX pushes
    /// no profile changes).
    pub profile_poll: Duration,
}

/// The generic adapter's outbound request: the raw `PBX_HTTP_*` values, read by the
/// outbound HTTP adapter (which validates them).
#[derive(Debug, Clone, Default)]
pub struct HttpSettings {
    values: Vec<(String, String)>,
}

impl HttpSettings {
    /// The raw `PBX_HTTP_*` value of `key`.
    pub fn value(&self, key: &str) -> Option<String> {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
}

impl PbxSettings {
    /// The sync's settings, when a PBX is configured.
    pub fn sync(&self) -> Option<&SyncSettings> {
        match self {
            PbxSettings::Off => None,
            PbxSettings::ThreeCx { sync, .. } | PbxSettings::Http { sync, .. } => Some(sync),
        }
    }

    /// Whether a PBX is configured.
    pub fn is_on(&self) -> bool {
        self.sync().is_some()
    }

    /// The 3CX API client, when `PBX=3cx`.
    pub fn threecx(&self) -> Option<&ThreeCxSettings> {
        match self {
            PbxSettings::ThreeCx { api, .. } => Some(api),
            _ => None,
        }
    }
}

const HTTP_KEYS: [&str; 5] = [
    "PBX_HTTP_SET_URL",
    "PBX_HTTP_SET_METHOD",
    "PBX_HTTP_HEADERS",
    "PBX_HTTP_USERNAME",
    "PBX_HTTP_PASSWORD",
];

/// Which adapter `PBX` names.
#[derive(Debug, Clone, Copy)]
enum Kind {
    ThreeCx,
    Http,
}

fn seconds(src: &Sources, key: &str, default: u64) -> Result<Duration, ConfigError> {
    Ok(src
        .setting(key)
        .seconds(0..=3600)?
        .unwrap_or(Duration::from_secs(default)))
}

/// Reads the PBX settings; [`PbxSettings::Off`] when `PBX` is unset.
pub fn parse(src: &Sources, tables: &toml::Table) -> Result<PbxSettings, ConfigError> {
    let Some(kind) = src.setting("PBX").keyword(
        &[("3cx", Kind::ThreeCx), ("http", Kind::Http)],
        "3cx or http",
    )?
    else {
        return Ok(PbxSettings::Off);
    };
    let preset = src
        .setting("PBX_PRESET")
        .parsed(&Preset::names(), Preset::parse)?
        .unwrap_or(match kind {
            Kind::ThreeCx => Preset::ThreeCx,
            Kind::Http => Preset::Vtx,
        });
    let rules = match tables.get("pbx") {
        // A `[pbx]` table replaces the preset's tables it names (and may pick a preset).
        Some(toml::Value::Table(table)) => {
            Rules::from_toml_value(with_default_preset(table.clone(), preset)).map_err(|e| {
                ConfigError {
                    setting: "[pbx]".into(),
                    problem: e.to_string(),
                }
            })?
        }
        Some(_) => {
            return Err(ConfigError {
                setting: "pbx".into(),
                problem: "is not valid; expected a [pbx] table".into(),
            })
        }
        None => preset.rules(),
    };
    let timing = Timing {
        stable: seconds(src, "PBX_STABLE_SECONDS", 10)?,
        hold: seconds(src, "PBX_HOLD_SECONDS", 5)?,
        ..Timing::default()
    };
    timing.validate().map_err(|e| ConfigError {
        setting: "[pbx]".into(),
        problem: e.to_string(),
    })?;
    let api = match kind {
        Kind::Http => None,
        Kind::ThreeCx => Some(threecx(src)?),
    };
    let http = HttpSettings {
        values: HTTP_KEYS
            .iter()
            .filter_map(|k| src.get(k).map(|v| ((*k).to_owned(), v)))
            .collect(),
    };
    let sync = SyncSettings {
        preset,
        policy: Policy {
            rules,
            settings: timing,
        },
        events_secret: src.setting("PBX_EVENTS_SECRET").secret(),
    };
    let profile_poll = match seconds(src, "PBX_PROFILE_POLL_SECONDS", 5)? {
        d if d.is_zero() => Duration::from_secs(1),
        d => d,
    };
    Ok(match api {
        None => PbxSettings::Http { sync, http },
        Some((url, client_id, client_secret)) => PbxSettings::ThreeCx {
            sync,
            api: ThreeCxSettings {
                url,
                client_id,
                client_secret,
                profile_poll,
            },
        },
    })
}

/// `PBX_3CX_*`: the URL, client id and secret of the API client.
fn threecx(src: &Sources) -> Result<(Url, String, SecretString), ConfigError> {
    let url = src
        .setting("PBX_3CX_URL")
        .url(HTTP, "an https URL")?
        .ok_or_else(|| {
            ConfigError::missing(
                "PBX_3CX_URL",
                "the 3CX V20 base URL, e.g. https://pbx.example.com",
            )
        })?;
    let client_id = src.setting("PBX_3CX_CLIENT_ID").trimmed().ok_or_else(|| {
        ConfigError::missing(
            "PBX_3CX_CLIENT_ID",
            "the client id of the 3CX API client (Integrations → API)",
        )
    })?;
    let client_secret = src
        .setting("PBX_3CX_CLIENT_SECRET")
        .secret()
        .ok_or_else(|| {
            ConfigError::missing(
                "PBX_3CX_CLIENT_SECRET",
                "the API key shown once when the 3CX API client was created",
            )
        })?;
    Ok((url, client_id, client_secret))
}

/// The `[pbx]` table with `preset` filled in from `PBX_PRESET` when the table names none.
fn with_default_preset(mut table: toml::Table, preset: Preset) -> toml::Value {
    table
        .entry("preset")
        .or_insert_with(|| toml::Value::String(preset.name().to_owned()));
    toml::Value::Table(table)
}
