//! A fake Microsoft Graph presence API: `GET /v1.0/me/presence` (by bearer token) and
//! `POST /v1.0/communications/getPresencesByUserId` (at most 650 ids, as the real one),
//! with scripted 429 + `Retry-After` responses, Graph's presence throttling as a sliding
//! window on a test clock ([`RateLimit`]: 1,500 requests per 30 s per app per tenant) and a
//! call log.
//!
//! Presence goes out as Graph sends it today (Microsoft Learn, "presence resource type",
//! graph-rest-1.0): availability and activity in lowerCamelCase (`busy`, `inACall`), and a
//! `sequenceNumber`, "the lexicographically sortable String stamp that represents the version
//! of a presence object", here a zero-padded counter that grows with every change.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// Shared state of the fake.
#[derive(Default)]
pub struct GraphState {
    /// Presence by user id: (availability, activity).
    pub presence: HashMap<String, (String, String)>,
    /// Which user id each bearer token belongs to.
    pub tokens: HashMap<String, String>,
    /// Respond 429 with this Retry-After (seconds) to the next N calls.
    pub throttle_next: Vec<u64>,
    /// Every call: (path, user ids asked for).
    pub calls: Vec<(String, Vec<String>)>,
    /// Users whose `/me/presence` answers 500.
    pub failing_users: std::collections::HashSet<String>,
    /// Delay before every answer (benchmarks: Graph's real latency).
    pub latency: std::time::Duration,
    /// Answer 401 to every `/me/presence` (a revoked access token).
    pub reject_tokens: bool,
    /// Throttle presence reads as Graph does, when set.
    pub rate_limit: Option<RateLimit>,
    /// The `sequenceNumber` of each user's presence (bumped by every change).
    pub sequences: HashMap<String, u64>,
    /// The last sequence number handed out.
    pub sequence: u64,
}

impl GraphState {
    /// Sets a user's presence and gives it the next sequence number, which it returns.
    pub fn put(&mut self, user: &str, p: (String, String)) -> u64 {
        self.sequence += 1;
        self.presence.insert(user.to_owned(), p);
        self.sequences.insert(user.to_owned(), self.sequence);
        self.sequence
    }
}

/// A presence value as Graph has begun to send it: lowerCamelCase (`Busy` → `busy`,
/// `InACall` → `inACall`).
pub fn lower_camel(value: &str) -> String {
    let mut c = value.chars();
    match c.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// A `sequenceNumber` as the fake writes it: fixed width, so it sorts as text too.
pub fn sequence_number(n: u64) -> String {
    format!("{n:020}")
}

/// Graph's presence throttling: at most `limit` requests in any `window`, on a clock the
/// test sets (the same `now` it hands the poller), answering 429 with `Retry-After` beyond.
#[derive(Debug)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub limit: usize,
    /// The window.
    pub window: chrono::Duration,
    /// The fake's clock.
    pub clock: chrono::DateTime<chrono::Utc>,
    /// When each accepted request in the window arrived.
    pub accepted: std::collections::VecDeque<chrono::DateTime<chrono::Utc>>,
    /// Requests answered 429 because of this limit (what a load test must keep at zero).
    pub provoked: usize,
    /// Accepted requests in all.
    pub total: usize,
    /// The most accepted requests seen in one window.
    pub peak: usize,
    /// Take the time from the system clock instead of `clock` (a benchmark in real time).
    pub wall_clock: bool,
}

impl RateLimit {
    /// Graph's presence limit: 1,500 requests per 30 s, starting at `clock`.
    pub fn graph(clock: chrono::DateTime<chrono::Utc>) -> Self {
        Self {
            limit: 1_500,
            window: chrono::Duration::seconds(30),
            clock,
            accepted: Default::default(),
            provoked: 0,
            total: 0,
            peak: 0,
            wall_clock: false,
        }
    }
}

/// Counts a request against the rate limit, or answers 429 as Graph would.
fn rate_limited(s: &mut GraphState) -> Option<Response> {
    let rl = s.rate_limit.as_mut()?;
    let now = if rl.wall_clock {
        chrono::Utc::now()
    } else {
        rl.clock
    };
    while rl.accepted.front().is_some_and(|t| *t + rl.window <= now) {
        rl.accepted.pop_front();
    }
    if rl.accepted.len() >= rl.limit {
        rl.provoked += 1;
        let retry = rl
            .accepted
            .front()
            .map(|t| (*t + rl.window - now).num_seconds().max(1))
            .unwrap_or(1);
        return Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("Retry-After", retry.to_string())],
                Json(json!({"error": {"code": "TooManyRequests", "message": "Too many requests"}})),
            )
                .into_response(),
        );
    }
    rl.accepted.push_back(now);
    rl.total += 1;
    rl.peak = rl.peak.max(rl.accepted.len());
    None
}

/// Which user a bearer token belongs to: an explicit mapping, or the fake Entra's
/// `at-{oid}-{n}` delegated tokens; `app-{n}` tokens are app-only.
fn user_of(s: &GraphState, token: &str) -> Option<String> {
    if let Some(u) = s.tokens.get(token) {
        return Some(u.clone());
    }
    let rest = token.strip_prefix("at-")?;
    rest.rsplit_once('-').map(|(oid, _)| oid.to_owned())
}

/// A running fake.
#[derive(Clone)]
pub struct FakeGraph {
    /// Its base URL (`GRAPH_ENDPOINT`).
    pub url: String,
    /// Its state, to script and inspect.
    pub state: Arc<Mutex<GraphState>>,
}

impl FakeGraph {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(GraphState::default()));
        let app = Router::new()
            .route("/v1.0/me/presence", get(me_presence))
            .route("/v1.0/communications/getPresencesByUserId", post(batch))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{addr}"),
            state,
        }
    }

    /// Sets a user's presence.
    pub fn set(&self, user: &str, availability: &str, activity: &str) {
        self.state
            .lock()
            .unwrap()
            .put(user, (availability.into(), activity.into()));
    }
}

pub(super) fn throttled(s: &mut GraphState) -> Option<Response> {
    if s.throttle_next.is_empty() {
        return None;
    }
    let secs = s.throttle_next.remove(0);
    Some(
        (
            StatusCode::TOO_MANY_REQUESTS,
            [("Retry-After", secs.to_string())],
            Json(json!({"error": {"code": "TooManyRequests", "message": "Too many requests"}})),
        )
            .into_response(),
    )
}

fn presence_json(s: &GraphState, id: &str, p: &(String, String)) -> Value {
    let mut v = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('x')/presence/$entity",
        "id": id, "availability": lower_camel(&p.0), "activity": lower_camel(&p.1),
    });
    if let Some(n) = s.sequences.get(id) {
        v["sequenceNumber"] = json!(sequence_number(*n));
    }
    v
}

pub(super) async fn me_presence(
    State(state): State<Arc<Mutex<GraphState>>>,
    headers: HeaderMap,
) -> Response {
    let latency = state.lock().unwrap().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut s = state.lock().unwrap();
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let user = user_of(&s, &token).filter(|_| !s.reject_tokens);
    let Some(user) = user else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"code": "InvalidAuthenticationToken"}})),
        )
            .into_response();
    };
    s.calls.push(("/me/presence".into(), vec![user.clone()]));
    if let Some(r) = throttled(&mut s).or_else(|| rate_limited(&mut s)) {
        return r;
    }
    if s.failing_users.contains(&user) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": {"code": "InternalServerError", "message": "boom"}})),
        )
            .into_response();
    }
    let p = s
        .presence
        .get(&user)
        .cloned()
        .unwrap_or(("PresenceUnknown".into(), "PresenceUnknown".into()));
    Json(presence_json(&s, &user, &p)).into_response()
}

pub(super) async fn batch(
    State(state): State<Arc<Mutex<GraphState>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    // The answer leaves `latency` after the request arrived: the fake's own work (650
    // presences to JSON, in the same process as the poller it answers) is part of that time,
    // as Graph's is part of its latency, and is not added on top (benches/poll_tick.rs).
    let answer_at = tokio::time::Instant::now() + state.lock().unwrap().latency;
    let response = batch_answer(&state, &headers, &body);
    tokio::time::sleep_until(answer_at).await;
    response
}

fn batch_answer(state: &Mutex<GraphState>, headers: &HeaderMap, body: &Value) -> Response {
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer "));
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"code": "InvalidAuthenticationToken"}})),
        )
            .into_response();
    }
    let mut s = state.lock().unwrap();
    let ids: Vec<String> = body["ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    s.calls
        .push(("/communications/getPresencesByUserId".into(), ids.clone()));
    if ids.is_empty() || ids.len() > 650 {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"code": "BadRequest", "message": "between 1 and 650 ids"}})),
        )
            .into_response();
    }
    if let Some(r) = throttled(&mut s).or_else(|| rate_limited(&mut s)) {
        return r;
    }
    let value: Vec<Value> = ids
        .iter()
        .map(|id| {
            let p = s
                .presence
                .get(id)
                .cloned()
                .unwrap_or(("PresenceUnknown".into(), "PresenceUnknown".into()));
            presence_json(&s, id, &p)
        })
        .collect();
    Json(json!({"value": value})).into_response()
}

/// A subscription the fake holds.
#[derive(Clone, Debug)]
pub struct FakeSubscription {
    /// Id.
    pub id: String,
    /// Resource as sent.
    pub resource: String,
    /// Users it covers.
    pub user_ids: Vec<String>,
    /// Expiry.
    pub expires: chrono::DateTime<chrono::Utc>,
    /// The user whose token created it.
    pub owner: String,
    /// The clientState it was created with.
    pub client_state: String,
    /// Where it delivers.
    pub notification_url: String,
    /// Lifecycle URL.
    pub lifecycle_url: String,
    /// `encryptionCertificateId`.
    pub certificate_id: String,
    /// `encryptionCertificate` (base64 DER).
    pub certificate: String,
    /// Times reauthorized.
    pub reauthorized: u32,
}

/// Subscription state of the fake (kept beside the presence state).
#[derive(Default)]
pub struct Subscriptions {
    /// By id.
    pub items: HashMap<String, FakeSubscription>,
    /// Every subscription call: (method, path).
    pub calls: Vec<(String, String)>,
    /// Counter for ids.
    pub counter: u64,
    /// The fake's clock when set (tests that simulate time); real time otherwise.
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// Notifications whose delivery got no 2xx yet, retried by [`retry_deliveries`].
    pub undelivered: Vec<Undelivered>,
}

/// A change notification Graph could not deliver yet: "If Microsoft Graph doesn't receive a
/// 2xx class code within 3 seconds, it tries to resend the change notification multiple
/// times, for up to 4 hours" (microsoftgraph/microsoft-graph-docs-contrib,
/// `concepts/change-notifications-delivery-webhooks.md`). The body is sent again as it was,
/// encrypted for the certificate the subscription had when Graph first sent it.
#[derive(Clone, Debug)]
pub struct Undelivered {
    /// Where it goes.
    pub url: String,
    /// The batch, as first sent.
    pub body: Value,
    /// The fake clock's time of the first attempt.
    pub first_attempt: chrono::DateTime<chrono::Utc>,
}

/// How long Graph keeps retrying an undelivered notification.
pub const RETRY_FOR: chrono::Duration = chrono::Duration::hours(4);

impl Subscriptions {
    /// A presence change notification for `sub`, encrypted for the certificate the
    /// subscription has now, whose first delivery got no answer (the webhook was slow or
    /// down): kept for [`retry_deliveries`].
    pub fn undelivered_change(
        &mut self,
        sub: &str,
        tenant: &str,
        user: &str,
        availability: &str,
        activity: &str,
        validation_token: &str,
    ) {
        use teams_presence::clients::graph::testing;
        let s = self
            .items
            .get(sub)
            .expect("a subscription of the fake")
            .clone();
        let der =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &s.certificate)
                .expect("base64 DER");
        let plain =
            testing::presence_json(user, &lower_camel(availability), &lower_camel(activity));
        let sealed =
            testing::seal_for_certificate(&der, &s.certificate_id, plain.to_string().as_bytes());
        let item = testing::notification_json(&s.id, &s.client_state, tenant, user, &sealed);
        let first_attempt = self.now.unwrap_or_else(chrono::Utc::now);
        self.undelivered.push(Undelivered {
            url: s.notification_url,
            body: json!({"value": [item], "validationTokens": [validation_token]}),
            first_attempt,
        });
    }
}

/// Graph's retry: sends every undelivered notification again, as it was, if its first
/// attempt is less than [`RETRY_FOR`] ago on the fake clock; forgets those answered 2xx and
/// those past the 4 hours. Returns the statuses of this round.
pub async fn retry_deliveries(subs: &Arc<Mutex<Subscriptions>>) -> Vec<u16> {
    let (now, due) = {
        let mut s = subs.lock().unwrap();
        let now = s.now.unwrap_or_else(chrono::Utc::now);
        s.undelivered.retain(|u| now - u.first_attempt <= RETRY_FOR);
        (now, std::mem::take(&mut s.undelivered))
    };
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut keep = Vec::new();
    for u in due {
        let status = match http.post(&u.url).json(&u.body).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        };
        statuses.push(status);
        if !(200..300).contains(&status) && now - u.first_attempt <= RETRY_FOR {
            keep.push(u);
        }
    }
    subs.lock().unwrap().undelivered.extend(keep);
    statuses
}

/// The users a presence resource names, or an error text.
fn users_of_resource(resource: &str) -> Result<Vec<String>, String> {
    let r = resource.trim_start_matches('/');
    if let Some(id) = r.strip_prefix("communications/presences/") {
        return if id.is_empty() {
            Err("empty id".into())
        } else {
            Ok(vec![id.to_owned()])
        };
    }
    if let Some(filter) = r.strip_prefix("communications/presences?$filter=id in (") {
        let inner = filter.strip_suffix(')').ok_or("unterminated filter")?;
        let ids: Vec<String> = inner
            .split(',')
            .map(|s| s.trim().trim_matches('\'').replace("''", "'"))
            .filter(|s| !s.is_empty())
            .collect();
        if ids.is_empty() || ids.len() > 650 {
            return Err(format!(
                "a presence filter takes 1 to 650 ids, got {}",
                ids.len()
            ));
        }
        return Ok(ids);
    }
    Err("unsupported resource".into())
}

impl FakeGraph {
    /// Starts a fake that also serves `/v1.0/subscriptions` with Graph's presence rules:
    /// at most 60 minutes, at most 650 ids, one subscription per user per app (409) — for
    /// the users a subscription covers and for the signed-in user who owns it, so one sync
    /// account owns one subscription — and the validation handshake against both URLs
    /// before a subscription exists.
    pub async fn start_with_subscriptions() -> (Self, Arc<Mutex<Subscriptions>>) {
        let state = Arc::new(Mutex::new(GraphState::default()));
        let subs = Arc::new(Mutex::new(Subscriptions::default()));
        let app = Router::new()
            .route("/v1.0/me/presence", get(me_presence))
            .route("/v1.0/communications/getPresencesByUserId", post(batch))
            .with_state(state.clone())
            .merge(
                Router::new()
                    .route("/v1.0/subscriptions", post(sub_create).get(sub_list))
                    .route(
                        "/v1.0/subscriptions/{id}",
                        axum::routing::patch(sub_renew).delete(sub_delete),
                    )
                    .route(
                        "/v1.0/subscriptions/{id}/reauthorize",
                        post(sub_reauthorize),
                    )
                    .with_state(subs.clone()),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (
            Self {
                url: format!("http://{addr}"),
                state,
            },
            subs,
        )
    }
}

fn bearer_user(headers: &HeaderMap) -> Option<String> {
    let token = headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    token
        .strip_prefix("at-")?
        .rsplit_once('-')
        .map(|(u, _)| u.to_owned())
}

pub(super) fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn sub_json(s: &FakeSubscription) -> Value {
    json!({
        "id": s.id, "resource": s.resource, "changeType": "updated",
        "expirationDateTime": s.expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "notificationUrl": s.notification_url, "lifecycleNotificationUrl": s.lifecycle_url,
        "applicationId": "11111111-2222-3333-4444-555555555555", "includeResourceData": true,
    })
}

fn check_expiry(
    v: &Value,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, Box<Response>> {
    let exp = v["expirationDateTime"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .ok_or_else(|| {
            Box::new(graph_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                "expirationDateTime is required",
            ))
        })?;
    if exp > now + chrono::Duration::minutes(60) {
        return Err(Box::new(graph_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "Subscription expiration can only be 60 minutes in the future for presence.",
        )));
    }
    Ok(exp)
}

async fn handshake(url: &str) -> bool {
    let token = format!(
        "Validation: Testing client application reachability for subscription Request-Id: {}",
        uuid::Uuid::new_v4()
    );
    let mut u = url::Url::parse(url).unwrap();
    u.query_pairs_mut().append_pair("validationToken", &token);
    let r = reqwest::Client::new()
        .post(u)
        .header("content-type", "text/plain; charset=utf-8")
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await;
    match r {
        Ok(r) if r.status() == 200 => {
            let ct_ok = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/plain"));
            ct_ok && r.text().await.ok().as_deref() == Some(token.as_str())
        }
        _ => false,
    }
}

async fn sub_create(
    State(subs): State<Arc<Mutex<Subscriptions>>>,
    headers: HeaderMap,
    Json(v): Json<Value>,
) -> Response {
    let Some(owner) = bearer_user(&headers) else {
        return graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "delegated token required",
        );
    };
    let now = {
        let mut s = subs.lock().unwrap();
        s.calls.push(("POST".into(), "/subscriptions".into()));
        s.now.unwrap_or_else(chrono::Utc::now)
    };
    let expires = match check_expiry(&v, now) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    let resource = v["resource"].as_str().unwrap_or_default().to_owned();
    let users = match users_of_resource(&resource) {
        Ok(u) => u,
        Err(e) => return graph_error(StatusCode::BAD_REQUEST, "InvalidRequest", &e),
    };
    if v["includeResourceData"] != true
        || v["encryptionCertificate"].as_str().unwrap_or("").is_empty()
        || v["encryptionCertificateId"]
            .as_str()
            .unwrap_or("")
            .is_empty()
    {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "presence needs includeResourceData with an encryption certificate",
        );
    }
    let client_state = v["clientState"].as_str().unwrap_or_default().to_owned();
    if client_state.is_empty() || client_state.len() > 128 {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "clientState must be 1 to 128 characters",
        );
    }
    {
        let s = subs.lock().unwrap();
        if s.items
            .values()
            .any(|x| x.owner == owner || x.user_ids.iter().any(|u| users.contains(u)))
        {
            return graph_error(
                StatusCode::CONFLICT,
                "ExtensionError",
                "A subscription for this presence resource already exists for this application.",
            );
        }
    }
    let notification_url = v["notificationUrl"].as_str().unwrap_or_default().to_owned();
    let lifecycle_url = v["lifecycleNotificationUrl"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if !handshake(&notification_url).await || !handshake(&lifecycle_url).await {
        return graph_error(StatusCode::BAD_REQUEST, "ValidationError", "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request.");
    }
    let mut s = subs.lock().unwrap();
    s.counter += 1;
    let sub = FakeSubscription {
        id: format!("sub-{}", s.counter),
        resource,
        user_ids: users,
        expires,
        owner,
        client_state,
        notification_url,
        lifecycle_url,
        certificate_id: v["encryptionCertificateId"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        certificate: v["encryptionCertificate"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        reauthorized: 0,
    };
    let body = sub_json(&sub);
    s.items.insert(sub.id.clone(), sub);
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn sub_list(State(subs): State<Arc<Mutex<Subscriptions>>>, headers: HeaderMap) -> Response {
    let owner = bearer_user(&headers).unwrap_or_default();
    let s = subs.lock().unwrap();
    let value: Vec<Value> = s
        .items
        .values()
        .filter(|x| x.owner == owner)
        .map(sub_json)
        .collect();
    Json(json!({ "value": value })).into_response()
}

/// `PATCH /subscriptions/{id}`: a new expiry and, for key rotation, a new
/// `encryptionCertificate` with its `encryptionCertificateId` (both or neither;
/// `concepts/change-notifications-with-resource-data.md`, "Rotating keys"). Notifications
/// created from then on are encrypted for the new certificate; undelivered ones keep theirs.
async fn sub_renew(
    State(subs): State<Arc<Mutex<Subscriptions>>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Json(v): Json<Value>,
) -> Response {
    let now = {
        let mut s = subs.lock().unwrap();
        s.calls
            .push(("PATCH".into(), format!("/subscriptions/{id}")));
        s.now.unwrap_or_else(chrono::Utc::now)
    };
    let expires = match check_expiry(&v, now) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    let certificate = (
        v["encryptionCertificate"].as_str(),
        v["encryptionCertificateId"].as_str(),
    );
    let new_certificate = match certificate {
        (None, None) => None,
        (Some(c), Some(i)) if !c.is_empty() && !i.is_empty() && i.len() <= 128 => {
            Some((c.to_owned(), i.to_owned()))
        }
        _ => {
            return graph_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                "encryptionCertificate and encryptionCertificateId go together",
            )
        }
    };
    let mut s = subs.lock().unwrap();
    match s.items.get_mut(&id) {
        Some(sub) => {
            sub.expires = expires;
            if let Some((cert, cert_id)) = new_certificate {
                sub.certificate = cert;
                sub.certificate_id = cert_id;
            }
            Json(sub_json(sub)).into_response()
        }
        None => graph_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "The object was not found.",
        ),
    }
}

async fn sub_delete(
    State(subs): State<Arc<Mutex<Subscriptions>>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let mut s = subs.lock().unwrap();
    s.calls
        .push(("DELETE".into(), format!("/subscriptions/{id}")));
    match s.items.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => graph_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "The object was not found.",
        ),
    }
}

async fn sub_reauthorize(
    State(subs): State<Arc<Mutex<Subscriptions>>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let mut s = subs.lock().unwrap();
    s.calls
        .push(("POST".into(), format!("/subscriptions/{id}/reauthorize")));
    match s.items.get_mut(&id) {
        Some(sub) => {
            sub.reauthorized += 1;
            StatusCode::NO_CONTENT.into_response()
        }
        None => graph_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "The object was not found.",
        ),
    }
}
