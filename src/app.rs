//! The application state shared by every route and job, built once per process.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::Settings;
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
}

impl AppState {
    /// Builds the state.
    pub fn new(settings: Settings, store: Store, mode: Mode) -> Self {
        Self {
            settings: Arc::new(settings),
            store,
            publisher: Publisher::default(),
            mode,
            started_at: Utc::now(),
        }
    }
}
