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
//! * `expires_in` is in seconds since 20.0.9 and was in minutes before (3cx/xapi-tutorial,
//!   commit "expires_in is in seconds (according to OAuth) since 20.0.9"). Read as seconds,
//!   an old build's `60` would make us refresh every 30 s, and every refresh revokes the token
//!   the socket and the other callers hold. A value that would expire within a minute of
//!   issue is therefore taken as minutes ([`token_lifetime`]).
//! * XAPI pages: V20 is reported to cap `$top` at 100, and its schema (3cx/xapi-tutorial
//!   `swagger.yaml`, build 20.0.10) documents `$top`/`$skip` and `@odata.count` but no
//!   `@odata.nextLink`. Listings ask for [`PAGE`] at a time with `$top`/`$skip` until a short
//!   page, and follow an `@odata.nextLink` should one come.
//! * A status profile has a canonical `Name` ("Available", "Away", "Out of office",
//!   "Custom 1", ...) and an editable `CustomName` the admin may show instead. `PATCH
//!   Users({Id})` wants `CurrentProfileName` = the `Name`, and `CurrentProfileName` reads
//!   back as the `Name`; the preflight learns which configured names are `CustomName`s and
//!   translates both ways.
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

/// XAPI listings ask for this many entries a page (`$top`): the most V20 is reported to
/// return in one.
pub const PAGE: usize = 100;

/// More entries than any PBX has: a listing past this is a paging loop.
const MAX_ENTRIES: usize = 100_000;

/// How long a token lives for an `expires_in` as 3CX sent it: seconds since 20.0.9, minutes
/// before. No build issues a token that expires within a minute, so a value of 60 or less
/// is an older build's minutes.
pub fn token_lifetime(expires_in: u64) -> Duration {
    if expires_in <= 60 {
        Duration::from_secs(expires_in.max(1) * 60)
    } else {
        Duration::from_secs(expires_in)
    }
}

/// How the Call Control socket is kept honest: a ping every `every`, and a connection that
/// has shown no sign of life for `timeout` is dropped and made again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// How often we ping (3CX's sample: every 5 s).
    pub every: Duration,
    /// How long without any frame (data, ping or pong) before the socket counts as lost.
    pub timeout: Duration,
}

impl Default for Heartbeat {
    /// A ping every 5 s, as 3CX's sample does; lost after three unanswered pings.
    fn default() -> Self {
        Self {
            every: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
        }
    }
}

/// 3CX's own Microsoft 365 presence sync: two writers would overwrite each other, so ours
/// refuses to start while it is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeSync {
    /// `AdUsers.SetTeamsPresence` is on.
    On,
    /// Off (or not reported).
    Off,
}

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
    /// Per extension, configured profile names that are a profile's `CustomName`, with its
    /// canonical `Name` (learnt in the preflight).
    aliases: std::sync::Mutex<HashMap<Extension, Vec<(Profile, Profile)>>>,
    /// The Call Control socket's ping interval and silence timeout.
    heartbeat: Heartbeat,
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

/// `Pbx.User` as the XAPI schema has it: `Id` an int32, `Number`, `EmailAddress` and
/// `CurrentProfileName` nullable strings (3cx/xapi-tutorial `swagger.yaml`, build 20.0.10).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireUser {
    id: i32,
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    email_address: Option<String>,
    #[serde(default)]
    current_profile_name: Option<String>,
}

/// `Pbx.ForwardingProfile`: `Id`, and the nullable `Name` and `CustomName`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireProfile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    custom_name: Option<String>,
}

/// One of an extension's status profiles: its canonical `Name` and the `CustomName` the
/// admin may have given it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusProfile {
    /// The canonical name `CurrentProfileName` takes and shows.
    pub name: Profile,
    /// The editable display name, when set.
    pub custom_name: Option<Profile>,
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
            aliases: std::sync::Mutex::default(),
            heartbeat: Heartbeat::default(),
        })
    }

    /// The same client with another Call Control heartbeat (tests use short ones).
    pub fn with_heartbeat(mut self, heartbeat: Heartbeat) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// The Call Control socket's heartbeat.
    pub fn heartbeat(&self) -> Heartbeat {
        self.heartbeat
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
        let life = token_lifetime(t.expires_in);
        let margin = REFRESH_MARGIN.min(life / 2);
        tracing::debug!(
            expires_in = t.expires_in,
            lifetime_s = life.as_secs(),
            "3CX access token fetched"
        );
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

    /// Every user, page by page. Fills the extension → Id cache.
    pub async fn users(&self) -> Result<Vec<User>, ThreeCxError> {
        let mut url = self.url("xapi/v1/Users")?;
        url.query_pairs_mut()
            .append_pair("$select", "Id,Number,EmailAddress,CurrentProfileName");
        self.list_users(url).await
    }

    /// Every extension's current status profile, in one listing (3CX pushes no profile
    /// changes, so the engine calls this every few seconds). Users without a number or a
    /// profile name are left out. A profile the configuration names by its `CustomName` is
    /// reported by that name.
    pub async fn current_profiles(&self) -> Result<BTreeMap<Extension, Profile>, ThreeCxError> {
        let mut url = self.url("xapi/v1/Users")?;
        url.query_pairs_mut()
            .append_pair("$select", "Id,Number,CurrentProfileName");
        let users = self.list_users(url).await?;
        let aliases = self.aliases.lock().expect("alias cache poisoned");
        Ok(users
            .into_iter()
            .filter_map(|u| {
                let profile = u.profile?;
                let shown = aliases
                    .get(&u.number)
                    .and_then(|a| a.iter().find(|(_, name)| *name == profile))
                    .map_or(profile, |(alias, _)| alias.clone());
                Some((u.number, shown))
            })
            .collect())
    }

    async fn list_users(&self, first: Url) -> Result<Vec<User>, ThreeCxError> {
        let pages: Vec<WireUser> = self.list("Users", first).await?;
        let out: Vec<User> = pages
            .into_iter()
            .filter_map(|w| {
                // `Number` is nullable in the schema: such a user has no extension to map.
                let number = w
                    .number
                    .map(|n| n.trim().to_owned())
                    .filter(|n| !n.is_empty())?;
                Some(User {
                    id: w.id,
                    number: Extension(number),
                    email: w.email_address.filter(|e| !e.is_empty()),
                    profile: w
                        .current_profile_name
                        .filter(|p| !p.is_empty())
                        .map(Profile),
                })
            })
            .collect();
        let mut ids = self.ids.lock().expect("id cache poisoned");
        ids.extend(out.iter().map(|u| (u.number.clone(), u.id)));
        Ok(out)
    }

    /// Every entry of an XAPI collection: `$top`=[`PAGE`] and `$skip` until a page comes
    /// back short, or `@odata.nextLink` while 3CX sends one.
    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        first: Url,
    ) -> Result<Vec<T>, ThreeCxError> {
        let mut out = Vec::new();
        let mut skip = 0usize;
        let mut next = Some(page_url(&first, skip));
        while let Some(url) = next.take() {
            let page: Collection<T> = self.get_json(what, url).await?;
            let got = page.value.len();
            out.extend(page.value);
            if let Some(link) = page.next_link {
                next = Some(self.same_origin(&link)?);
            } else if got >= PAGE {
                skip += got;
                // A PBX that ignored `$skip` would hand out its first page for ever.
                if skip > MAX_ENTRIES {
                    return Err(ThreeCxError::Protocol(format!(
                        "{what}: more than {MAX_ENTRIES} entries; is $skip ignored?"
                    )));
                }
                next = Some(page_url(&first, skip));
            }
        }
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
        let canonical = self.canonical(extension, profile);
        for attempt in 0..2 {
            let id = self.user_id(extension).await?;
            let url = self.url(&format!("xapi/v1/Users({id})"))?;
            let body = json!({ "CurrentProfileName": canonical.as_str() });
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

    /// The canonical `Name` to PATCH for a configured profile name (itself unless the
    /// preflight found it to be a `CustomName`).
    fn canonical(&self, extension: &Extension, profile: &Profile) -> Profile {
        self.aliases
            .lock()
            .expect("alias cache poisoned")
            .get(extension)
            .and_then(|a| a.iter().find(|(alias, _)| alias == profile))
            .map_or_else(|| profile.clone(), |(_, name)| name.clone())
    }

    /// The extension's status profiles (`Users({Id})/ForwardingProfiles`): canonical
    /// `Name` and `CustomName`.
    pub async fn status_profiles(
        &self,
        extension: &Extension,
    ) -> Result<Vec<StatusProfile>, ThreeCxError> {
        let id = self.user_id(extension).await?;
        let mut url = self.url(&format!("xapi/v1/Users({id})/ForwardingProfiles"))?;
        url.query_pairs_mut()
            .append_pair("$select", "Id,Name,CustomName");
        let list: Vec<WireProfile> = self.list("ForwardingProfiles", url).await?;
        let text = |s: Option<String>| s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        Ok(list
            .into_iter()
            .filter_map(|f| {
                Some(StatusProfile {
                    name: Profile(text(f.name)?),
                    custom_name: text(f.custom_name).map(Profile),
                })
            })
            .collect())
    }

    /// The canonical names of the extension's status profiles.
    pub async fn profile_names(&self, extension: &Extension) -> Result<Vec<Profile>, ThreeCxError> {
        Ok(self
            .status_profiles(extension)
            .await?
            .into_iter()
            .map(|p| p.name)
            .collect())
    }

    /// Whether 3CX's own Microsoft 365 presence sync (`AdUsers.SetTeamsPresence`) is on.
    pub async fn native_presence_sync(&self) -> Result<NativeSync, ThreeCxError> {
        let url = self.url("xapi/v1/Microsoft365Integration")?;
        let v: Value = self.get_json("Microsoft365Integration", url).await?;
        Ok(
            if v["AdUsers"]["SetTeamsPresence"].as_bool().unwrap_or(false) {
                NativeSync::On
            } else {
                NativeSync::Off
            },
        )
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
        if self.native_presence_sync().await? == NativeSync::On {
            return Err(ThreeCxError::NativeSyncOn);
        }
        for extension in extensions {
            let known = self.status_profiles(extension).await?;
            let mut aliases = Vec::new();
            for wanted in profiles {
                if known.iter().any(|p| p.name == *wanted) {
                    continue;
                }
                // Named by what the admin sees: PATCH and read back the canonical `Name`.
                match known
                    .iter()
                    .find(|p| p.custom_name.as_ref() == Some(wanted))
                {
                    Some(p) => aliases.push((wanted.clone(), p.name.clone())),
                    None => {
                        let names: Vec<String> = known
                            .iter()
                            .map(|p| match &p.custom_name {
                                Some(c) if *c != p.name => format!("{} ({c})", p.name),
                                _ => p.name.to_string(),
                            })
                            .collect();
                        return Err(ThreeCxError::UnknownProfile {
                            extension: extension.clone(),
                            profile: wanted.clone(),
                            detail: format!("it has {}", names.join(", ")),
                        });
                    }
                }
            }
            self.aliases
                .lock()
                .expect("alias cache poisoned")
                .insert(extension.clone(), aliases);
        }
        Ok(())
    }
}

/// `first` with `$top`=[`PAGE`] and `$skip`=`skip` (replacing any it had).
fn page_url(first: &Url, skip: usize) -> Url {
    let mut url = first.clone();
    let kept: Vec<(String, String)> = first
        .query_pairs()
        .filter(|(k, _)| k != "$top" && k != "$skip")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut q = url.query_pairs_mut();
        q.clear();
        for (k, v) in &kept {
            q.append_pair(k, v);
        }
        q.append_pair("$top", &PAGE.to_string());
        if skip > 0 {
            q.append_pair("$skip", &skip.to_string());
        }
    }
    url
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

    /// Issue 28, item 10: 3cx/xapi-tutorial read `expires_in` as minutes until 20.0.9 and as
    /// seconds since (commit 1c6947c). Read as seconds, an old build's 60 meant a refresh
    /// every 30 s, each revoking the token every other caller held.
    #[test]
    fn expires_in_within_a_minute_is_an_old_builds_minutes() {
        let cases = [
            (3600, 3600),
            (86_400, 86_400),
            (61, 61),
            (60, 3600),
            (30, 1800),
            (1, 60),
            (0, 60),
        ];
        for (expires_in, secs) in cases {
            assert_eq!(
                token_lifetime(expires_in),
                Duration::from_secs(secs),
                "{expires_in}"
            );
        }
    }

    #[test]
    fn pages_ask_for_top_and_skip_and_keep_the_other_options() {
        let first =
            Url::parse("https://pbx.example.com/xapi/v1/Users?$select=Id,Number&$top=5").unwrap();
        let q = |u: &Url| {
            u.query_pairs()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(q(&page_url(&first, 0)), ["$select=Id,Number", "$top=100"]);
        assert_eq!(
            q(&page_url(&first, 200)),
            ["$select=Id,Number", "$top=100", "$skip=200"]
        );
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
