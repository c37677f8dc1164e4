//! A fake 3CX V20 PBX, strict where the real one is (or where we have to assume it is).
//! Where its facts come from:
//!
//! * 3cx/xapi-tutorial `swagger.yaml` (XAPI build 20.0.10): `Pbx.User` (`Id` int32;
//!   `Number`, `EmailAddress`, `CurrentProfileName` nullable strings), `PATCH Users({Id})`
//!   partial → 204, `Pbx.ForwardingProfile` (`Id`, nullable `Name` and `CustomName`),
//!   collections with `$top`/`$skip`/`@odata.count` and no `@odata.nextLink`;
//! * 3cx/xapi-tutorial `auth.ts` and its README: one active access token per API client
//!   (a new one revokes the old), `expires_in` in seconds since 20.0.9 (commit "expires_in is
//!   in seconds (according to OAuth) since 20.0.9"; minutes before);
//! * 3cx/call-control-examples `server/src/types.ts`: `DNInfo.dn` and every participant
//!   field optional/nullable, statuses Dialing/Ringing/Connected, WebSocket frames
//!   `{sequence, event:{event_type, entity, attached_data}}` with 0 Upsert and 1 Remove;
//!   `server/src/utils.ts`: the sample pings the socket every 5 s;
//! * reported, not in the schema: V20 caps `$top` at 100.
//!
//! What it serves:
//!
//! * `POST /connect/token` (client credentials): **one live token per client**, a new
//!   token revokes the old one; tokens expire; `expires_in` in seconds, or in minutes when
//!   playing a build before 20.0.9 ([`FakeThreeCx::play_build_before_20_0_9`]); every other
//!   endpoint answers 401 to a stale, expired or missing token;
//! * XAPI `Users` with `$select`, `$filter=Number eq '...'` (OData quoting) and `$top`
//!   (capped at 100, also the page size without it) / `$skip`, no `@odata.nextLink`;
//!   `Users(Number='...')`; `PATCH Users({Id})` → 204, 400 for a profile that is not a
//!   canonical `Name` (a `CustomName` included) or any `Number` in the body;
//!   `Users({Id})/ForwardingProfiles`; `Microsoft365Integration` (its `SetTeamsPresence`
//!   toggled by tests); `Defs`;
//! * `GET /callcontrol` and `/callcontrol/{dn}/participants/{id}` for monitored DNs only;
//!   optionally with entries 3CX's types allow: a DN without `dn`, a participant without
//!   `id` ([`FakeThreeCx::add_nullable_entries`]);
//! * `/callcontrol/ws`: 401 without the live Bearer token; frames
//!   `{sequence,event:{event_type,entity,attached_data}}` with increasing `sequence`, an
//!   Upsert (0) carrying no state (the client must GET the entity) and a Remove (1) on
//!   hang-up; pings answered while the socket is read.
//!
//! Test controls: place, ring, answer, hold and hang up calls; change a profile "by hand";
//! drop every socket, or leave them half-open (open, but silent: no frames, no pongs); add
//! users; read the PATCHes and token requests received.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Form, OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// The API client id (in 3CX also the route point's DN).
pub const CLIENT_ID: &str = "900";
/// The API client's secret.
pub const SECRET: &str = "fake-3cx-client-secret";
/// The most entries an XAPI page holds, whatever `$top` asks (reported for V20).
pub const MAX_TOP: usize = 100;
/// The status profiles every user has: canonical `Name` and the `CustomName` shown in the
/// 3CX apps. The names are V20's internal ones and the custom names V20's defaults as the
/// apps show them; both unconfirmed on a real PBX.
pub const PROFILES: [(&str, &str); 5] = [
    ("Available", ""),
    ("Away", ""),
    ("Out of office", "Do Not Disturb"),
    ("Custom 1", "Lunch"),
    ("Custom 2", "Business Trip"),
];

/// A user (extension) the fake knows.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i32,
    pub number: String,
    pub email: String,
    pub profile: String,
}

/// One PATCH received on `Users({Id})`, accepted or not.
#[derive(Debug, Clone)]
pub struct Patch {
    pub id: i32,
    pub body: Value,
    pub status: u16,
}

#[derive(Default)]
struct Pbx {
    live_token: Option<String>,
    /// When the live token stops working.
    live_until: Option<std::time::Instant>,
    /// Seconds, as 3CX sends it since 20.0.9.
    expires_in: u64,
    /// Playing a build before 20.0.9: `expires_in` is sent in minutes.
    minutes: bool,
    issued: u32,
    token_requests: u32,
    user_pages: u32,
    entity_gets: u32,
    /// WebSocket pings received.
    pings: u32,
    users: Vec<User>,
    native_sync: bool,
    monitored: BTreeSet<String>,
    /// dn → participant id → participant JSON.
    calls: BTreeMap<String, BTreeMap<i64, Value>>,
    next_participant: i64,
    sequence: u64,
    patches: Vec<Patch>,
    /// `GET /callcontrol` also lists entries without `dn` or participant `id`.
    nullable_entries: bool,
}

#[derive(Clone, Debug)]
enum Push {
    Frame(String),
    Drop,
    /// Stop answering, keep the connection: a half-open socket.
    Stall,
}

#[derive(Clone)]
struct Shared {
    pbx: Arc<Mutex<Pbx>>,
    push: broadcast::Sender<Push>,
}

/// A running fake PBX.
pub struct FakeThreeCx {
    pub url: String,
    shared: Shared,
}

impl FakeThreeCx {
    /// Users 100–104 (Ids 11–15, all "Available"); DNs 101 and 102 are monitored.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let pbx = Pbx {
            users: (0..5)
                .map(|i| User {
                    id: 11 + i,
                    number: format!("{}", 100 + i),
                    email: format!("user{}@example.com", 100 + i),
                    profile: "Available".into(),
                })
                .collect(),
            monitored: ["101", "102"].map(String::from).into(),
            next_participant: 1,
            expires_in: 3600,
            ..Pbx::default()
        };
        let shared = Shared {
            pbx: Arc::new(Mutex::new(pbx)),
            push: broadcast::channel(256).0,
        };
        let app = Router::new()
            .route("/connect/token", post(token))
            .route("/callcontrol/ws", get(socket))
            .fallback(rest)
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, shared }
    }

    fn pbx(&self) -> std::sync::MutexGuard<'_, Pbx> {
        self.shared.pbx.lock().unwrap()
    }

    /// Token requests that got a token.
    pub fn token_requests(&self) -> u32 {
        self.pbx().token_requests
    }

    /// `Users` pages served.
    pub fn user_pages(&self) -> u32 {
        self.pbx().user_pages
    }

    /// Participant entity GETs served (what an Upsert should cause).
    pub fn entity_gets(&self) -> u32 {
        self.pbx().entity_gets
    }

    /// WebSocket pings received (the client's heartbeat).
    pub fn pings(&self) -> u32 {
        self.pbx().pings
    }

    /// PATCHes received.
    pub fn patches(&self) -> Vec<Patch> {
        self.pbx().patches.clone()
    }

    /// Someone else took a token for our client id: ours is revoked.
    pub fn revoke_token(&self) {
        let mut p = self.pbx();
        p.issued += 1;
        p.live_token = Some(format!("stolen-{}", p.issued));
    }

    /// Plays a build before 20.0.9: tokens live `minutes` minutes and `expires_in` says
    /// `minutes` (3cx/xapi-tutorial's `auth.ts` read it as minutes until 20.0.9).
    pub fn play_build_before_20_0_9(&self, minutes: u64) {
        let mut p = self.pbx();
        p.minutes = true;
        p.expires_in = minutes;
    }

    /// Adds users with numbers `first..first+count` (Ids from 1000), all "Available".
    pub fn add_users(&self, first: u32, count: u32) {
        let mut p = self.pbx();
        for n in first..first + count {
            let id = 1000 + p.users.len() as i32;
            p.users.push(User {
                id,
                number: n.to_string(),
                email: format!("user{n}@example.com"),
                profile: "Available".into(),
            });
        }
    }

    /// `GET /callcontrol` also lists what 3CX's types allow and our client once refused: a
    /// DN entry with `dn: null`, and on DN 101 a participant with `id: null`.
    pub fn add_nullable_entries(&self) {
        self.pbx().nullable_entries = true;
    }

    /// Every open socket goes half-open: it stays connected but sends nothing and answers
    /// no ping (a NAT or firewall dropping the flow, a PBX hanging). New sockets work.
    pub fn half_open_all(&self) {
        let _ = self.shared.push.send(Push::Stall);
    }

    /// Turns 3CX's own Microsoft 365 presence sync on or off.
    pub fn set_native_sync(&self, on: bool) {
        self.pbx().native_sync = on;
    }

    /// The user with this number.
    pub fn user(&self, number: &str) -> User {
        let p = self.pbx();
        p.users.iter().find(|u| u.number == number).unwrap().clone()
    }

    /// A person changes their status profile on the phone or in the 3CX app.
    pub fn set_profile_by_hand(&self, number: &str, profile: &str) {
        let mut p = self.pbx();
        p.users
            .iter_mut()
            .find(|u| u.number == number)
            .unwrap()
            .profile = profile.into();
    }

    /// `dn` places a call to `to`: a participant in `Dialing`. Returns its id.
    pub fn start_call(&self, dn: &str, to: &str) -> i64 {
        self.add_participant(dn, to, "Dialing")
    }

    /// A call from `from` rings on `dn`. Returns the participant id.
    pub fn incoming_call(&self, dn: &str, from: &str) -> i64 {
        self.add_participant(dn, from, "Ringing")
    }

    /// The call is answered.
    pub fn answer(&self, dn: &str, id: i64) {
        self.set_status(dn, id, "Connected");
    }

    /// The call is put on hold. How 3CX shows hold is not published; the fake uses a
    /// status the client has never heard of, which must still count as a call.
    pub fn hold(&self, dn: &str, id: i64) {
        self.set_status(dn, id, "Held");
    }

    /// The leg ends: removed, and a Remove frame is pushed.
    pub fn hang_up(&self, dn: &str, id: i64) {
        let mut p = self.pbx();
        if let Some(legs) = p.calls.get_mut(dn) {
            legs.remove(&id);
        }
        self.notify(&mut p, dn, id, 1);
    }

    /// Drops every socket without a close handshake.
    pub fn disconnect_all(&self) {
        let _ = self.shared.push.send(Push::Drop);
    }

    fn add_participant(&self, dn: &str, party: &str, status: &str) -> i64 {
        let mut p = self.pbx();
        let id = p.next_participant;
        p.next_participant += 1;
        let leg = json!({
            "id": id, "status": status, "dn": dn,
            "party_caller_name": "", "party_dn": party, "party_caller_id": party,
            "party_did": "", "device_id": format!("sip:{dn}@127.0.0.1"),
            "party_dn_type": "Wextension", "direct_control": false,
            "callid": 1000 + id, "legid": 1,
        });
        p.calls.entry(dn.into()).or_default().insert(id, leg);
        self.notify(&mut p, dn, id, 0);
        id
    }

    fn set_status(&self, dn: &str, id: i64, status: &str) {
        let mut p = self.pbx();
        let leg = p.calls.get_mut(dn).and_then(|l| l.get_mut(&id)).unwrap();
        leg["status"] = json!(status);
        self.notify(&mut p, dn, id, 0);
    }

    /// Pushes a frame to every socket, for monitored DNs only.
    fn notify(&self, p: &mut Pbx, dn: &str, id: i64, event_type: u8) {
        if !p.monitored.contains(dn) {
            return;
        }
        p.sequence += 1;
        let frame = json!({
            "sequence": p.sequence,
            "event": {
                "event_type": event_type,
                "entity": format!("/callcontrol/{dn}/participants/{id}"),
                "attached_data": {},
            }
        });
        let _ = self.shared.push.send(Push::Frame(frame.to_string()));
    }
}

fn authorized(s: &Shared, headers: &HeaderMap) -> bool {
    let sent = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let p = s.pbx.lock().unwrap();
    let fresh = p.live_until.is_none_or(|t| std::time::Instant::now() < t);
    sent.is_some() && sent == p.live_token.as_deref() && fresh
}

async fn token(State(s): State<Shared>, Form(f): Form<HashMap<String, String>>) -> Response {
    if f.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "unsupported_grant_type"})),
        )
            .into_response();
    }
    if f.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || f.get("client_secret").map(String::as_str) != Some(SECRET)
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    // Slow enough that two callers racing for a token would both ask.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut p = s.pbx.lock().unwrap();
    p.token_requests += 1;
    p.issued += 1;
    let token = format!("access-{}-{}", p.issued, uuid::Uuid::new_v4());
    p.live_token = Some(token.clone());
    let unit = if p.minutes { 60 } else { 1 };
    p.live_until =
        Some(std::time::Instant::now() + Duration::from_secs(p.expires_in.max(1) * unit));
    Json(json!({
        "token_type": "Bearer",
        "expires_in": p.expires_in,
        "access_token": token,
        "refresh_token": format!("refresh-{}", p.issued),
    }))
    .into_response()
}

async fn socket(State(s): State<Shared>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    if !authorized(&s, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let rx = s.push.subscribe();
    ws.on_upgrade(move |socket| pump(socket, rx, s))
}

async fn pump(mut socket: WebSocket, mut rx: broadcast::Receiver<Push>, s: Shared) {
    loop {
        tokio::select! {
            push = rx.recv() => match push {
                Ok(Push::Frame(text)) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                // Dropped without a close frame, like a network failure.
                Ok(Push::Drop) | Err(broadcast::error::RecvError::Closed) => return,
                // Half-open: the connection stays up, but nothing is read (so no pong) or
                // sent any more, until the client gives up on it.
                Ok(Push::Stall) => {
                    let _held = socket;
                    std::future::pending::<()>().await;
                    return;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                // axum answers the ping itself; counted to see the client's heartbeat.
                Some(Ok(Message::Ping(_))) => s.pbx.lock().unwrap().pings += 1,
                Some(Ok(_)) => {}
            },
        }
    }
}

fn odata_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": status.as_u16().to_string(), "message": message}})),
    )
        .into_response()
}

async fn rest(
    State(s): State<Shared>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&s, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
    let path = percent_encoding::percent_decode_str(uri.path())
        .decode_utf8_lossy()
        .into_owned();
    if let Some(rest) = path.strip_prefix("/xapi/v1/") {
        return xapi(&s, &method, rest, &query, &body);
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let mut p = s.pbx.lock().unwrap();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["callcontrol"]) => {
            let mut dns: Vec<Value> = p.monitored.iter().map(|dn| dn_info(&p, dn)).collect();
            if p.nullable_entries {
                // As 3CX's `DNInfo` and `CallParticipant` allow (types.ts: `dn?: string |
                // null`, `id?: number`): a DN without a number, a leg without an id.
                dns.push(json!({"dn": null, "type": null, "devices": null, "participants": null}));
                dns.push(json!({"type": "Wqueue", "participants": []}));
                if let Some(d) = dns.iter_mut().find(|d| d["dn"] == "101") {
                    if let Some(legs) = d["participants"].as_array_mut() {
                        legs.push(json!({"status": "Connected", "dn": "101", "party_dn": null}));
                        legs.push(json!({"id": null, "status": null}));
                    }
                }
            }
            Json(Value::Array(dns)).into_response()
        }
        ("GET", ["callcontrol", dn]) if p.monitored.contains(*dn) => {
            Json(dn_info(&p, dn)).into_response()
        }
        ("GET", ["callcontrol", dn, "participants", id]) if p.monitored.contains(*dn) => {
            p.entity_gets += 1;
            let leg = id
                .parse::<i64>()
                .ok()
                .and_then(|id| p.calls.get(*dn)?.get(&id).cloned());
            match leg {
                Some(leg) => Json(leg).into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn dn_info(p: &Pbx, dn: &str) -> Value {
    let legs: Vec<Value> = p
        .calls
        .get(dn)
        .map(|l| l.values().cloned().collect())
        .unwrap_or_default();
    json!({
        "dn": dn, "type": "Wextension",
        "devices": [{"dn": dn, "device_id": format!("sip:{dn}@127.0.0.1"), "user_agent": "Fake Phone"}],
        "participants": legs,
    })
}

fn user_json(u: &User, select: Option<&str>) -> Value {
    let full = json!({
        "Id": u.id, "Number": u.number, "EmailAddress": u.email,
        "CurrentProfileName": u.profile, "FirstName": "Test", "IsRegistered": true,
    });
    let Some(select) = select else { return full };
    let keep: Vec<&str> = select.split(',').map(str::trim).collect();
    let map = full
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| keep.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Value::Object(map)
}

/// `Number eq '10''1'` → `10'1`; anything else is not supported (400).
fn number_filter(filter: &str) -> Option<String> {
    let lit = filter.trim().strip_prefix("Number eq ")?.trim();
    let inner = lit.strip_prefix('\'')?.strip_suffix('\'')?;
    if inner.replace("''", "").contains('\'') {
        return None;
    }
    Some(inner.replace("''", "'"))
}

fn xapi(s: &Shared, method: &Method, rest: &str, q: &[(String, String)], body: &Bytes) -> Response {
    let param = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let mut p = s.pbx.lock().unwrap();
    match (method.as_str(), rest) {
        ("GET", "Defs") => Json(json!({"Id": 1})).into_response(),
        ("GET", "Microsoft365Integration") => Json(json!({
            "Id": 1, "TenantId": "", "ApplicationId": "",
            "AdUsers": {"IsEnabled": p.native_sync, "SetTeamsPresence": p.native_sync},
        }))
        .into_response(),
        ("GET", "Users") => {
            let number = match param("$filter").map(number_filter) {
                Some(None) => return odata_error(StatusCode::BAD_REQUEST, "unsupported $filter"),
                Some(Some(n)) => Some(n),
                None => None,
            };
            let skip: usize = param("$skip").and_then(|v| v.parse().ok()).unwrap_or(0);
            // V20 is reported to cap `$top` at 100; without one a page is that long too.
            let top: usize = param("$top")
                .and_then(|v| v.parse().ok())
                .unwrap_or(MAX_TOP)
                .min(MAX_TOP);
            let all: Vec<&User> = p
                .users
                .iter()
                .filter(|u| number.as_ref().is_none_or(|n| *n == u.number))
                .collect();
            let page: Vec<Value> = all
                .iter()
                .skip(skip)
                .take(top)
                .map(|u| user_json(u, param("$select")))
                .collect();
            // No `@odata.nextLink`: the schema's collections have none.
            let out = json!({ "value": page });
            p.user_pages += 1;
            Json(out).into_response()
        }
        (m, path) => {
            let Some((key, tail)) = path.strip_prefix("Users(").and_then(|r| r.split_once(')'))
            else {
                return StatusCode::NOT_FOUND.into_response();
            };
            let idx = if let Some(lit) = key.strip_prefix("Number=") {
                let n = number_filter(&format!("Number eq {lit}"));
                p.users.iter().position(|u| Some(&u.number) == n.as_ref())
            } else {
                let id: Option<i32> = key.parse().ok();
                p.users.iter().position(|u| Some(u.id) == id)
            };
            let Some(idx) = idx else {
                return odata_error(StatusCode::NOT_FOUND, "user not found");
            };
            match (m, tail) {
                ("GET", "") => Json(user_json(&p.users[idx], param("$select"))).into_response(),
                ("GET", "/ForwardingProfiles") => {
                    let fps: Vec<Value> = PROFILES
                        .iter()
                        .enumerate()
                        .map(|(i, (n, c))| {
                            let custom = if c.is_empty() { Value::Null } else { json!(c) };
                            json!({"Id": i + 1, "Name": n, "CustomName": custom})
                        })
                        .collect();
                    Json(json!({ "value": fps })).into_response()
                }
                ("PATCH", "") => {
                    let id = p.users[idx].id;
                    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                    let (status, answer) = patch_user(&mut p.users[idx], &v);
                    p.patches.push(Patch {
                        id,
                        body: v,
                        status: status.as_u16(),
                    });
                    answer
                }
                _ => StatusCode::NOT_FOUND.into_response(),
            }
        }
    }
}

fn patch_user(user: &mut User, v: &Value) -> (StatusCode, Response) {
    let Some(obj) = v.as_object() else {
        let s = StatusCode::BAD_REQUEST;
        return (s, odata_error(s, "body must be a Pbx.User"));
    };
    if obj.contains_key("Number") {
        let s = StatusCode::BAD_REQUEST;
        return (s, odata_error(s, "Number cannot be changed"));
    }
    if let Some(name) = obj.get("CurrentProfileName") {
        // Only a canonical `Name`; a `CustomName` is what the apps show, not a profile.
        let Some(name) = name
            .as_str()
            .filter(|n| PROFILES.iter().any(|(p, _)| p == n))
        else {
            let s = StatusCode::BAD_REQUEST;
            return (s, odata_error(s, "unknown forwarding profile"));
        };
        user.profile = name.into();
    }
    (
        StatusCode::NO_CONTENT,
        StatusCode::NO_CONTENT.into_response(),
    )
}
