//! The application state shared by every route and job, built once per process.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::certs::KeyRing;
use crate::config::Settings;
use crate::graph::validation_token::JwksCache;
use crate::publish::Publisher;
use crate::store::Store;
use crate::tokens::TokenManager;

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
    /// Signing keys of the validation tokens in notification batches (and of id_tokens).
    pub token_keys: JwksCache,
    /// Delegated tokens for background work.
    pub tokens: TokenManager,
    /// The polling safety net (kept across ticks: budgets, backoff).
    pub poller: crate::poller::Poller,
    /// Microsoft Graph.
    pub graph: crate::graph::client::GraphClient,
    /// What `serve`'s lights did last (status page).
    pub sink_status: crate::sinks::SharedSinkStatus,
    /// `PUBLISH_MODE=rest`: the Service Bus client changes are sent with.
    pub direct_bus: Option<Arc<crate::servicebus::Client>>,
}

impl AppState {
    /// Builds the state.
    pub fn new(settings: Settings, store: Store, mode: Mode) -> Self {
        let token_keys = JwksCache::new(&settings.authority_host);
        let publisher = Publisher::default();
        let entra = crate::entra::EntraClient::from_settings(&settings);
        let seal = settings.token_key_bytes().map(|k| {
            let ring = crate::seal::KeyRing::new(*k);
            match settings.token_key_previous_bytes() {
                Some(old) => ring.with_previous(*old),
                None => ring,
            }
        });
        let tokens = TokenManager::new(entra, seal, store.clone(), publisher.clone());
        let graph = crate::graph::client::GraphClient::new(
            &settings.graph_endpoint,
            std::time::Duration::from_secs(10),
        );
        let poller = crate::poller::Poller::new(graph.clone());
        Self {
            poller,
            graph,
            sink_status: Default::default(),
            direct_bus: None,
            settings: Arc::new(settings),
            store,
            publisher,
            tokens,
            mode,
            started_at: Utc::now(),
            notification_keys: Arc::new(KeyRing::empty()),
            token_keys,
        }
    }

    /// Sends changes straight to Service Bus (`PUBLISH_MODE=rest`); built from
    /// `ServiceBusConnection`, which then needs the Send right.
    pub fn with_direct_publishing(mut self) -> Result<Self, crate::config::ConfigError> {
        let client = crate::servicebus::Client::from_settings(&self.settings, "Send")?;
        self.direct_bus = Some(Arc::new(client));
        Ok(self)
    }

    /// Replaces the client credential (a certificate loaded from Key Vault at start-up).
    pub fn with_client_credential(mut self, credential: crate::entra::ClientCredential) -> Self {
        let entra = crate::entra::EntraClient::from_settings(&self.settings)
            .map(|e| e.with_credential(credential));
        self.tokens = TokenManager::new(
            entra,
            self.tokens.seal().ok().cloned(),
            self.store.clone(),
            self.publisher.clone(),
        );
        self
    }

    /// Called after a user signed in (browser or device code): the place where their
    /// subscription and first poll start.
    pub async fn on_signed_in(&self, user_id: &str) {
        self.poller.poll_soon(user_id);
        if self.mode == Mode::Serve {
            // serve: subscribe right away rather than at the next maintenance pass.
            let state = self.clone();
            tokio::spawn(async move {
                crate::subscriptions::maintain(&state, Utc::now()).await;
            });
        }
    }

    /// Sets the notification key ring (`serve`: generated or from the file; `handler`: from
    /// the file or, later, Key Vault).
    pub fn with_notification_keys(mut self, keys: KeyRing) -> Self {
        self.notification_keys = Arc::new(keys);
        self
    }
}
