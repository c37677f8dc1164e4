//! 3CX V20: the OAuth client-credentials token and the XAPI (OData) calls that read and set
//! extensions' status profiles. The Call Control side (line states over REST and the
//! WebSocket) lives in [`super::threecx_calls`] and shares this client's token.
//!
//! Quirks this module exists to hide:
//! * 3CX keeps **one live access token per API client**: fetching a new one revokes the
//!   old. So the client holds exactly one token behind a `tokio::sync::Mutex`, every caller
//!   shares it, and a 401 triggers at most one refetch (callers that saw the same stale
//!   token wait for it instead of each fetching, and so revoking, another). It also means
//!   one process must build one [`ThreeCx`] per API client and share it (an `Arc`): two
//!   would revoke each other's token on every request.
//! * `expires_in` is in seconds (since 20.0.9; older samples read it as minutes).
//! * OData string literals are quoted with `'` and an embedded `'` is doubled.
//! * 3CX pushes no profile changes: the engine polls [`ThreeCx::current_profiles`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;
use url::Url;

use crate::core::pbx::model::{Extension, Profile};

/// Refresh the token this long before 3CX says it expires (or at half its life if shorter).
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// What went wrong talking to 3CX, split by what the caller does about it. Messages are one
/// line and never contain the secret or a token.
#[derive(Debug, thiserror::Error)]
pub enum ThreeCxError {
    /// The token endpoint refused the client id or secret, or a fresh token was refused:
    /// fix the settings.
    #[error("3CX refused the API client credentials ({0}); check PBX_3CX_CLIENT_ID and PBX_3CX_CLIENT_SECRET")]
    Unauthorized(String),
    /// 403: the API client exists but may not use this API: licence or role.
    #[error("3CX answered 403 for {0}: the 3CX API needs an Enterprise licence with API access, and the API client needs XAPI and Call Control access in Admin Console → Integrations → API")]
    NotLicensed(String),
    /// Network failure, timeout or a 5xx: retry later.
    #[error("3CX is unreachable ({0})")]
    Unreachable(String),
    /// 3CX's own Microsoft 365 presence sync is on; two writers would fight.
    #[error("3CX's own Microsoft 365 presence sync is on; turn it off in the 3CX Admin Console → Integrations → Microsoft 365 (\"Set Teams presence\") before running this sync, or the two will overwrite each other")]
    NativeSyncOn,
    /// No 3CX user has this extension number: fix the mapping.
    #[error("3CX has no user with extension number {0}")]
    UnknownExtension(Extension),
    /// The profile name is not one of the extension's status profiles: fix the mapping.
    #[error("3CX has no status profile {profile:?} for extension {extension} ({detail})")]
    UnknownProfile {
        /// The extension.
        extension: Extension,
        /// The name that was refused.
        profile: Profile,
        /// The names 3CX has, or its error message.
        detail: String,
    },
    /// 3CX answered something this client does not understand.
    #[error("unexpected answer from 3CX: {0}")]
    Protocol(String),
}

/// One 3CX user (extension) as the XAPI lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The XAPI key (`Users({Id})`).
    pub id: i32,
    /// The extension number.
    pub number: Extension,
    /// The e-mail address, if set.
    pub email: Option<String>,
    /// The current status profile (`CurrentProfileName`).
    pub profile: Option<Profile>,
}

/// The live token and when to stop using it.
struct Token {
    access: SecretString,
    refresh_at: Instant,
}

/// A 3CX V20 API client (XAPI and Call Control). Cheap to share behind an `Arc`; every
/// clone of the `Arc` uses the one token.
pub struct ThreeCx {
    http: reqwest::Client,
    base: Url,
    client_id: String,
    secret: SecretString,
    timeout: Duration,
    token: tokio::sync::Mutex<Option<Token>>,
    /// Extension number → XAPI `Id`, filled by lookups and listings.
    ids: std::sync::Mutex<HashMap<Extension, i32>>,
}

impl fmt::Debug for ThreeCx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreeCx")
            .field("base", &self.base.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    expires_in: u64,
    access_token: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireUser {
    id: i32,
    number: String,
    email_address: Option<String>,
    current_profile_name: Option<String>,
}

#[derive(Deserialize)]
struct Collection<T> {
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

impl ThreeCx {
    /// A client for the PBX at `base` (`https://pbx.example.com`), authenticating as the
    /// API client `client_id` (Admin Console → Integrations → API). `timeout` bounds each
    /// request. Errors only if the HTTP client cannot be built or `base` cannot be a base.
    pub fn new(
        base: Url,
        client_id: impl Into<String>,
        client_secret: SecretString,
        timeout: Duration,
    ) -> Result<Self, ThreeCxError> {
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(ThreeCxError::Protocol(format!(
                "the 3CX URL must be http(s), got {}",
                base.scheme()
            )));
        }
        let mut base = base;
        // `Url::join` replaces the last segment unless the path ends with a slash.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        base.set_query(None);
        let http = crate::clients::tls::client_builder()
            .timeout(timeout)
            .build()
            .map_err(|e| ThreeCxError::Protocol(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            client_id: client_id.into(),
            secret: client_secret,
            timeout,
            token: tokio::sync::Mutex::new(None),
            ids: std::sync::Mutex::default(),
        })
    }

    /// The base URL (always ending in `/`).
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// An absolute URL for a path relative to the base (`xapi/v1/Defs`, `/callcontrol`).
    pub(crate) fn url(&self, path: &str) -> Result<Url, ThreeCxError> {
        self.base
            .join(path.trim_start_matches('/'))
            .map_err(|e| ThreeCxError::Protocol(format!("bad path {path:?}: {e}")))
    }

    /// The current access token, fetching one if there is none or it is about to expire.
    /// Holding the lock across the fetch makes concurrent callers share one request.
    pub(crate) async fn bearer(&self) -> Result<SecretString, ThreeCxError> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref() {
            if Instant::now() < t.refresh_at {
                return Ok(t.access.clone());
            }
        }
        let t = self.fetch_token().await?;
        let access = t.access.clone();
        *slot = Some(t);
        Ok(access)
    }

    /// After a 401 with `stale`: fetch a new token unless another caller already did.
    pub(crate) async fn replace_stale(
        &self,
        stale: &SecretString,
    ) -> Result<SecretString, ThreeCxError> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref() {
            if t.access.expose_secret() != stale.expose_secret() && Instant::now() < t.refresh_at {
                return Ok(t.access.clone());
            }
        }
        *slot = None;
        let t = self.fetch_token().await?;
        let access = t.access.clone();
        *slot = Some(t);
        Ok(access)
    }

    async fn fetch_token(&self) -> Result<Token, ThreeCxError> {
        let url = self.url("connect/token")?;
        let form = [
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.expose_secret()),
            ("grant_type", "client_credentials"),
        ];
        let resp = self
            .http
            .post(url)
            .form(&form)
            .send()
            .await
            .map_err(|e| network("token request", e))?;
        let status = resp.status();
        if matches!(status, StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED) {
            // OAuth errors carry `error`/`error_description`; neither echoes the secret.
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let why = body["error_description"]
                .as_str()
                .or(body["error"].as_str())
                .unwrap_or(status.as_str());
            return Err(ThreeCxError::Unauthorized(one_line(why)));
        }
        let resp = check(resp, "token request").await?;
        let t: TokenResponse = resp
            .json()
            .await
            .map_err(|e| ThreeCxError::Protocol(format!("token response: {e}")))?;
        let life = Duration::from_secs(t.expires_in);
        let margin = REFRESH_MARGIN.min(life / 2);
        tracing::debug!(expires_in = t.expires_in, "3CX access token fetched");
        Ok(Token {
            access: SecretString::from(t.access_token),
            refresh_at: Instant::now() + life - margin,
        })
    }

    /// Sends a request with the shared token; on a 401 replaces the token once and retries
    /// once. Non-success statuses become [`ThreeCxError`]s except those in `pass`, which are
    /// returned for the caller to interpret.
    pub(crate) async fn send(
        &self,
        what: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
        pass: &[StatusCode],
    ) -> Result<Response, ThreeCxError> {
        let token = self.bearer().await?;
        let mut resp = build(&self.http)
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(|e| network(what, e))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            tracing::debug!(what, "3CX refused the token; fetching a new one");
            let token = self.replace_stale(&token).await?;
            resp = build(&self.http)
                .bearer_auth(token.expose_secret())
                .send()
                .await
                .map_err(|e| network(what, e))?;
        }
        if pass.contains(&resp.status()) {
            return Ok(resp);
        }
        check(resp, what).await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        url: Url,
    ) -> Result<T, ThreeCxError> {
        let resp = self
            .send(what, |h| h.request(Method::GET, url.clone()), &[])
            .await?;
        resp.json()
            .await
            .map_err(|e| ThreeCxError::Protocol(format!("{what}: {e}")))
    }

    /// Connectivity and credentials check: `GET /xapi/v1/Defs?$select=Id`.
    pub async fn check_connectivity(&self) -> Result<(), ThreeCxError> {
        let mut url = self.url("xapi/v1/Defs")?;
        url.query_pairs_mut().append_pair("$select", "Id");
        let _: Value = self.get_json("Defs", url).await?;
        Ok(())
    }

    /// Every user, following `@odata.nextLink`. Fills the extension → Id cache.
    pub async fn users(&self) -> Result<Vec<User>, ThreeCxError> {
        let mut url = self.url("xapi/v1/Users")?;
        url.query_pairs_mut()
            .append_pair("$select", "Id,Number,EmailAddress,CurrentProfileName");
        self.list_users(url).await
    }

    /// Every extension's current status profile, in one listing (3CX pushes no profile
    /// changes, so the engine calls this every few seconds). Users without a profile name
    /// are left out.
    pub async fn current_profiles(&self) -> Result<BTreeMap<Extension, Profile>, ThreeCxError> {
        let mut url = self.url("xapi/v1/Users")?;
        url.query_pairs_mut()
            .append_pair("$select", "Id,Number,CurrentProfileName");
        Ok(self
            .list_users(url)
            .await?
            .into_iter()
            .filter_map(|u| Some((u.number, u.profile?)))
            .collect())
    }

    async fn list_users(&self, first: Url) -> Result<Vec<User>, ThreeCxError> {
        let mut out = Vec::new();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let page: Collection<WireUser> = self.get_json("Users", url).await?;
            out.extend(page.value.into_iter().map(|w| {
                User {
                    id: w.id,
                    number: Extension(w.number),
                    email: w.email_address.filter(|e| !e.is_empty()),
                    profile: w
                        .current_profile_name
                        .filter(|p| !p.is_empty())
                        .map(Profile),
                }
            }));
            if let Some(link) = page.next_link {
                next = Some(self.same_origin(&link)?);
            }
        }
        let mut ids = self.ids.lock().expect("id cache poisoned");
        ids.extend(out.iter().map(|u| (u.number.clone(), u.id)));
        Ok(out)
    }

    /// Resolves a `@odata.nextLink` (absolute or relative) and refuses to send the token to
    /// another origin.
    fn same_origin(&self, link: &str) -> Result<Url, ThreeCxError> {
        let url = self
            .base
            .join(link)
            .map_err(|e| ThreeCxError::Protocol(format!("bad @odata.nextLink: {e}")))?;
        if url.origin() != self.base.origin() {
            return Err(ThreeCxError::Protocol(
                "@odata.nextLink points to another host".into(),
            ));
        }
        Ok(url)
    }

    /// The XAPI `Id` of the user with this extension number (cached).
    pub async fn user_id(&self, extension: &Extension) -> Result<i32, ThreeCxError> {
        if let Some(id) = self.ids.lock().expect("id cache poisoned").get(extension) {
            return Ok(*id);
        }
        let mut url = self.url("xapi/v1/Users")?;
        url.query_pairs_mut()
            .append_pair(
                "$filter",
                &format!("Number eq {}", odata_string(&extension.0)),
            )
            .append_pair("$select", "Id,Number,EmailAddress,CurrentProfileName");
        let users = self.list_users(url).await?;
        users
            .iter()
            .find(|u| u.number == *extension)
            .map(|u| u.id)
            .ok_or_else(|| ThreeCxError::UnknownExtension(extension.clone()))
    }

    /// Sets the extension's status profile: `PATCH Users({Id})` with `CurrentProfileName`.
    /// A 400 is taken as an unknown profile name; a 404 (user re-created under a new Id)
    /// drops the cached Id and tries once more.
    pub async fn set_profile(
        &self,
        extension: &Extension,
        profile: &Profile,
    ) -> Result<(), ThreeCxError> {
        for attempt in 0..2 {
            let id = self.user_id(extension).await?;
            let url = self.url(&format!("xapi/v1/Users({id})"))?;
            let body = json!({ "CurrentProfileName": profile.as_str() });
            let resp = self
                .send(
                    "set profile",
                    |h| h.patch(url.clone()).json(&body),
                    &[StatusCode::BAD_REQUEST, StatusCode::NOT_FOUND],
                )
                .await?;
            match resp.status() {
                StatusCode::BAD_REQUEST => {
                    return Err(ThreeCxError::UnknownProfile {
                        extension: extension.clone(),
                        profile: profile.clone(),
                        detail: odata_message(resp).await,
                    })
                }
                StatusCode::NOT_FOUND if attempt == 0 => {
                    self.ids
                        .lock()
                        .expect("id cache poisoned")
                        .remove(extension);
                }
                StatusCode::NOT_FOUND => {
                    return Err(ThreeCxError::UnknownExtension(extension.clone()))
                }
                _ => return Ok(()),
            }
        }
        Err(ThreeCxError::UnknownExtension(extension.clone()))
    }

    /// The names of the extension's status profiles (`Users({Id})/ForwardingProfiles`).
    pub async fn profile_names(&self, extension: &Extension) -> Result<Vec<Profile>, ThreeCxError> {
        #[derive(Deserialize)]
        struct Fp {
            #[serde(rename = "Name")]
            name: String,
        }
        let id = self.user_id(extension).await?;
        let mut url = self.url(&format!("xapi/v1/Users({id})/ForwardingProfiles"))?;
        url.query_pairs_mut().append_pair("$select", "Id,Name");
        let mut out = Vec::new();
        let mut next = Some(url);
        while let Some(url) = next.take() {
            let page: Collection<Fp> = self.get_json("ForwardingProfiles", url).await?;
            out.extend(page.value.into_iter().map(|f| Profile(f.name)));
            if let Some(link) = page.next_link {
                next = Some(self.same_origin(&link)?);
            }
        }
        Ok(out)
    }

    /// True when 3CX's own Microsoft 365 presence sync (`AdUsers.SetTeamsPresence`) is on.
    pub async fn native_presence_sync(&self) -> Result<bool, ThreeCxError> {
        let url = self.url("xapi/v1/Microsoft365Integration")?;
        let v: Value = self.get_json("Microsoft365Integration", url).await?;
        Ok(v["AdUsers"]["SetTeamsPresence"].as_bool().unwrap_or(false))
    }

    /// Everything to check before syncing: the credentials and licence work, 3CX's own
    /// Teams presence sync is off, every extension exists and every profile name is one
    /// of each extension's status profiles.
    pub async fn preflight(
        &self,
        extensions: &[Extension],
        profiles: &[Profile],
    ) -> Result<(), ThreeCxError> {
        self.check_connectivity().await?;
        if self.native_presence_sync().await? {
            return Err(ThreeCxError::NativeSyncOn);
        }
        for extension in extensions {
            let known = self.profile_names(extension).await?;
            if let Some(missing) = profiles.iter().find(|p| !known.contains(p)) {
                let names: Vec<&str> = known.iter().map(Profile::as_str).collect();
                return Err(ThreeCxError::UnknownProfile {
                    extension: extension.clone(),
                    profile: missing.clone(),
                    detail: format!("it has {}", names.join(", ")),
                });
            }
        }
        Ok(())
    }
}

/// An OData string literal: `'it''s'`.
pub fn odata_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Turns a non-success status into the error the caller branches on.
async fn check(resp: Response, what: &str) -> Result<Response, ThreeCxError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    Err(match status {
        StatusCode::UNAUTHORIZED => {
            ThreeCxError::Unauthorized(format!("{what}: a fresh token was refused"))
        }
        StatusCode::FORBIDDEN => ThreeCxError::NotLicensed(what.to_owned()),
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            ThreeCxError::Unreachable(format!("{what}: HTTP {}", s.as_u16()))
        }
        s => ThreeCxError::Protocol(format!(
            "{what}: HTTP {}: {}",
            s.as_u16(),
            odata_message(resp).await
        )),
    })
}

/// The `error.message` of an OData error body, or the status.
async fn odata_message(resp: Response) -> String {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let msg = body["error"]["message"]
        .as_str()
        .or(body["message"].as_str())
        .map(one_line)
        .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
    msg.chars().take(200).collect()
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A transport error without the URL (which is fine to log, but adds nothing) as one line.
pub(crate) fn network(what: &str, e: reqwest::Error) -> ThreeCxError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    ThreeCxError::Unreachable(format!("{what}: {kind}: {}", e.without_url()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odata_strings_double_single_quotes() {
        assert_eq!(odata_string("101"), "'101'");
        assert_eq!(odata_string("o'neil"), "'o''neil'");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let c = ThreeCx::new(
            Url::parse("https://pbx.example.com/base").unwrap(),
            "api",
            SecretString::from("s3cr3t-value".to_owned()),
            Duration::from_secs(5),
        )
        .unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("s3cr3t"), "{d}");
        assert_eq!(c.base().as_str(), "https://pbx.example.com/base/");
        assert_eq!(
            c.url("/callcontrol").unwrap().as_str(),
            "https://pbx.example.com/base/callcontrol"
        );
    }
}
