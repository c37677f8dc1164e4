//! Configuration: every setting of the README's settings table, parsed once, from a lookup
//! function.
//!
//! Values come from the environment (what Function App settings and `local.settings.json`
//! `Values` become) and, for `serve`, `subscribe` and `login`, from an optional TOML file whose
//! top-level keys are the same setting names; the environment wins. Parsing takes a lookup
//! function, so tests never touch the process environment.
//!
//! Errors name the setting and say what is expected. Secret settings are held in
//! [`SecretString`](secrecy::SecretString)/[`SecretBox`](secrecy::SecretBox), whose `Debug`
//! prints `[REDACTED]`, and their values never appear in an error.
//!
//! [`Settings`] is made of one struct per concern, each parsed by its own `parse` from
//! [`Sources`] (`sources.rs`, the one reader of raw values) through the typed readers of
//! `values.rs`. A command that needs an optional setting asks for it with a `require_*`
//! method, so the line that says it is missing is written once.
//!
//! To add a setting: a field, its doc comment naming the variable, on the struct of its
//! concern; read in that struct's `parse` with a typed reader
//! (`src.setting("NAME").seconds(1..=60)?`), never from the process environment, its
//! default beside the read; a `require_*` method here if a command cannot run without it;
//! its refusal line in `tests.rs`' table.

pub mod access;
pub mod app;
pub mod bus;
pub mod edge;
mod error;
pub mod graph;
pub mod hue;
pub mod pbx;
pub mod polling;
pub mod references;
pub mod sinks;
mod sources;
pub mod store;
mod values;

use secrecy::ExposeSecret;
use url::Url;

pub use access::AccessSettings;
pub use app::{AppSettings, AssertionAlg, KeyVaultSettings, DEFAULT_SCOPES};
pub use bus::{PublishMode, ServiceBusSettings};
pub use edge::EdgeSettings;
pub use error::ConfigError;
pub use graph::GraphSettings;
pub use hue::{HueSettings, HueTarget};
pub use pbx::PbxSettings;
pub use polling::PollingSettings;
pub use sources::Sources;
pub use store::{EncryptionSettings, StoreKind, StoreSettings, TablesConnection};

/// Every setting, parsed, one struct per concern. Optional settings are `None` when unset;
/// commands that need one call the matching `require_*` method, which names it in the error.
#[derive(Debug)]
pub struct Settings {
    /// The app registration in Entra ID and its credential (`AZURE_*`, `AUTH_SCOPES`).
    pub app: AppSettings,
    /// Certificates in Key Vault (`KEY_VAULT_*`, `MANAGED_IDENTITY_CLIENT_ID`).
    pub key_vault: KeyVaultSettings,
    /// Graph and this app's public side (`GRAPH_ENDPOINT`, `PUBLIC_BASE_URL`,
    /// `NOTIFICATION_CERTIFICATE_PATH`).
    pub graph: GraphSettings,
    /// The store (`STORE`, `TABLES_CONNECTION_STRING`, `AzureWebJobsStorage*`).
    pub store: StoreSettings,
    /// The keys sealing secrets at rest (`TOKEN_ENCRYPTION_KEY*`).
    pub encryption: EncryptionSettings,
    /// Service Bus (`ServiceBusConnection`, `PUBLISH_MODE`, `PRESENCE_TOPIC`, ...).
    pub service_bus: ServiceBusSettings,
    /// Polling and tenant mode (`POLL_*`, `RECONCILE_INTERVAL`, `TENANT_*`).
    pub polling: PollingSettings,
    /// Who may sign in and read presence (`ALLOWED_*`, `PRESENCE_API_TOKEN`).
    pub access: AccessSettings,
    /// The edge (`WATCH_USERS`, `PRESENCE_API_URL`, `PRESENCE_API_KEY`, `HEALTHCHECK_FILE`).
    pub edge: EdgeSettings,
    /// The Hue bridge (`HUE_*`).
    pub hue: HueSettings,
    /// `FUNCTIONS_CUSTOMHANDLER_PORT` (set by the Functions host).
    pub custom_handler_port: Option<u16>,
    /// `PBX` and friends: the PBX sync, or [`PbxSettings::Off`].
    pub pbx: PbxSettings,
    /// The sinks beside Hue (`MQTT_*`, `WEBHOOK_*`, `WLED_URL`, `BUSYLIGHT`, `[sinks]`).
    pub sinks: sinks::SinkSettings,
    /// Tables of the TOML file (e.g. `[lights]`) for the parts that read structured config.
    pub file_tables: toml::Table,
    /// Settings whose value was an App Service Key Vault reference left unresolved: read as
    /// unset above; the handler answers the functions that need one with its line
    /// (`references`), the other commands refuse to start.
    pub unresolved_references: Vec<references::KeyVaultReference>,
}

impl Settings {
    /// Parses every setting. The first wrong one is the error.
    pub fn parse(src: &Sources) -> Result<Self, ConfigError> {
        // The order is the order settings are read in, which is the order unresolved Key
        // Vault references are listed (the first is the one a command refuses to start with).
        let store = StoreSettings::parse(src)?;
        let graph = GraphSettings::parse(src)?;
        let tenant_users = polling::tenant_users(src)?;
        polling::check_tenant_mode_tenant(src, &tenant_users)?;
        let app = AppSettings::parse(src)?;
        let key_vault = KeyVaultSettings::parse(src)?;
        let encryption = EncryptionSettings::parse(src)?;
        let service_bus = ServiceBusSettings::parse(src)?;
        let polling = PollingSettings::parse(src, tenant_users)?;
        let access = AccessSettings::parse(src)?;
        let edge = EdgeSettings::parse(src)?;
        let hue = HueSettings::parse(src)?;
        let custom_handler_port = src
            .setting("FUNCTIONS_CUSTOMHANDLER_PORT")
            .parsed("a TCP port number", |v| v.parse::<u16>().ok())?;
        let pbx = pbx::parse(src, &src.file)?;
        let sinks = sinks::parse(src)?;
        Ok(Self {
            app,
            key_vault,
            graph,
            store,
            encryption,
            service_bus,
            polling,
            access,
            edge,
            hue,
            custom_handler_port,
            pbx,
            sinks,
            file_tables: src
                .file
                .iter()
                .filter(|(_, v)| v.is_table())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            // Last: every setting above has been read by now.
            unresolved_references: src.unresolved_references(),
        })
    }

    /// For the commands that need every value they read (all but the handler): the first
    /// setting that held an unresolved Key Vault reference is the error.
    pub fn refuse_unresolved_references(&self) -> Result<(), ConfigError> {
        match self.unresolved_references.first() {
            Some(r) => Err(r.to_config_error()),
            None => Ok(()),
        }
    }

    /// The redirect URI registered for the authorization-code flow.
    pub fn redirect_uri(&self) -> Result<Url, ConfigError> {
        let base = self.require_public_base_url()?;
        Ok(base.join("api/auth/end").expect("origin joins"))
    }

    /// The store backend for a command whose default is `default`.
    pub fn store_kind(&self, default: StoreKind) -> StoreKind {
        self.store.kind.unwrap_or(default)
    }

    /// `TOKEN_ENCRYPTION_KEY_PREVIOUS`'s bytes, if set.
    pub fn token_key_previous_bytes(&self) -> Option<&[u8; 32]> {
        self.encryption
            .previous_key
            .as_ref()
            .map(|k| k.expose_secret())
    }

    /// `TOKEN_ENCRYPTION_KEY`'s bytes, if set.
    pub fn token_key_bytes(&self) -> Option<&[u8; 32]> {
        self.encryption.key.as_ref().map(|k| k.expose_secret())
    }
}

/// Where an edge receives its messages: its own queue, or its subscription on the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveFrom<'a> {
    /// `PRESENCE_QUEUE`.
    Queue(&'a str),
    /// `PRESENCE_SUBSCRIPTION`.
    Subscription(&'a str),
}

/// The settings a command cannot do without, each with the one line that says it is
/// missing and what to set.
impl Settings {
    /// `AZURE_CLIENT_ID`, required for anything that talks to Entra ID.
    pub fn require_client_id(&self) -> Result<&str, ConfigError> {
        self.app.client_id.as_deref().ok_or_else(|| {
            ConfigError::missing(
                "AZURE_CLIENT_ID",
                "the app registration's client id (a GUID)",
            )
        })
    }

    /// `PUBLIC_BASE_URL` (or `https://$WEBSITE_HOSTNAME`): the sign-in's redirect URI.
    pub fn require_public_base_url(&self) -> Result<&Url, ConfigError> {
        self.graph.public_base_url.as_ref().ok_or_else(|| {
            ConfigError::missing(
                "PUBLIC_BASE_URL",
                "the public origin, e.g. https://myapp.azurewebsites.net",
            )
        })
    }

    /// `TOKEN_ENCRYPTION_KEY`: sealing refresh tokens and verifiers.
    pub fn require_token_key(&self) -> Result<&[u8; 32], ConfigError> {
        self.token_key_bytes().ok_or_else(|| {
            ConfigError::missing(
                "TOKEN_ENCRYPTION_KEY",
                "base64 of 32 random bytes (openssl rand -base64 32)",
            )
        })
    }

    /// Table Storage, when the store is `table`.
    pub fn require_tables(&self) -> Result<&TablesConnection, ConfigError> {
        self.store.tables.as_ref().ok_or_else(|| {
            ConfigError::missing(
                "TABLES_CONNECTION_STRING",
                "an Azure Storage connection string (or AzureWebJobsStorage) because STORE=table",
            )
        })
    }

    /// `ServiceBusConnection`, with the `right` (`Send`, `Listen`) the caller uses it for.
    pub fn require_service_bus_connection(
        &self,
        right: &str,
    ) -> Result<&secrecy::SecretString, ConfigError> {
        self.service_bus.connection.as_ref().ok_or_else(|| {
            ConfigError::missing(
                "ServiceBusConnection",
                &format!("a Service Bus connection string with the {right} right"),
            )
        })
    }

    /// Where an edge receives: `PRESENCE_QUEUE`, else `PRESENCE_SUBSCRIPTION`.
    pub fn require_receive_from(&self) -> Result<ReceiveFrom<'_>, ConfigError> {
        let bus = &self.service_bus;
        match (&bus.queue, &bus.subscription) {
            (Some(queue), _) => Ok(ReceiveFrom::Queue(queue)),
            (None, Some(sub)) => Ok(ReceiveFrom::Subscription(sub)),
            (None, None) => Err(ConfigError::missing(
                "PRESENCE_QUEUE or PRESENCE_SUBSCRIPTION",
                "this edge's queue (`edge-<name>`) or its subscription on the topic",
            )),
        }
    }

    /// `HUE_BRIDGE`, as given (`clients::hue::Address` parses it).
    pub fn require_hue_bridge(&self) -> Result<&str, ConfigError> {
        self.hue.bridge.as_deref().ok_or_else(|| {
            ConfigError::missing(
                "HUE_BRIDGE",
                "the bridge's address (see `teams-presence hue discover`)",
            )
        })
    }

    /// `HUE_APPLICATION_KEY`.
    pub fn require_hue_application_key(&self) -> Result<&secrecy::SecretString, ConfigError> {
        self.hue.application_key.as_ref().ok_or_else(|| {
            ConfigError::missing(
                "HUE_APPLICATION_KEY",
                "a key from `teams-presence hue pair`",
            )
        })
    }

    /// `HUE_TARGETS`, at least one.
    pub fn require_hue_targets(&self) -> Result<&[HueTarget], ConfigError> {
        if self.hue.targets.is_empty() {
            return Err(ConfigError::missing(
                "HUE_TARGETS",
                "what to colour, e.g. room:ID or light:ID (see `teams-presence hue list`)",
            ));
        }
        Ok(&self.hue.targets)
    }

    /// `FUNCTIONS_CUSTOMHANDLER_PORT`, for `handler`.
    pub fn require_custom_handler_port(&self) -> Result<u16, ConfigError> {
        self.custom_handler_port.ok_or_else(|| {
            ConfigError::missing(
                "FUNCTIONS_CUSTOMHANDLER_PORT",
                "the port the Functions host assigns (set by `func start`)",
            )
        })
    }

    /// `PBX`, for `pbx run`: the sync's settings.
    pub fn require_pbx(&self) -> Result<&pbx::SyncSettings, ConfigError> {
        self.pbx
            .sync()
            .ok_or_else(|| ConfigError::missing("PBX", "3cx or http: which PBX to sync with"))
    }
}

#[cfg(test)]
mod tests;
