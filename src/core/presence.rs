//! The presence model and change detection: pure code, no I/O.
//!
//! Graph documents availability and activity as closed lists, but the lists have grown over
//! the years (`Focusing`, `AvailableInactive`, ...) and the Learn pages disagree on casing:
//! Graph has begun sending lowerCamelCase (`busy`, `inACall`, `focusing`). So both are
//! *open* sets compared without regard to case: known values are normalised to their
//! canonical PascalCase spelling, unknown ones are kept with their first letter raised
//! (`inASpaceWalk` → `InASpaceWalk`), so the topic message stays PascalCase either way.

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! open_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $(#[doc = concat!("`", stringify!($variant), "`, as Graph spells it.")] $variant,)+
            /// A value this build does not know, kept as Graph sent it.
            Other(String),
        }

        impl $name {
            /// Parses case-insensitively; unknown values become `Other` (trimmed, never empty,
            /// first letter upper case as in Graph's PascalCase).
            pub fn parse(s: &str) -> Self {
                let t = s.trim();
                $(if t.eq_ignore_ascii_case(stringify!($variant)) { return $name::$variant; })+
                if t.is_empty() {
                    return $name::Other("PresenceUnknown".to_owned());
                }
                $name::Other(pascal_case(t))
            }

            /// Every value this build knows, in its canonical spelling (what a consumer with a
            /// closed list, such as Home Assistant's `enum` sensor, may be sent).
            pub const KNOWN: &'static [&'static str] = &[$(stringify!($variant)),+];

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

/// `inASpaceWalk` → `InASpaceWalk`: a lowerCamelCase value in Graph's PascalCase.
fn pascal_case(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
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
    /// Graph's `sequenceNumber`, when the payload carried one (see [`compare_graph_sequences`]).
    pub graph_sequence: Option<String>,
    /// A digest of the notification item this came from (its encrypted content), so a
    /// redelivered or replayed item is recognised; `None` for polls.
    pub item_digest: Option<String>,
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
    /// Digests of the last notification items applied (newest last, at most
    /// [`APPLIED_ITEMS_KEPT`]): a replay of any of them changes nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied_items: Vec<String>,
}

/// How many applied notification digests a user's record remembers. Graph retries for up to
/// four hours and a captured body stays replayable for its validation token's hour; a user
/// rarely changes presence more than a few times in that window, and each digest is short.
pub const APPLIED_ITEMS_KEPT: usize = 32;

/// Orders two Graph `sequenceNumber`s. Graph documents them as lexically sortable strings,
/// but plain numbers do not sort as text ("10" < "9"), so two all-digit values compare as
/// numbers (of any length); anything else compares as text.
pub fn compare_graph_sequences(a: &str, b: &str) -> Ordering {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if digits(a) && digits(b) {
        let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    } else {
        a.cmp(b)
    }
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
        // The very item we already applied, delivered again (Graph's retry after a timeout
        // or a 503, or a captured body replayed): it says nothing new, whatever came since.
        if let Some(d) = &obs.item_digest {
            if last.applied_items.iter().any(|a| a == d) {
                return Decision::Unchanged;
            }
        }
        // A stale observation: Graph's own sequence says it is older, or (without one on
        // either side) it was observed before what we stored. Either way it must not move the
        // light backwards. The same sequence is the same version, not an older one: it only
        // differs from what we stored when we reset that on purpose (after a new sign-in the
        // stored presence is made unknown so the lamp shows it again), and then it must land.
        if let (Some(prev), Some(cur)) = (&last.graph_sequence, &obs.graph_sequence) {
            if compare_graph_sequences(cur, prev) == Ordering::Less {
                return Decision::Unchanged;
            }
        } else if obs.observed_at < last.observed_at {
            return Decision::Unchanged;
        }
        if last.presence == obs.presence {
            return Decision::Unchanged;
        }
    }
    // Keep the highest Graph sequence seen even when this observation has none (a poll), so a
    // replay of an older sequenced item is still recognised as older afterwards.
    let graph_sequence = match (
        obs.graph_sequence.as_ref(),
        last.and_then(|l| l.graph_sequence.as_ref()),
    ) {
        (Some(cur), Some(prev)) if compare_graph_sequences(cur, prev) == Ordering::Less => {
            Some(prev.clone())
        }
        (Some(cur), _) => Some(cur.clone()),
        (None, prev) => prev.cloned(),
    };
    let mut applied_items = last.map(|l| l.applied_items.clone()).unwrap_or_default();
    if let Some(d) = &obs.item_digest {
        applied_items.push(d.clone());
        let excess = applied_items.len().saturating_sub(APPLIED_ITEMS_KEPT);
        applied_items.drain(..excess);
    }
    let next = LastKnown {
        presence: obs.presence.clone(),
        sequence: next_sequence(last.map(|l| l.sequence.as_str()), obs.observed_at),
        observed_at: obs.observed_at,
        graph_sequence,
        source: obs.source,
        applied_items,
    };
    Decision::Changed {
        next,
        previous: last.map(|l| l.presence.clone()),
    }
}

/// The state to store when `obs` changed nothing ([`decide`] said [`Decision::Unchanged`])
/// but came from a notification item without a Graph sequence number that `last` does not
/// remember yet: `last` with the item's digest added, so a replay of the item is recognised
/// later, whichever instance it reaches. Without this, such an item (its state already known,
/// from a poll or an earlier item) would be taken as news on its replay after a newer state,
/// since it is observed "now", and republish the older state. Items with a sequence number
/// need no memory: the highest sequence seen is kept and orders them. `None`: nothing to
/// store.
pub fn remember_item(last: &LastKnown, obs: &Observation) -> Option<LastKnown> {
    let digest = obs.item_digest.as_ref()?;
    if obs.graph_sequence.is_some() || last.applied_items.contains(digest) {
        return None;
    }
    let mut next = last.clone();
    next.applied_items.push(digest.clone());
    let excess = next.applied_items.len().saturating_sub(APPLIED_ITEMS_KEPT);
    next.applied_items.drain(..excess);
    Some(next)
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
            item_digest: None,
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

    /// Issue 28, item 14: Graph has begun returning lowerCamelCase; the same state must
    /// compare equal whatever the casing, and the topic message stays PascalCase (unknown
    /// values included: the current Learn page lists `focusing` and `inACall` as
    /// availabilities, which this build does not know as such).
    #[test]
    fn lower_camel_case_values_compare_equal_and_read_as_pascal_case() {
        let pairs = [
            ("busy", "inACall"),
            ("doNotDisturb", "presenting"),
            ("availableIdle", "offWork"),
            ("focusing", "focusing"),
            ("inACall", "inASpaceWalk"),
        ];
        for (av, ac) in pairs {
            let lower = Presence::new(av, ac);
            let upper = Presence::new(&pascal_case(av), &pascal_case(ac));
            assert_eq!(lower, upper, "{av}/{ac}");
            assert_eq!(
                lower.to_string(),
                format!("{}/{}", pascal_case(av), pascal_case(ac))
            );
        }
        assert_eq!(Availability::parse("focusing").as_str(), "Focusing");
        assert_eq!(
            serde_json::to_value(Presence::new("inACall", "inASpaceWalk")).unwrap(),
            serde_json::json!({"availability": "InACall", "activity": "InASpaceWalk"})
        );
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

    /// Issue 28, item 14: with Graph's sequenceNumber on every read, the presence of a user
    /// whose stored state was made unknown (a new sign-in after "sign-in required") comes
    /// back with the sequence already stored; it is the same version and must show again.
    #[test]
    fn the_same_graph_sequence_after_a_reset_shows_again_but_an_older_one_never() {
        let Decision::Changed { next: mut busy, .. } =
            decide(None, &obs("Busy", "InACall", 0, Some("7")))
        else {
            panic!()
        };
        assert_eq!(
            decide(Some(&busy), &obs("busy", "inACall", 30, Some("7"))),
            Decision::Unchanged
        );
        busy.presence = Presence::new("PresenceUnknown", "PresenceUnknown");
        assert!(matches!(
            decide(Some(&busy), &obs("Busy", "InACall", 60, Some("7"))),
            Decision::Changed { .. }
        ));
        assert_eq!(
            decide(Some(&busy), &obs("Available", "Available", 60, Some("6"))),
            Decision::Unchanged
        );
    }

    /// Issue 13, item 4: "10" sorted before "9" as text, so a newer item lost to an older one.
    #[test]
    fn graph_sequences_compare_as_numbers_when_both_are_digits() {
        assert_eq!(compare_graph_sequences("10", "9"), Ordering::Greater);
        assert_eq!(compare_graph_sequences("0009", "10"), Ordering::Less);
        assert_eq!(compare_graph_sequences("007", "7"), Ordering::Equal);
        assert_eq!(compare_graph_sequences("b", "a10"), Ordering::Greater);
        let Decision::Changed { next: nine, .. } = decide(None, &obs("Busy", "Busy", 0, Some("9")))
        else {
            panic!()
        };
        assert!(matches!(
            decide(Some(&nine), &obs("Away", "Away", 1, Some("10"))),
            Decision::Changed { .. }
        ));
    }

    /// Issue 13, item 4: A, B, then A again (a redelivery) must not roll presence back, even
    /// though the replay is received last and carries no sequence number.
    #[test]
    fn a_replayed_item_changes_nothing_after_a_newer_one() {
        let item = |av: &str, at: i64, digest: &str| Observation {
            source: Source::Notification,
            item_digest: Some(digest.into()),
            ..obs(av, av, at, None)
        };
        let Decision::Changed { next: a, .. } = decide(None, &item("Busy", 0, "A")) else {
            panic!()
        };
        let Decision::Changed { next: b, .. } = decide(Some(&a), &item("Away", 1, "B")) else {
            panic!()
        };
        assert_eq!(decide(Some(&b), &item("Busy", 2, "A")), Decision::Unchanged);
        // A poll in between (no digest, no sequence) keeps the memory of applied items.
        let Decision::Changed { next: c, .. } =
            decide(Some(&b), &obs("Available", "Available", 3, None))
        else {
            panic!()
        };
        assert_eq!(decide(Some(&c), &item("Busy", 4, "A")), Decision::Unchanged);
        // ... and the highest Graph sequence seen.
        let Decision::Changed { next: d, .. } =
            decide(Some(&c), &obs("Busy", "Busy", 5, Some("12")))
        else {
            panic!()
        };
        let Decision::Changed { next: e, .. } = decide(Some(&d), &obs("Away", "Away", 6, None))
        else {
            panic!()
        };
        assert_eq!(e.graph_sequence.as_deref(), Some("12"));
        assert_eq!(
            decide(Some(&e), &obs("Busy", "Busy", 7, Some("11"))),
            Decision::Unchanged
        );
    }

    /// Issue 32: an item whose state was already known (a poll got there first) changed
    /// nothing and was forgotten; replayed after a newer state, it was news again.
    #[test]
    fn an_item_that_changed_nothing_is_remembered_and_its_replay_changes_nothing() {
        let item = |av: &str, at: i64, digest: &str, seq: Option<&str>| Observation {
            source: Source::Notification,
            item_digest: Some(digest.into()),
            ..obs(av, av, at, seq)
        };
        let Decision::Changed { next: polled, .. } = decide(None, &obs("Busy", "Busy", 0, None))
        else {
            panic!()
        };
        let x = item("Busy", 1, "X", None);
        assert_eq!(decide(Some(&polled), &x), Decision::Unchanged);
        let remembered = remember_item(&polled, &x).expect("X is remembered");
        assert_eq!(remembered.applied_items, vec!["X".to_owned()]);
        assert_eq!(
            remembered.sequence, polled.sequence,
            "no new sequence: nothing published"
        );
        assert_eq!(remember_item(&remembered, &x), None, "remembered once");
        // A newer state, then X again: nothing.
        let Decision::Changed { next: away, .. } =
            decide(Some(&remembered), &obs("Away", "Away", 2, None))
        else {
            panic!()
        };
        assert_eq!(
            decide(Some(&away), &item("Busy", 3, "X", None)),
            Decision::Unchanged
        );
        // Polls and sequenced items are not remembered this way.
        assert_eq!(remember_item(&polled, &obs("Busy", "Busy", 1, None)), None);
        assert_eq!(
            remember_item(&polled, &item("Busy", 1, "Y", Some("7"))),
            None
        );
        // The memory stays bounded.
        let mut last = polled;
        for n in 0..APPLIED_ITEMS_KEPT + 5 {
            last = remember_item(&last, &item("Busy", 1, &format!("d{n}"), None)).unwrap();
        }
        assert_eq!(last.applied_items.len(), APPLIED_ITEMS_KEPT);
        assert_eq!(last.applied_items.last().map(String::as_str), Some("d36"));
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
