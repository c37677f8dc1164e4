//! What an edge shows and how it heals (`WATCH_USERS`, `PRESENCE_API_URL`,
//! `PRESENCE_API_KEY`, `HEALTHCHECK_FILE`); how often it reads is `RECONCILE_INTERVAL`
//! (`polling`), where it receives is `PRESENCE_QUEUE` / `PRESENCE_SUBSCRIPTION` (`bus`).

use std::path::PathBuf;

use secrecy::SecretString;
use url::Url;

use super::error::ConfigError;
use super::sources::Sources;
use super::values::HTTP;

/// The edge (`subscribe`, `hue-subscriber`, `pbx run`).
#[derive(Debug)]
pub struct EdgeSettings {
    /// `WATCH_USERS` (empty = all).
    pub watch_users: Vec<String>,
    /// `PRESENCE_API_URL`: the cloud's (or `serve`'s) base URL, where the edge reads the
    /// current presence of the users it shows (`GET {url}/api/presence/{id}`) at start and
    /// every `RECONCILE_INTERVAL`. Unset: no reconcile.
    pub presence_api_url: Option<Url>,
    /// `PRESENCE_API_KEY`: the key for that request (the `presence-get` function key in the
    /// cloud, `PRESENCE_API_TOKEN` for `serve`).
    pub presence_api_key: Option<SecretString>,
    /// `HEALTHCHECK_FILE`: the heartbeat file the edge loop touches and `healthcheck` reads
    /// (default `heartbeat` in the data directory).
    pub healthcheck_file: Option<PathBuf>,
}

impl EdgeSettings {
    pub(super) fn parse(src: &Sources) -> Result<Self, ConfigError> {
        Ok(Self {
            watch_users: src.setting("WATCH_USERS").list(),
            presence_api_url: src
                .setting("PRESENCE_API_URL")
                .url(HTTP, "an http(s) URL")?,
            presence_api_key: src.setting("PRESENCE_API_KEY").secret(),
            healthcheck_file: src.setting("HEALTHCHECK_FILE").path(),
        })
    }
}
