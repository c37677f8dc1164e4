//! Which topic messages an edge applies: pure rules, no I/O. [`judge`] decides per message,
//! [`coalesce`] picks what a burst actually sends. The edge (`subscribe`, `hue-subscriber`)
//! and `serve`'s lights run every message through these.
//!
//! Rules, in order, for each message:
//! * not a message at all (not JSON, a known type with missing fields): completed and logged,
//!   so a poison message never blocks the subscription;
//! * an unknown `type`: completed and ignored (a newer cloud must not break an older Pi);
//! * a user not in `WATCH_USERS` (when set): completed. Messages carry only `userId`, so
//!   entries are matched against the object id; a UPN entry can only match if a later
//!   message version carries the UPN, and a warning says so at start-up;
//! * `presence.changed` whose `sequence` is not greater than the last one applied for that
//!   user: completed without effect; `user.signin_required` (no sequence) is stale when
//!   observed before the last applied;
//! * a burst: per user only the newest counts, and since all users share the lights only the
//!   newest of those is sent to the bridge (the others' sequences are recorded).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::core::lights::{Desired, LightMap};
use crate::core::message::{MessageError, TopicMessage};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::message::{PresenceChanged, SignInRequired};
    use crate::core::presence::{Presence, Source};
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
}
