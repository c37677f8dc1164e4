//! A fake Microsoft Graph presence API: `GET /v1.0/me/presence` (by bearer token) and
//! `POST /v1.0/communications/getPresencesByUserId` (at most 650 ids, as the real one),
//! with scripted 429 + `Retry-After` responses and a call log.

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
            .presence
            .insert(user.into(), (availability.into(), activity.into()));
    }
}

fn throttled(s: &mut GraphState) -> Option<Response> {
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

fn presence_json(id: &str, p: &(String, String)) -> Value {
    json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('x')/presence/$entity", "id": id, "availability": p.0, "activity": p.1})
}

async fn me_presence(State(state): State<Arc<Mutex<GraphState>>>, headers: HeaderMap) -> Response {
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
    let Some(user) = user_of(&s, &token) else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"code": "InvalidAuthenticationToken"}})),
        )
            .into_response();
    };
    s.calls.push(("/me/presence".into(), vec![user.clone()]));
    if let Some(r) = throttled(&mut s) {
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
    Json(presence_json(&user, &p)).into_response()
}

async fn batch(
    State(state): State<Arc<Mutex<GraphState>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let latency = state.lock().unwrap().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
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
    if let Some(r) = throttled(&mut s) {
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
            presence_json(id, &p)
        })
        .collect();
    Json(json!({"value": value})).into_response()
}

#[tokio::test]
async fn the_fake_enforces_the_650_id_limit_and_scripts_throttling() {
    let g = FakeGraph::start().await;
    g.set("a", "Busy", "InACall");
    g.state.lock().unwrap().throttle_next.push(7);
    let http = reqwest::Client::new();
    let url = format!("{}/v1.0/communications/getPresencesByUserId", g.url);
    let r = http
        .post(&url)
        .bearer_auth("app-1")
        .json(&json!({"ids": ["a"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let r: Value = http
        .post(&url)
        .bearer_auth("app-1")
        .json(&json!({"ids": ["a"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["value"][0]["activity"], "InACall");
    let ids: Vec<String> = (0..651).map(|i| i.to_string()).collect();
    let r = http
        .post(&url)
        .bearer_auth("app-1")
        .json(&json!({"ids": ids}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
