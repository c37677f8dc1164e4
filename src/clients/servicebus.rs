//! Azure Service Bus over its REST API: the one module that speaks it (Microsoft's
//! Service Bus REST reference: send, peek-lock, delete, unlock, SAS).
//!
//! The edge needs only outbound HTTPS, so it uses peek-lock over REST instead of AMQP:
//! `POST {topic}/subscriptions/{sub}/messages/head?timeout=N` (or `POST {queue}/messages/head`
//! for an edge's own queue) long-polls for a message and locks it; the answer's `Location`
//! header is the lock URI (`…/messages/{sequence}/{lock token}`), which is then `DELETE`d
//! (complete), `PUT` (abandon) or `POST`ed (renew the lock). Sending is
//! `POST {topic}/messages` with `BrokerProperties` and custom properties as headers.
//!
//! Authentication is a SAS token from the connection string, signed for the one entity the
//! client talks to (the topic, or the queue): a key whose rule belongs to a queue is only
//! accepted for that queue. Unlike Storage Shared Key, the HMAC key is the key string's UTF-8
//! bytes, *not* its base64 decoding. Tokens are cached and renewed well before they expire. The key never leaves this module and never appears in a
//! log line or an error: it is held in a [`SecretString`].

use crate::clients::tls::LazyClient;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use url::Url;

/// Characters kept as-is by `urlencode` in SAS tokens (RFC 3986 unreserved).
const URLENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// How long a SAS token we create is valid.
const TOKEN_TTL_SECS: i64 = 3600;
/// A cached token is replaced when it has less than this left.
const TOKEN_RENEW_MARGIN_SECS: i64 = 300;

/// Failures a caller branches on: the subscriber loop backs off differently for each.
#[derive(Debug, thiserror::Error)]
pub enum ServiceBusError {
    /// `ServiceBusConnection` cannot be understood (never echoes the value: it holds the key).
    #[error("setting ServiceBusConnection: {0}")]
    BadConnectionString(&'static str),
    /// 401/403: the key or its rights are wrong (Listen to receive, Send to send).
    #[error("Service Bus refused the credentials ({status}): check ServiceBusConnection and that its rule has the {right} right")]
    Unauthorized {
        /// The HTTP status.
        status: u16,
        /// `Listen` or `Send`.
        right: &'static str,
    },
    /// 404/410 on the entity: the topic, subscription or queue does not exist.
    #[error("Service Bus entity {entity} does not exist ({status}): check PRESENCE_TOPIC, PRESENCE_SUBSCRIPTION and PRESENCE_QUEUE")]
    EntityNotFound {
        /// `topic/subscriptions/sub`, `topic` or `queue`.
        entity: String,
        /// The HTTP status.
        status: u16,
    },
    /// 404/410 on a lock URI: the lock expired or the message is gone.
    #[error("message lock lost ({0}); the broker will redeliver the message")]
    LockLost(u16),
    /// Any other unexpected status (5xx, 429, ...): transient.
    #[error("Service Bus answered {status}: {detail}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body.
        detail: String,
    },
    /// The answer is not what the protocol promises (e.g. no `Location` header).
    #[error("unexpected Service Bus answer: {0}")]
    Protocol(String),
    /// Could not reach the namespace: transient.
    #[error("cannot reach Service Bus: {0}")]
    Network(#[source] reqwest::Error),
}

impl ServiceBusError {
    /// Whether retrying soon may help (network trouble, 5xx, 429) as opposed to a
    /// configuration problem that needs a human.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ServiceBusError::Network(_)
                | ServiceBusError::Status { .. }
                | ServiceBusError::LockLost(_)
        )
    }
}

/// A parsed Service Bus connection string. `Debug` never shows the key.
#[derive(Clone)]
pub struct ConnectionString {
    /// Namespace host, e.g. `ns.servicebus.windows.net`.
    pub host: String,
    /// `SharedAccessKeyName`.
    pub key_name: String,
    key: SecretString,
    /// `EntityPath`, when the rule belongs to one entity.
    pub entity_path: Option<String>,
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host", &self.host)
            .field("key_name", &self.key_name)
            .field("key", &"[REDACTED]")
            .field("entity_path", &self.entity_path)
            .finish()
    }
}

impl ConnectionString {
    /// Parses `Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=..;SharedAccessKey=..[;EntityPath=..]`.
    /// Keys are case-insensitive; values may contain `=` (base64 keys end with it).
    pub fn parse(s: &str) -> Result<Self, ServiceBusError> {
        let mut endpoint = None;
        let mut key_name = None;
        let mut key = None;
        let mut entity_path = None;
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                return Err(ServiceBusError::BadConnectionString(
                    "expected Key=Value pairs separated by `;`",
                ));
            };
            let v = v.trim();
            match k.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(v.to_owned()),
                "sharedaccesskeyname" => key_name = Some(v.to_owned()),
                "sharedaccesskey" => key = Some(SecretString::from(v.to_owned())),
                "entitypath" => entity_path = Some(v.to_owned()).filter(|e| !e.is_empty()),
                _ => {} // e.g. UseDevelopmentEmulator: not ours to judge
            }
        }
        let endpoint = endpoint.ok_or(ServiceBusError::BadConnectionString(
            "no Endpoint=sb://<namespace>.servicebus.windows.net/",
        ))?;
        let host = Url::parse(&endpoint)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .filter(|h| !h.is_empty())
            .ok_or(ServiceBusError::BadConnectionString(
                "Endpoint is not a URL such as sb://<namespace>.servicebus.windows.net/",
            ))?;
        Ok(Self {
            host,
            key_name: key_name.ok_or(ServiceBusError::BadConnectionString(
                "no SharedAccessKeyName (Entra ID authentication is not supported by the edge)",
            ))?,
            key: key.ok_or(ServiceBusError::BadConnectionString("no SharedAccessKey"))?,
            entity_path,
        })
    }
}

/// Builds a SAS token (pure). `resource_uri` is signed URL-encoded, as it appears in `sr`.
pub fn sas_token(resource_uri: &str, key_name: &str, key: &SecretString, expiry: i64) -> String {
    let sr = utf8_percent_encode(resource_uri, URLENCODE).to_string();
    let to_sign = format!("{sr}\n{expiry}");
    // The key string's bytes, not its base64 decoding, although the key looks like base64.
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let sig = utf8_percent_encode(&sig, URLENCODE);
    let skn = utf8_percent_encode(key_name, URLENCODE);
    format!("SharedAccessSignature sr={sr}&sig={sig}&se={expiry}&skn={skn}")
}

/// `BrokerProperties` as the broker sends and accepts them (only the fields we use).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BrokerProperties {
    /// The lock token of a peek-locked message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_token: Option<String>,
    /// The broker's sequence number (not our per-user `sequence`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<i64>,
    /// 1 on the first delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_count: Option<u32>,
    /// The message id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// RFC 1123 date until which the lock holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until_utc: Option<String>,
    /// Label/subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Content type of the body, when sending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

impl BrokerProperties {
    /// `LockedUntilUtc` parsed, if present and valid.
    pub fn locked_until(&self) -> Option<DateTime<Utc>> {
        let s = self.locked_until_utc.as_deref()?;
        DateTime::parse_from_rfc2822(s)
            .or_else(|_| DateTime::parse_from_rfc3339(s))
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// The lock URI of a received message (from `Location`, rebased onto the base URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockUri(Url);

impl LockUri {
    /// The URL the lock operations go to.
    pub fn url(&self) -> &Url {
        &self.0
    }
}

/// One peek-locked message.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    /// The body bytes.
    pub body: Vec<u8>,
    /// Parsed `BrokerProperties`.
    pub props: BrokerProperties,
    /// Custom (application) properties, header names lower-cased, quotes stripped.
    pub custom: BTreeMap<String, String>,
    /// Where to complete/abandon/renew.
    pub lock: LockUri,
}

/// Headers that are HTTP or broker machinery, not custom properties.
const NOT_CUSTOM: &[&str] = &[
    "brokerproperties",
    "location",
    "content-type",
    "content-length",
    "date",
    "server",
    "transfer-encoding",
    "strict-transport-security",
    "connection",
];

fn custom_properties(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(k, _)| !NOT_CUSTOM.contains(&k.as_str()))
        .filter_map(|(k, v)| {
            let v = v.to_str().ok()?;
            // Values may come back JSON-quoted (`"High"`).
            let v = v
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(v);
            Some((k.as_str().to_owned(), v.to_owned()))
        })
        .collect()
}

/// Rebases a lock URI onto `base` (pure). The broker answers with its real host even when
/// `SERVICEBUS_ENDPOINT` points us at a proxy or a fake, so only the path and query are kept.
pub fn rebase(base: &Url, location: &str) -> Result<Url, ServiceBusError> {
    let parsed = base
        .join(location)
        .map_err(|_| ServiceBusError::Protocol("Location header is not a URL".into()))?;
    let mut out = base.clone();
    out.set_path(parsed.path());
    out.set_query(parsed.query());
    Ok(out)
}

struct CachedToken {
    value: String,
    expiry: i64,
}

/// A Service Bus REST client for one entity: a topic (sends, and receives from one of its
/// subscriptions) or a queue (receives).
pub struct Client {
    http: LazyClient,
    base: Url,
    conn: ConnectionString,
    /// The topic or queue: what tokens are signed for and where sends go.
    entity: String,
    /// What `peek_lock` reads: `topic/subscriptions/sub` or `queue` (unencoded).
    source: Option<String>,
    token: Mutex<Option<CachedToken>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("servicebus::Client")
            .field("base", &self.base.as_str())
            .field("entity", &self.entity)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `topic`, for sending; [`Client::subscription`] makes it receive from one
    /// of the topic's subscriptions. `base` overrides `https://<namespace host>/`
    /// (`SERVICEBUS_ENDPOINT`).
    pub fn new(
        conn: ConnectionString,
        base: Option<Url>,
        topic: &str,
    ) -> Result<Self, ServiceBusError> {
        let mut base = match base {
            Some(b) => b,
            None => Url::parse(&format!("https://{}/", conn.host))
                .map_err(|_| ServiceBusError::BadConnectionString("Endpoint host is not valid"))?,
        };
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let http = LazyClient::new(|b| {
            b.connect_timeout(Duration::from_secs(15))
                .user_agent(concat!("teams-presence/", env!("CARGO_PKG_VERSION")))
        });
        Ok(Self {
            http,
            base,
            conn,
            entity: topic.to_owned(),
            source: None,
            token: Mutex::new(None),
        })
    }

    /// A client that receives from `queue` (e.g. an edge's own `edge-<name>`, fed by a
    /// filtered topic subscription that auto-forwards into it).
    pub fn queue(
        conn: ConnectionString,
        base: Option<Url>,
        queue: &str,
    ) -> Result<Self, ServiceBusError> {
        let mut c = Self::new(conn, base, queue)?;
        c.source = Some(queue.to_owned());
        Ok(c)
    }

    /// This topic client, receiving from the topic's `subscription`.
    pub fn subscription(mut self, subscription: &str) -> Self {
        self.source = Some(format!("{}/subscriptions/{subscription}", self.entity));
        self
    }

    /// The client for `PRESENCE_TOPIC` from the settings (`ServiceBusConnection`, optionally
    /// `SERVICEBUS_ENDPOINT`). `right` (`Listen`, `Send`) only words the error when the
    /// setting is missing. A connection string scoped to another entity is refused.
    pub fn from_settings(
        settings: &crate::config::Settings,
        right: &str,
    ) -> Result<Self, crate::config::ConfigError> {
        Self::for_entity(
            settings,
            right,
            &settings.service_bus.topic,
            "PRESENCE_TOPIC",
        )
    }

    /// The client that receives from `PRESENCE_TOPIC`'s `subscription`, from the settings.
    pub fn subscription_from_settings(
        settings: &crate::config::Settings,
        subscription: &str,
    ) -> Result<Self, crate::config::ConfigError> {
        Ok(Self::from_settings(settings, "Listen")?.subscription(subscription))
    }

    /// The client that receives from `queue` (`PRESENCE_QUEUE`), from the settings. The
    /// connection string is typically the queue's own listen-only rule (`EntityPath=queue`).
    pub fn queue_from_settings(
        settings: &crate::config::Settings,
        queue: &str,
    ) -> Result<Self, crate::config::ConfigError> {
        let mut c = Self::for_entity(settings, "Listen", queue, "PRESENCE_QUEUE")?;
        c.source = Some(queue.to_owned());
        Ok(c)
    }

    /// `entity` is the value of the setting `entity_setting`, which the error names when the
    /// connection string belongs to another entity.
    fn for_entity(
        settings: &crate::config::Settings,
        right: &str,
        entity: &str,
        entity_setting: &str,
    ) -> Result<Self, crate::config::ConfigError> {
        use crate::config::ConfigError;
        let bad = |e: ServiceBusError| ConfigError {
            setting: "ServiceBusConnection".into(),
            problem: e
                .to_string()
                .trim_start_matches("setting ServiceBusConnection: ")
                .to_owned(),
        };
        let cs = settings.require_service_bus_connection(right)?;
        let conn = ConnectionString::parse(cs.expose_secret()).map_err(bad)?;
        if let Some(path) = &conn.entity_path {
            if !path.eq_ignore_ascii_case(entity) {
                return Err(ConfigError {
                    setting: entity_setting.into(),
                    problem: format!("is {entity:?} but the connection string is for {path:?}"),
                });
            }
        }
        Self::new(conn, settings.service_bus.endpoint.clone(), entity).map_err(bad)
    }

    /// The topic or queue this client talks to.
    pub fn entity(&self) -> &str {
        &self.entity
    }

    /// What [`Client::peek_lock`] reads (`topic/subscriptions/sub` or `queue`), if anything.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// The SAS token for now, from the cache unless it is about to expire.
    fn authorization(&self) -> String {
        let now = Utc::now().timestamp();
        let mut cached = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = cached.as_ref() {
            if t.expiry - now > TOKEN_RENEW_MARGIN_SECS {
                return t.value.clone();
            }
        }
        // Sign for the entity: valid for everything under it (a topic's subscriptions, a
        // queue's messages and locks), and accepted for a namespace-level rule as well as
        // one that belongs to the entity (a queue's listen-only key).
        let resource = format!("https://{}/{}", self.conn.host, self.entity);
        let expiry = now + TOKEN_TTL_SECS;
        let value = sas_token(&resource, &self.conn.key_name, &self.conn.key, expiry);
        *cached = Some(CachedToken {
            value: value.clone(),
            expiry,
        });
        value
    }

    fn url(&self, path: &str) -> Result<Url, ServiceBusError> {
        self.base
            .join(path)
            .map_err(|_| ServiceBusError::Protocol(format!("cannot build a URL for {path}")))
    }

    /// Peek-locks the next message of the subscription or queue, waiting up to `timeout` for
    /// one. `Ok(None)`: none came.
    pub async fn peek_lock(
        &self,
        timeout: Duration,
    ) -> Result<Option<ReceivedMessage>, ServiceBusError> {
        let entity = self.source.clone().ok_or_else(|| {
            ServiceBusError::Protocol("this client has no subscription or queue to read".into())
        })?;
        let path: Vec<String> = entity.split('/').map(enc).collect();
        let mut url = self.url(&format!("{}/messages/head", path.join("/")))?;
        url.query_pairs_mut()
            .append_pair("timeout", &timeout.as_secs().to_string());
        let resp = self
            .http
            .post(url)
            .header(AUTHORIZATION, self.authorization())
            .header(reqwest::header::CONTENT_LENGTH, "0")
            .timeout(timeout + Duration::from_secs(20))
            .send()
            .await
            .map_err(ServiceBusError::Network)?;
        let status = resp.status();
        match status {
            StatusCode::CREATED | StatusCode::OK => {}
            StatusCode::NO_CONTENT => return Ok(None),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(ServiceBusError::Unauthorized {
                    status: status.as_u16(),
                    right: "Listen",
                })
            }
            StatusCode::NOT_FOUND | StatusCode::GONE => {
                return Err(ServiceBusError::EntityNotFound {
                    entity,
                    status: status.as_u16(),
                })
            }
            _ => return Err(status_error(resp).await),
        }
        let headers = resp.headers().clone();
        let props: BrokerProperties = match headers.get("BrokerProperties") {
            Some(v) => serde_json::from_slice(v.as_bytes()).map_err(|e| {
                ServiceBusError::Protocol(format!("BrokerProperties is not valid JSON: {e}"))
            })?,
            None => {
                return Err(ServiceBusError::Protocol(
                    "no BrokerProperties header".into(),
                ))
            }
        };
        let location = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ServiceBusError::Protocol("no Location (lock URI) header".into()))?;
        let lock = LockUri(rebase(&self.base, location)?);
        let body = resp.bytes().await.map_err(ServiceBusError::Network)?;
        Ok(Some(ReceivedMessage {
            body: body.to_vec(),
            custom: custom_properties(&headers),
            props,
            lock,
        }))
    }

    async fn lock_op(
        &self,
        method: reqwest::Method,
        lock: &LockUri,
    ) -> Result<(), ServiceBusError> {
        let resp = self
            .http
            .request(method, lock.0.clone())
            .header(AUTHORIZATION, self.authorization())
            .header(reqwest::header::CONTENT_LENGTH, "0")
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(ServiceBusError::Network)?;
        let status = resp.status();
        match status {
            s if s.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(ServiceBusError::Unauthorized {
                    status: status.as_u16(),
                    right: "Listen",
                })
            }
            StatusCode::NOT_FOUND | StatusCode::GONE => {
                Err(ServiceBusError::LockLost(status.as_u16()))
            }
            _ => Err(status_error(resp).await),
        }
    }

    /// Completes (deletes) a locked message.
    pub async fn complete(&self, lock: &LockUri) -> Result<(), ServiceBusError> {
        self.lock_op(reqwest::Method::DELETE, lock).await
    }

    /// Abandons (unlocks) a locked message: the broker delivers it again, and dead-letters it
    /// after the subscription's max delivery count.
    pub async fn abandon(&self, lock: &LockUri) -> Result<(), ServiceBusError> {
        self.lock_op(reqwest::Method::PUT, lock).await
    }

    /// Renews a message's lock.
    pub async fn renew_lock(&self, lock: &LockUri) -> Result<(), ServiceBusError> {
        self.lock_op(reqwest::Method::POST, lock).await
    }

    /// Sends one message to the topic, with custom properties as headers (subscription
    /// filters can see those; the Functions output binding cannot set them).
    pub async fn send(
        &self,
        body: &[u8],
        props: &BrokerProperties,
        custom: &BTreeMap<String, String>,
    ) -> Result<(), ServiceBusError> {
        let url = self.url(&format!("{}/messages", enc(&self.entity)))?;
        let mut req = self
            .http
            .post(url)
            .header(AUTHORIZATION, self.authorization())
            .header(CONTENT_TYPE, "application/json")
            .header(
                "BrokerProperties",
                serde_json::to_string(props).expect("BrokerProperties serialize"),
            )
            .timeout(Duration::from_secs(30));
        for (k, v) in custom {
            // String values are sent JSON-quoted so the broker types them as strings.
            let v = HeaderValue::from_str(&format!("\"{v}\"")).map_err(|_| {
                ServiceBusError::Protocol(format!("custom property {k} is not a header value"))
            })?;
            req = req.header(k.as_str(), v);
        }
        let resp = req
            .body(body.to_vec())
            .send()
            .await
            .map_err(ServiceBusError::Network)?;
        let status = resp.status();
        match status {
            s if s.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(ServiceBusError::Unauthorized {
                    status: status.as_u16(),
                    right: "Send",
                })
            }
            StatusCode::NOT_FOUND | StatusCode::GONE => Err(ServiceBusError::EntityNotFound {
                entity: self.entity.clone(),
                status: status.as_u16(),
            }),
            _ => Err(status_error(resp).await),
        }
    }
}

fn enc(segment: &str) -> String {
    utf8_percent_encode(segment, URLENCODE).to_string()
}

async fn status_error(resp: reqwest::Response) -> ServiceBusError {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let detail: String = text.chars().take(200).collect();
    ServiceBusError::Status { status, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CS: &str = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=edge;SharedAccessKey=c2VjcmV0a2V5PQ==";

    #[test]
    fn connection_strings_parse_or_name_what_is_missing() {
        let c = ConnectionString::parse(CS).unwrap();
        assert_eq!(c.host, "ns.servicebus.windows.net");
        assert_eq!(c.key_name, "edge");
        assert_eq!(c.key.expose_secret(), "c2VjcmV0a2V5PQ==");
        assert_eq!(c.entity_path, None);
        let c = ConnectionString::parse(&format!("{CS};EntityPath=presence")).unwrap();
        assert_eq!(c.entity_path.as_deref(), Some("presence"));
        let cases = [
            ("", "Endpoint"),
            ("Endpoint=sb://ns/;SharedAccessKey=k", "SharedAccessKeyName"),
            ("Endpoint=sb://ns/;SharedAccessKeyName=n", "SharedAccessKey"),
            ("garbage", "Key=Value"),
            (
                "Endpoint=nope;SharedAccessKeyName=n;SharedAccessKey=k",
                "Endpoint",
            ),
        ];
        for (input, expect) in cases {
            let e = ConnectionString::parse(input).unwrap_err().to_string();
            assert!(e.contains(expect), "{input:?}: {e}");
        }
        assert!(!format!("{:?}", ConnectionString::parse(CS).unwrap()).contains("c2Vj"));
    }

    #[test]
    fn sas_token_signs_the_key_string_bytes() {
        // Reference computed independently with Python's hmac/urllib (quote(safe="")).
        let key = SecretString::from("c2VjcmV0a2V5PQ==");
        let t = sas_token(
            "https://ns.servicebus.windows.net/presence",
            "edge",
            &key,
            1_800_000_000,
        );
        assert_eq!(
            t,
            "SharedAccessSignature sr=https%3A%2F%2Fns.servicebus.windows.net%2Fpresence\
             &sig=8el4azZiVEVy8iC%2BtQtyRjc41wiHCXVdx7IKTFsAPdo%3D&se=1800000000&skn=edge"
        );
        assert!(!t.contains("c2VjcmV0a2V5PQ"));
    }

    #[test]
    fn lock_uris_are_rebased_onto_the_override() {
        let base = Url::parse("http://127.0.0.1:4000/").unwrap();
        let cases = [
            (
                "https://ns.servicebus.windows.net/presence/subscriptions/pi/messages/31/7a0b",
                "http://127.0.0.1:4000/presence/subscriptions/pi/messages/31/7a0b",
            ),
            (
                "/presence/subscriptions/pi/messages/31/7a0b?x=1",
                "http://127.0.0.1:4000/presence/subscriptions/pi/messages/31/7a0b?x=1",
            ),
        ];
        for (loc, want) in cases {
            assert_eq!(rebase(&base, loc).unwrap().as_str(), want);
        }
    }

    #[test]
    fn broker_properties_parse_with_lock_expiry() {
        let p: BrokerProperties = serde_json::from_str(
            r#"{"DeliveryCount":2,"LockToken":"7a0b","LockedUntilUtc":"Sun, 22 Nov 2026 10:16:00 GMT","MessageId":"m1","SequenceNumber":31,"State":"Active"}"#,
        )
        .unwrap();
        assert_eq!(p.delivery_count, Some(2));
        assert_eq!(p.sequence_number, Some(31));
        assert_eq!(
            p.locked_until().unwrap().to_rfc3339(),
            "2026-11-22T10:16:00+00:00"
        );
    }

    #[test]
    fn custom_properties_strip_json_quotes() {
        let mut h = HeaderMap::new();
        h.insert("userid", HeaderValue::from_static("\"u1\""));
        h.insert("location", HeaderValue::from_static("x"));
        h.insert("priority", HeaderValue::from_static("3"));
        let c = custom_properties(&h);
        assert_eq!(c.get("userid").map(String::as_str), Some("u1"));
        assert_eq!(c.get("priority").map(String::as_str), Some("3"));
        assert!(!c.contains_key("location"));
    }
}
