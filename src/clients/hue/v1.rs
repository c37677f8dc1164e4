//! Hue CLIP v1: `PUT /api/{key}/lights/{id}/state` and `/groups/{id}/action` over HTTP, for
//! bridges without CLIP v2 (Hue developer docs, CLIP API v1). The only module that knows v1's JSON.
//!
//! The application key is part of every v1 path, so no URL from this module is ever logged
//! or put into an error (`reqwest::Error::without_url`).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Map, Value};
use url::Url;

use super::{HueError, Listed};
use crate::core::lights::{Effect, LightState};

/// The body of a v1 state/action PUT (pure).
pub fn body(state: &LightState) -> Value {
    let mut m = Map::new();
    m.insert("on".into(), json!(state.on));
    if state.on {
        if let Some(b) = state.brightness {
            m.insert("bri".into(), json!(bri(b)));
        }
        if let Some(xy) = state.xy {
            m.insert("xy".into(), json!([xy.x, xy.y]));
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

    /// `GET /api/{key}/config`: whether the key works (v1 answers 200 with an error array
    /// for a wrong key).
    pub async fn check(&self) -> Result<(), HueError> {
        let v = self.get("config").await?;
        if v.get("bridgeid").is_some() || v.get("whitelist").is_some() {
            return Ok(());
        }
        Err(first_error(&v).unwrap_or_else(|| HueError::Protocol("no bridge config".into())))
    }

    async fn get(&self, rest: &str) -> Result<Value, HueError> {
        let resp = self
            .http
            .get(self.url(rest)?)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(HueError::network)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(HueError::from_status(status.as_u16(), resp.headers()));
        }
        resp.json().await.map_err(HueError::network)
    }

    /// Sets a light.
    pub async fn put_light(&self, id: &str, state: &LightState) -> Result<(), HueError> {
        self.put(&format!("lights/{id}/state"), state).await
    }

    /// Sets a group (room, zone, or group 0 = all).
    pub async fn put_group(&self, id: &str, state: &LightState) -> Result<(), HueError> {
        self.put(&format!("groups/{id}/action"), state).await
    }

    async fn put(&self, rest: &str, state: &LightState) -> Result<(), HueError> {
        let resp = self
            .http
            .put(self.url(rest)?)
            .json(&body(state))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(HueError::network)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(HueError::from_status(status.as_u16(), resp.headers()));
        }
        let v: Value = resp.json().await.map_err(HueError::network)?;
        match first_error(&v) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Lights and groups, for `hue list`.
    pub async fn list(&self) -> Result<Vec<Listed>, HueError> {
        let mut out = Vec::new();
        let lights = self.get("lights").await?;
        // A wrong key is a 200 with an error array, not an empty list.
        if let Some(e) = first_error(&lights) {
            return Err(e);
        }
        for (id, l) in lights.as_object().into_iter().flatten() {
            out.push(Listed {
                target: format!("light:{id}"),
                name: name_of(l),
                detail: l["type"].as_str().unwrap_or("").to_owned(),
            });
        }
        let groups = self.get("groups").await?;
        if let Some(e) = first_error(&groups) {
            return Err(e);
        }
        for (id, g) in groups.as_object().into_iter().flatten() {
            let kind = match g["type"].as_str() {
                Some("Room") => "room",
                Some("Zone") => "zone",
                _ => "group",
            };
            out.push(Listed {
                target: format!("{kind}:{id}"),
                name: name_of(g),
                detail: format!("{} lights", g["lights"].as_array().map_or(0, Vec::len)),
            });
        }
        Ok(out)
    }
}

fn name_of(v: &Value) -> String {
    v["name"].as_str().unwrap_or("").to_owned()
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
        let on = LightState {
            on: true,
            xy: Some(Xy {
                x: 0.7006,
                y: 0.2993,
            }),
            rgb: None,
            brightness: Some(100.0),
            effect: Effect::None,
            transition_ms: Some(400),
        };
        let mut breathe = on.clone();
        breathe.effect = Effect::Breathe;
        breathe.brightness = Some(40.0);
        breathe.transition_ms = None;
        let mut off = LightState::off();
        off.transition_ms = Some(1000);
        let cases = [
            (
                on,
                json!({"on": true, "bri": 254, "xy": [0.7006, 0.2993], "transitiontime": 4}),
            ),
            (
                breathe,
                json!({"on": true, "bri": 102, "xy": [0.7006, 0.2993], "alert": "lselect"}),
            ),
            (off, json!({"on": false, "transitiontime": 10})),
            (LightState::off(), json!({"on": false})),
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
}
