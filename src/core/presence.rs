//! The presence model and change detection: pure code, no I/O.
//!
//! Graph documents availability and activity as closed lists, but the lists have grown over
//! the years (`Focusing`, `AvailableInactive`, ...) and the Learn pages disagree on casing.
//! So both are *open* sets: known values are normalised to their canonical PascalCase
//! spelling, unknown values are kept verbatim and passed through, never dropped.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! open_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $(#[allow(missing_docs)] $variant,)+
            /// A value this build does not know, kept as Graph sent it.
            Other(String),
        }

        impl $name {
            /// Parses case-insensitively; unknown values become `Other` (trimmed, never empty).
            pub fn parse(s: &str) -> Self {
                let t = s.trim();
                $(if t.eq_ignore_ascii_case(stringify!($variant)) { return $name::$variant; })+
                if t.is_empty() {
                    return $name::Other("PresenceUnknown".to_owned());
                }
                $name::Other(t.to_owned())
            }

            /// The canonical spelling (Graph's PascalCase) or the unknown value verbatim.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => stringify!($variant),)+
                    $name::Other(s) => s,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok($name::parse(&s))
            }
        }
    };
}

open_enum! {
    /// `presence.availability` as Graph reports it.
    Availability {
        Available, AvailableIdle, Away, BeRightBack, Busy, BusyIdle, DoNotDisturb, Offline,
        PresenceUnknown,
    }
}

open_enum! {
    /// `presence.activity` as Graph reports it.
    Activity {
        Available, AvailableInactive, Away, BeRightBack, Busy, DoNotDisturb, Focusing, InACall,
        InAConferenceCall, Inactive, InAMeeting, Offline, OffWork, OutOfOffice, PresenceUnknown,
        Presenting, UrgentInterruptionsOnly,
    }
}

/// What a user's presence is at one moment: the pair that decides the light.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Presence {
    /// Coarse state: Available, Busy, Away, ...
    pub availability: Availability,
    /// Fine state: InACall, Presenting, InAMeeting, ...
    pub activity: Activity,
}

impl Presence {
    /// Builds a presence from raw strings (case-insensitive, open set).
    pub fn new(availability: &str, activity: &str) -> Self {
        Self {
            availability: Availability::parse(availability),
            activity: Activity::parse(activity),
        }
    }
}

impl fmt::Display for Presence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.availability, self.activity)
    }
}

/// Where an observation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A Graph change notification (the fast path).
    Notification,
    /// A poll (the safety net).
    Poll,
}

/// One observation of a user's presence, before it is compared with what we knew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Entra object id of the user.
    pub user_id: String,
    /// Entra tenant id of the user.
    pub tenant_id: String,
    /// What Graph said.
    pub presence: Presence,
    /// How we learned it.
    pub source: Source,
    /// When we learned it.
    pub observed_at: DateTime<Utc>,
    /// Graph's `sequenceNumber`, when the payload carried one (lexicographically sortable).
    pub graph_sequence: Option<String>,
}

/// The last presence we stored for a user, the state change detection compares against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastKnown {
    /// The presence we last published.
    pub presence: Presence,
    /// Our sequence for it (see [`next_sequence`]).
    pub sequence: String,
    /// When it was observed.
    pub observed_at: DateTime<Utc>,
    /// Graph's sequence number of that observation, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_sequence: Option<String>,
    /// How it was observed.
    pub source: Source,
}

/// What to do with an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing changed (or the observation is older than what we have): publish nothing.
    Unchanged,
    /// A real change: store `next` and publish one message.
    Changed {
        /// The state to store.
        next: LastKnown,
        /// What it was before, `None` for a user seen for the first time.
        previous: Option<Presence>,
    },
}

/// Compares an observation with the last known state. Pure: the caller stores the result
/// with an ETag precondition and retries the whole decision on a conflict, which is what
/// makes a racing poll and notification publish once.
pub fn decide(last: Option<&LastKnown>, obs: &Observation) -> Decision {
    if let Some(last) = last {
        // A stale observation: Graph's own sequence says it is older, or (without one) it was
        // observed before what we stored. Either way it must not move the light backwards.
        if let (Some(prev), Some(cur)) = (&last.graph_sequence, &obs.graph_sequence) {
            if cur.as_str() <= prev.as_str() {
                return Decision::Unchanged;
            }
        } else if obs.observed_at < last.observed_at {
            return Decision::Unchanged;
        }
        if last.presence == obs.presence {
            return Decision::Unchanged;
        }
    }
    let next = LastKnown {
        presence: obs.presence.clone(),
        sequence: next_sequence(last.map(|l| l.sequence.as_str()), obs.observed_at),
        observed_at: obs.observed_at,
        graph_sequence: obs.graph_sequence.clone(),
        source: obs.source,
    };
    Decision::Changed {
        next,
        previous: last.map(|l| l.presence.clone()),
    }
}

/// Our per-user sequence: a fixed-width, lexicographically sortable string made of the
/// observation time in microseconds and a counter, strictly greater than `previous` even when
/// clocks step backwards or two changes share a timestamp.
pub fn next_sequence(previous: Option<&str>, observed_at: DateTime<Utc>) -> String {
    let micros = u64::try_from(observed_at.timestamp_micros()).unwrap_or(0);
    let candidate = format!("{micros:020}-{:06}", 0);
    match previous {
        Some(prev) if prev >= candidate.as_str() => {
            // Bump the previous one instead: same time prefix, counter + 1.
            let (time, counter) = prev.split_once('-').unwrap_or((prev, "0"));
            let counter: u64 = counter.parse().unwrap_or(0);
            format!("{time}-{:06}", counter + 1)
        }
        _ => candidate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn obs(av: &str, ac: &str, at: i64, seq: Option<&str>) -> Observation {
        Observation {
            user_id: "u".into(),
            tenant_id: "t".into(),
            presence: Presence::new(av, ac),
            source: Source::Poll,
            observed_at: t(at),
            graph_sequence: seq.map(str::to_owned),
        }
    }

    #[test]
    fn parses_case_insensitively_and_keeps_unknown_values() {
        assert_eq!(Availability::parse("busy"), Availability::Busy);
        assert_eq!(
            Availability::parse("DONOTDISTURB"),
            Availability::DoNotDisturb
        );
        assert_eq!(Activity::parse("inacall"), Activity::InACall);
        assert_eq!(Activity::parse("Focusing").as_str(), "Focusing");
        let unknown = Activity::parse("InASpaceWalk");
        assert_eq!(unknown, Activity::Other("InASpaceWalk".into()));
        assert_eq!(unknown.to_string(), "InASpaceWalk");
        assert_eq!(Activity::parse("  ").as_str(), "PresenceUnknown");
    }

    #[test]
    fn serde_round_trips_canonical_spelling() {
        let p: Presence =
            serde_json::from_str(r#"{"availability":"busy","activity":"inAConferenceCall"}"#)
                .unwrap();
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"availability":"Busy","activity":"InAConferenceCall"}"#
        );
    }

    #[test]
    fn decisions_table() {
        let first = match decide(None, &obs("Available", "Available", 0, None)) {
            Decision::Changed { next, previous } => {
                assert_eq!(previous, None);
                next
            }
            d => panic!("{d:?}"),
        };
        // Same presence again: nothing.
        assert_eq!(
            decide(Some(&first), &obs("available", "available", 5, None)),
            Decision::Unchanged
        );
        // Older observation with a different presence: ignored.
        assert_eq!(
            decide(Some(&first), &obs("Busy", "InACall", -5, None)),
            Decision::Unchanged
        );
        // A change: previous is set, sequence increases.
        let Decision::Changed { next, previous } =
            decide(Some(&first), &obs("Busy", "InACall", 10, None))
        else {
            panic!()
        };
        assert_eq!(previous, Some(Presence::new("Available", "Available")));
        assert!(next.sequence > first.sequence);
    }

    #[test]
    fn graph_sequence_orders_observations_when_present() {
        let Decision::Changed { next: a, .. } =
            decide(None, &obs("Busy", "InACall", 0, Some("0000000002")))
        else {
            panic!()
        };
        // A later wall-clock time but an older Graph sequence: stale.
        assert_eq!(
            decide(
                Some(&a),
                &obs("Available", "Available", 60, Some("0000000001"))
            ),
            Decision::Unchanged
        );
        assert!(matches!(
            decide(
                Some(&a),
                &obs("Available", "Available", 60, Some("0000000003"))
            ),
            Decision::Changed { .. }
        ));
    }

    #[test]
    fn sequence_is_strictly_increasing_even_when_the_clock_steps_back() {
        let s1 = next_sequence(None, t(100));
        let s2 = next_sequence(Some(&s1), t(50));
        let s3 = next_sequence(Some(&s2), t(50));
        let s4 = next_sequence(Some(&s3), t(200));
        assert!(s1 < s2 && s2 < s3 && s3 < s4, "{s1} {s2} {s3} {s4}");
        assert_eq!(s1.len(), s4.len());
    }
}
