//! The model every PBX adapter speaks: line states and status profiles per extension,
//! events in, profile commands out. Pure data, no I/O.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A PBX extension (or number) as the PBX spells it, e.g. `"101"`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Extension(pub String);

impl fmt::Display for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The state of an extension's line, whatever the PBX calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineState {
    /// No call.
    Idle,
    /// An inbound call is ringing (not yet a call: the person may not answer).
    Ringing,
    /// The extension is placing a call.
    Dialing,
    /// Talking.
    InCall,
    /// A call on hold (still a call).
    Held,
    /// The PBX does not know (device unregistered, ...).
    Unavailable,
}

impl LineState {
    /// The wire spelling (`idle`, `ringing`, `dialing`, `in_call`, `held`, `unavailable`).
    pub fn as_str(self) -> &'static str {
        match self {
            LineState::Idle => "idle",
            LineState::Ringing => "ringing",
            LineState::Dialing => "dialing",
            LineState::InCall => "in_call",
            LineState::Held => "held",
            LineState::Unavailable => "unavailable",
        }
    }

    /// Parses the wire spelling (case-insensitive); `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        [
            LineState::Idle,
            LineState::Ringing,
            LineState::Dialing,
            LineState::InCall,
            LineState::Held,
            LineState::Unavailable,
        ]
        .into_iter()
        .find(|l| l.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// True while the person is on the phone (dialing, talking or holding).
    pub fn is_call(self) -> bool {
        matches!(
            self,
            LineState::Dialing | LineState::InCall | LineState::Held
        )
    }
}

/// A PBX status profile by the name the PBX uses ("Available", "Away", "Out of office",
/// "On Break", ...). Compared case-insensitively.
#[derive(Debug, Clone, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Profile(pub String);

impl Profile {
    /// A profile by name.
    pub fn new(name: impl Into<String>) -> Self {
        Profile(name.into())
    }
    /// The name as the PBX spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq for Profile {
    fn eq(&self, other: &Self) -> bool {
        self.0.trim().eq_ignore_ascii_case(other.0.trim())
    }
}

impl std::hash::Hash for Profile {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.trim().to_ascii_lowercase().hash(state)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One thing the PBX told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PbxEvent {
    /// An extension's line changed.
    Line {
        /// Which extension.
        extension: Extension,
        /// Its new state.
        state: LineState,
        /// When the PBX saw it (or when we received it, if the PBX does not say).
        at: DateTime<Utc>,
    },
    /// An extension's status profile is (now) this.
    Profile {
        /// Which extension.
        extension: Extension,
        /// The profile it has.
        profile: Profile,
        /// When we learnt it.
        at: DateTime<Utc>,
    },
    /// The full picture after a (re)connect: every known extension's line and profile.
    /// Consumers diff it against what they knew; they never replay writes because of it.
    Snapshot {
        /// One entry per extension.
        extensions: Vec<ExtensionSnapshot>,
        /// When it was taken.
        at: DateTime<Utc>,
    },
    /// The connection to the PBX came up or went down (for status and health only).
    Health {
        /// True when events flow.
        connected: bool,
        /// One line for the status page (never a secret).
        detail: String,
    },
}

/// One extension in a [`PbxEvent::Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionSnapshot {
    /// Which extension.
    pub extension: Extension,
    /// Its line.
    pub line: LineState,
    /// Its profile, where the PBX has such a thing.
    pub profile: Option<Profile>,
}
