//! Hue CLIP v2: `PUT /clip/v2/resource/light/{id}` and `grouped_light/{id}` with the
//! `hue-application-key` header (Hue developer docs, CLIP API v2). The only module that knows v2's JSON.
//!
//! The real bridge speaks HTTPS only, with a certificate whose CN is the bridge id, signed by
//! the Hue root CA: [`super::connect`] builds the client that trusts only those roots and
//! maps the bridge id to its address. This module takes that client and a base URL, so tests
//! can point it at a plain-HTTP fake.

use std::collections::HashMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Map, Value};
use url::Url;

use super::inventory::{Group, GroupKind, Inventory, Lamp};
use super::HueError;
use crate::core::lights::{Effect, LampState, Palette};

/// The body of a v2 light/grouped_light PUT (pure).
pub fn body(state: &LampState) -> Value {
    let mut m = Map::new();
    m.insert("on".into(), json!({"on": state.on}));
    if state.on {
        if let Some(b) = state.brightness {
            m.insert("dimming".into(), json!({"brightness": b.clamp(1.0, 100.0)}));
        }
        if let Some(xy) = state.xy {
            m.insert("color".into(), json!({"xy": {"x": xy.x, "y": xy.y}}));
        }
        if let Some(mirek) = state.mirek {
            m.insert("color_temperature".into(), json!({"mirek": mirek}));
        }
        if state.effect == Effect::Breathe {
            m.insert("alert".into(), json!({"action": "breathe"}));
        }
    }
    if let Some(ms) = state.transition_ms {
        m.insert("dynamics".into(), json!({"duration": ms}));
    }
    Value::Object(m)
}

/// The `description`s of an answer's `errors` array.
fn descriptions(v: &Value) -> Vec<String> {
    v["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            e["description"]
                .as_str()
                .unwrap_or("unknown error")
                .to_owned()
        })
        .collect()
}

/// A v2 bridge.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    key: SecretString,
}

impl Client {
    /// `base` is `https://{bridge id}/` (or a fake's `http://127.0.0.1:PORT/`).
    pub fn new(http: reqwest::Client, base: Url, key: SecretString) -> Self {
        Self { http, base, key }
    }

    fn url(&self, rest: &str) -> Result<Url, HueError> {
        self.base
            .join(&format!("clip/v2/resource{rest}"))
            .map_err(|_| HueError::Protocol("cannot build a v2 URL".into()))
    }

    /// Sends a request; a 2xx answer (200, or 207 "resource has been updated" with
    /// per-attribute errors) with its `errors` descriptions as warnings, anything else an
    /// error that keeps the bridge's own words.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(Value, Vec<String>), HueError> {
        let resp = req
            .header("hue-application-key", self.key.expose_secret())
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(HueError::network)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(HueError::network)?;
        let v: Option<Value> = serde_json::from_str(&text).ok();
        if !status.is_success() {
            let said = v.as_ref().map(descriptions).unwrap_or_default().join("; ");
            let said = if said.is_empty() {
                text.trim().to_owned()
            } else {
                said
            };
            return Err(HueError::from_status(status.as_u16(), &headers, &said));
        }
        let v = v.ok_or_else(|| HueError::Protocol("an answer that is not JSON".into()))?;
        let warnings = descriptions(&v);
        Ok((v, warnings))
    }

    /// `GET /resource/{path}`, the `data` array.
    pub async fn get(&self, path: &str) -> Result<Vec<Value>, HueError> {
        let rest = if path.is_empty() {
            String::new()
        } else {
            format!("/{path}")
        };
        let (v, _) = self.send(self.http.get(self.url(&rest)?)).await?;
        match v.get("data").and_then(Value::as_array) {
            Some(a) => Ok(a.clone()),
            None => Err(HueError::Protocol(format!("{path}: no data array"))),
        }
    }

    /// Sets a light; the bridge's warnings (a 207 for a light that does not answer).
    pub async fn put_light(&self, id: &str, state: &LampState) -> Result<Vec<String>, HueError> {
        let url = self.url(&format!("/light/{id}"))?;
        self.send(self.http.put(url).json(&body(state)))
            .await
            .map(|(_, w)| w)
    }

    /// Sets a grouped_light; the bridge's warnings.
    pub async fn put_grouped_light(
        &self,
        id: &str,
        state: &LampState,
    ) -> Result<Vec<String>, HueError> {
        let url = self.url(&format!("/grouped_light/{id}"))?;
        self.send(self.http.put(url).json(&body(state)))
            .await
            .map(|(_, w)| w)
    }

    /// Every resource (one `GET /clip/v2/resource`), read into an [`Inventory`].
    pub async fn inventory(&self) -> Result<Inventory, HueError> {
        Ok(inventory(&self.get("").await?))
    }
}

/// The v1 number of an `id_v1` (`/lights/72` → `72`).
fn number(r: &Value) -> Option<String> {
    let v1 = r["id_v1"].as_str()?;
    let n = v1.rsplit('/').next()?;
    (!n.is_empty() && n.chars().all(|c| c.is_ascii_digit())).then(|| n.to_owned())
}

/// What a light (or a grouped_light, by the features it lists) can show.
fn palette(r: &Value) -> Palette {
    if r.get("color").is_some() {
        Palette::Colour
    } else if let Some(ct) = r.get("color_temperature") {
        let schema = &ct["mirek_schema"];
        let n = |k: &str, d: u16| {
            schema[k]
                .as_u64()
                .and_then(|v| u16::try_from(v).ok())
                .unwrap_or(d)
        };
        Palette::white(n("mirek_minimum", 153), n("mirek_maximum", 500))
    } else if r.get("dimming").is_some() {
        Palette::Dimmable
    } else {
        Palette::OnOff
    }
}

/// The `rid`s of one service type a resource lists.
fn services<'a>(r: &'a Value, rtype: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    r["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |s| s["rtype"] == rtype)
        .filter_map(|s| s["rid"].as_str())
}

/// Reads a bridge's resources (the `data` of `GET /clip/v2/resource`) into an inventory
/// (pure). Lamps are the `light` resources, with the `zigbee_connectivity` status of the
/// device that owns them; rooms list devices (their lights are the devices' light services),
/// zones list lights; each is commanded through the grouped_light among its services. The
/// bridge_home's grouped_light is `group:0`.
pub fn inventory(resources: &[Value]) -> Inventory {
    let by_id: HashMap<&str, &Value> = resources
        .iter()
        .filter_map(|r| Some((r["id"].as_str()?, r)))
        .collect();
    let of_type = |t: &'static str| resources.iter().filter(move |r| r["type"] == t);
    // Device → its connectivity, when it is not "connected".
    let trouble: HashMap<&str, String> = of_type("zigbee_connectivity")
        .filter(|z| z["status"] != "connected")
        .filter_map(|z| {
            Some((
                z["owner"]["rid"].as_str()?,
                z["status"].as_str().unwrap_or("not connected").to_owned(),
            ))
        })
        .collect();
    let lamps: Vec<Lamp> = of_type("light")
        .filter_map(|l| {
            Some(Lamp {
                id: l["id"].as_str()?.to_owned(),
                number: number(l),
                name: l["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                palette: palette(l),
                problem: l["owner"]["rid"]
                    .as_str()
                    .and_then(|d| trouble.get(d).cloned()),
            })
        })
        .collect();
    let lights_of_child = |c: &Value| -> Vec<String> {
        let rid = c["rid"].as_str().unwrap_or_default();
        match c["rtype"].as_str() {
            Some("light") => vec![rid.to_owned()],
            Some("device") => by_id
                .get(rid)
                .map(|d| services(d, "light").map(str::to_owned).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    };
    let mut groups = Vec::new();
    for (t, kind) in [
        ("room", GroupKind::Room),
        ("zone", GroupKind::Zone),
        ("bridge_home", GroupKind::Home),
    ] {
        for g in of_type(t) {
            let Some(id) = g["id"].as_str() else { continue };
            let commanded_by = services(g, "grouped_light").next().map(str::to_owned);
            let lamps = if kind == GroupKind::Home {
                lamps.iter().map(|l| l.id.clone()).collect()
            } else {
                g["children"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(lights_of_child)
                    .collect()
            };
            let palette_hint = commanded_by
                .as_deref()
                .and_then(|gl| by_id.get(gl))
                .map(|gl| palette(gl));
            groups.push(Group {
                kind,
                id: id.to_owned(),
                number: number(g).or_else(|| (kind == GroupKind::Home).then(|| "0".into())),
                name: match kind {
                    GroupKind::Home => "All lights".into(),
                    _ => g["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                },
                commanded_by,
                lamps,
                palette_hint,
            });
        }
    }
    Inventory { lamps, groups }
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
                x: 0.1724,
                y: 0.7468,
            }),
            mirek: None,
            brightness: Some(70.0),
            effect: Effect::None,
            transition_ms: Some(400),
        };
        let white = LampState {
            xy: None,
            mirek: Some(454),
            brightness: Some(25.0),
            ..on.clone()
        };
        let off = LampState {
            on: false,
            xy: None,
            mirek: None,
            brightness: None,
            effect: Effect::None,
            transition_ms: Some(2000),
        };
        let mut breathe = on.clone();
        breathe.effect = Effect::Breathe;
        breathe.transition_ms = None;
        let cases = [
            (
                on,
                json!({"on": {"on": true}, "dimming": {"brightness": 70.0},
                       "color": {"xy": {"x": 0.1724, "y": 0.7468}}, "dynamics": {"duration": 400}}),
            ),
            (
                breathe,
                json!({"on": {"on": true}, "dimming": {"brightness": 70.0},
                       "color": {"xy": {"x": 0.1724, "y": 0.7468}}, "alert": {"action": "breathe"}}),
            ),
            (
                white,
                json!({"on": {"on": true}, "dimming": {"brightness": 25.0},
                       "color_temperature": {"mirek": 454}, "dynamics": {"duration": 400}}),
            ),
            (
                off,
                json!({"on": {"on": false}, "dynamics": {"duration": 2000}}),
            ),
        ];
        for (state, want) in cases {
            assert_eq!(body(&state), want, "{state:?}");
        }
    }

    /// The real bridge's layout (tests/fixtures/hue/v2_resources.json, from aiohue's dump).
    #[test]
    fn a_real_bridges_resources_read_into_lamps_rooms_and_zones() {
        let v: Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/hue/v2_resources.json"
        ))
        .unwrap();
        let inv = inventory(v["data"].as_array().unwrap());
        assert_eq!(inv.lamps.len(), 8);
        let lamp = |n: &str| {
            inv.lamps
                .iter()
                .find(|l| l.number.as_deref() == Some(n))
                .unwrap()
        };
        assert_eq!(lamp("72").palette, Palette::white(153, 454));
        assert_eq!(lamp("63").palette, Palette::white(158, 495));
        assert_eq!(lamp("112").palette, Palette::Colour);
        assert_eq!(lamp("120").problem.as_deref(), Some("connectivity_issue"));
        assert_eq!(lamp("112").problem, None);
        let group = |n: &str| {
            inv.groups
                .iter()
                .find(|g| g.number.as_deref() == Some(n))
                .unwrap()
        };
        let room9 = group("104");
        assert_eq!(
            (room9.kind, room9.commanded_by.as_deref()),
            (GroupKind::Room, None)
        );
        assert_eq!(room9.lamps.len(), 4, "Room 9's devices own four lights");
        let zone8 = group("105");
        assert_eq!(zone8.kind, GroupKind::Zone);
        assert_eq!(
            zone8.lamps,
            [
                "7ebc892a-46fe-0a90-cd0c-87836247edda",
                "f427202e-d8cd-cb0e-479f-72955a2d7cbe"
            ]
        );
        let room8 = group("115");
        assert_eq!(
            room8.commanded_by.as_deref(),
            Some("e7587e55-8538-65d5-0fcf-e9e9905bd016")
        );
        assert!(room8.lamps.is_empty());
        assert_eq!(room8.palette_hint, Some(Palette::white(153, 500)));
        let home = group("0");
        assert_eq!(home.kind, GroupKind::Home);
        assert_eq!(home.lamps.len(), 8);
    }
}
