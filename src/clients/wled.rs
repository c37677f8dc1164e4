//! WLED's JSON API: **the only module that knows it**. A light state becomes one
//! `POST /json/state` (<https://kno.wled.ge/interfaces/json-api/>):
//!
//! ```json
//! {"on": true, "bri": 204, "transition": 4, "seg": [{"col": [[255, 0, 0]], "fx": 0}]}
//! ```
//!
//! `bri` is 0..=255, `transition` is in tenths of a second, `fx` 0 is Solid and 2 is
//! Breathe. Off is `{"on": false}`. `doctor` reads `GET /json/info` (name and version).

use std::time::Duration;

use serde_json::{json, Value};
use url::Url;

use crate::core::lights::{Effect, LightState};

/// WLED's effect ids (the `fx` field): Solid and Breathe.
const FX_SOLID: u8 = 0;
const FX_BREATHE: u8 = 2;

/// Why WLED did not take a state.
#[derive(Debug, thiserror::Error)]
pub enum WledError {
    /// No answer.
    #[error("WLED not reachable: {0}")]
    Network(String),
    /// An error status.
    #[error("WLED answered {0}")]
    Status(u16),
}

/// The `/json/state` body for a light state (pure).
pub fn state_body(s: &LightState) -> Value {
    if !s.on {
        return json!({ "on": false });
    }
    let [r, g, b] = s.rgb();
    let bri = (s.brightness.unwrap_or(100.0).clamp(0.0, 100.0) * 255.0 / 100.0).round() as u8;
    let mut v = json!({
        "on": true,
        "bri": bri,
        "seg": [{
            "col": [[r, g, b]],
            "fx": if s.effect == Effect::Breathe { FX_BREATHE } else { FX_SOLID },
        }],
    });
    if let Some(ms) = s.transition_ms {
        v["transition"] = json!((ms + 50) / 100);
    }
    v
}

/// One WLED controller.
#[derive(Debug, Clone)]
pub struct WledClient {
    http: reqwest::Client,
    base: Url,
}

impl WledClient {
    /// A client for the controller at `base` (`http://wled.lan`), 5 s timeout.
    pub fn new(base: Url) -> Self {
        Self::with_timeout(base, Duration::from_secs(5))
    }

    /// With its own timeout (tests).
    pub fn with_timeout(base: Url, timeout: Duration) -> Self {
        let http = crate::clients::tls::client_builder()
            .timeout(timeout)
            .build()
            .expect("a plain client builds");
        Self { http, base }
    }

    /// The controller's host, for people.
    pub fn host(&self) -> String {
        self.base.host_str().unwrap_or_default().to_owned()
    }

    fn url(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        u.set_path(&format!("{}{path}", self.base.path().trim_end_matches('/')));
        u
    }

    /// Shows a light state.
    pub async fn apply(&self, s: &LightState) -> Result<(), WledError> {
        let r = self
            .http
            .post(self.url("/json/state"))
            .json(&state_body(s))
            .send()
            .await
            .map_err(|e| WledError::Network(e.without_url().to_string()))?;
        match r.status().as_u16() {
            200..=299 => Ok(()),
            s => Err(WledError::Status(s)),
        }
    }

    /// `GET /json/info`: `name (version)`.
    pub async fn info(&self) -> Result<String, WledError> {
        let r = self
            .http
            .get(self.url("/json/info"))
            .send()
            .await
            .map_err(|e| WledError::Network(e.without_url().to_string()))?;
        if !r.status().is_success() {
            return Err(WledError::Status(r.status().as_u16()));
        }
        let v: Value = r
            .json()
            .await
            .map_err(|e| WledError::Network(e.without_url().to_string()))?;
        Ok(format!(
            "{} ({})",
            v["name"].as_str().unwrap_or("WLED"),
            v["ver"].as_str().unwrap_or("unknown version")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::lights::hex_to_xy;

    #[test]
    fn state_bodies() {
        let red = LightState {
            on: true,
            xy: hex_to_xy("#ff0000"),
            rgb: Some([255, 0, 0]),
            brightness: Some(80.0),
            effect: Effect::None,
            transition_ms: Some(400),
        };
        assert_eq!(
            state_body(&red),
            json!({"on": true, "bri": 204, "transition": 4, "seg": [{"col": [[255, 0, 0]], "fx": 0}]})
        );
        let breathe = LightState {
            effect: Effect::Breathe,
            transition_ms: None,
            brightness: None,
            ..red
        };
        assert_eq!(
            state_body(&breathe),
            json!({"on": true, "bri": 255, "seg": [{"col": [[255, 0, 0]], "fx": 2}]})
        );
        assert_eq!(state_body(&LightState::off()), json!({"on": false}));
    }

    #[test]
    fn paths_keep_a_base_path() {
        let c = WledClient::new("http://wled.lan/sub/".parse().unwrap());
        assert_eq!(
            c.url("/json/state").as_str(),
            "http://wled.lan/sub/json/state"
        );
        let c = WledClient::new("http://wled.lan".parse().unwrap());
        assert_eq!(c.url("/json/info").as_str(), "http://wled.lan/json/info");
    }
}
