//! The cloud's presence API as an edge reads it: `GET {base}/api/presence/{userId}`, the
//! last known presence as a topic message (the body is parsed by `crate::core::message`,
//! the one module that knows it).
//!
//! One key serves both deployments: the Functions host checks `x-functions-key` (the
//! `presence-get` function key), `serve` checks `Authorization: Bearer` (its
//! `PRESENCE_API_TOKEN`); the key is sent in both headers, never in the URL (URLs end up in
//! logs).

use crate::clients::tls::LazyClient;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// Why a read failed. The user id and status are safe to log; the key never appears.
#[derive(Debug, thiserror::Error)]
pub enum PresenceApiError {
    /// Network trouble or a timeout.
    #[error("presence API unreachable: {0}")]
    Network(String),
    /// 401/403: the key is wrong or missing.
    #[error("presence API refused the key (HTTP {0}); check PRESENCE_API_KEY")]
    Unauthorized(u16),
    /// Any other non-2xx answer.
    #[error("presence API answered HTTP {0}")]
    Status(u16),
}

/// A client for one deployment's presence API.
#[derive(Clone, Debug)]
pub struct PresenceApi {
    http: LazyClient,
    base: String,
    key: Option<SecretString>,
}

impl PresenceApi {
    /// A client for `base` (`https://<app>.azurewebsites.net` or `http://<host>:7071`).
    pub fn new(base: &Url, key: Option<SecretString>, timeout: Duration) -> Self {
        let http =
            LazyClient::new(move |b| b.connect_timeout(Duration::from_secs(5)).timeout(timeout));
        Self {
            http,
            base: base.as_str().trim_end_matches('/').to_owned(),
            key,
        }
    }

    /// The last known presence of `user_id` as a message body, or `None` if the cloud has
    /// never seen the user (404).
    pub async fn current(&self, user_id: &str) -> Result<Option<Vec<u8>>, PresenceApiError> {
        let id = percent_encoding::utf8_percent_encode(user_id, percent_encoding::NON_ALPHANUMERIC);
        let mut req = self.http.get(format!("{}/api/presence/{id}", self.base));
        if let Some(key) = &self.key {
            req = req
                .header("x-functions-key", key.expose_secret())
                .bearer_auth(key.expose_secret());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| PresenceApiError::Network(e.without_url().to_string()))?;
        match resp.status().as_u16() {
            200..=299 => resp
                .bytes()
                .await
                .map(|b| Some(b.to_vec()))
                .map_err(|e| PresenceApiError::Network(e.without_url().to_string())),
            404 => Ok(None),
            s @ (401 | 403) => Err(PresenceApiError::Unauthorized(s)),
            s => Err(PresenceApiError::Status(s)),
        }
    }
}
