//! Fake Hue bridges, v1 and v2, over plain HTTP, both answering from one CLIP v2 resource
//! layout: a small built-in one ([`Layout::small`]) or a real bridge's
//! ([`Layout::real_bridge`], `tests/fixtures/hue/v2_resources.json`, whose `_source` says where
//! it comes from). They record every accepted PUT with its time (tokio's clock, so paused-time
//! tests can check spacing), enforce the documented rate limits with 429 (more than 10 light
//! or 1 group command in any second), and can be told to fail.
//!
//! What they do as a real bridge does (sources in `docs`-style notes beside each):
//! * v2: UUID ids with `id_v1`; rooms list devices, zones list lights; a room or zone without a
//!   `grouped_light` service has nothing to PUT to. A command to a light on a device whose
//!   `zigbee_connectivity` is not `connected`, or to a grouped_light containing one, is
//!   applied and answered **207** with `errors: [{"description": "device (light) has
//!   communication issues, command (.on.on) may not have effect"}]` (`device (grouped_light)
//!   …` for a group; home-assistant/core issue 68231, openHAB PR 15512). A feature the light
//!   lacks (`color` on a white-ambiance lamp, `color_temperature` without one, a mirek outside
//!   its `mirek_schema`) is a 400 with an `errors` array (home-assistant/core issue 61584:
//!   "the V2 Hue API is far more strict"; the wording here is ours, not the bridge's).
//! * v1: `/api/<any string>/config` answers the public config whatever the key; an unknown
//!   key gets error 1 "unauthorized user" (HTTP 200) on `/api/<key>/lights`; a state PUT with a
//!   parameter the light lacks gets `{"error": {"type": 6, "address": "/lights/N/state/xy",
//!   "description": "parameter, xy, not available"}}` for that parameter and the rest applied
//!   (peter-murray/node-hue-api issue 93 shows the same for `ct`); an unknown light or group
//!   is error 3 "resource, /lights/N, not available".

use std::collections::HashMap;
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

/// The real bridge's resources (see the file's `_source`).
const REAL_BRIDGE: &str = include_str!("../../../tests/fixtures/hue/v2_resources.json");

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

/// A bridge's CLIP v2 resources; the v1 view is derived from them.
#[derive(Debug, Clone)]
pub struct Layout {
    resources: Vec<Value>,
}

/// The v2 id of the small layout's light `/lights/{n}`.
pub fn small_light_id(n: u32) -> String {
    format!("11111111-1111-4111-8111-{n:012}")
}

/// The small layout's grouped_light of room 2 ("Office") and zone 1 ("Desk").
pub const SMALL_OFFICE_GROUPED_LIGHT: &str = "22222222-2222-4222-8222-000000000002";
pub const SMALL_DESK_GROUPED_LIGHT: &str = "22222222-2222-4222-8222-000000000001";

impl Layout {
    /// Twelve colour lights (`/lights/1` … `/lights/12`), room 2 "Office" with light 1 and
    /// zone 1 "Desk" with lights 1 and 2, each with its grouped_light.
    pub fn small() -> Self {
        let mut r = vec![json!({"id": "b1", "bridge_id": "001788fffe000002", "type": "bridge"})];
        for n in 1..=12u32 {
            let device = format!("33333333-3333-4333-8333-{n:012}");
            r.push(
                json!({"id": device, "id_v1": format!("/lights/{n}"), "type": "device",
                "metadata": {"name": if n == 1 { "Desk".to_string() } else { format!("Lamp {n}") }},
                "services": [{"rid": small_light_id(n), "rtype": "light"}]}),
            );
            r.push(json!({"id": small_light_id(n), "id_v1": format!("/lights/{n}"), "type": "light",
                "owner": {"rid": device, "rtype": "device"},
                "metadata": {"name": if n == 1 { "Desk".to_string() } else { format!("Lamp {n}") }},
                "on": {"on": false}, "dimming": {"brightness": 100.0},
                "color": {"xy": {"x": 0.3, "y": 0.3}, "gamut_type": "C"},
                "color_temperature": {"mirek": null, "mirek_schema": {"mirek_minimum": 153, "mirek_maximum": 500}},
                "alert": {"action_values": ["breathe"]}}));
        }
        r.push(json!({"id": "44444444-4444-4444-8444-000000000002", "id_v1": "/groups/2", "type": "room",
            "metadata": {"name": "Office"},
            "children": [{"rid": "33333333-3333-4333-8333-000000000001", "rtype": "device"}],
            "services": [{"rid": SMALL_OFFICE_GROUPED_LIGHT, "rtype": "grouped_light"}]}));
        r.push(json!({"id": "44444444-4444-4444-8444-000000000001", "id_v1": "/groups/1", "type": "zone",
            "metadata": {"name": "Desk"},
            "children": [{"rid": small_light_id(1), "rtype": "light"}, {"rid": small_light_id(2), "rtype": "light"}],
            "services": [{"rid": SMALL_DESK_GROUPED_LIGHT, "rtype": "grouped_light"}]}));
        for (id, v1, owner, kind) in [
            (
                SMALL_OFFICE_GROUPED_LIGHT,
                "/groups/2",
                "44444444-4444-4444-8444-000000000002",
                "room",
            ),
            (
                SMALL_DESK_GROUPED_LIGHT,
                "/groups/1",
                "44444444-4444-4444-8444-000000000001",
                "zone",
            ),
        ] {
            r.push(json!({"id": id, "id_v1": v1, "type": "grouped_light",
                "owner": {"rid": owner, "rtype": kind},
                "on": {"on": false}, "dimming": {"brightness": 0.0}, "color": {}, "color_temperature": {},
                "alert": {"action_values": ["breathe"]}}));
        }
        Self { resources: r }
    }

    /// The real bridge of `tests/fixtures/hue/v2_resources.json`.
    pub fn real_bridge() -> Self {
        let v: Value = serde_json::from_str(REAL_BRIDGE).expect("the fixture is JSON");
        Self {
            resources: v["data"].as_array().expect("a data array").clone(),
        }
    }

    fn of_type(&self, kind: &str) -> impl Iterator<Item = &Value> + '_ {
        let kind = kind.to_owned();
        self.resources
            .iter()
            .filter(move |r| r["type"] == kind.as_str())
    }

    fn get(&self, kind: &str, id: &str) -> Option<&Value> {
        self.of_type(kind).find(|r| r["id"] == id)
    }

    fn by_v1(&self, kind: &str, v1: &str) -> Option<&Value> {
        self.of_type(kind).find(|r| r["id_v1"] == v1)
    }

    fn bridge_id(&self) -> String {
        self.of_type("bridge")
            .next()
            .and_then(|b| b["bridge_id"].as_str())
            .unwrap_or("001788fffe000002")
            .to_owned()
    }

    /// Whether the device owning this light answers: its zigbee_connectivity is `connected`
    /// (or it has none in the layout).
    pub fn reachable(&self, light: &Value) -> bool {
        let Some(device) = light["owner"]["rid"].as_str() else {
            return true;
        };
        self.of_type("zigbee_connectivity")
            .filter(|z| z["owner"]["rid"] == device)
            .all(|z| z["status"] == "connected")
    }

    /// The light resources a room, zone or bridge_home contains.
    fn lights_of(&self, group: &Value) -> Vec<&Value> {
        let mut out = Vec::new();
        if group["type"] == "bridge_home" {
            return self.of_type("light").collect();
        }
        for child in group["children"].as_array().into_iter().flatten() {
            let rid = child["rid"].as_str().unwrap_or_default();
            match child["rtype"].as_str() {
                Some("light") => out.extend(self.get("light", rid)),
                Some("device") => {
                    if let Some(dev) = self.get("device", rid) {
                        for s in dev["services"].as_array().into_iter().flatten() {
                            if s["rtype"] == "light" {
                                out.extend(self.get("light", s["rid"].as_str().unwrap_or("")));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The room, zone or bridge_home a grouped_light belongs to.
    fn owner_of_grouped_light(&self, gl: &Value) -> Option<&Value> {
        let rid = gl["owner"]["rid"].as_str()?;
        let kind = gl["owner"]["rtype"].as_str()?;
        self.get(kind, rid)
    }

    fn v1_number(v: &Value) -> Option<String> {
        let s = v["id_v1"].as_str()?;
        s.rsplit('/').next().map(str::to_owned)
    }

    /// `GET /api/<key>/lights` as a v1 bridge answers it.
    fn v1_lights(&self) -> Value {
        let mut m = serde_json::Map::new();
        for l in self.of_type("light") {
            let Some(n) = Self::v1_number(l) else {
                continue;
            };
            let (colour, ct, dim) = (
                l.get("color").is_some(),
                l.get("color_temperature").is_some(),
                l.get("dimming").is_some(),
            );
            let kind = match (colour, ct, dim) {
                (true, true, _) => "Extended color light",
                (true, false, _) => "Color light",
                (false, true, _) => "Color temperature light",
                (false, false, true) => "Dimmable light",
                _ => "On/Off light",
            };
            let mut state = json!({"on": l["on"]["on"], "reachable": self.reachable(l)});
            let mut control = serde_json::Map::new();
            if dim {
                state["bri"] = json!(254);
            }
            if colour {
                state["xy"] = json!([l["color"]["xy"]["x"], l["color"]["xy"]["y"]]);
                control.insert("colorgamuttype".into(), l["color"]["gamut_type"].clone());
            }
            if ct {
                state["ct"] = json!(366);
                let s = &l["color_temperature"]["mirek_schema"];
                control.insert(
                    "ct".into(),
                    json!({"min": s["mirek_minimum"], "max": s["mirek_maximum"]}),
                );
            }
            m.insert(
                n,
                json!({"name": l["metadata"]["name"], "type": kind, "state": state,
                       "capabilities": {"control": control}}),
            );
        }
        Value::Object(m)
    }

    /// `GET /api/<key>/groups`: rooms and zones by their v1 number (group 0 is not listed).
    fn v1_groups(&self) -> Value {
        let mut m = serde_json::Map::new();
        for g in self.of_type("room").chain(self.of_type("zone")) {
            let Some(n) = Self::v1_number(g) else {
                continue;
            };
            let lights: Vec<String> = self
                .lights_of(g)
                .into_iter()
                .filter_map(Self::v1_number)
                .collect();
            let kind = if g["type"] == "room" { "Room" } else { "Zone" };
            m.insert(
                n,
                json!({"name": g["metadata"]["name"], "type": kind, "lights": lights,
                       "action": {"on": false}}),
            );
        }
        Value::Object(m)
    }

    fn v1_light(&self, n: &str) -> Option<&Value> {
        self.by_v1("light", &format!("/lights/{n}"))
    }

    fn v1_group_exists(&self, n: &str) -> bool {
        n == "0"
            || self
                .of_type("room")
                .chain(self.of_type("zone"))
                .any(|g| g["id_v1"] == format!("/groups/{n}"))
    }
}

#[derive(Debug, Default)]
pub struct Bridge {
    pub puts: Vec<Put>,
    pub rejected: u32,
    pub failing: bool,
    pub pair_attempts: u32,
    /// Paths (as recorded: `/lights/1/state`, `/light/{id}`) answered with this status.
    pub refusing: HashMap<String, u16>,
    /// Every PUT answered, with its status: what the bridge said, including refusals.
    pub answers: Vec<(String, u16)>,
}

#[derive(Clone)]
struct Shared {
    api: Api,
    layout: Arc<Mutex<Layout>>,
    bridge: Arc<Mutex<Bridge>>,
}

pub struct FakeHue {
    pub url: String,
    bridge: Arc<Mutex<Bridge>>,
    layout: Arc<Mutex<Layout>>,
}

impl FakeHue {
    pub async fn start(api: Api) -> Self {
        Self::start_with(api, Layout::small()).await
    }

    /// A bridge with the given resources.
    pub async fn start_with(api: Api, layout: Layout) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(api, layout, listener)
    }

    /// A bridge on a given address (e.g. one that refused connections until now).
    pub async fn start_at(api: Api, addr: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        Self::serve(api, Layout::small(), listener)
    }

    fn serve(api: Api, layout: Layout, listener: tokio::net::TcpListener) -> Self {
        let shared = Shared {
            api,
            layout: Arc::new(Mutex::new(layout)),
            bridge: Arc::default(),
        };
        let (bridge, layout) = (shared.bridge.clone(), shared.layout.clone());
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url,
            bridge,
            layout,
        }
    }

    pub fn puts(&self) -> Vec<Put> {
        self.bridge.lock().unwrap().puts.clone()
    }

    /// The accepted PUTs to one path.
    pub fn puts_to(&self, path: &str) -> Vec<Put> {
        self.puts().into_iter().filter(|p| p.path == path).collect()
    }

    /// Every PUT answered, with its status.
    pub fn answers(&self) -> Vec<(String, u16)> {
        self.bridge.lock().unwrap().answers.clone()
    }

    pub fn rejected(&self) -> u32 {
        self.bridge.lock().unwrap().rejected
    }

    pub fn set_failing(&self, failing: bool) {
        self.bridge.lock().unwrap().failing = failing;
    }

    /// Answers PUTs to `path` (as recorded) with `status` until told otherwise (`None`).
    pub fn refuse(&self, path: &str, status: Option<u16>) {
        let mut b = self.bridge.lock().unwrap();
        match status {
            Some(s) => b.refusing.insert(path.to_owned(), s),
            None => b.refusing.remove(path),
        };
    }

    /// Sets a device's zigbee_connectivity status (`connected`, `connectivity_issue`, ...).
    pub fn set_connectivity(&self, device: &str, status: &str) {
        let mut l = self.layout.lock().unwrap();
        for r in &mut l.resources {
            if r["type"] == "zigbee_connectivity" && r["owner"]["rid"] == device {
                r["status"] = json!(status);
            }
        }
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

/// Checks the fault switches and the rate limit; records an accepted PUT. The answer when
/// it is not accepted.
fn record(s: &Shared, path: &str, body: &Bytes) -> Option<Response> {
    let mut b = s.bridge.lock().unwrap();
    let refused = if b.failing {
        Some((500, "bridge on fire"))
    } else {
        b.refusing.get(path).map(|s| (*s, "refused by the test"))
    };
    let now = Instant::now();
    let (status, why) = match refused {
        Some(r) => r,
        None if over_limit(&b.puts, now, is_group(path)) => {
            b.rejected += 1;
            (429, "slow down")
        }
        None => {
            b.puts.push(Put {
                at: now,
                path: path.to_owned(),
                body: serde_json::from_slice(body).unwrap_or(Value::Null),
            });
            return None;
        }
    };
    b.answers.push((path.to_owned(), status));
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Some(match s.api {
        Api::V2 => errors(status, why),
        Api::V1 => (status, why).into_response(),
    })
}

fn answered(s: &Shared, path: &str, status: u16) {
    s.bridge
        .lock()
        .unwrap()
        .answers
        .push((path.to_owned(), status));
}

fn v1(s: &Shared, method: &Method, parts: &[&str], path: &str, body: &Bytes) -> Response {
    let unauthorized = |address: &str| {
        Json(
            json!([{"error": {"type": 1, "address": address, "description": "unauthorized user"}}]),
        )
        .into_response()
    };
    let layout = s.layout.lock().unwrap().clone();
    match (method.as_str(), parts) {
        // The public part of the config, for any key (or none).
        ("GET", ["api", _, "config"]) | ("GET", ["api", "config"]) => Json(json!({
            "name": "Philips hue", "bridgeid": layout.bridge_id().to_ascii_uppercase(),
            "apiversion": "1.16.0", "swversion": "1948086000", "mac": "00:17:88:00:00:02",
            "modelid": "BSB002", "datastoreversion": "98", "factorynew": false,
            "replacesbridgeid": null, "starterkitid": ""
        }))
        .into_response(),
        ("GET", ["api", key, "lights"]) if *key != KEY => unauthorized("/lights"),
        ("GET", ["api", key, "groups"]) if *key != KEY => unauthorized("/groups"),
        ("GET", ["api", _, "lights"]) => Json(layout.v1_lights()).into_response(),
        ("GET", ["api", _, "groups"]) => Json(layout.v1_groups()).into_response(),
        ("PUT", ["api", key, kind @ ("lights" | "groups"), id, _]) => {
            if *key != KEY {
                return unauthorized(&format!("/{kind}/{id}"));
            }
            let light = (*kind == "lights").then(|| layout.v1_light(id)).flatten();
            let exists = match *kind {
                "lights" => light.is_some(),
                _ => layout.v1_group_exists(id),
            };
            let short = path.split_once(KEY).map_or(path, |(_, rest)| rest);
            if !exists {
                answered(s, short, 200);
                let address = format!("/{kind}/{id}");
                return Json(json!([{"error": {"type": 3, "address": address,
                    "description": format!("resource, {address}, not available")}}]))
                .into_response();
            }
            if let Some(r) = record(s, short, body) {
                return r;
            }
            answered(s, short, 200);
            let v: Value = serde_json::from_slice(body).unwrap_or(json!({}));
            let object = if *kind == "lights" {
                format!("/lights/{id}/state")
            } else {
                format!("/groups/{id}/action")
            };
            let answer: Vec<Value> = v
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, val)| {
                    let lacks = light.is_some_and(|l| match k.as_str() {
                        "xy" => l.get("color").is_none(),
                        "ct" => l.get("color_temperature").is_none(),
                        "bri" => l.get("dimming").is_none(),
                        _ => false,
                    });
                    if lacks {
                        json!({"error": {"type": 6, "address": format!("{object}/{k}"),
                            "description": format!("parameter, {k}, not available")}})
                    } else {
                        json!({"success": {format!("{object}/{k}"): val}})
                    }
                })
                .collect();
            Json(Value::Array(answer)).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn errors(status: StatusCode, description: &str) -> Response {
    (
        status,
        Json(json!({"errors": [{"description": description}], "data": []})),
    )
        .into_response()
}

/// Why a v2 PUT body cannot be applied to this light or grouped_light (400), if it cannot.
fn lacks(resource: &Value, body: &Value) -> Option<String> {
    if body.get("color").is_some() && resource.get("color").is_none() {
        return Some("invalid property: color is not supported by this resource".into());
    }
    if let Some(m) = body["color_temperature"]["mirek"].as_i64() {
        let Some(ct) = resource.get("color_temperature") else {
            return Some(
                "invalid property: color_temperature is not supported by this resource".into(),
            );
        };
        let schema = &ct["mirek_schema"];
        let lo = schema["mirek_minimum"].as_i64().unwrap_or(153);
        let hi = schema["mirek_maximum"].as_i64().unwrap_or(500);
        if !(lo..=hi).contains(&m) {
            return Some(format!(
                "invalid value: color_temperature.mirek {m} outside {lo}..{hi}"
            ));
        }
    }
    if body.get("dimming").is_some() && resource.get("dimming").is_none() {
        return Some("invalid property: dimming is not supported by this resource".into());
    }
    None
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
        return errors(StatusCode::FORBIDDEN, "unauthorized user");
    }
    let layout = s.layout.lock().unwrap().clone();
    let data = |d: Value| Json(json!({"errors": [], "data": d})).into_response();
    match (method.as_str(), &parts[2..]) {
        ("GET", ["resource"]) => data(Value::Array(layout.resources.clone())),
        ("GET", ["resource", kind]) => data(Value::Array(layout.of_type(kind).cloned().collect())),
        ("GET", ["resource", kind, id]) => match layout.get(kind, id) {
            Some(r) => data(json!([r])),
            None => errors(StatusCode::NOT_FOUND, "Not Found"),
        },
        ("PUT", ["resource", kind @ ("light" | "grouped_light"), id]) => {
            let short = format!("/{kind}/{id}");
            let Some(resource) = layout.get(kind, id) else {
                answered(s, &short, 404);
                return errors(StatusCode::NOT_FOUND, "Not Found");
            };
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            if let Some(why) = lacks(resource, &v) {
                answered(s, &short, 400);
                return errors(StatusCode::BAD_REQUEST, &why);
            }
            if let Some(r) = record(s, &short, body) {
                return r;
            }
            let reachable = if *kind == "light" {
                layout.reachable(resource)
            } else {
                layout
                    .owner_of_grouped_light(resource)
                    .map(|g| layout.lights_of(g).iter().all(|l| layout.reachable(l)))
                    .unwrap_or(true)
            };
            let ok = json!([{"rid": id, "rtype": kind}]);
            if reachable {
                answered(s, &short, 200);
                return data(ok);
            }
            // Applied, with a warning per command: what a real bridge answers for an
            // unplugged bulb (or a group with one).
            answered(s, &short, 207);
            (
                StatusCode::MULTI_STATUS,
                Json(json!({"data": ok, "errors": [{"description": format!(
                    "device ({kind}) has communication issues, command (.on.on) may not have effect"
                )}]})),
            )
                .into_response()
        }
        _ => errors(StatusCode::NOT_FOUND, "Not Found"),
    }
}
