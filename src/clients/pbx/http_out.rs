//! The generic outbound PBX request: one HTTP request per status change, to a URL template
//! the PBX (or a small script in front of it) understands.
//!
//! Settings: `PBX_HTTP_SET_URL` (template with `{extension}` and `{status}`, substituted
//! percent-encoded), `PBX_HTTP_SET_METHOD` (default `PUT`), `PBX_HTTP_HEADERS` (extra
//! `Name: value` headers separated by newlines or `;`, e.g. VTX's `X-C5-Application`),
//! `PBX_HTTP_USERNAME` / `PBX_HTTP_PASSWORD` (Basic auth when a username is set). The body
//! is `{"extension":"101","status":"Away"}`.
//!
//! Header values and the password are secrets: they never reach `Debug`, logs or errors.

use std::fmt;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use url::Url;

use crate::config::ConfigError;
use crate::core::backoff::Backoff;
use crate::core::pbx::model::{Extension, Profile};

/// Tries per status change (the first one included).
pub const MAX_TRIES: u32 = 3;
/// The longest `Retry-After` waited out in place; a longer one is handed to the caller.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// RFC 3986 unreserved characters stay as they are; everything else is encoded, so an
/// extension or a profile name cannot add path segments or query parameters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Headers the client sets itself; `PBX_HTTP_HEADERS` may not override them.
const RESERVED: [&str; 5] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
];

/// Where and how to send status changes.
#[derive(Clone)]
pub struct HttpPbxConfig {
    /// The URL template (`PBX_HTTP_SET_URL`), `{extension}` and `{status}` placeholders.
    pub set_url: String,
    /// `PBX_HTTP_SET_METHOD`, default `PUT`.
    pub method: Method,
    /// `PBX_HTTP_HEADERS`, already parsed (values marked sensitive).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `PBX_HTTP_USERNAME`: Basic auth when set.
    pub username: Option<String>,
    /// `PBX_HTTP_PASSWORD`.
    pub password: Option<SecretString>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// First retry delay; doubles with each retry (with jitter: never more than this step).
    pub retry_base: Duration,
}

impl fmt::Debug for HttpPbxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HttpPbxConfig")
            .field("set_url", &"<template>")
            .field("method", &self.method)
            .field("header_names", &names)
            .field("username", &self.username.as_ref().map(|_| "<set>"))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("retry_base", &self.retry_base)
            .finish()
    }
}

impl HttpPbxConfig {
    /// Reads the `PBX_HTTP_*` settings through `get`; `Ok(None)` when `PBX_HTTP_SET_URL` is
    /// unset (the adapter is off). Errors name the setting and never quote a secret.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let Some(set_url) = get("PBX_HTTP_SET_URL") else {
            return Ok(None);
        };
        let invalid = |setting: &str, problem: &str| ConfigError {
            setting: setting.to_owned(),
            problem: problem.to_owned(),
        };
        render_url(&set_url, "101", "Available").map_err(|_| {
            invalid(
                "PBX_HTTP_SET_URL",
                "is not an http(s) URL template (expected e.g. https://pbx/api/{extension}/status/{status})",
            )
        })?;
        let method = match get("PBX_HTTP_SET_METHOD") {
            None => Method::PUT,
            Some(m) => match m.trim().to_ascii_uppercase().as_str() {
                "PUT" => Method::PUT,
                "POST" => Method::POST,
                "PATCH" => Method::PATCH,
                _ => {
                    return Err(invalid(
                        "PBX_HTTP_SET_METHOD",
                        "is not valid; expected PUT, POST or PATCH",
                    ))
                }
            },
        };
        let headers = match get("PBX_HTTP_HEADERS") {
            None => Vec::new(),
            Some(h) => parse_headers(&h).map_err(|e| invalid("PBX_HTTP_HEADERS", &e.0))?,
        };
        let username = get("PBX_HTTP_USERNAME").map(|u| u.trim().to_owned());
        let password = get("PBX_HTTP_PASSWORD").map(SecretString::from);
        if username.is_none() && password.is_some() {
            return Err(invalid(
                "PBX_HTTP_PASSWORD",
                "is set without PBX_HTTP_USERNAME",
            ));
        }
        Ok(Some(Self {
            set_url: set_url.trim().to_owned(),
            method,
            headers,
            username,
            password,
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_millis(500),
        }))
    }
}

/// A bad `PBX_HTTP_HEADERS` entry: one line naming the entry, never quoting its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HeaderParseError(pub String);

/// Parses `Name: value` entries separated by newlines or `;`. Blank entries are skipped;
/// values are marked sensitive so `http`'s own `Debug` hides them too.
pub fn parse_headers(s: &str) -> Result<Vec<(HeaderName, HeaderValue)>, HeaderParseError> {
    let mut out = Vec::new();
    for (i, entry) in s.split(['\n', ';']).enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let n = i + 1;
        let Some((name, value)) = entry.split_once(':') else {
            return Err(HeaderParseError(format!(
                "entry {n} has no ':' (expected `Name: value`)"
            )));
        };
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            HeaderParseError(format!("entry {n}: the header name is not a valid token"))
        })?;
        if RESERVED.contains(&name.as_str()) {
            return Err(HeaderParseError(format!(
                "entry {n}: {name} is set by the client and cannot be overridden"
            )));
        }
        let value = value.trim();
        if value.is_empty() {
            return Err(HeaderParseError(format!("entry {n} ({name}): empty value")));
        }
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            HeaderParseError(format!(
                "entry {n} ({name}): the value has invalid characters"
            ))
        })?;
        value.set_sensitive(true);
        out.push((name, value));
    }
    Ok(out)
}

/// The template with `{extension}` and `{status}` substituted percent-encoded.
/// `.` and `..` are refused: URL parsers resolve them (encoded or not) as path segments.
pub fn render_url(template: &str, extension: &str, status: &str) -> Result<Url, url::ParseError> {
    if [extension, status]
        .iter()
        .any(|v| matches!(v.trim(), "." | ".."))
    {
        return Err(url::ParseError::RelativeUrlWithoutBase);
    }
    let s = template
        .trim()
        .replace(
            "{extension}",
            &utf8_percent_encode(extension, COMPONENT).to_string(),
        )
        .replace(
            "{status}",
            &utf8_percent_encode(status, COMPONENT).to_string(),
        );
    let url = Url::parse(&s)?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        _ => Err(url::ParseError::EmptyHost),
    }
}

/// Why a status change did not reach the PBX, by what the caller does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpPbxError {
    /// A 4xx other than 429: permanent for this request; fix the settings or the mapping.
    #[error("the PBX refused the status change with HTTP {status}")]
    Rejected {
        /// The HTTP status.
        status: u16,
    },
    /// 429 asking for a longer pause than we wait in place: try again after `retry_after`.
    #[error("the PBX asked to wait {retry_after:?} before the next request")]
    Throttled {
        /// From `Retry-After`.
        retry_after: Duration,
    },
    /// 5xx, 429, timeouts or connection errors on every try: try again later.
    #[error("the PBX is unavailable after {attempts} tries: {detail}")]
    Unavailable {
        /// Tries made.
        attempts: u32,
        /// The last failure (no URL, no header, no secret).
        detail: String,
    },
    /// The template gave no usable URL for this extension and status.
    #[error("no valid PBX URL for this extension and status")]
    InvalidUrl,
}

/// The generic HTTP PBX client. Cheap to clone.
#[derive(Clone)]
pub struct HttpPbx {
    http: reqwest::Client,
    config: HttpPbxConfig,
}

impl fmt::Debug for HttpPbx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpPbx")
            .field("config", &self.config)
            .finish()
    }
}

enum Outcome {
    Done,
    Retry {
        wait: Option<Duration>,
        detail: String,
    },
    Fail(HttpPbxError),
}

impl HttpPbx {
    /// A client for these settings.
    pub fn new(config: HttpPbxConfig) -> Self {
        let http = crate::clients::tls::client_builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(config.timeout)
            .build()
            .expect("TLS backend initialises");
        Self { http, config }
    }

    /// Sends one status change, retrying 5xx, 408, 429 (after `Retry-After`) and transport
    /// failures with exponential backoff, [`MAX_TRIES`] tries in all.
    pub async fn set_profile(
        &self,
        extension: &Extension,
        profile: &Profile,
    ) -> Result<(), HttpPbxError> {
        let url = render_url(&self.config.set_url, &extension.0, profile.as_str())
            .map_err(|_| HttpPbxError::InvalidUrl)?;
        let body = json!({ "extension": extension.0, "status": profile.as_str() });
        // No cap: MAX_TRIES bounds it.
        let mut backoff = Backoff::new(self.config.retry_base, Duration::MAX);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (wait, detail) = match self.try_once(url.clone(), &body).await {
                Outcome::Done => return Ok(()),
                Outcome::Fail(e) => return Err(e),
                Outcome::Retry { wait, detail } => (wait, detail),
            };
            if attempt >= MAX_TRIES {
                return Err(HttpPbxError::Unavailable {
                    attempts: attempt,
                    detail,
                });
            }
            // The step grows with every retry, also one paced by `Retry-After`.
            let step = backoff.next_delay();
            let pause = match wait {
                Some(w) if w > MAX_RETRY_AFTER => {
                    return Err(HttpPbxError::Throttled { retry_after: w })
                }
                Some(w) => w,
                None => step,
            };
            tracing::debug!(%extension, attempt, ?pause, %detail, "PBX status change will be retried");
            tokio::time::sleep(pause).await;
        }
    }

    async fn try_once(&self, url: Url, body: &serde_json::Value) -> Outcome {
        let mut req = self
            .http
            .request(self.config.method.clone(), url)
            .json(body);
        for (name, value) in &self.config.headers {
            req = req.header(name, value);
        }
        if let Some(user) = &self.config.username {
            req = req.basic_auth(
                user,
                self.config.password.as_ref().map(|p| p.expose_secret()),
            );
        }
        let r = match req.send().await {
            Ok(r) => r,
            // without_url: the URL may carry an API key in its query string.
            Err(e) if e.is_builder() => {
                return Outcome::Fail(HttpPbxError::InvalidUrl);
            }
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out"
                } else {
                    "connection failed"
                };
                return Outcome::Retry {
                    wait: None,
                    detail: format!("{what}: {}", e.without_url()),
                };
            }
        };
        let status = r.status();
        if status.is_success() {
            return Outcome::Done;
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Outcome::Retry {
                wait,
                detail: "HTTP 429".into(),
            };
        }
        if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
            return Outcome::Retry {
                wait: None,
                detail: format!("HTTP {}", status.as_u16()),
            };
        }
        Outcome::Fail(HttpPbxError::Rejected {
            status: status.as_u16(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn parse_headers_table() {
        let ok =
            parse_headers("X-C5-Application: 0c7e-guid\nX-Tenant: a;  ; X-Empty-Ok : b ").unwrap();
        let got: Vec<(&str, &str)> = ok
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("x-c5-application", "0c7e-guid"),
                ("x-tenant", "a"),
                ("x-empty-ok", "b")
            ]
        );
        assert!(ok.iter().all(|(_, v)| v.is_sensitive()));
        assert_eq!(parse_headers("").unwrap(), vec![]);
        let bad = [
            ("X-Key secretvalue", "entry 1 has no ':'"),
            (
                "A: b\nBad Name: v",
                "entry 2: the header name is not a valid token",
            ),
            ("A:", "entry 1 (a): empty value"),
            (
                "Content-Type: text/plain",
                "content-type is set by the client",
            ),
            (
                "A: b\u{7f}c",
                "entry 1 (a): the value has invalid characters",
            ),
        ];
        for (input, want) in bad {
            let e = parse_headers(input).unwrap_err().0;
            assert!(e.contains(want), "{input:?}: {e}");
            assert!(!e.contains("secretvalue"));
        }
    }

    #[test]
    fn render_url_encodes_both_placeholders() {
        let cases = [
            (
                "https://pbx/api/{extension}/status/{status}",
                "101",
                "Out of office",
                "https://pbx/api/101/status/Out%20of%20office",
            ),
            (
                "https://pbx/set?ext={extension}&s={status}",
                "1/2",
                "a&b=c",
                "https://pbx/set?ext=1%2F2&s=a%26b%3Dc",
            ),
        ];
        for (t, e, s, want) in cases {
            assert_eq!(render_url(t, e, s).unwrap().as_str(), want);
        }
        assert!(render_url("http://pbx/{extension}/x", "..", "x").is_err());
        assert!(render_url("ftp://pbx/{extension}", "1", "x").is_err());
        assert!(render_url("not a url", "1", "x").is_err());
    }

    #[test]
    fn from_lookup_reads_the_settings_and_names_the_bad_one() {
        let env = |pairs: &[(&str, &str)]| {
            let m: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            move |k: &str| m.get(k).cloned()
        };
        assert!(HttpPbxConfig::from_lookup(env(&[])).unwrap().is_none());
        let c = HttpPbxConfig::from_lookup(env(&[
            ("PBX_HTTP_SET_URL", "https://pbx/{extension}/{status}"),
            ("PBX_HTTP_HEADERS", "X-C5-Application: guid-secret"),
            ("PBX_HTTP_USERNAME", "openapi@1.bus.ent"),
            ("PBX_HTTP_PASSWORD", "pw-secret"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.method, Method::PUT);
        let dbg = format!("{:?}", HttpPbx::new(c));
        assert!(!dbg.contains("secret") && !dbg.contains("openapi"), "{dbg}");
        let bad = [
            (
                vec![("PBX_HTTP_SET_URL", "pbx/{extension}")],
                "PBX_HTTP_SET_URL",
            ),
            (
                vec![
                    ("PBX_HTTP_SET_URL", "https://p/{extension}"),
                    ("PBX_HTTP_SET_METHOD", "GET"),
                ],
                "PBX_HTTP_SET_METHOD",
            ),
            (
                vec![
                    ("PBX_HTTP_SET_URL", "https://p/{extension}"),
                    ("PBX_HTTP_HEADERS", "nocolon-secret"),
                ],
                "PBX_HTTP_HEADERS",
            ),
            (
                vec![
                    ("PBX_HTTP_SET_URL", "https://p/{extension}"),
                    ("PBX_HTTP_PASSWORD", "pw-secret"),
                ],
                "PBX_HTTP_PASSWORD",
            ),
        ];
        for (pairs, setting) in bad {
            let e = HttpPbxConfig::from_lookup(env(&pairs)).unwrap_err();
            assert_eq!(e.setting, setting);
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }
}
