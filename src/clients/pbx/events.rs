//! The inbound wire format of `POST /api/pbx/events`: the only module that knows it.
//!
//! A PBX (a hosted PBX's webhook, an Asterisk dialplan `CURL()`, a FreePBX or Yeastar hook)
//! posts one event or a batch:
//!
//! ```json
//! {"extension":"101","state":"in_call","profile":"Away","timestamp":"2026-01-01T09:00:00Z"}
//! {"events":[{"extension":"101","state":"idle","timestamp":"..."}, ...]}
//! ```
//!
//! `state` is one of `idle`, `ringing`, `dialing`, `in_call`, `held`; `profile` is the PBX's
//! own status name. At least one of the two is required; with both, the event becomes a
//! line event and a profile event at the same instant.
//!
//! Authentication is either `Authorization: Bearer <secret>` or
//! `X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`. Both are
//! checked in constant time. Bodies whose signature or events are more than
//! [`MAX_SKEW_SECS`] away from `now` are refused, and so is a body accepted once before
//! (whichever credential came with it): the route keeps the digests in the store, so a replay
//! to another instance is refused too (`crate::engine::guards`); [`ReplayGuard`] is the same
//! rule in one process's memory.
//!
//! Pure code: [`verify`] takes the headers, the body, the secret and `now` as arguments and
//! says how long the body stays replayable; the HTTP route only hands them over and maps
//! [`EventsError`].

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::core::pbx::model::{Extension, LineState, PbxEvent, Profile};

/// Largest body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most events in one batch.
pub const MAX_EVENTS: usize = 100;
/// How far (either way) a signature's `t` or an event's timestamp may be from `now`.
pub const MAX_SKEW_SECS: i64 = 5 * 60;
/// Longest extension or profile name accepted.
const MAX_NAME_CHARS: usize = 64;
/// The line states the wire accepts (`unavailable` is ours, not the PBX's, to say).
const WIRE_STATES: [LineState; 5] = [
    LineState::Idle,
    LineState::Ringing,
    LineState::Dialing,
    LineState::InCall,
    LineState::Held,
];

type HmacSha256 = Hmac<Sha256>;

/// Why a body was refused, split by the status the route answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventsError {
    /// 401: missing or wrong credential, stale signature or event, replayed body. The client
    /// gets one generic message; [`EventsError::log_reason`] says which, for the log.
    #[error("unauthorized")]
    Unauthorized {
        /// The specific reason, for the log only (never a secret).
        reason: &'static str,
    },
    /// 400: the body is not a valid event or batch; one line naming the field.
    #[error("{0}")]
    Malformed(String),
}

impl EventsError {
    /// The line to log: the specific reason for a 401, the message for a 400.
    pub fn log_reason(&self) -> String {
        match self {
            EventsError::Unauthorized { reason } => format!("unauthorized: {reason}"),
            EventsError::Malformed(m) => format!("malformed: {m}"),
        }
    }
}

fn unauthorized(reason: &'static str) -> EventsError {
    EventsError::Unauthorized { reason }
}

/// The two request headers authentication looks at, as plain strings.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthHeaders<'a> {
    /// `Authorization`, if present.
    pub authorization: Option<&'a str>,
    /// `X-Signature`, if present.
    pub signature: Option<&'a str>,
}

/// Digests of accepted bodies for [`MAX_SKEW_SECS`], so a captured request cannot be
/// replayed while its timestamps still look fresh. Memory is bounded: at most `capacity`
/// digests; when full of unexpired ones the oldest is forgotten (a replay of *that* body
/// would then need a capture less than five minutes old and a sender faster than the cap).
#[derive(Debug)]
pub struct ReplayGuard {
    seen: HashMap<[u8; 32], DateTime<Utc>>,
    order: VecDeque<([u8; 32], DateTime<Utc>)>,
    capacity: usize,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::with_capacity(10_000)
    }
}

impl ReplayGuard {
    /// A guard remembering at most `capacity` bodies.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            seen: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// How many digests it holds now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Drops expired digests, and the oldest ones while more than `keep` remain.
    fn evict(&mut self, now: DateTime<Utc>, keep: usize) {
        while let Some((digest, at)) = self.order.front().copied() {
            if now - at < Duration::seconds(MAX_SKEW_SECS) && self.order.len() <= keep {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&digest) == Some(&at) {
                self.seen.remove(&digest);
            }
        }
    }

    fn contains(&mut self, digest: &[u8; 32], now: DateTime<Utc>) -> bool {
        self.evict(now, self.capacity);
        self.seen.contains_key(digest)
    }

    fn insert(&mut self, digest: [u8; 32], now: DateTime<Utc>) {
        self.evict(now, self.capacity - 1);
        self.seen.insert(digest, now);
        self.order.push_back((digest, now));
    }
}

/// A request [`verify`] let through: its events, the digest of its body and the last moment a
/// replay of it could still pass the freshness checks (what a replay guard must remember it
/// for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The events, in body order.
    pub events: Vec<PbxEvent>,
    /// SHA-256 of the body.
    pub digest: [u8; 32],
    /// A replay after this has a stale event and is refused anyway.
    pub replayable_until: DateTime<Utc>,
}

/// Authenticates, parses and checks the freshness of one request; whether the body was seen
/// before is the caller's replay guard's to say (in memory: [`accept`]; across instances: the
/// store, `crate::engine::guards`). Nothing is accepted when any event of a batch is bad.
///
/// Order matters: the credential is checked before the body is parsed, so an
/// unauthenticated client learns nothing about the format.
pub fn verify(
    headers: AuthHeaders<'_>,
    body: &[u8],
    secret: &SecretString,
    now: DateTime<Utc>,
) -> Result<Verified, EventsError> {
    authenticate(headers, body, secret, now)?;
    let events = parse(body)?;
    let skew = Duration::seconds(MAX_SKEW_SECS);
    let mut oldest: Option<DateTime<Utc>> = None;
    for e in &events {
        if let PbxEvent::Line { at, .. } | PbxEvent::Profile { at, .. } = e {
            if *at < now - skew {
                return Err(unauthorized("event timestamp older than 5 minutes"));
            }
            if *at > now + skew {
                return Err(unauthorized("event timestamp more than 5 minutes ahead"));
            }
            oldest = Some(oldest.map_or(*at, |o| o.min(*at)));
        }
    }
    Ok(Verified {
        events,
        digest: Sha256::digest(body).into(),
        // Every event must be fresh for a replay to pass: the oldest decides.
        replayable_until: oldest.unwrap_or(now) + skew,
    })
}

/// [`verify`] with a replay guard in this process's memory: on success the body is
/// remembered by `guard` and its events are returned.
pub fn accept(
    headers: AuthHeaders<'_>,
    body: &[u8],
    secret: &SecretString,
    now: DateTime<Utc>,
    guard: &mut ReplayGuard,
) -> Result<Vec<PbxEvent>, EventsError> {
    let Verified { events, digest, .. } = verify(headers, body, secret, now)?;
    if guard.contains(&digest, now) {
        return Err(replayed());
    }
    guard.insert(digest, now);
    Ok(events)
}

/// The refusal of a body accepted once before (by this process or, through the store, by
/// another instance).
pub fn replayed() -> EventsError {
    unauthorized("replayed body")
}

/// Checks the credential: the signature when `X-Signature` is present, else the bearer
/// secret. Replay and event freshness are [`accept`]'s job.
pub fn authenticate(
    headers: AuthHeaders<'_>,
    body: &[u8],
    secret: &SecretString,
    now: DateTime<Utc>,
) -> Result<(), EventsError> {
    let secret = secret.expose_secret().as_bytes();
    if secret.is_empty() {
        return Err(unauthorized("no secret configured"));
    }
    if let Some(sig) = headers.signature {
        return check_signature(sig, body, secret, now);
    }
    let Some(auth) = headers.authorization else {
        return Err(unauthorized("no credential"));
    };
    let Some(presented) = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
    else {
        return Err(unauthorized("Authorization is not a bearer credential"));
    };
    // HMAC both sides under the secret: equal-length digests, so the comparison is constant
    // time and leaks not even the secret's length.
    let digest = |v: &[u8]| {
        let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
        m.update(v);
        m.finalize().into_bytes()
    };
    if openssl::memcmp::eq(&digest(presented.trim().as_bytes()), &digest(secret)) {
        Ok(())
    } else {
        Err(unauthorized("wrong bearer secret"))
    }
}

fn check_signature(
    header: &str,
    body: &[u8],
    secret: &[u8],
    now: DateTime<Utc>,
) -> Result<(), EventsError> {
    let mut t = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.trim().parse::<i64>().ok(),
            // Several v1 values let a sender sign with the old and the new secret at once.
            Some(("v1", v)) => candidates.push(v.trim()),
            _ => {}
        }
    }
    let Some(t) = t else {
        return Err(unauthorized("signature without a valid t"));
    };
    if (now.timestamp() - t).abs() > MAX_SKEW_SECS {
        return Err(unauthorized("signature timestamp outside 5 minutes"));
    }
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let ok = candidates
        .iter()
        .filter_map(|c| hex_decode(c))
        .any(|sig| mac.clone().verify_slice(&sig).is_ok());
    if ok {
        Ok(())
    } else {
        Err(unauthorized("wrong signature"))
    }
}

/// Hex HMAC-SHA256 of `"<t>." + body`: what a sender puts in `X-Signature`'s `v1`.
pub fn sign(secret: &SecretString, t: i64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Parses a body (one event or `{"events":[...]}`) into model events. Only
/// [`EventsError::Malformed`] comes out of here.
pub fn parse(body: &[u8]) -> Result<Vec<PbxEvent>, EventsError> {
    let bad = |m: String| EventsError::Malformed(m);
    if body.len() > MAX_BODY_BYTES {
        return Err(bad(format!(
            "body is larger than {} KiB",
            MAX_BODY_BYTES / 1024
        )));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("body is not JSON: {}", e.classify_str())))?;
    let Value::Object(top) = v else {
        return Err(bad("body: expected a JSON object".into()));
    };
    let mut out = Vec::new();
    match top.get("events") {
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(bad("events: empty batch".into()));
            }
            if items.len() > MAX_EVENTS {
                return Err(bad(format!(
                    "events: {} events, at most {MAX_EVENTS} per request",
                    items.len()
                )));
            }
            for (i, item) in items.iter().enumerate() {
                let Value::Object(o) = item else {
                    return Err(bad(format!("events[{i}]: expected an object")));
                };
                one(o, &format!("events[{i}]."), &mut out)?;
            }
        }
        Some(_) => return Err(bad("events: expected an array".into())),
        None => one(&top, "", &mut out)?,
    }
    Ok(out)
}

trait ClassifyStr {
    fn classify_str(&self) -> &'static str;
}

impl ClassifyStr for serde_json::Error {
    /// serde_json's own message can quote input; the category is enough and safe to log.
    fn classify_str(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "unexpected end",
        }
    }
}

fn one(o: &Map<String, Value>, at: &str, out: &mut Vec<PbxEvent>) -> Result<(), EventsError> {
    let bad = |m: String| EventsError::Malformed(m);
    let name = |field: &str| -> Result<Option<String>, EventsError> {
        match o.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => {
                let s = s.trim();
                if s.is_empty() {
                    Err(bad(format!("{at}{field}: empty")))
                } else if s.chars().count() > MAX_NAME_CHARS {
                    Err(bad(format!(
                        "{at}{field}: longer than {MAX_NAME_CHARS} characters"
                    )))
                } else if s.chars().any(char::is_control) {
                    Err(bad(format!("{at}{field}: contains control characters")))
                } else {
                    Ok(Some(s.to_owned()))
                }
            }
            Some(_) => Err(bad(format!("{at}{field}: expected a string"))),
        }
    };
    let extension = name("extension")?.ok_or_else(|| bad(format!("{at}extension: required")))?;
    let state = match name("state")? {
        None => None,
        Some(s) => Some(
            WIRE_STATES
                .into_iter()
                .find(|l| l.as_str().eq_ignore_ascii_case(&s))
                .ok_or_else(|| {
                    bad(format!(
                        "{at}state: unknown (expected idle, ringing, dialing, in_call or held)"
                    ))
                })?,
        ),
    };
    let profile = name("profile")?;
    if state.is_none() && profile.is_none() {
        return Err(bad(format!("{at}state: required unless profile is given")));
    }
    let timestamp = match o.get("timestamp") {
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| bad(format!("{at}timestamp: not an RFC 3339 date-time")))?,
        None | Some(Value::Null) => return Err(bad(format!("{at}timestamp: required"))),
        Some(_) => return Err(bad(format!("{at}timestamp: expected a string"))),
    };
    let extension = Extension(extension);
    if let Some(state) = state {
        out.push(PbxEvent::Line {
            extension: extension.clone(),
            state,
            at: timestamp,
        });
    }
    if let Some(p) = profile {
        out.push(PbxEvent::Profile {
            extension,
            profile: Profile::new(p),
            at: timestamp,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
