//! The PBX sync's settings (`PBX`, `PBX_PRESET`, `PBX_3CX_*`, `PBX_EVENTS_SECRET`,
//! `PBX_HTTP_*`, `PBX_STABLE_SECONDS`, `PBX_HOLD_SECONDS`) and the `[pbx]` rules table.
//! Bad rules are refused here, at start, with one line naming the rule.

use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::{ConfigError, Sources};
use crate::core::pbx::rules::{Preset, Rules};
use crate::core::pbx::sync::{Policy, Settings as Timing};

/// Which PBX adapter runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PbxKind {
    /// 3CX V20: Call Control WebSocket for calls, XAPI for status profiles.
    ThreeCx,
    /// Any PBX that can send and receive HTTP: events in on `POST /api/pbx/events`,
    /// status out through `PBX_HTTP_SET_URL`.
    Http,
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
}

/// Everything the PBX sync needs from the settings.
#[derive(Debug, Clone)]
pub struct PbxSettings {
    /// `PBX`.
    pub kind: PbxKind,
    /// `PBX_PRESET` (or the default for the kind).
    pub preset: Preset,
    /// The rules (the preset's, or the `[pbx]` table's) and the timing.
    pub policy: Policy,
    /// `PBX_3CX_*` when `PBX=3cx`.
    pub threecx: Option<ThreeCxSettings>,
    /// `PBX_EVENTS_SECRET`: authenticates `POST /api/pbx/events`.
    pub events_secret: Option<SecretString>,
    /// The raw `PBX_HTTP_*` values, read by the outbound HTTP adapter (which validates them).
    pub http: Vec<(String, String)>,
    /// `PBX_PROFILE_POLL_SECONDS` (default 5): how often 3CX profiles are read (3CX pushes
    /// no profile changes).
    pub profile_poll: Duration,
}

impl PbxSettings {
    /// The raw `PBX_HTTP_*` value of `key`.
    pub fn http_value(&self, key: &str) -> Option<String> {
        self.http
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
}

const HTTP_KEYS: [&str; 5] = [
    "PBX_HTTP_SET_URL",
    "PBX_HTTP_SET_METHOD",
    "PBX_HTTP_HEADERS",
    "PBX_HTTP_USERNAME",
    "PBX_HTTP_PASSWORD",
];

fn seconds(src: &Sources, key: &str, default: u64, max: u64) -> Result<Duration, ConfigError> {
    match src.get(key) {
        None => Ok(Duration::from_secs(default)),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if n <= max => Ok(Duration::from_secs(n)),
            _ => Err(ConfigError::invalid(
                key,
                Some(&v),
                &format!("a whole number of seconds from 0 to {max}"),
            )),
        },
    }
}

/// Reads the PBX settings; `Ok(None)` when `PBX` is unset (the sync is off).
pub fn parse(src: &Sources, tables: &toml::Table) -> Result<Option<PbxSettings>, ConfigError> {
    let Some(kind) = src.get("PBX") else {
        return Ok(None);
    };
    let kind = match kind.trim().to_ascii_lowercase().as_str() {
        "3cx" => PbxKind::ThreeCx,
        "http" => PbxKind::Http,
        _ => return Err(ConfigError::invalid("PBX", Some(&kind), "3cx or http")),
    };
    let preset = match src.get("PBX_PRESET") {
        None => match kind {
            PbxKind::ThreeCx => Preset::ThreeCx,
            PbxKind::Http => Preset::Vtx,
        },
        Some(p) => Preset::parse(&p)
            .ok_or_else(|| ConfigError::invalid("PBX_PRESET", Some(&p), &Preset::names()))?,
    };
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
        stable: seconds(src, "PBX_STABLE_SECONDS", 10, 3600)?,
        hold: seconds(src, "PBX_HOLD_SECONDS", 5, 3600)?,
        ..Timing::default()
    };
    timing.validate().map_err(|e| ConfigError {
        setting: "[pbx]".into(),
        problem: e.to_string(),
    })?;
    let threecx = match kind {
        PbxKind::Http => None,
        PbxKind::ThreeCx => {
            let url = src.get("PBX_3CX_URL").ok_or_else(|| {
                ConfigError::missing(
                    "PBX_3CX_URL",
                    "the 3CX V20 base URL, e.g. https://pbx.example.com",
                )
            })?;
            let url = Url::parse(url.trim())
                .ok()
                .filter(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
                .ok_or_else(|| ConfigError::invalid("PBX_3CX_URL", Some(&url), "an https URL"))?;
            let client_id = src.get("PBX_3CX_CLIENT_ID").ok_or_else(|| {
                ConfigError::missing(
                    "PBX_3CX_CLIENT_ID",
                    "the client id of the 3CX API client (Integrations → API)",
                )
            })?;
            let client_secret = src.get("PBX_3CX_CLIENT_SECRET").ok_or_else(|| {
                ConfigError::missing(
                    "PBX_3CX_CLIENT_SECRET",
                    "the API key shown once when the 3CX API client was created",
                )
            })?;
            Some(ThreeCxSettings {
                url,
                client_id: client_id.trim().to_owned(),
                client_secret: SecretString::from(client_secret),
            })
        }
    };
    let http = HTTP_KEYS
        .iter()
        .filter_map(|k| src.get(k).map(|v| ((*k).to_owned(), v)))
        .collect();
    Ok(Some(PbxSettings {
        kind,
        preset,
        policy: Policy {
            rules,
            settings: timing,
        },
        threecx,
        events_secret: src.get("PBX_EVENTS_SECRET").map(SecretString::from),
        http,
        profile_poll: match seconds(src, "PBX_PROFILE_POLL_SECONDS", 5, 3600)? {
            d if d.is_zero() => Duration::from_secs(1),
            d => d,
        },
    }))
}

/// The `[pbx]` table with `preset` filled in from `PBX_PRESET` when the table names none.
fn with_default_preset(mut table: toml::Table, preset: Preset) -> toml::Value {
    table
        .entry("preset")
        .or_insert_with(|| toml::Value::String(preset.name().to_owned()));
    toml::Value::Table(table)
}
