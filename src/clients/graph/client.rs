//! Microsoft Graph over HTTP: presence reads and writes (the PBX sync's session and the
//! preferred presence), user lookups and change-notification subscriptions. The only
//! module that speaks Graph's REST JSON; callers get typed values and errors split by what they
//! do next (wait for `Retry-After`, refresh the token, back off, give up).

use crate::clients::tls::LazyClient;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use url::Url;

use crate::core::presence::{Observation, Presence, Source};

/// Most ids `getPresencesByUserId` and a bulk presence subscription accept.
pub const MAX_IDS_PER_CALL: usize = 650;

/// The shortest `expirationDuration` setPresence accepts (PT5M).
pub const MIN_SESSION_EXPIRATION: chrono::Duration = chrono::Duration::minutes(5);
/// The longest `expirationDuration` setPresence accepts (PT4H).
pub const MAX_SESSION_EXPIRATION: chrono::Duration = chrono::Duration::hours(4);
/// The fields `resolve_user` asks for.
const USER_SELECT: &str = "id,userPrincipalName,mail,displayName";

/// An ISO-8601 duration as Graph writes `expirationDuration`: `PT1H`, `PT5M`, `PT1H30M5S`
/// (whole seconds; zero is `PT0S`).
pub fn iso8601_duration(d: chrono::Duration) -> String {
    let total = d.num_seconds().max(0);
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    let mut out = String::from("PT");
    for (n, unit) in [(h, 'H'), (m, 'M'), (s, 'S')] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if total == 0 {
        out.push_str("0S");
    }
    out
}

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
    /// Refused before sending: an argument Graph would reject (e.g. an expiration outside
    /// PT5M–PT4H). A bug or a bad setting; retrying does not help.
    #[error("invalid Graph request: {0}")]
    Invalid(String),
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
    http: LazyClient,
    base: String,
}

impl GraphClient {
    /// A client for `{endpoint}/v1.0`.
    pub fn new(endpoint: &Url, timeout: Duration) -> Self {
        let http = LazyClient::new(move |b| {
            b.connect_timeout(Duration::from_secs(5))
                .timeout(timeout)
                .pool_max_idle_per_host(32)
        });
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
        let body = self.send_raw(req, token).await?;
        Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// [`send`](Self::send) without parsing a successful answer, for callers that read it
    /// straight into their types (a `Value` tree of 650 presences first would double the work).
    async fn send_raw(
        &self,
        req: reqwest::RequestBuilder,
        token: &SecretString,
    ) -> Result<bytes::Bytes, GraphError> {
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
            return Ok(bytes::Bytes::new());
        }
        let raw = r.bytes().await.unwrap_or_default();
        if status.is_success() {
            return Ok(raw);
        }
        let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
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
        #[derive(Serialize)]
        struct Ids<'a> {
            ids: &'a [String],
        }
        let body = self
            .send_raw(
                self.http
                    .post(format!("{}/communications/getPresencesByUserId", self.base))
                    .json(&Ids { ids }),
                token,
            )
            .await?;
        #[derive(Deserialize)]
        struct List {
            value: Vec<GraphPresence>,
        }
        serde_json::from_slice::<List>(&body)
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

    /// `PATCH /subscriptions/{id}` with a new expiry and a new notification certificate:
    /// Graph's documented way to rotate the key of a live subscription ("Update existing
    /// subscriptions with the new certificate key ... update the encryptionCertificate and
    /// encryptionCertificateId properties"). Graph may still use the old certificate for a
    /// while, and retries undelivered notifications for up to 4 hours.
    pub async fn update_subscription_certificate(
        &self,
        token: &SecretString,
        id: &str,
        expires_at: DateTime<Utc>,
        certificate_base64: &str,
        certificate_id: &str,
    ) -> Result<GraphSubscription, GraphError> {
        let body = json!({
            "expirationDateTime": expires_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "encryptionCertificate": certificate_base64,
            "encryptionCertificateId": certificate_id,
        });
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

    /// `POST /users/{id}/presence/setPresence`: our app's presence session for the user.
    /// `session_id` must be the app's client id; `expiration` must lie within PT5M–PT4H
    /// (checked before sending). Graph allows only Available/Available, Busy/InACall,
    /// Busy/InAConferenceCall, Away/Away and DoNotDisturb/Presenting.
    pub async fn set_presence(
        &self,
        token: &SecretString,
        user_id: &str,
        session_id: &str,
        availability: &str,
        activity: &str,
        expiration: chrono::Duration,
    ) -> Result<(), GraphError> {
        if expiration < MIN_SESSION_EXPIRATION || expiration > MAX_SESSION_EXPIRATION {
            return Err(GraphError::Invalid(format!(
                "expirationDuration {} is outside PT5M to PT4H",
                iso8601_duration(expiration)
            )));
        }
        if session_id.trim().is_empty() {
            return Err(GraphError::Invalid("sessionId is empty".into()));
        }
        let body = json!({
            "sessionId": session_id,
            "availability": availability,
            "activity": activity,
            "expirationDuration": iso8601_duration(expiration),
        });
        self.send(
            self.presence_post(user_id, "setPresence").json(&body),
            token,
        )
        .await
        .map(drop)
    }

    /// `POST /users/{id}/presence/clearPresence`: ends our session. 404 (no such session,
    /// e.g. it expired) counts as done.
    pub async fn clear_presence(
        &self,
        token: &SecretString,
        user_id: &str,
        session_id: &str,
    ) -> Result<(), GraphError> {
        let body = json!({ "sessionId": session_id });
        match self
            .send(
                self.presence_post(user_id, "clearPresence").json(&body),
                token,
            )
            .await
        {
            Ok(_) | Err(GraphError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `POST /users/{id}/presence/setUserPreferredPresence`: the user's own status, which
    /// outranks every session. Overwrites a manual choice: opt-in only. Without
    /// `expiration` Graph's default applies (1 day for Busy/DND, 7 days otherwise).
    pub async fn set_user_preferred_presence(
        &self,
        token: &SecretString,
        user_id: &str,
        availability: &str,
        activity: &str,
        expiration: Option<chrono::Duration>,
    ) -> Result<(), GraphError> {
        let mut body = json!({ "availability": availability, "activity": activity });
        if let Some(e) = expiration {
            if e < chrono::Duration::seconds(1) {
                return Err(GraphError::Invalid(
                    "expirationDuration must be positive".into(),
                ));
            }
            body["expirationDuration"] = json!(iso8601_duration(e));
        }
        self.send(
            self.presence_post(user_id, "setUserPreferredPresence")
                .json(&body),
            token,
        )
        .await
        .map(drop)
    }

    /// `POST /users/{id}/presence/clearUserPreferredPresence` with `Content-Type:
    /// application/json` and `{}`, both of which Graph's reference requires.
    pub async fn clear_user_preferred_presence(
        &self,
        token: &SecretString,
        user_id: &str,
    ) -> Result<(), GraphError> {
        self.send(
            self.presence_post(user_id, "clearUserPreferredPresence")
                .json(&json!({})),
            token,
        )
        .await
        .map(drop)
    }

    /// A user's object id from a UPN or mail address: `GET /users/{upn}` first, then on 404
    /// `GET /users?$filter=mail eq '...'` (guests and aliases have a mail that is not their
    /// UPN). `NotFound` when neither knows it.
    pub async fn resolve_user(
        &self,
        token: &SecretString,
        upn_or_mail: &str,
    ) -> Result<String, GraphError> {
        let id_of = |v: &Value| {
            v.get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let by_upn = self
            .http
            .get(format!("{}/users/{}", self.base, enc(upn_or_mail)))
            .query(&[("$select", USER_SELECT)]);
        match self.send(by_upn, token).await {
            Ok(v) => {
                return id_of(&v).ok_or_else(|| GraphError::Failed("user without an id".into()))
            }
            Err(GraphError::NotFound) => {}
            Err(e) => return Err(e),
        }
        // OData string literal: a quote is escaped by doubling it.
        let filter = format!("mail eq '{}'", upn_or_mail.replace('\'', "''"));
        let by_mail = self
            .http
            .get(format!("{}/users", self.base))
            .query(&[("$filter", filter.as_str()), ("$select", USER_SELECT)]);
        let v = self.send(by_mail, token).await?;
        v.pointer("/value/0")
            .and_then(id_of)
            .ok_or(GraphError::NotFound)
    }

    fn presence_post(&self, user_id: &str, action: &str) -> reqwest::RequestBuilder {
        self.http.post(format!(
            "{}/users/{}/presence/{action}",
            self.base,
            enc(user_id)
        ))
    }
}

fn enc(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_durations_as_graph_writes_them() {
        let cases = [
            (chrono::Duration::hours(1), "PT1H"),
            (chrono::Duration::minutes(5), "PT5M"),
            (chrono::Duration::hours(4), "PT4H"),
            (chrono::Duration::seconds(5405), "PT1H30M5S"),
            (chrono::Duration::seconds(59), "PT59S"),
            (chrono::Duration::zero(), "PT0S"),
        ];
        for (d, want) in cases {
            assert_eq!(iso8601_duration(d), want);
        }
    }
}
