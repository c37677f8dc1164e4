//! What the engine's components share: settings, the store, where changes go, tokens and
//! Graph. Built once per process by the role; passed to the poller, the subscription upkeep
//! and the sinks. It holds no role concerns (no HTTP, no mode, no scheduler).

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::clients::graph::certs::KeyRing;
use crate::clients::graph::client::GraphClient;
use crate::clients::servicebus;
use crate::config::{ConfigError, Settings};
use crate::engine::publish::Publisher;
use crate::engine::tokens::TokenManager;
use crate::store::Store;

/// The engine's shared dependencies. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    /// Parsed settings.
    pub settings: Arc<Settings>,
    /// The store.
    pub store: Store,
    /// Where changes go.
    pub publisher: Publisher,
    /// Certificates rich notifications are encrypted for (empty until one is loaded).
    pub notification_keys: Arc<KeyRing>,
    /// Delegated and app tokens for background work.
    pub tokens: TokenManager,
    /// Microsoft Graph.
    pub graph: GraphClient,
    /// `PUBLISH_MODE=rest`: the Service Bus client changes are sent with.
    pub direct_bus: Option<Arc<servicebus::Client>>,
    /// Where the timer jobs and the sign-in hook take `now` from.
    pub clock: Clock,
    /// Held by a subscription maintenance pass: one at a time per process (`serve` starts
    /// one after a sign-in while its minute timer may be running another).
    pub maintenance: Arc<tokio::sync::Mutex<()>>,
    /// Clears the pending marks of handed-off changes, many per transaction.
    pub confirmer: crate::engine::pipeline::Confirmer,
}

/// Where `now` comes from: the system clock, or a manual one that tests move by hand (the
/// poller and the upkeep take `now` as an argument; this is what the roles pass them).
#[derive(Clone, Default, Debug)]
pub struct Clock(Option<Arc<Mutex<DateTime<Utc>>>>);

impl Clock {
    /// A clock that only moves when told to, starting at `at`.
    pub fn manual(at: DateTime<Utc>) -> Self {
        Self(Some(Arc::new(Mutex::new(at))))
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            Some(t) => *t.lock().unwrap_or_else(|p| p.into_inner()),
            None => Utc::now(),
        }
    }

    /// Moves a manual clock (the system clock ignores it).
    pub fn set(&self, at: DateTime<Utc>) {
        if let Some(t) = &self.0 {
            *t.lock().unwrap_or_else(|p| p.into_inner()) = at;
        }
    }
}

impl Context {
    /// Builds the context from settings and a store.
    pub fn new(settings: Settings, store: Store) -> Self {
        let publisher = Publisher::default();
        let tokens = TokenManager::new(
            crate::clients::entra::EntraClient::from_settings(&settings),
            seal_ring(&settings),
            store.clone(),
            publisher.clone(),
        );
        let graph = GraphClient::new(&settings.graph.endpoint, std::time::Duration::from_secs(10));
        Self {
            settings: Arc::new(settings),
            confirmer: crate::engine::pipeline::Confirmer::new(store.clone()),
            store,
            publisher,
            notification_keys: Arc::new(KeyRing::empty()),
            tokens,
            graph,
            direct_bus: None,
            clock: Clock::default(),
            maintenance: Arc::default(),
        }
    }

    /// Sends changes straight to Service Bus (`PUBLISH_MODE=rest`); built from
    /// `ServiceBusConnection`, which then needs the Send right.
    pub fn with_direct_publishing(mut self) -> Result<Self, crate::config::ConfigError> {
        let client = servicebus::Client::from_settings(&self.settings, "Send")?;
        self.direct_bus = Some(Arc::new(client));
        Ok(self)
    }

    /// Replaces the client credential (a certificate loaded from Key Vault at start-up).
    pub fn with_client_credential(
        mut self,
        credential: crate::clients::entra::ClientCredential,
    ) -> Self {
        let entra = crate::clients::entra::EntraClient::from_settings(&self.settings)
            .map(|e| e.with_credential(credential));
        self.tokens = TokenManager::new(
            entra,
            self.tokens.seal().cloned(),
            self.store.clone(),
            self.publisher.clone(),
        );
        self
    }

    /// Sets the notification key ring (`serve`: generated or from the file; `handler`: from
    /// the file or Key Vault).
    pub fn with_notification_keys(mut self, keys: KeyRing) -> Self {
        self.notification_keys = Arc::new(keys);
        self
    }
}

/// The sealing key ring for refresh tokens: `TOKEN_ENCRYPTION_KEY` and, during a rotation,
/// the previous key.
fn seal_ring(settings: &Settings) -> Result<crate::core::seal::KeyRing, ConfigError> {
    settings.require_token_key().map(|k| {
        let ring = crate::core::seal::KeyRing::new(*k);
        match settings.token_key_previous_bytes() {
            Some(old) => ring.with_previous(*old),
            None => ring,
        }
    })
}
