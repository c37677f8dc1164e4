//! Configuration: every setting of the README's settings table, parsed once, from a lookup
//! function.
//!
//! Values come from the environment (what Function App settings and `local.settings.json`
//! `Values` become) and, for `serve`, `subscribe` and `login`, from an optional TOML file whose
//! top-level keys are the same setting names; the environment wins. Parsing takes a lookup
//! function, so tests never touch the process environment.
//!
//! Errors name the setting and say what is expected. Secret settings are held in
//! [`SecretString`]/[`SecretBox`], whose `Debug` prints `[REDACTED]`, and their values never
//! appear in an error.

pub mod pbx;
pub mod sinks;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use url::Url;

/// A setting that is wrong or missing. Its `Display` is the one line a user sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting {setting}: {problem}")]
pub struct ConfigError {
    /// The setting's name, as written in the environment or TOML file.
    pub setting: String,
    /// What is wrong and what is expected.
    pub problem: String,
}

impl From<crate::core::lights::LightsError> for ConfigError {
    fn from(e: crate::core::lights::LightsError) -> Self {
        ConfigError {
            setting: e.setting,
            problem: e.problem,
        }
    }
}

impl ConfigError {
    /// A required setting that is absent.
    pub fn missing(setting: &str, what: &str) -> Self {
        Self {
            setting: setting.to_owned(),
            problem: format!("is not set; expected {what}"),
        }
    }

    fn invalid(setting: &str, value: Option<&str>, expected: &str) -> Self {
        let problem = match value {
            Some(v) => format!("{:?} is not valid; expected {expected}", truncate(v, 80)),
            None => format!("is not valid; expected {expected}"),
        };
        Self {
            setting: setting.to_owned(),
            problem,
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        s.chars().take(max).collect::<String>() + "…"
    }
}

/// Which store backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// Azure Table Storage (the handler's default).
    Table,
    /// Embedded SQLite (the default of `serve`, `login`, `users`).
    Sqlite,
}

/// Which signature a certificate client assertion uses (`AZURE_CLIENT_ASSERTION_ALG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionAlg {
    /// RSA-PSS SHA-256 with the `x5t#S256` header: Microsoft's current guidance (default).
    Ps256,
    /// RSA PKCS#1 v1.5 SHA-256 with the SHA-1 `x5t` header: the long-standing format.
    Rs256,
}

/// How changes reach the topic (`PUBLISH_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishMode {
    /// The Functions `message` output binding (handler); in-process only (serve).
    Binding,
    /// Straight to Service Bus over REST, with `userId` as an application property so
    /// subscriptions can filter per user, and a MessageId for duplicate detection.
    Rest,
}

/// What to colour on the Hue bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HueTarget {
    /// One light (`light:ID`; a v1 number or a v2 UUID).
    Light(String),
    /// A room (`room:ID`, through its `grouped_light`).
    Room(String),
    /// A zone (`zone:ID`).
    Zone(String),
    /// A v1 group (`group:ID`).
    Group(String),
}

impl HueTarget {
    fn parse(s: &str) -> Option<Self> {
        let (kind, id) = s.trim().split_once(':')?;
        let id = id.trim();
        if id.is_empty() {
            return None;
        }
        let id = id.to_owned();
        match kind.trim().to_ascii_lowercase().as_str() {
            "light" => Some(Self::Light(id)),
            "room" => Some(Self::Room(id)),
            "zone" => Some(Self::Zone(id)),
            "group" => Some(Self::Group(id)),
            _ => None,
        }
    }
}

impl fmt::Display for HueTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HueTarget::Light(id) => write!(f, "light:{id}"),
            HueTarget::Room(id) => write!(f, "room:{id}"),
            HueTarget::Zone(id) => write!(f, "zone:{id}"),
            HueTarget::Group(id) => write!(f, "group:{id}"),
        }
    }
}

/// How to reach Azure Table Storage.
#[derive(Debug, Clone)]
pub enum TablesConnection {
    /// A storage connection string (account key; `UseDevelopmentStorage=true` for Azurite).
    ConnectionString(SecretString),
    /// Identity-based (`AzureWebJobsStorage__accountName` / `__tableServiceUri`): bearer tokens
    /// from the managed identity.
    Identity {
        /// `https://{account}.table.core.windows.net`
        endpoint: Url,
        /// Client id of a user-assigned identity (`AzureWebJobsStorage__clientId`).
        client_id: Option<String>,
    },
}

/// Every setting, parsed. Optional settings are `None` when unset; commands that need one
/// call the matching `require_*` method, which names it in the error.
#[derive(Debug)]
pub struct Settings {
    /// `AZURE_TENANT_ID` (default `organizations`).
    pub tenant: String,
    /// `AZURE_CLIENT_ID`.
    pub client_id: Option<String>,
    /// `AZURE_CLIENT_SECRET`.
    pub client_secret: Option<SecretString>,
    /// `AZURE_CLIENT_SECRET_EXPIRES` (RFC 3339): when the client secret expires, for
    /// `doctor`'s warning (Entra ID does not tell the app itself).
    pub client_secret_expires: Option<chrono::DateTime<chrono::Utc>>,
    /// `AZURE_CLIENT_CERTIFICATE_PATH`.
    pub client_certificate_path: Option<PathBuf>,
    /// `AZURE_CLIENT_ASSERTION_ALG` (`PS256`, default, or `RS256`).
    pub client_assertion_alg: AssertionAlg,
    /// `KEY_VAULT_URL`.
    pub key_vault_url: Option<Url>,
    /// `KEY_VAULT_CLIENT_CERTIFICATE` (certificate name in the vault).
    pub key_vault_client_certificate: Option<String>,
    /// `KEY_VAULT_NOTIFICATION_CERTIFICATE` (certificate name in the vault).
    pub key_vault_notification_certificate: Option<String>,
    /// `MANAGED_IDENTITY_CLIENT_ID`, else `AzureWebJobsStorage__clientId`: the user-assigned
    /// identity for Key Vault (system-assigned when unset).
    pub managed_identity_client_id: Option<String>,
    /// `AZURE_AUTHORITY_HOST`.
    pub authority_host: Url,
    /// `GRAPH_ENDPOINT`.
    pub graph_endpoint: Url,
    /// `PUBLIC_BASE_URL`, or `https://$WEBSITE_HOSTNAME` in Azure.
    pub public_base_url: Option<Url>,
    /// `NOTIFICATION_CERTIFICATE_PATH`.
    pub notification_certificate_path: Option<PathBuf>,
    /// `TOKEN_ENCRYPTION_KEY` (32 bytes).
    pub token_encryption_key: Option<SecretBox<[u8; 32]>>,
    /// `TOKEN_ENCRYPTION_KEY_PREVIOUS`: the key before a rotation, still able to open.
    pub token_encryption_key_previous: Option<SecretBox<[u8; 32]>>,
    /// `TABLES_CONNECTION_STRING`, else `AzureWebJobsStorage` (or its identity-based form).
    pub tables: Option<TablesConnection>,
    /// `STORE`.
    pub store: Option<StoreKind>,
    /// `ServiceBusConnection`.
    pub service_bus_connection: Option<SecretString>,
    /// `PUBLISH_MODE` (`binding` or `rest`). Unset: `rest` in Azure (`WEBSITE_HOSTNAME` set)
    /// with a `ServiceBusConnection` connection string, `binding` everywhere else.
    pub publish_mode: PublishMode,
    /// `PRESENCE_TOPIC` (default `presence`).
    pub presence_topic: String,
    /// `PRESENCE_SUBSCRIPTION`.
    pub presence_subscription: Option<String>,
    /// `SERVICEBUS_ENDPOINT`.
    pub servicebus_endpoint: Option<Url>,
    /// `POLL_INTERVAL` (default 30 s).
    pub poll_interval: Duration,
    /// `RECONCILE_INTERVAL` (minutes, default 15): how often a user with a live
    /// change-notification subscription is still polled, as a safety net.
    pub reconcile_interval: Duration,
    /// `POLL_CONCURRENCY` (default 8): Graph calls in flight at once.
    pub poll_concurrency: usize,
    /// `TENANT_USERS`: tenant mode, the user ids to follow in batches; with those of
    /// `TENANT_USERS_FILE` (a file of ids, for more than an environment variable holds).
    pub tenant_users: Vec<String>,
    /// `TENANT_SYNC_USERS` (or its older singular alias `TENANT_SYNC_USER`): in tenant mode,
    /// the signed-in accounts (object ids or UPNs) whose delegated tokens own the presence
    /// subscriptions, at most 650 followed users each (Graph allows one presence subscription
    /// per user per app). The first one that has a token also reads presence; app-only
    /// client credentials do when the list is empty.
    pub tenant_sync_users: Vec<String>,
    /// `WATCH_USERS` (empty = all).
    pub watch_users: Vec<String>,
    /// `PRESENCE_API_TOKEN`: bearer token for `GET /api/presence/{id}` in `serve`.
    pub presence_api_token: Option<SecretString>,
    /// `PRESENCE_API_URL`: edge: the cloud's (or `serve`'s) base URL, where the edge reads the
    /// current presence of the users it shows (`GET {url}/api/presence/{id}`) at start and
    /// every `RECONCILE_INTERVAL`. Unset: no reconcile.
    pub presence_api_url: Option<Url>,
    /// `PRESENCE_API_KEY`: edge: the key for that request (the `presence-get` function key in
    /// the cloud, `PRESENCE_API_TOKEN` for `serve`).
    pub presence_api_key: Option<SecretString>,
    /// `HUE_BRIDGE`.
    pub hue_bridge: Option<String>,
    /// `HUE_APPLICATION_KEY`.
    pub hue_application_key: Option<SecretString>,
    /// `HUE_TARGETS`.
    pub hue_targets: Vec<HueTarget>,
    /// `AUTH_SCOPES` (space separated).
    pub auth_scopes: Vec<String>,
    /// `FUNCTIONS_CUSTOMHANDLER_PORT` (set by the Functions host).
    pub custom_handler_port: Option<u16>,
    /// Tables of the TOML file (e.g. `[lights]`) for the parts that read structured config.
    pub file_tables: toml::Table,
    /// `PBX` and friends: the PBX sync, when one is configured.
    pub pbx: Option<pbx::PbxSettings>,
    /// `PRESENCE_QUEUE`: for `subscribe` / `pbx run`, this edge's own queue instead of
    /// `PRESENCE_SUBSCRIPTION`.
    pub presence_queue: Option<String>,
    /// `HEALTHCHECK_FILE`: the heartbeat file the edge loop touches and `healthcheck` reads
    /// (default `heartbeat` in the data directory).
    pub healthcheck_file: Option<PathBuf>,
    /// The sinks beside Hue (`MQTT_*`, `WEBHOOK_*`, `WLED_URL`, `BUSYLIGHT`, `[sinks]`).
    pub sinks: sinks::SinkSettings,
    /// `ALLOWED_TENANTS` (comma separated tenant ids, lower case): when set, only users of
    /// these tenants may sign in.
    pub allowed_tenants: Vec<String>,
    /// `ALLOWED_USERS` (comma separated object ids or UPNs, lower case): when set, only these
    /// users may sign in.
    pub allowed_users: Vec<String>,
}

/// Default scopes: delegated Presence.Read.All is what presence change notifications need
/// (Presence.Read is not enough); offline_access yields the refresh token.
pub const DEFAULT_SCOPES: &str =
    "https://graph.microsoft.com/Presence.Read.All offline_access openid profile";

/// Looks a setting up in the environment (or a stand-in for it in tests).
type EnvLookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where settings come from: the environment first, then the TOML file.
pub struct Sources {
    env: EnvLookup,
    file: toml::Table,
}

impl Sources {
    /// The process environment plus an optional TOML file. `explicit` says the path was given
    /// with `--config`, in which case a missing file is an error.
    pub fn from_env_and_file(path: Option<&Path>, explicit: bool) -> Result<Self, ConfigError> {
        let file = match path {
            Some(p) => read_toml(p, explicit)?,
            None => toml::Table::new(),
        };
        Ok(Self {
            env: Box::new(|k| std::env::var(k).ok()),
            file,
        })
    }

    /// A fixed map (tests, and the handler's payload-mode unit tests).
    pub fn from_map(map: HashMap<String, String>) -> Self {
        Self {
            env: Box::new(move |k| map.get(k).cloned()),
            file: toml::Table::new(),
        }
    }

    /// Adds TOML text as the file source (tests).
    pub fn with_toml(mut self, text: &str) -> Result<Self, ConfigError> {
        self.file = text.parse().map_err(|e: toml::de::Error| ConfigError {
            setting: "--config".into(),
            problem: format!("is not valid TOML: {}", e.message()),
        })?;
        Ok(self)
    }

    /// The raw value of a setting: environment, then file; empty strings count as unset.
    pub fn get(&self, key: &str) -> Option<String> {
        let from_env = (self.env)(key).filter(|v| !v.trim().is_empty());
        from_env.or_else(|| match self.file.get(key)? {
            toml::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Boolean(b) => Some(b.to_string()),
            toml::Value::Array(a) => Some(
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => None,
        })
    }
}

fn read_toml(path: &Path, explicit: bool) -> Result<toml::Table, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(toml::Table::new())
        }
        Err(e) => {
            return Err(ConfigError {
                setting: "--config".into(),
                problem: format!("cannot read {}: {e}", path.display()),
            })
        }
    };
    text.parse().map_err(|e: toml::de::Error| ConfigError {
        setting: "--config".into(),
        problem: format!(
            "{} is not valid TOML: {}",
            path.display(),
            e.message().trim()
        ),
    })
}

impl Settings {
    /// Parses every setting. The first wrong one is the error.
    pub fn parse(src: &Sources) -> Result<Self, ConfigError> {
        let tables = match src.get("TABLES_CONNECTION_STRING") {
            Some(cs) => Some(TablesConnection::ConnectionString(cs.into())),
            None => match src.get("AzureWebJobsStorage") {
                Some(cs) => Some(TablesConnection::ConnectionString(cs.into())),
                None => identity_tables(src)?,
            },
        };
        let public_base_url = match src.get("PUBLIC_BASE_URL") {
            Some(v) => Some(parse_origin("PUBLIC_BASE_URL", &v)?),
            None => match src.get("WEBSITE_HOSTNAME") {
                Some(h) => Some(parse_origin("WEBSITE_HOSTNAME", &format!("https://{h}"))?),
                None => None,
            },
        };
        let tenant_users = tenant_users(src)?;
        check_tenant_mode_tenant(src, &tenant_users)?;
        Ok(Self {
            tenant: src
                .get("AZURE_TENANT_ID")
                .map(|t| parse_tenant(&t))
                .transpose()?
                .unwrap_or_else(|| "organizations".into()),
            client_id: src.get("AZURE_CLIENT_ID").map(|v| v.trim().to_owned()),
            client_secret: src.get("AZURE_CLIENT_SECRET").map(SecretString::from),
            client_secret_expires: match src.get("AZURE_CLIENT_SECRET_EXPIRES") {
                None => None,
                Some(v) => Some(
                    chrono::DateTime::parse_from_rfc3339(v.trim())
                        .map_err(|_| {
                            ConfigError::invalid(
                                "AZURE_CLIENT_SECRET_EXPIRES",
                                Some(&v),
                                "an RFC 3339 time such as 2027-05-01T00:00:00Z",
                            )
                        })?
                        .with_timezone(&chrono::Utc),
                ),
            },
            client_certificate_path: src.get("AZURE_CLIENT_CERTIFICATE_PATH").map(PathBuf::from),
            client_assertion_alg: match src.get("AZURE_CLIENT_ASSERTION_ALG") {
                None => AssertionAlg::Ps256,
                Some(v) if v.trim().eq_ignore_ascii_case("PS256") => AssertionAlg::Ps256,
                Some(v) if v.trim().eq_ignore_ascii_case("RS256") => AssertionAlg::Rs256,
                Some(v) => {
                    return Err(ConfigError::invalid(
                        "AZURE_CLIENT_ASSERTION_ALG",
                        Some(&v),
                        "PS256 or RS256",
                    ))
                }
            },
            key_vault_url: opt_url(src, "KEY_VAULT_URL")?,
            key_vault_client_certificate: src.get("KEY_VAULT_CLIENT_CERTIFICATE"),
            key_vault_notification_certificate: src.get("KEY_VAULT_NOTIFICATION_CERTIFICATE"),
            managed_identity_client_id: src
                .get("MANAGED_IDENTITY_CLIENT_ID")
                .or_else(|| src.get("AzureWebJobsStorage__clientId")),
            authority_host: opt_url(src, "AZURE_AUTHORITY_HOST")?
                .unwrap_or_else(|| Url::parse("https://login.microsoftonline.com").unwrap()),
            graph_endpoint: opt_url(src, "GRAPH_ENDPOINT")?
                .unwrap_or_else(|| Url::parse("https://graph.microsoft.com").unwrap()),
            public_base_url,
            notification_certificate_path: src
                .get("NOTIFICATION_CERTIFICATE_PATH")
                .map(PathBuf::from),
            token_encryption_key: src
                .get("TOKEN_ENCRYPTION_KEY")
                .map(|v| parse_key("TOKEN_ENCRYPTION_KEY", &v))
                .transpose()?,
            token_encryption_key_previous: src
                .get("TOKEN_ENCRYPTION_KEY_PREVIOUS")
                .map(|v| parse_key("TOKEN_ENCRYPTION_KEY_PREVIOUS", &v))
                .transpose()?,
            tables,
            store: match src.get("STORE") {
                None => None,
                Some(v) => Some(match v.trim().to_ascii_lowercase().as_str() {
                    "table" => StoreKind::Table,
                    "sqlite" => StoreKind::Sqlite,
                    _ => {
                        return Err(ConfigError::invalid(
                            "STORE",
                            Some(&v),
                            "`table` or `sqlite`",
                        ))
                    }
                }),
            },
            service_bus_connection: src.get("ServiceBusConnection").map(SecretString::from),
            publish_mode: match src.get("PUBLISH_MODE") {
                // In Azure a plain connection string can only be there for the REST publisher
                // (infra's binding is identity-based: ServiceBusConnection__*), and only REST
                // messages carry the `userId` the per-edge filters need. Under `func start`
                // the connection string serves the output binding the function declares, so
                // local runs keep the binding.
                None if src.get("ServiceBusConnection").is_some()
                    && src.get("WEBSITE_HOSTNAME").is_some() =>
                {
                    PublishMode::Rest
                }
                None => PublishMode::Binding,
                Some(v) if v.trim().eq_ignore_ascii_case("binding") => PublishMode::Binding,
                Some(v) if v.trim().eq_ignore_ascii_case("rest") => PublishMode::Rest,
                Some(v) => {
                    return Err(ConfigError::invalid(
                        "PUBLISH_MODE",
                        Some(&v),
                        "`binding` or `rest`",
                    ))
                }
            },
            presence_topic: src
                .get("PRESENCE_TOPIC")
                .unwrap_or_else(|| "presence".into()),
            presence_subscription: src.get("PRESENCE_SUBSCRIPTION"),
            servicebus_endpoint: opt_url(src, "SERVICEBUS_ENDPOINT")?,
            poll_interval: match src.get("POLL_INTERVAL") {
                None => Duration::from_secs(30),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if (1..=86_400).contains(&n) => Duration::from_secs(n),
                    _ => {
                        return Err(ConfigError::invalid(
                            "POLL_INTERVAL",
                            Some(&v),
                            "a whole number of seconds from 1 to 86400",
                        ))
                    }
                },
            },
            reconcile_interval: match src.get("RECONCILE_INTERVAL") {
                None => Duration::from_secs(15 * 60),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if (1..=1440).contains(&n) => Duration::from_secs(n * 60),
                    _ => {
                        return Err(ConfigError::invalid(
                            "RECONCILE_INTERVAL",
                            Some(&v),
                            "a whole number of minutes from 1 to 1440",
                        ))
                    }
                },
            },
            poll_concurrency: match src.get("POLL_CONCURRENCY") {
                None => 8,
                Some(v) => match v.trim().parse::<usize>() {
                    Ok(n) if (1..=64).contains(&n) => n,
                    _ => {
                        return Err(ConfigError::invalid(
                            "POLL_CONCURRENCY",
                            Some(&v),
                            "a number from 1 to 64",
                        ))
                    }
                },
            },
            tenant_users,
            tenant_sync_users: {
                // Both spellings may be set (an old one left behind): join them, once each.
                let mut v = list(src.get("TENANT_SYNC_USERS"));
                for u in list(src.get("TENANT_SYNC_USER")) {
                    if !v.iter().any(|x| x.eq_ignore_ascii_case(&u)) {
                        v.push(u);
                    }
                }
                v
            },
            watch_users: list(src.get("WATCH_USERS")),
            presence_api_token: src.get("PRESENCE_API_TOKEN").map(SecretString::from),
            presence_api_url: opt_url(src, "PRESENCE_API_URL")?,
            presence_api_key: src.get("PRESENCE_API_KEY").map(SecretString::from),
            hue_bridge: src.get("HUE_BRIDGE").map(|v| v.trim().to_owned()),
            hue_application_key: src.get("HUE_APPLICATION_KEY").map(SecretString::from),
            hue_targets: list(src.get("HUE_TARGETS"))
                .iter()
                .map(|t| {
                    HueTarget::parse(t).ok_or_else(|| {
                        ConfigError::invalid(
                            "HUE_TARGETS",
                            Some(t),
                            "a comma-separated list of light:ID, room:ID, zone:ID or group:ID",
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
            auth_scopes: src
                .get("AUTH_SCOPES")
                .unwrap_or_else(|| DEFAULT_SCOPES.into())
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            custom_handler_port: match src.get("FUNCTIONS_CUSTOMHANDLER_PORT") {
                None => None,
                Some(v) => Some(v.trim().parse::<u16>().map_err(|_| {
                    ConfigError::invalid(
                        "FUNCTIONS_CUSTOMHANDLER_PORT",
                        Some(&v),
                        "a TCP port number",
                    )
                })?),
            },
            file_tables: src
                .file
                .iter()
                .filter(|(_, v)| v.is_table())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            pbx: pbx::parse(src, &src.file)?,
            presence_queue: src.get("PRESENCE_QUEUE").map(|q| q.trim().to_owned()),
            healthcheck_file: src.get("HEALTHCHECK_FILE").map(PathBuf::from),
            sinks: sinks::parse(src)?,
            allowed_tenants: lower_list(src.get("ALLOWED_TENANTS")),
            allowed_users: lower_list(src.get("ALLOWED_USERS")),
        })
    }

    /// `AZURE_CLIENT_ID`, required for anything that talks to Entra ID.
    pub fn require_client_id(&self) -> Result<&str, ConfigError> {
        self.client_id.as_deref().ok_or_else(|| {
            ConfigError::missing(
                "AZURE_CLIENT_ID",
                "the app registration's client id (a GUID)",
            )
        })
    }

    /// The redirect URI registered for the authorization-code flow.
    pub fn redirect_uri(&self) -> Result<Url, ConfigError> {
        let base = self.public_base_url.as_ref().ok_or_else(|| {
            ConfigError::missing(
                "PUBLIC_BASE_URL",
                "the public origin, e.g. https://myapp.azurewebsites.net",
            )
        })?;
        Ok(base.join("api/auth/end").expect("origin joins"))
    }

    /// The store backend for a command whose default is `default`.
    pub fn store_kind(&self, default: StoreKind) -> StoreKind {
        self.store.unwrap_or(default)
    }

    /// `TOKEN_ENCRYPTION_KEY_PREVIOUS`'s bytes, if set.
    pub fn token_key_previous_bytes(&self) -> Option<&[u8; 32]> {
        self.token_encryption_key_previous
            .as_ref()
            .map(|k| k.expose_secret())
    }

    /// `TOKEN_ENCRYPTION_KEY`'s bytes, if set.
    pub fn token_key_bytes(&self) -> Option<&[u8; 32]> {
        self.token_encryption_key
            .as_ref()
            .map(|k| k.expose_secret())
    }
}

fn identity_tables(src: &Sources) -> Result<Option<TablesConnection>, ConfigError> {
    let client_id = src.get("AzureWebJobsStorage__clientId");
    if let Some(uri) = src.get("AzureWebJobsStorage__tableServiceUri") {
        let endpoint = Url::parse(uri.trim()).map_err(|_| {
            ConfigError::invalid(
                "AzureWebJobsStorage__tableServiceUri",
                Some(&uri),
                "an https URL",
            )
        })?;
        return Ok(Some(TablesConnection::Identity {
            endpoint,
            client_id,
        }));
    }
    if let Some(account) = src.get("AzureWebJobsStorage__accountName") {
        let account = account.trim();
        if account.is_empty() || !account.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ConfigError::invalid(
                "AzureWebJobsStorage__accountName",
                Some(account),
                "a storage account name (letters and digits)",
            ));
        }
        let endpoint = Url::parse(&format!("https://{account}.table.core.windows.net")).unwrap();
        return Ok(Some(TablesConnection::Identity {
            endpoint,
            client_id,
        }));
    }
    Ok(None)
}

fn parse_tenant(v: &str) -> Result<String, ConfigError> {
    let t = v.trim();
    let ok = !t.is_empty()
        && t.len() <= 100
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if ok {
        Ok(t.to_owned())
    } else {
        Err(ConfigError::invalid(
            "AZURE_TENANT_ID",
            Some(v),
            "a tenant id (GUID), a domain, `organizations` or `common`",
        ))
    }
}

fn opt_url(src: &Sources, key: &str) -> Result<Option<Url>, ConfigError> {
    match src.get(key) {
        None => Ok(None),
        Some(v) => match Url::parse(v.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(Some(u)),
            _ => Err(ConfigError::invalid(key, Some(&v), "an http(s) URL")),
        },
    }
}

fn parse_origin(key: &str, v: &str) -> Result<Url, ConfigError> {
    let trimmed = v.trim().trim_end_matches('/');
    match Url::parse(&format!("{trimmed}/")) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.query().is_none() =>
        {
            Ok(u)
        }
        _ => Err(ConfigError::invalid(
            key,
            Some(v),
            "an origin such as https://example.com",
        )),
    }
}

fn parse_key(key: &str, v: &str) -> Result<SecretBox<[u8; 32]>, ConfigError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        // Never echo the value: it is a secret.
        .ok_or_else(|| {
            ConfigError::invalid(
                key,
                None,
                "base64 of exactly 32 random bytes (e.g. `openssl rand -base64 32`)",
            )
        })?;
    Ok(SecretBox::new(Box::new(bytes)))
}

/// Tenant mode (`TENANT_USERS`) follows one tenant's users with app credentials: its
/// `AZURE_TENANT_ID` must name that tenant by id, not a domain or `common`/`organizations`
/// (an authority any tenant's users could sign in through).
fn check_tenant_mode_tenant(src: &Sources, tenant_users: &[String]) -> Result<(), ConfigError> {
    if tenant_users.is_empty() {
        return Ok(());
    }
    match src.get("AZURE_TENANT_ID") {
        Some(t) if t.trim().len() != 36 || uuid::Uuid::parse_str(t.trim()).is_err() => {
            Err(ConfigError::invalid(
                "AZURE_TENANT_ID",
                Some(&t),
                "the tenant's id (a GUID) in tenant mode (TENANT_USERS is set)",
            ))
        }
        _ => Ok(()),
    }
}

/// `TENANT_USERS` and the ids in the file `TENANT_USERS_FILE` names (separated by commas,
/// spaces or new lines), once each. The file is for tenants too large for one environment
/// variable: Linux passes a process at most 128 KiB per variable, about 3,500 ids.
fn tenant_users(src: &Sources) -> Result<Vec<String>, ConfigError> {
    let mut users = list(src.get("TENANT_USERS"));
    if let Some(path) = src.get("TENANT_USERS_FILE") {
        let text = std::fs::read_to_string(path.trim()).map_err(|e| ConfigError {
            setting: "TENANT_USERS_FILE".into(),
            problem: format!("cannot read {}: {}", path.trim(), e.kind()),
        })?;
        let mut seen: std::collections::HashSet<String> = users.iter().cloned().collect();
        for id in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|x| !x.is_empty())
        {
            if seen.insert(id.to_owned()) {
                users.push(id.to_owned());
            }
        }
    }
    Ok(users)
}

fn lower_list(v: Option<String>) -> Vec<String> {
    list(v).into_iter().map(|s| s.to_lowercase()).collect()
}

fn list(v: Option<String>) -> Vec<String> {
    v.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests;
