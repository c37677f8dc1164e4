//! The application state shared by every route and job, built once per process.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::certs::KeyRing;
use crate::config::Settings;
use crate::graph::validation_token::JwksCache;
use crate::publish::Publisher;
use crate::store::Store;

/// Which command is running: a few routes behave differently (the status page exists only
/// in `serve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `teams-presence handler` under the Functions host.
    Handler,
    /// `teams-presence serve`.
    Serve,
}

/// Everything a request handler may need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Parsed settings.
    pub settings: Arc<Settings>,
    /// The store.
    pub store: Store,
    /// Where changes go.
    pub publisher: Publisher,
    /// Which command.
    pub mode: Mode,
    /// Process start, for the health and status pages.
    pub started_at: DateTime<Utc>,
    /// Certificates rich notifications are encrypted for (empty until one is loaded).
    pub notification_keys: Arc<KeyRing>,
    /// Signing keys of the validation tokens in notification batches.
    pub token_keys: JwksCache,
}

impl AppState {
    /// Builds the state.
    pub fn new(settings: Settings, store: Store, mode: Mode) -> Self {
        let token_keys = JwksCache::new(&settings.authority_host);
        Self {
            settings: Arc::new(settings),
            store,
            publisher: Publisher::default(),
            mode,
            started_at: Utc::now(),
            notification_keys: Arc::new(KeyRing::empty()),
            token_keys,
        }
    }

    /// Sets the notification key ring (`serve`: generated or from the file; `handler`: from
    /// the file or, later, Key Vault).
    pub fn with_notification_keys(mut self, keys: KeyRing) -> Self {
        self.notification_keys = Arc::new(keys);
        self
    }
}
