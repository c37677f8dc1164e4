//! Hue CLIP v2: `PUT /clip/v2/resource/light/{id}` and `grouped_light/{id}` with the
//! `hue-application-key` header (Hue developer docs, CLIP API v2). The only module that knows v2's JSON.
//!
//! The real bridge speaks HTTPS only, with a certificate whose CN is the bridge id, signed by
//! the Hue root CA: [`super::connect`] builds the client that trusts only those roots and
//! maps the bridge id to its address. This module takes that client and a base URL, so tests
//! can point it at a plain-HTTP fake.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Map, Value};
use url::Url;

use super::{HueError, Listed};
use crate::core::lights::{Effect, LightState};

/// The body of a v2 light/grouped_light PUT (pure).
pub fn body(state: &LightState) -> Value {
    let mut m = Map::new();
    m.insert("on".into(), json!({"on": state.on}));
    if state.on {
        if let Some(b) = state.brightness {
            m.insert("dimming".into(), json!({"brightness": b.clamp(1.0, 100.0)}));
        }
        if let Some(xy) = state.xy {
            m.insert("color".into(), json!({"xy": {"x": xy.x, "y": xy.y}}));
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
            .join(&format!("clip/v2/resource/{rest}"))
            .map_err(|_| HueError::Protocol("cannot build a v2 URL".into()))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, HueError> {
        let resp = req
            .header("hue-application-key", self.key.expose_secret())
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(HueError::network)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(HueError::from_status(status.as_u16(), resp.headers()));
        }
        let v: Value = resp.json().await.map_err(HueError::network)?;
        // 200 and 207 can both carry per-attribute errors.
        if let Some(e) = v["errors"].as_array().and_then(|a| a.first()) {
            return Err(HueError::Bridge(
                e["description"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .to_owned(),
            ));
        }
        Ok(v)
    }

    /// `GET /resource/{path}`, the `data` array.
    pub async fn get(&self, path: &str) -> Result<Vec<Value>, HueError> {
        let v = self.send(self.http.get(self.url(path)?)).await?;
        match v.get("data").and_then(Value::as_array) {
            Some(a) => Ok(a.clone()),
            None => Err(HueError::Protocol(format!("{path}: no data array"))),
        }
    }

    /// Sets a light.
    pub async fn put_light(&self, id: &str, state: &LightState) -> Result<(), HueError> {
        let url = self.url(&format!("light/{id}"))?;
        self.send(self.http.put(url).json(&body(state)))
            .await
            .map(drop)
    }

    /// Sets a grouped_light.
    pub async fn put_grouped_light(&self, id: &str, state: &LightState) -> Result<(), HueError> {
        let url = self.url(&format!("grouped_light/{id}"))?;
        self.send(self.http.put(url).json(&body(state)))
            .await
            .map(drop)
    }

    /// The `grouped_light` service id of a room or zone.
    pub async fn grouped_light_of(&self, kind: &str, id: &str) -> Result<String, HueError> {
        let data = self.get(&format!("{kind}/{id}")).await?;
        data.first()
            .and_then(grouped_light_service)
            .ok_or_else(|| HueError::Protocol(format!("{kind} {id} has no grouped_light service")))
    }

    /// Maps a v1-style number (`/lights/3`, `/groups/2`) to the v2 id, so HUE_TARGETS written
    /// for v1 keep working after a firmware update.
    pub async fn by_v1_id(&self, rtype: &str, v1_path: &str) -> Result<Option<String>, HueError> {
        let data = self.get(rtype).await?;
        Ok(data
            .iter()
            .find(|r| r["id_v1"].as_str() == Some(v1_path))
            .and_then(|r| r["id"].as_str().map(str::to_owned)))
    }

    /// Lights, rooms and zones, for `hue list`.
    pub async fn list(&self) -> Result<Vec<Listed>, HueError> {
        let mut out = Vec::new();
        for l in self.get("light").await? {
            out.push(Listed {
                target: format!("light:{}", l["id"].as_str().unwrap_or("?")),
                name: l["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                detail: l["id_v1"].as_str().unwrap_or("").to_owned(),
            });
        }
        for kind in ["room", "zone"] {
            for r in self.get(kind).await? {
                out.push(Listed {
                    target: format!("{kind}:{}", r["id"].as_str().unwrap_or("?")),
                    name: r["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                    detail: format!("{} devices", r["children"].as_array().map_or(0, Vec::len)),
                });
            }
        }
        Ok(out)
    }
}

/// The `rid` of the `grouped_light` in a room/zone's `services` (pure).
pub fn grouped_light_service(resource: &Value) -> Option<String> {
    resource["services"]
        .as_array()?
        .iter()
        .find(|s| s["rtype"] == "grouped_light")
        .and_then(|s| s["rid"].as_str().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::lights::Xy;

    #[test]
    fn bodies_table() {
        let on = LightState {
            on: true,
            xy: Some(Xy {
                x: 0.1724,
                y: 0.7468,
            }),
            rgb: None,
            brightness: Some(70.0),
            effect: Effect::None,
            transition_ms: Some(400),
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
            (LightState::off(), json!({"on": {"on": false}})),
        ];
        for (state, want) in cases {
            assert_eq!(body(&state), want, "{state:?}");
        }
    }

    #[test]
    fn finds_the_grouped_light_service() {
        let room = json!({"id": "r1", "services": [
            {"rid": "x", "rtype": "light"}, {"rid": "g1", "rtype": "grouped_light"}]});
        assert_eq!(grouped_light_service(&room).as_deref(), Some("g1"));
        assert_eq!(grouped_light_service(&json!({"services": []})), None);
        assert_eq!(grouped_light_service(&json!({})), None);
    }
}
