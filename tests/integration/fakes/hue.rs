//! Fake Hue bridges, v1 and v2, over plain HTTP: they record every PUT body with its time
//! (tokio's clock, so paused-time tests can check spacing), enforce the documented rate
//! limits with 429 (more than 10 light or 1 group command in any second), and can be told
//! to fail.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::time::Instant;

pub const KEY: &str = "fake-hue-application-key";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    V1,
    V2,
}

#[derive(Debug, Clone)]
pub struct Put {
    pub at: Instant,
    pub path: String,
    pub body: Value,
}

#[derive(Debug, Default)]
pub struct Bridge {
    pub puts: Vec<Put>,
    pub rejected: u32,
    pub failing: bool,
    pub pair_attempts: u32,
}

#[derive(Clone)]
struct Shared {
    api: Api,
    bridge: Arc<Mutex<Bridge>>,
}

pub struct FakeHue {
    pub url: String,
    bridge: Arc<Mutex<Bridge>>,
}

impl FakeHue {
    pub async fn start(api: Api) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(api, listener)
    }

    /// A bridge on a given address (e.g. one that refused connections until now).
    pub async fn start_at(api: Api, addr: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        Self::serve(api, listener)
    }

    fn serve(api: Api, listener: tokio::net::TcpListener) -> Self {
        let shared = Shared {
            api,
            bridge: Arc::default(),
        };
        let bridge = shared.bridge.clone();
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, bridge }
    }

    pub fn puts(&self) -> Vec<Put> {
        self.bridge.lock().unwrap().puts.clone()
    }

    pub fn rejected(&self) -> u32 {
        self.bridge.lock().unwrap().rejected
    }

    pub fn set_failing(&self, failing: bool) {
        self.bridge.lock().unwrap().failing = failing;
    }
}

fn over_limit(puts: &[Put], now: Instant, group: bool) -> bool {
    let limit = if group { 1 } else { 10 };
    let recent = puts
        .iter()
        .filter(|p| is_group(&p.path) == group)
        // 900 ms, not 1 s: request latency jitters on a loaded machine, and a real bridge is
        // not that strict either. The paused-time test checks exact 1 s windows itself.
        .filter(|p| now.duration_since(p.at) < Duration::from_millis(900))
        .count();
    recent >= limit
}

fn is_group(path: &str) -> bool {
    path.contains("/groups/") || path.contains("/grouped_light/")
}

async fn handle(
    State(s): State<Shared>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if method == Method::POST && parts == ["api"] {
        let mut b = s.bridge.lock().unwrap();
        b.pair_attempts += 1;
        return if b.pair_attempts < 3 {
            Json(json!([{"error": {"type": 101, "address": "", "description": "link button not pressed"}}]))
                .into_response()
        } else {
            Json(json!([{"success": {"username": KEY}}])).into_response()
        };
    }
    match s.api {
        Api::V1 => v1(&s, &method, &parts, &path, &body),
        Api::V2 => v2(&s, &method, &parts, &headers, &body),
    }
}

fn record(s: &Shared, path: &str, body: &Bytes) -> Result<(), (StatusCode, &'static str)> {
    let mut b = s.bridge.lock().unwrap();
    if b.failing {
        return Err((StatusCode::INTERNAL_SERVER_ERROR, "bridge on fire"));
    }
    let now = Instant::now();
    if over_limit(&b.puts, now, is_group(path)) {
        b.rejected += 1;
        return Err((StatusCode::TOO_MANY_REQUESTS, "slow down"));
    }
    b.puts.push(Put {
        at: now,
        path: path.to_owned(),
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
    });
    Ok(())
}

fn v1(s: &Shared, method: &Method, parts: &[&str], path: &str, body: &Bytes) -> Response {
    let unauthorized = || {
        Json(json!([{"error": {"type": 1, "address": "/", "description": "unauthorized user"}}]))
            .into_response()
    };
    match (method.as_str(), parts) {
        ("GET", ["api", key, "config"]) if *key == KEY || *key == "0" => {
            Json(json!({"bridgeid": "001788FFFE000001", "apiversion": "1.16.0"})).into_response()
        }
        ("GET", ["api", _, "config"]) => unauthorized(),
        ("GET", ["api", KEY, "lights"]) => {
            Json(json!({"1": {"name": "Desk", "type": "Extended color light"}})).into_response()
        }
        ("GET", ["api", KEY, "groups"]) => {
            Json(json!({"2": {"name": "Office", "type": "Room", "lights": ["1"]}})).into_response()
        }
        ("PUT", ["api", key, kind @ ("lights" | "groups"), id, _]) => {
            if *key != KEY {
                return unauthorized();
            }
            let short = format!("/{kind}/{id}");
            if let Err(r) = record(s, path.split_once(KEY).map_or(path, |(_, rest)| rest), body) {
                return r.into_response();
            }
            let v: Value = serde_json::from_slice(body).unwrap_or(json!({}));
            let ok: Vec<Value> = v
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, val)| json!({"success": {format!("{short}/state/{k}"): val}}))
                .collect();
            Json(Value::Array(ok)).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn v2(s: &Shared, method: &Method, parts: &[&str], headers: &HeaderMap, body: &Bytes) -> Response {
    if parts.first() != Some(&"clip") {
        return StatusCode::NOT_FOUND.into_response();
    }
    if headers
        .get("hue-application-key")
        .and_then(|v| v.to_str().ok())
        != Some(KEY)
    {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"errors": [{"description": "unauthorized user"}], "data": []})),
        )
            .into_response();
    }
    let data = |d: Value| Json(json!({"errors": [], "data": d})).into_response();
    match (method.as_str(), &parts[2..]) {
        ("GET", ["resource", "bridge"]) => {
            data(json!([{"id": "b1", "bridge_id": "001788fffe000002", "type": "bridge"}]))
        }
        ("GET", ["resource", "light"]) => data(json!([
            {"id": "11111111-1111-4111-8111-111111111111", "id_v1": "/lights/1", "metadata": {"name": "Desk"}, "type": "light"}
        ])),
        ("GET", ["resource", "grouped_light"]) => {
            data(json!([{"id": "gl-zero", "id_v1": "/groups/0", "type": "grouped_light"}]))
        }
        ("GET", ["resource", kind @ ("room" | "zone"), id]) => data(json!([{
            "id": id, "type": kind, "metadata": {"name": "Office"},
            "services": [{"rid": format!("gl-{id}"), "rtype": "grouped_light"}]
        }])),
        ("GET", ["resource", "room" | "zone"]) => data(json!([])),
        ("PUT", ["resource", "light" | "grouped_light", id]) => {
            let short = format!("/{}", parts[3..].join("/"));
            if let Err(r) = record(s, &short, body) {
                return r.into_response();
            }
            data(json!([{"rid": id, "rtype": parts[3]}]))
        }
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({"errors": [{"description": "not found"}], "data": []})),
        )
            .into_response(),
    }
}
