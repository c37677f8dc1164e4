//! Microsoft Graph over HTTP: presence reads and change-notification subscriptions. The only
//! module that speaks Graph's REST JSON; callers get typed values and errors split by what they
//! do next (wait for `Retry-After`, refresh the token, back off, give up).

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use url::Url;

use crate::core::presence::{Observation, Presence, Source};

/// Most ids `getPresencesByUserId` and a bulk presence subscription accept.
pub const MAX_IDS_PER_CALL: usize = 650;

/// Graph failures, by what the caller does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// 429 (or 503 with Retry-After): no call to this tenant before `retry_after` elapses.
    #[error("throttled by Graph for {retry_after:?}")]
    Throttled {
        /// From the `Retry-After` header (default 10 s when absent).
        retry_after: Duration,
    },
    /// 401: the access token is no good; refresh it and try once more.
    #[error("Graph rejected the access token")]
    Unauthorized,
    /// 403: the permission is missing (admin consent, Presence.Read.All).
    #[error("Graph refused access: {0}")]
    Forbidden(String),
    /// 404: no such resource (a deleted subscription, an unknown user).
    #[error("not found in Graph")]
    NotFound,
    /// 409: conflict (one presence subscription per user per app).
    #[error("conflict in Graph: {0}")]
    Conflict(String),
    /// 5xx, timeouts, connection errors: back off and retry later.
    #[error("Graph unavailable: {0}")]
    Transient(String),
    /// Any other 4xx or an unreadable answer.
    #[error("Graph request failed: {0}")]
    Failed(String),
}

/// One user's presence as Graph returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphPresence {
    /// User object id.
    pub id: String,
    /// Availability (open set).
    #[serde(default)]
    pub availability: String,
    /// Activity (open set).
    #[serde(default)]
    pub activity: String,
    /// Graph's sortable version stamp, when present.
    #[serde(default)]
    pub sequence_number: Option<String>,
}

impl GraphPresence {
    /// As an observation from a poll.
    pub fn observation(&self, tenant_id: &str, now: DateTime<Utc>) -> Observation {
        Observation {
            user_id: self.id.clone(),
            tenant_id: tenant_id.to_owned(),
            presence: Presence::new(&self.availability, &self.activity),
            source: Source::Poll,
            observed_at: now,
            graph_sequence: self.sequence_number.clone().filter(|s| !s.is_empty()),
            item_digest: None,
        }
    }
}

/// A subscription as Graph describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphSubscription {
    /// Subscription id.
    pub id: String,
    /// Its resource path.
    #[serde(default)]
    pub resource: String,
    /// When Graph drops it.
    pub expiration_date_time: DateTime<Utc>,
    /// The owning app (to find ours when adopting after a 409).
    #[serde(default)]
    pub application_id: Option<String>,
    /// Where it delivers.
    #[serde(default)]
    pub notification_url: Option<String>,
}

/// What a new subscription asks for.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    /// `/communications/presences/{id}` or the bulk `$filter=id in (...)` form.
    pub resource: String,
    /// `{base}/api/notifications`.
    pub notification_url: String,
    /// `{base}/api/lifecycle`.
    pub lifecycle_url: String,
    /// At most 60 minutes ahead for presence.
    pub expires_at: DateTime<Utc>,
    /// Random per subscription.
    pub client_state: SecretString,
    /// Base64 DER of the encryption certificate.
    pub certificate_base64: String,
    /// Our id for that certificate.
    pub certificate_id: String,
}

/// A Graph client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct GraphClient {
    http: reqwest::Client,
    base: String,
}

impl GraphClient {
    /// A client for `{endpoint}/v1.0`.
    pub fn new(endpoint: &Url, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout)
            .pool_max_idle_per_host(32)
            .build()
            .expect("TLS backend initialises");
        Self {
            http,
            base: format!("{}/v1.0", endpoint.as_str().trim_end_matches('/')),
        }
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        token: &SecretString,
    ) -> Result<Value, GraphError> {
        let r = req
            .bearer_auth(token.expose_secret())
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| GraphError::Transient(e.without_url().to_string()))?;
        let status = r.status();
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if status == StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        // Graph's error body has a code and a message; neither holds secrets.
        let code = body
            .pointer("/error/code")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let message: String = body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        let detail = format!("HTTP {} {code} {message}", status.as_u16())
            .trim()
            .to_owned();
        Err(match status {
            StatusCode::TOO_MANY_REQUESTS => GraphError::Throttled {
                retry_after: retry_after.unwrap_or(Duration::from_secs(10)),
            },
            StatusCode::SERVICE_UNAVAILABLE if retry_after.is_some() => GraphError::Throttled {
                retry_after: retry_after.unwrap_or_default(),
            },
            StatusCode::UNAUTHORIZED => GraphError::Unauthorized,
            StatusCode::FORBIDDEN => GraphError::Forbidden(detail),
            StatusCode::NOT_FOUND => GraphError::NotFound,
            StatusCode::CONFLICT => GraphError::Conflict(detail),
            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
                GraphError::Transient(detail)
            }
            _ => GraphError::Failed(detail),
        })
    }

    /// `GET /me/presence` with a delegated token.
    pub async fn me_presence(&self, token: &SecretString) -> Result<GraphPresence, GraphError> {
        let v = self
            .send(self.http.get(format!("{}/me/presence", self.base)), token)
            .await?;
        serde_json::from_value(v)
            .map_err(|e| GraphError::Failed(format!("unreadable presence: {e}")))
    }

    /// `POST /communications/getPresencesByUserId` for at most 650 ids.
    pub async fn presences_by_user_id(
        &self,
        token: &SecretString,
        ids: &[String],
    ) -> Result<Vec<GraphPresence>, GraphError> {
        debug_assert!(ids.len() <= MAX_IDS_PER_CALL);
        let v = self
            .send(
                self.http
                    .post(format!("{}/communications/getPresencesByUserId", self.base))
                    .json(&json!({ "ids": ids })),
                token,
            )
            .await?;
        #[derive(Deserialize)]
        struct List {
            value: Vec<GraphPresence>,
        }
        serde_json::from_value::<List>(v)
            .map(|l| l.value)
            .map_err(|e| GraphError::Failed(format!("unreadable presence list: {e}")))
    }

    /// `POST /subscriptions`.
    pub async fn create_subscription(
        &self,
        token: &SecretString,
        s: &NewSubscription,
    ) -> Result<GraphSubscription, GraphError> {
        let body = json!({
            "changeType": "updated",
            "resource": s.resource,
            "notificationUrl": s.notification_url,
            "lifecycleNotificationUrl": s.lifecycle_url,
            "expirationDateTime": s.expires_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "clientState": s.client_state.expose_secret(),
            "includeResourceData": true,
            "encryptionCertificate": s.certificate_base64,
            "encryptionCertificateId": s.certificate_id,
            "latestSupportedTlsVersion": "v1_2",
        });
        let v = self
            .send(
                self.http
                    .post(format!("{}/subscriptions", self.base))
                    .json(&body),
                token,
            )
            .await?;
        serde_json::from_value(v)
            .map_err(|e| GraphError::Failed(format!("unreadable subscription: {e}")))
    }

    /// `PATCH /subscriptions/{id}` with a new expiry.
    pub async fn renew_subscription(
        &self,
        token: &SecretString,
        id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<GraphSubscription, GraphError> {
        let body = json!({ "expirationDateTime": expires_at.to_rfc3339_opts(SecondsFormat::Millis, true) });
        let v = self
            .send(
                self.http
                    .patch(format!("{}/subscriptions/{}", self.base, enc(id)))
                    .json(&body),
                token,
            )
            .await?;
        serde_json::from_value(v)
            .map_err(|e| GraphError::Failed(format!("unreadable subscription: {e}")))
    }

    /// `POST /subscriptions/{id}/reauthorize` (answer to a `reauthorizationRequired` event).
    pub async fn reauthorize_subscription(
        &self,
        token: &SecretString,
        id: &str,
    ) -> Result<(), GraphError> {
        self.send(
            self.http.post(format!(
                "{}/subscriptions/{}/reauthorize",
                self.base,
                enc(id)
            )),
            token,
        )
        .await
        .map(drop)
    }

    /// `DELETE /subscriptions/{id}`.
    pub async fn delete_subscription(
        &self,
        token: &SecretString,
        id: &str,
    ) -> Result<(), GraphError> {
        match self
            .send(
                self.http
                    .delete(format!("{}/subscriptions/{}", self.base, enc(id))),
                token,
            )
            .await
        {
            Ok(_) | Err(GraphError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `GET /subscriptions`: the subscriptions this app can see with this token.
    pub async fn list_subscriptions(
        &self,
        token: &SecretString,
    ) -> Result<Vec<GraphSubscription>, GraphError> {
        #[derive(Deserialize)]
        struct List {
            value: Vec<GraphSubscription>,
        }
        let v = self
            .send(self.http.get(format!("{}/subscriptions", self.base)), token)
            .await?;
        serde_json::from_value::<List>(v)
            .map(|l| l.value)
            .map_err(|e| GraphError::Failed(format!("unreadable subscription list: {e}")))
    }
}

fn enc(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC).to_string()
}
