//! Presence *writes* on the fake Graph, with Graph's documented rules:
//!
//! - `setPresence`: only Available/Available, Busy/InACall, Busy/InAConferenceCall,
//!   Away/Away, DoNotDisturb/Presenting; `expirationDuration` within PT5M–PT4H (default
//!   PT5M); `sessionId` equal to the caller's app id when the token was registered with
//!   [`PresenceWrites::register_app_token`], else any non-empty id.
//! - `setUserPreferredPresence`: only Available/Available, Busy/Busy,
//!   DoNotDisturb/DoNotDisturb, BeRightBack/BeRightBack, Away/Away, Offline/OffWork.
//! - `clearPresence` answers 404 when there is no such session.
//! - Every write needs `Content-Type: application/json` and a JSON object body;
//!   `clearUserPreferredPresence` takes exactly `{}` (microsoftgraph/microsoft-graph-docs-contrib
//!   `api-reference/v1.0/api/presence-clearuserpreferredpresence.md`: "Content-Type
//!   application/json. Required." and "supply an empty JSON object `{}`"). The docs do not
//!   say what Graph answers otherwise; the fake answers 415 to another content type and 400
//!   to another body.
//! - Aggregation: preferred > DoNotDisturb > Busy > Available > Away among sessions;
//!   Offline without sessions; the preferred state shows only while a session exists.
//! - An app session at Available shows Available/AvailableInactive after 5 minutes and
//!   Away/Away after 10; every app session expires (→ gone, Offline if it was the last).
//!
//! Time is a fake clock: real time plus an offset the test advances. The person's own Teams
//! client session and preferred presence are test controls. Every change of the aggregate
//! (our writes included) is recorded, written where the fake's presence reads see it, and
//! sent to an optional channel so a test can turn each one into a change notification.
//! [`PresenceWrites::notify`] turns that channel into Graph's side of change notifications:
//! every aggregate change, our own writes included, POSTed encrypted to a webhook,
//! duplicated and reordered at random (seeded), with nothing saying who wrote it.
//! Also `GET /users/{upn}` and `GET /users?$filter=mail eq '...'` for resolving users.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::graph::{batch, graph_error, me_presence, throttled, FakeGraph, GraphState};

/// The session id the person's own Teams client uses in the fake.
pub const CLIENT_SESSION: &str = "teams-client";

const SESSION_PAIRS: [(&str, &str); 5] = [
    ("Available", "Available"),
    ("Busy", "InACall"),
    ("Busy", "InAConferenceCall"),
    ("Away", "Away"),
    ("DoNotDisturb", "Presenting"),
];
const PREFERRED_PAIRS: [(&str, &str); 6] = [
    ("Available", "Available"),
    ("Busy", "Busy"),
    ("DoNotDisturb", "DoNotDisturb"),
    ("BeRightBack", "BeRightBack"),
    ("Away", "Away"),
    ("Offline", "OffWork"),
];

/// One change of a user's aggregated presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateChange {
    /// User object id.
    pub user_id: String,
    /// New availability.
    pub availability: String,
    /// New activity.
    pub activity: String,
    /// The fake clock's time of the change.
    pub at: DateTime<Utc>,
    /// Its `sequenceNumber` (what reads show from then on).
    pub sequence: u64,
}

#[derive(Debug, Clone)]
struct Session {
    availability: String,
    activity: String,
    set_at: DateTime<Utc>,
    /// `None` for the person's own client session (the test controls it).
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
struct UserPresence {
    sessions: BTreeMap<String, Session>,
    preferred: Option<(String, String, DateTime<Utc>)>,
    shown: Option<(String, String)>,
}

/// A directory entry for `resolve_user`.
#[derive(Debug, Clone)]
pub struct DirUser {
    /// Object id.
    pub id: String,
    /// userPrincipalName.
    pub upn: String,
    /// mail.
    pub mail: String,
}

/// State of the presence-write side.
#[derive(Default)]
pub struct WritesState {
    /// Added to real time: the fake clock.
    pub offset: Duration,
    users: HashMap<String, UserPresence>,
    /// Bearer token → app id, to check `sessionId`.
    pub app_ids: HashMap<String, String>,
    /// The directory.
    pub directory: Vec<DirUser>,
    /// Every aggregate change, in order.
    pub changes: Vec<AggregateChange>,
    /// Every request: (path after `/v1.0`, query, body).
    pub calls: Vec<(String, String, Value)>,
    hook: Option<mpsc::UnboundedSender<AggregateChange>>,
}

/// Handle on the presence-write side of a running fake Graph.
#[derive(Clone)]
pub struct PresenceWrites {
    state: Arc<Mutex<WritesState>>,
    graph: Arc<Mutex<GraphState>>,
}

#[derive(Clone)]
struct Shared {
    writes: Arc<Mutex<WritesState>>,
    graph: Arc<Mutex<GraphState>>,
}

impl FakeGraph {
    /// Starts a fake with the presence reads and the presence writes described above.
    pub async fn start_with_presence_writes() -> (Self, PresenceWrites) {
        let graph = Arc::new(Mutex::new(GraphState::default()));
        let writes = Arc::new(Mutex::new(WritesState::default()));
        let shared = Shared {
            writes: writes.clone(),
            graph: graph.clone(),
        };
        let app = Router::new()
            .route("/v1.0/me/presence", get(me_presence))
            .route("/v1.0/communications/getPresencesByUserId", post(batch))
            .with_state(graph.clone())
            .merge(
                Router::new()
                    .route("/v1.0/users/{id}/presence/{action}", post(presence_write))
                    .route("/v1.0/users/{id}", get(user_by_id))
                    .route("/v1.0/users", get(users_by_filter))
                    .with_state(shared),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let fake = Self {
            url: format!("http://{addr}"),
            state: graph.clone(),
        };
        (
            fake,
            PresenceWrites {
                state: writes,
                graph,
            },
        )
    }
}

impl PresenceWrites {
    fn with<R>(&self, f: impl FnOnce(&mut WritesState, DateTime<Utc>) -> R) -> R {
        let mut s = self.state.lock().unwrap();
        let now = Utc::now() + s.offset;
        let r = f(&mut s, now);
        recompute(&mut s, &self.graph, now);
        r
    }

    /// The fake clock.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.state.lock().unwrap().offset
    }

    /// Moves the fake clock forward (decay and expiry apply at once).
    pub fn advance(&self, d: Duration) {
        self.with(|s, _| s.offset += d);
    }

    /// Sets (or with `None` removes) the person's own Teams client session.
    pub fn set_client_session(&self, user: &str, pair: Option<(&str, &str)>) {
        self.with(|s, now| {
            let u = s.users.entry(user.into()).or_default();
            match pair {
                Some((a, b)) => {
                    let session = Session {
                        availability: a.into(),
                        activity: b.into(),
                        set_at: now,
                        expires_at: None,
                    };
                    u.sessions.insert(CLIENT_SESSION.into(), session);
                }
                None => {
                    u.sessions.remove(CLIENT_SESSION);
                }
            }
        });
    }

    /// Sets (or clears) the person's preferred presence, as if chosen in Teams.
    pub fn set_preferred(&self, user: &str, pair: Option<(&str, &str)>) {
        self.with(|s, now| {
            s.users.entry(user.into()).or_default().preferred =
                pair.map(|(a, b)| (a.into(), b.into(), now + Duration::days(7)));
        });
    }

    /// The aggregate Graph shows for `user` now.
    pub fn aggregate(&self, user: &str) -> (String, String) {
        self.with(|_, _| ());
        let s = self.state.lock().unwrap();
        s.users
            .get(user)
            .and_then(|u| u.shown.clone())
            .unwrap_or(("Offline".into(), "Offline".into()))
    }

    /// The app sessions (not the client's) `user` has now.
    pub fn app_sessions(&self, user: &str) -> Vec<String> {
        self.with(|s, _| {
            s.users
                .get(user)
                .map(|u| {
                    let ids = u.sessions.keys().filter(|k| *k != CLIENT_SESSION);
                    ids.cloned().collect()
                })
                .unwrap_or_default()
        })
    }

    /// Every aggregate change so far.
    pub fn changes(&self) -> Vec<AggregateChange> {
        self.state.lock().unwrap().changes.clone()
    }

    /// Every request so far: (path after `/v1.0`, raw query, JSON body or `Null`).
    pub fn calls(&self) -> Vec<(String, String, Value)> {
        self.state.lock().unwrap().calls.clone()
    }

    /// From now on, every aggregate change is also sent here.
    pub fn on_change(&self) -> mpsc::UnboundedReceiver<AggregateChange> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.state.lock().unwrap().hook = Some(tx);
        rx
    }

    /// From now on, every aggregate change is delivered to `to.url` as an encrypted presence
    /// change notification, the way Graph does: no field names the writer, so our own
    /// writes come back too. Seeded noise: each change is sent once or twice (a duplicate),
    /// and after a change, often a stale copy of the user's previous change follows it (a
    /// notification overtaken by a newer one). Returns the log of what was delivered.
    pub fn notify(&self, to: NotificationTarget) -> Arc<Mutex<Vec<Delivered>>> {
        let mut changes = self.on_change();
        let log: Arc<Mutex<Vec<Delivered>>> = Arc::default();
        let delivered = log.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut rng = to.seed.max(1);
            let mut roll = move |n: u64| {
                // xorshift64: reproducible noise without a dependency.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % n
            };
            let mut previous: HashMap<String, (usize, AggregateChange)> = HashMap::new();
            let mut index = 0;
            while let Some(change) = changes.recv().await {
                let mut sends = vec![(index, change.clone(), false)];
                if roll(2) == 0 {
                    sends.push((index, change.clone(), false));
                }
                if let Some((i, old)) = previous.get(&change.user_id) {
                    if roll(4) != 0 {
                        sends.push((*i, old.clone(), true));
                    }
                }
                previous.insert(change.user_id.clone(), (index, change));
                index += 1;
                for (i, c, stale) in sends {
                    tokio::time::sleep(std::time::Duration::from_millis(roll(150))).await;
                    let status = to.post(&http, &c).await;
                    delivered.lock().unwrap().push(Delivered {
                        change: i,
                        availability: c.availability,
                        activity: c.activity,
                        stale,
                        status,
                    });
                }
            }
        });
        log
    }

    /// Makes `setPresence` with this bearer token require `sessionId == app_id`.
    pub fn register_app_token(&self, token: &str, app_id: &str) {
        let mut s = self.state.lock().unwrap();
        s.app_ids.insert(token.into(), app_id.into());
    }

    /// Adds a directory entry.
    pub fn add_user(&self, id: &str, upn: &str, mail: &str) {
        self.state.lock().unwrap().directory.push(DirUser {
            id: id.into(),
            upn: upn.into(),
            mail: mail.into(),
        });
    }
}

/// Where [`PresenceWrites::notify`] sends change notifications, and what it signs them with.
pub struct NotificationTarget {
    /// The webhook, e.g. `http://127.0.0.1:PORT/api/notifications`.
    pub url: String,
    /// The subscription the notifications belong to.
    pub subscription_id: String,
    /// Its clientState.
    pub client_state: String,
    /// The tenant.
    pub tenant_id: String,
    /// The notification certificate (only its public half is used, as by Graph).
    pub key: teams_presence::clients::graph::certs::NotificationKey,
    /// A validation token for the batch (aud = the app, tid = the tenant).
    pub validation_token: String,
    /// Seed of the duplicates and reordering.
    pub seed: u64,
}

impl NotificationTarget {
    async fn post(&self, http: &reqwest::Client, c: &AggregateChange) -> u16 {
        use teams_presence::clients::graph::testing;
        // As Graph sends it today: lowerCamelCase values and the change's sequenceNumber,
        // so a stale copy carries its own, older one.
        let mut plain = testing::presence_json(
            &c.user_id,
            &super::graph::lower_camel(&c.availability),
            &super::graph::lower_camel(&c.activity),
        );
        plain["sequenceNumber"] = json!(super::graph::sequence_number(c.sequence));
        let sealed = testing::seal(&self.key, self.key.id(), plain.to_string().as_bytes());
        let item = testing::notification_json(
            &self.subscription_id,
            &self.client_state,
            &self.tenant_id,
            &c.user_id,
            &sealed,
        );
        let batch = json!({"value": [item], "validationTokens": [self.validation_token]});
        match http.post(&self.url).json(&batch).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }
}

/// One notification the fake delivered.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// Which aggregate change (0, 1, ... in the order they happened) it carried.
    pub change: usize,
    /// Its availability.
    pub availability: String,
    /// Its activity.
    pub activity: String,
    /// True for a stale copy sent after a newer change.
    pub stale: bool,
    /// The webhook's status (0 when it could not be reached).
    pub status: u16,
}

fn rank(availability: &str) -> u8 {
    match availability {
        "DoNotDisturb" => 4,
        "Busy" => 3,
        "Available" => 2,
        "Away" | "BeRightBack" => 1,
        _ => 0,
    }
}

/// A session as it shows at `now`: an app session at Available goes inactive, then away.
fn effective(id: &str, s: &Session, now: DateTime<Utc>) -> (String, String) {
    let idle = now - s.set_at;
    if id != CLIENT_SESSION && s.availability == "Available" {
        if idle >= Duration::minutes(10) {
            return ("Away".into(), "Away".into());
        }
        if idle >= Duration::minutes(5) {
            return ("Available".into(), "AvailableInactive".into());
        }
    }
    (s.availability.clone(), s.activity.clone())
}

fn recompute(s: &mut WritesState, graph: &Arc<Mutex<GraphState>>, now: DateTime<Utc>) {
    let mut ids: Vec<String> = s.users.keys().cloned().collect();
    ids.sort();
    for id in ids {
        let u = s.users.get_mut(&id).expect("listed");
        u.sessions
            .retain(|_, x| x.expires_at.is_none_or(|e| e > now));
        if u.preferred.as_ref().is_some_and(|p| p.2 <= now) {
            u.preferred = None;
        }
        let shown = if u.sessions.is_empty() {
            ("Offline".to_owned(), "Offline".to_owned())
        } else if let Some((a, b, _)) = &u.preferred {
            (a.clone(), b.clone())
        } else {
            u.sessions
                .iter()
                .map(|(k, x)| effective(k, x, now))
                .max_by_key(|p| rank(&p.0))
                .expect("not empty")
        };
        if u.shown.as_ref() == Some(&shown) {
            continue;
        }
        u.shown = Some(shown.clone());
        let sequence = graph.lock().unwrap().put(&id, shown.clone());
        let change = AggregateChange {
            user_id: id,
            availability: shown.0,
            activity: shown.1,
            at: now,
            sequence,
        };
        if let Some(tx) = &s.hook {
            let _ = tx.send(change.clone());
        }
        s.changes.push(change);
    }
}

/// `PT1H`, `PT5M30S`, `P1D`: enough ISO-8601 for Graph's expirationDuration.
fn parse_duration(s: &str) -> Option<Duration> {
    let rest = s.strip_prefix('P')?;
    let (days, time) = match rest.split_once('T') {
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    let mut total = Duration::zero();
    let mut any = false;
    for (part, units) in [
        (days, &[('D', 86_400)][..]),
        (time, &[('H', 3600), ('M', 60), ('S', 1)][..]),
    ] {
        let mut num = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let secs = units.iter().find(|(u, _)| *u == c)?.1;
            total += Duration::seconds(num.parse::<i64>().ok()? * secs);
            num.clear();
            any = true;
        }
        if !num.is_empty() {
            return None;
        }
    }
    any.then_some(total)
}

fn bad(message: &str) -> Response {
    graph_error(StatusCode::BAD_REQUEST, "BadRequest", message)
}

async fn presence_write(
    State(sh): State<Shared>,
    Path((user, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(token) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
    else {
        return graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "no token",
        );
    };
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = sh.writes.lock().unwrap();
    let now = Utc::now() + s.offset;
    s.calls.push((
        format!("/users/{user}/presence/{action}"),
        String::new(),
        v.clone(),
    ));
    let json_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !json_type {
        return graph_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "Content-Type application/json is required.",
        );
    }
    if !v.is_object() {
        return bad("The request body must be a JSON object.");
    }
    if action == "clearUserPreferredPresence" && v != json!({}) {
        return bad("Supply an empty JSON object for this method.");
    }
    if let Some(r) = throttled(&mut sh.graph.lock().unwrap()) {
        return r;
    }
    recompute(&mut s, &sh.graph, now);
    let pair = (
        v["availability"].as_str().unwrap_or_default(),
        v["activity"].as_str().unwrap_or_default(),
    );
    let expiration = match v.get("expirationDuration").and_then(Value::as_str) {
        None => None,
        Some(d) => match parse_duration(d) {
            Some(d) => Some(d),
            None => return bad("expirationDuration is not an ISO-8601 duration"),
        },
    };
    let session_id = v["sessionId"].as_str().unwrap_or_default().to_owned();
    let app_id = s.app_ids.get(&token).cloned();
    let u = s.users.entry(user).or_default();
    let answer = match action.as_str() {
        "setPresence" => {
            if session_id.is_empty() || app_id.is_some_and(|a| a != session_id) {
                return bad("sessionId must be the application id of the caller");
            }
            if !SESSION_PAIRS.contains(&pair) {
                return bad("The availability and activity combination is not supported.");
            }
            let d = expiration.unwrap_or(Duration::minutes(5));
            if d < Duration::minutes(5) || d > Duration::hours(4) {
                return bad("expirationDuration must be between PT5M and PT4H");
            }
            let session = Session {
                availability: pair.0.into(),
                activity: pair.1.into(),
                set_at: now,
                expires_at: Some(now + d),
            };
            u.sessions.insert(session_id, session);
            StatusCode::OK.into_response()
        }
        "clearPresence"
            if session_id != CLIENT_SESSION && u.sessions.remove(&session_id).is_some() =>
        {
            StatusCode::OK.into_response()
        }
        "clearPresence" => graph_error(StatusCode::NOT_FOUND, "NotFound", "No such session"),
        "setUserPreferredPresence" => {
            if !PREFERRED_PAIRS.contains(&pair) {
                return bad("The availability and activity combination is not supported.");
            }
            let default = if matches!(pair.0, "Busy" | "DoNotDisturb") {
                1
            } else {
                7
            };
            let d = expiration.unwrap_or(Duration::days(default));
            if d <= Duration::zero() {
                return bad("expirationDuration must be positive");
            }
            u.preferred = Some((pair.0.into(), pair.1.into(), now + d));
            StatusCode::OK.into_response()
        }
        "clearUserPreferredPresence" => {
            u.preferred = None;
            StatusCode::OK.into_response()
        }
        _ => graph_error(StatusCode::NOT_FOUND, "ResourceNotFound", "Unknown action"),
    };
    recompute(&mut s, &sh.graph, now);
    answer
}

fn user_json(u: &DirUser) -> Value {
    json!({"id": u.id, "userPrincipalName": u.upn, "mail": u.mail, "displayName": u.upn})
}

async fn user_by_id(
    State(sh): State<Shared>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let mut s = sh.writes.lock().unwrap();
    s.calls
        .push((format!("/users/{id}"), q.unwrap_or_default(), Value::Null));
    let found = s
        .directory
        .iter()
        .find(|u| u.id == id || u.upn.eq_ignore_ascii_case(&id));
    match found {
        Some(u) => Json(user_json(u)).into_response(),
        None => graph_error(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            "does not exist",
        ),
    }
}

async fn users_by_filter(State(sh): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let q = q.unwrap_or_default();
    let mut s = sh.writes.lock().unwrap();
    s.calls.push(("/users".into(), q.clone(), Value::Null));
    let params: HashMap<String, String> = url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect();
    let filter = params
        .get("$filter")
        .map(String::as_str)
        .unwrap_or_default();
    // Only the one filter the client uses: a single OData string literal, '' for a quote.
    let Some(mail) = filter
        .strip_prefix("mail eq '")
        .and_then(|r| r.strip_suffix('\''))
        .filter(|m| !m.replace("''", "").contains('\''))
    else {
        return bad("Unsupported or invalid filter");
    };
    let mail = mail.replace("''", "'");
    let value: Vec<Value> = s
        .directory
        .iter()
        .filter(|u| u.mail.eq_ignore_ascii_case(&mail))
        .map(user_json)
        .collect();
    Json(json!({ "value": value })).into_response()
}
