//! Hue CLIP v1: `PUT /api/{key}/lights/{id}/state` and `/groups/{id}/action` over HTTP, for
//! bridges without CLIP v2 (Hue developer docs, CLIP API v1). The only module that knows v1's JSON.
//!
//! The application key is part of every v1 path, so no URL from this module is ever logged
//! or put into an error (`reqwest::Error::without_url`).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Map, Value};
use url::Url;

use super::inventory::{Group, GroupKind, Inventory, Lamp};
use super::HueError;
use crate::core::lights::{Effect, LampState, Palette};

/// The body of a v1 state/action PUT (pure).
pub fn body(state: &LampState) -> Value {
    let mut m = Map::new();
    m.insert("on".into(), json!(state.on));
    if state.on {
        if let Some(b) = state.brightness {
            m.insert("bri".into(), json!(bri(b)));
        }
        if let Some(xy) = state.xy {
            m.insert("xy".into(), json!([xy.x, xy.y]));
        }
        if let Some(mirek) = state.mirek {
            m.insert("ct".into(), json!(mirek));
        }
        if state.effect == Effect::Breathe {
            // `lselect` breathes for 15 s; `select` is a single breath.
            m.insert("alert".into(), json!("lselect"));
        }
    }
    if let Some(ms) = state.transition_ms {
        // v1 counts in 100 ms steps.
        m.insert("transitiontime".into(), json!((ms + 50) / 100));
    }
    Value::Object(m)
}

/// Percent to v1 `bri` (1..=254).
pub fn bri(percent: f64) -> u8 {
    (percent * 254.0 / 100.0).round().clamp(1.0, 254.0) as u8
}

/// A v1 bridge.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    key: SecretString,
}

impl Client {
    /// `base` is `http://{bridge}/`.
    pub fn new(http: reqwest::Client, base: Url, key: SecretString) -> Self {
        Self { http, base, key }
    }

    fn url(&self, rest: &str) -> Result<Url, HueError> {
        self.base
            .join(&format!("api/{}/{rest}", self.key.expose_secret()))
            .map_err(|_| HueError::Protocol("cannot build a v1 URL".into()))
    }

    /// Whether the key works, with a call that needs it: `GET /api/{key}/lights` (a real
    /// bridge answers `/api/<any string>/config` with its public config, whatever the key;
    /// `/lights` gets error 1 "unauthorized user" for a key it does not know).
    pub async fn check(&self) -> Result<(), HueError> {
        let v = self.get("lights").await?;
        match first_error(&v) {
            Some(e) => Err(e),
            None if v.is_object() => Ok(()),
            None => Err(HueError::Protocol("no lights object".into())),
        }
    }

    async fn get(&self, rest: &str) -> Result<Value, HueError> {
        let resp = self
            .http
            .get(self.url(rest)?)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(HueError::network)?;
        answer(resp).await
    }

    /// Sets a light; the bridge's per-attribute errors when the rest was applied.
    pub async fn put_light(&self, id: &str, state: &LampState) -> Result<Vec<String>, HueError> {
        self.put(&format!("lights/{id}/state"), state).await
    }

    /// Sets a group (room, zone, or group 0 = all); the bridge's per-attribute errors.
    pub async fn put_group(&self, id: &str, state: &LampState) -> Result<Vec<String>, HueError> {
        self.put(&format!("groups/{id}/action"), state).await
    }

    async fn put(&self, rest: &str, state: &LampState) -> Result<Vec<String>, HueError> {
        let resp = self
            .http
            .put(self.url(rest)?)
            .json(&body(state))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(HueError::network)?;
        applied(&answer(resp).await?)
    }

    /// Lights and groups (rooms, zones, light groups, and group 0 for every light).
    pub async fn inventory(&self) -> Result<Inventory, HueError> {
        let lights = self.get("lights").await?;
        // A wrong key is a 200 with an error array, not an empty list.
        if let Some(e) = first_error(&lights) {
            return Err(e);
        }
        let groups = self.get("groups").await?;
        if let Some(e) = first_error(&groups) {
            return Err(e);
        }
        Ok(inventory(&lights, &groups))
    }
}

/// A 2xx answer's JSON, or the status with the bridge's own words.
async fn answer(resp: reqwest::Response) -> Result<Value, HueError> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.map_err(HueError::network)?;
    let v: Option<Value> = serde_json::from_str(&text).ok();
    if !status.is_success() {
        let said = match v.as_ref().and_then(first_description) {
            Some(d) => d,
            None => text.trim().to_owned(),
        };
        return Err(HueError::from_status(status.as_u16(), &headers, &said));
    }
    v.ok_or_else(|| HueError::Protocol("an answer that is not JSON".into()))
}

/// What a state PUT's answer means: v1 answers per attribute, so a parameter the light
/// lacks (error 6 "parameter, xy, not available") is a warning when the rest was applied;
/// only an answer without any success is an error (as is error 1 anywhere).
pub fn applied(v: &Value) -> Result<Vec<String>, HueError> {
    let items = v.as_array().map(Vec::as_slice).unwrap_or_default();
    let successes = items.iter().filter(|x| x.get("success").is_some()).count();
    match first_error(v) {
        Some(e @ HueError::Unauthorized) => Err(e),
        Some(e) if successes == 0 => Err(e),
        _ => Ok(items
            .iter()
            .filter_map(|x| x["error"]["description"].as_str().map(str::to_owned))
            .collect()),
    }
}

fn name_of(v: &Value) -> String {
    v["name"].as_str().unwrap_or("").to_owned()
}

/// What a v1 light can show, by its `type` (and `capabilities.control.ct` for its whites).
fn palette(l: &Value) -> Palette {
    let ct = &l["capabilities"]["control"]["ct"];
    let n = |k: &str, d: u16| {
        ct[k]
            .as_u64()
            .and_then(|v| u16::try_from(v).ok())
            .unwrap_or(d)
    };
    match l["type"].as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("extended color light" | "color light") => Palette::Colour,
        Some("color temperature light") => Palette::white(n("min", 153), n("max", 500)),
        Some("dimmable light") => Palette::Dimmable,
        Some("on/off light" | "on/off plug-in unit") => Palette::OnOff,
        // A type this code does not know: by the state it reports.
        _ if l["state"].get("xy").is_some() => Palette::Colour,
        _ if l["state"].get("ct").is_some() => Palette::white(n("min", 153), n("max", 500)),
        _ if l["state"].get("bri").is_some() => Palette::Dimmable,
        _ => Palette::OnOff,
    }
}

/// Reads `GET /lights` and `GET /groups` into an inventory (pure). Group 0 (every light) is
/// not listed by the bridge and is added.
pub fn inventory(lights: &Value, groups: &Value) -> Inventory {
    let lamps: Vec<Lamp> = lights
        .as_object()
        .into_iter()
        .flatten()
        .map(|(id, l)| Lamp {
            id: id.clone(),
            number: Some(id.clone()),
            name: name_of(l),
            palette: palette(l),
            problem: (l["state"]["reachable"] == false).then(|| "not reachable".into()),
        })
        .collect();
    let mut out = vec![Group {
        kind: GroupKind::Home,
        id: "0".into(),
        number: Some("0".into()),
        name: "All lights".into(),
        commanded_by: Some("0".into()),
        lamps: lamps.iter().map(|l| l.id.clone()).collect(),
        palette_hint: None,
    }];
    for (id, g) in groups.as_object().into_iter().flatten() {
        let kind = match g["type"].as_str() {
            Some("Room") => GroupKind::Room,
            Some("Zone") => GroupKind::Zone,
            _ => GroupKind::Group,
        };
        let action = &g["action"];
        let palette_hint = if action.get("xy").is_some() {
            Some(Palette::Colour)
        } else if action.get("ct").is_some() {
            Some(Palette::white(153, 500))
        } else if action.get("bri").is_some() {
            Some(Palette::Dimmable)
        } else {
            None
        };
        out.push(Group {
            kind,
            id: id.clone(),
            number: Some(id.clone()),
            name: name_of(g),
            commanded_by: Some(id.clone()),
            lamps: g["lights"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect(),
            palette_hint,
        });
    }
    Inventory { lamps, groups: out }
}

fn first_description(v: &Value) -> Option<String> {
    let e = v.as_array()?.iter().find_map(|x| x.get("error"))?;
    e["description"].as_str().map(str::to_owned)
}

/// The first `{"error": {...}}` of a v1 answer, if any.
pub fn first_error(v: &Value) -> Option<HueError> {
    let e = v.as_array()?.iter().find_map(|x| x.get("error"))?;
    let description = e["description"]
        .as_str()
        .unwrap_or("unknown error")
        .to_owned();
    Some(match e["type"].as_i64() {
        Some(1) => HueError::Unauthorized,
        Some(101) => HueError::LinkButtonNotPressed,
        _ => HueError::Bridge(description),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::lights::Xy;

    #[test]
    fn bodies_table() {
        let on = LampState {
            on: true,
            xy: Some(Xy {
                x: 0.7006,
                y: 0.2993,
            }),
            mirek: None,
            brightness: Some(100.0),
            effect: Effect::None,
            transition_ms: Some(400),
        };
        let mut breathe = on.clone();
        breathe.effect = Effect::Breathe;
        breathe.brightness = Some(40.0);
        breathe.transition_ms = None;
        let white = LampState {
            xy: None,
            mirek: Some(419),
            brightness: Some(25.0),
            ..on.clone()
        };
        let off = LampState {
            on: false,
            xy: None,
            mirek: None,
            brightness: None,
            effect: Effect::None,
            transition_ms: Some(1000),
        };
        let plain_off = LampState {
            transition_ms: None,
            ..off.clone()
        };
        let cases = [
            (
                on,
                json!({"on": true, "bri": 254, "xy": [0.7006, 0.2993], "transitiontime": 4}),
            ),
            (
                breathe,
                json!({"on": true, "bri": 102, "xy": [0.7006, 0.2993], "alert": "lselect"}),
            ),
            (
                white,
                json!({"on": true, "bri": 64, "ct": 419, "transitiontime": 4}),
            ),
            (off, json!({"on": false, "transitiontime": 10})),
            (plain_off, json!({"on": false})),
        ];
        for (state, want) in cases {
            assert_eq!(body(&state), want, "{state:?}");
        }
    }

    #[test]
    fn brightness_maps_to_1_254() {
        for (pct, want) in [
            (0.0, 1),
            (0.1, 1),
            (1.0, 3),
            (50.0, 127),
            (100.0, 254),
            (150.0, 254),
        ] {
            assert_eq!(bri(pct), want, "{pct}");
        }
    }

    #[test]
    fn error_arrays_are_classified() {
        let e = first_error(
            &json!([{"error": {"type": 1, "address": "/", "description": "unauthorized user"}}]),
        );
        assert!(matches!(e, Some(HueError::Unauthorized)));
        let e = first_error(
            &json!([{"error": {"type": 101, "description": "link button not pressed"}}]),
        );
        assert!(matches!(e, Some(HueError::LinkButtonNotPressed)));
        assert!(first_error(&json!([{"success": {"/lights/1/state/on": true}}])).is_none());
    }

    /// A parameter the light lacks is refused alone; the rest is applied (issue 28, item 2).
    #[test]
    fn a_partly_applied_state_is_a_warning_and_an_unapplied_one_an_error() {
        let partly = json!([
            {"success": {"/lights/72/state/on": true}},
            {"error": {"type": 6, "address": "/lights/72/state/xy", "description": "parameter, xy, not available"}}
        ]);
        assert_eq!(applied(&partly).unwrap(), ["parameter, xy, not available"]);
        let none = json!([{"error": {"type": 3, "address": "/lights/9", "description": "resource, /lights/9, not available"}}]);
        assert!(matches!(applied(&none), Err(HueError::Bridge(d)) if d.contains("/lights/9")));
        let key =
            json!([{"error": {"type": 1, "address": "/", "description": "unauthorized user"}}]);
        assert!(matches!(applied(&key), Err(HueError::Unauthorized)));
    }

    #[test]
    fn v1_types_tell_what_a_light_can_show() {
        let lights = json!({
            "1": {"name": "Colour", "type": "Extended color light", "state": {"reachable": true}},
            "2": {"name": "White", "type": "Color temperature light",
                  "capabilities": {"control": {"ct": {"min": 153, "max": 454}}}, "state": {"reachable": false}},
            "3": {"name": "Dim", "type": "Dimmable light", "state": {}},
            "4": {"name": "Plug", "type": "On/Off plug-in unit", "state": {}}
        });
        let groups = json!({"5": {"name": "Office", "type": "Room", "lights": ["1", "2"], "action": {"on": false}}});
        let inv = inventory(&lights, &groups);
        let p: Vec<Palette> = inv.lamps.iter().map(|l| l.palette).collect();
        assert_eq!(
            p,
            [
                Palette::Colour,
                Palette::white(153, 454),
                Palette::Dimmable,
                Palette::OnOff
            ]
        );
        assert_eq!(inv.lamps[1].problem.as_deref(), Some("not reachable"));
        assert_eq!(inv.groups[0].number.as_deref(), Some("0"));
        assert_eq!(inv.groups[0].lamps.len(), 4);
        assert_eq!(inv.groups[1].kind, GroupKind::Room);
        assert_eq!(inv.groups[1].lamps, ["1", "2"]);
    }
}
