//! The Hue bridge (`HUE_BRIDGE`, `HUE_APPLICATION_KEY`) and what it colours (`HUE_TARGETS`).

use std::fmt;

use secrecy::SecretString;

use super::error::ConfigError;
use super::sources::Sources;

/// What to colour on the Hue bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HueTarget {
    /// One light (`light:ID`; a v1 number or a v2 UUID).
    Light(String),
    /// A room (`room:ID`, through its `grouped_light`).
    Room(String),
    /// A zone (`zone:ID`).
    Zone(String),
    /// A v1 group (`group:ID`).
    Group(String),
}

impl HueTarget {
    fn parse(s: &str) -> Option<Self> {
        let (kind, id) = s.trim().split_once(':')?;
        let id = id.trim();
        if id.is_empty() {
            return None;
        }
        let id = id.to_owned();
        match kind.trim().to_ascii_lowercase().as_str() {
            "light" => Some(Self::Light(id)),
            "room" => Some(Self::Room(id)),
            "zone" => Some(Self::Zone(id)),
            "group" => Some(Self::Group(id)),
            _ => None,
        }
    }
}

impl fmt::Display for HueTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HueTarget::Light(id) => write!(f, "light:{id}"),
            HueTarget::Room(id) => write!(f, "room:{id}"),
            HueTarget::Zone(id) => write!(f, "zone:{id}"),
            HueTarget::Group(id) => write!(f, "group:{id}"),
        }
    }
}

/// The bridge and its targets.
#[derive(Debug)]
pub struct HueSettings {
    /// `HUE_BRIDGE`.
    pub bridge: Option<String>,
    /// `HUE_APPLICATION_KEY`.
    pub application_key: Option<SecretString>,
    /// `HUE_TARGETS`.
    pub targets: Vec<HueTarget>,
}

impl HueSettings {
    pub(super) fn parse(src: &Sources) -> Result<Self, ConfigError> {
        let targets = src.setting("HUE_TARGETS");
        Ok(Self {
            bridge: src.setting("HUE_BRIDGE").trimmed(),
            application_key: src.setting("HUE_APPLICATION_KEY").secret(),
            targets: targets
                .list()
                .iter()
                .map(|t| {
                    HueTarget::parse(t).ok_or_else(|| {
                        targets.invalid(
                            Some(t),
                            "a comma-separated list of light:ID, room:ID, zone:ID or group:ID",
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        })
    }
}
