//! The outgoing webhook: **the only module that knows its signature scheme**. Each change is
//! POSTed as JSON (the topic message, `core::message`) with
//!
//! ```text
//! X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
//! ```
//!
//! so a receiver can check both who sent it and (with `t`) that it is not an old replay.
//! A 5xx, a 429 or a network error is retried with back-off (a few times here; the sink
//! task retries the latest state after that); any other 4xx is the receiver refusing it and
//! is not retried.

use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use url::Url;

use crate::core::backoff::Backoff;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "X-Signature";

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// No answer (connection refused, timeout, TLS).
    #[error("webhook not reachable: {0}")]
    Network(String),
    /// The receiver answered with an error status.
    #[error("webhook answered {0}")]
    Status(u16),
}

impl WebhookError {
    /// Worth trying again: the receiver may take it later.
    pub fn is_transient(&self) -> bool {
        match self {
            WebhookError::Network(_) => true,
            WebhookError::Status(s) => *s >= 500 || *s == 429 || *s == 408,
        }
    }
}

/// `t=<t>,v1=<hex>`: the signature header's value for `body` sent at unix second `t`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

/// A receiver's check (for tests and for people writing receivers): the header matches the
/// body and `t` is within `tolerance` seconds of `now`. Constant-time comparison.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance: i64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = Some(v.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if (now - t).abs() > tolerance {
        return false;
    }
    let Some(given) = (0..v1.len())
        .step_by(2)
        .map(|i| {
            v1.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// Posts signed JSON to one URL.
#[derive(Debug, Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    url: Url,
    secret: SecretString,
    attempts: u32,
    backoff: Duration,
}

impl WebhookClient {
    /// A client with a 10 s timeout, 3 attempts and back-off from 1 s.
    pub fn new(url: Url, secret: SecretString) -> Self {
        Self::with_timing(
            url,
            secret,
            Duration::from_secs(10),
            3,
            Duration::from_secs(1),
        )
    }

    /// A client with its own timing (tests).
    pub fn with_timing(
        url: Url,
        secret: SecretString,
        timeout: Duration,
        attempts: u32,
        backoff: Duration,
    ) -> Self {
        let http = crate::clients::tls::client_builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a plain client builds");
        Self {
            http,
            url,
            secret,
            attempts: attempts.max(1),
            backoff,
        }
    }

    /// The URL (for the status page: host only, the path may hold a token).
    pub fn host(&self) -> String {
        self.url.host_str().unwrap_or_default().to_owned()
    }

    /// One POST, signed with the time now.
    async fn post_once(&self, body: &[u8]) -> Result<(), WebhookError> {
        let t = chrono::Utc::now().timestamp();
        let sig = signature(self.secret.expose_secret().as_bytes(), t, body);
        let r = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sig)
            .body(body.to_vec())
            .send()
            .await
            // Without the URL: its path or query may carry a token.
            .map_err(|e| WebhookError::Network(e.without_url().to_string()))?;
        match r.status().as_u16() {
            200..=299 => Ok(()),
            s => Err(WebhookError::Status(s)),
        }
    }

    /// Delivers `body`, retrying transient failures with doubling back-off.
    pub async fn deliver(&self, body: &[u8]) -> Result<(), WebhookError> {
        // No cap: the attempts bound it.
        let mut backoff = Backoff::new(self.backoff, Duration::MAX);
        let mut attempt = 1;
        loop {
            match self.post_once(body).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() && attempt < self.attempts => {
                    tracing::info!(error = %e, attempt, "webhook delivery failed; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `doctor`: whether the URL answers at all (any HTTP status counts; a HEAD, unsigned).
    pub async fn reachable(&self) -> Result<u16, WebhookError> {
        self.http
            .head(self.url.clone())
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| WebhookError::Network(e.without_url().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_over_t_dot_body() {
        // Independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac s3cret
        let sig = signature(b"s3cret", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            sig,
            "t=1700000000,v1=1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940"
        );
        assert!(verify(b"s3cret", &sig, br#"{"a":1}"#, 1_700_000_010, 300));
        assert!(!verify(b"s3cret", &sig, br#"{"a":2}"#, 1_700_000_010, 300));
        assert!(!verify(b"other", &sig, br#"{"a":1}"#, 1_700_000_010, 300));
        assert!(!verify(b"s3cret", &sig, br#"{"a":1}"#, 1_700_009_999, 300));
        assert!(!verify(b"s3cret", "t=1,v1=zz", b"", 1, 300));
    }

    #[test]
    fn only_server_errors_and_timeouts_are_retried() {
        assert!(WebhookError::Status(500).is_transient());
        assert!(WebhookError::Status(429).is_transient());
        assert!(WebhookError::Network("x".into()).is_transient());
        assert!(!WebhookError::Status(400).is_transient());
        assert!(!WebhookError::Status(401).is_transient());
    }
}
