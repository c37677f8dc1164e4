//! Timing settings and the policy (rules + timing) a sync link runs with.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::rules::Rules;

/// A `std` duration as a chrono delta (saturating: a huge setting means "never").
pub(super) fn td(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// Timing of the sync, per link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Teams → PBX: a Teams state must hold this long before the PBX follows, so a
    /// flapping client or a reordered notification does not reach the phone.
    pub stable: Duration,
    /// A call end is held this long before Teams is cleared, so transfers and
    /// back-to-back calls write nothing.
    pub hold: Duration,
    /// At most one write per user and direction this often; later changes wait and are
    /// coalesced to the latest, never dropped.
    pub min_write_interval: Duration,
    /// `expirationDuration` of our app session (Graph accepts PT5M–PT4H); re-posted before
    /// it lapses while the call lasts.
    pub session_expiry: Duration,
    /// How long a value we wrote is recognised as our echo when it comes back.
    pub echo_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            stable: Duration::from_secs(10),
            hold: Duration::from_secs(5),
            min_write_interval: Duration::from_secs(10),
            session_expiry: Duration::from_secs(3600),
            echo_ttl: Duration::from_secs(300),
        }
    }
}

/// Settings that Graph or the sync cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The session expiry is outside what setPresence accepts.
    #[error("pbx.session_expiry: {0} s is outside PT5M–PT4H (300–14400 s), the range Graph accepts for setPresence")]
    SessionExpiry(u64),
}

impl Settings {
    /// Graph's limits for `expirationDuration`.
    pub const SESSION_EXPIRY_RANGE: (Duration, Duration) =
        (Duration::from_secs(5 * 60), Duration::from_secs(4 * 3600));

    /// Checks the settings against Graph's limits.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let (min, max) = Self::SESSION_EXPIRY_RANGE;
        if self.session_expiry < min || self.session_expiry > max {
            return Err(SettingsError::SessionExpiry(self.session_expiry.as_secs()));
        }
        Ok(())
    }

    /// When to re-post a session posted at `posted`: a sixth of the expiry early (ten
    /// minutes for PT1H), so a slow or rate-limited write still lands in time.
    pub(super) fn repost_at(&self, posted: DateTime<Utc>) -> DateTime<Utc> {
        let margin = (self.session_expiry / 6).min(Duration::from_secs(600));
        posted + td(self.session_expiry - margin)
    }
}

/// The rules and settings a link runs with (configuration, not state: never stored).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// The mapping rules.
    pub rules: Rules,
    /// The timing.
    pub settings: Settings,
}
