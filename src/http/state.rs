//! The state every route and job of a role shares, built once per process: the engine's
//! [`Context`] plus what belongs to the roles (mode, the poller's memory, the lights'
//! status, the signing keys of validation tokens).

use std::ops::Deref;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::clients::graph::certs::KeyRing;
use crate::clients::graph::validation_token::JwksCache;
use crate::config::Settings;
use crate::engine::applier::SharedSinkStatus;
use crate::engine::context::Context;
use crate::engine::pbx::PbxSync;
use crate::engine::poller::Poller;
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

/// Everything a request handler may need. Cheap to clone. Dereferences to the engine's
/// [`Context`], so `state.store`, `state.settings`, ... read as before.
#[derive(Clone)]
pub struct AppState {
    /// The engine's shared dependencies.
    pub ctx: Context,
    /// Which command.
    pub mode: Mode,
    /// Process start, for the health and status pages.
    pub started_at: DateTime<Utc>,
    /// Signing keys of the validation tokens in notification batches (and of id_tokens).
    pub token_keys: JwksCache,
    /// The polling safety net (kept across ticks: budgets, backoff).
    pub poller: Poller,
    /// What `serve`'s lights did last (status page).
    pub sink_status: SharedSinkStatus,
    /// `serve`'s other sinks (MQTT, webhook, WLED), when configured.
    pub sinks: Option<Arc<crate::engine::sinks::Fanout>>,
    /// The PBX sync, when a PBX is configured.
    pub pbx: Option<Arc<PbxSync>>,
    /// `serve`'s generated admin token: opens the status from another machine
    /// (`crate::http::access`).
    pub admin_token: Option<secrecy::SecretString>,
    /// The status page's device-code sign-in (`crate::http::device`).
    pub page_sign_in: Arc<crate::engine::device_code::PageSignIn>,
    /// The recent changes `presence-refresh` already repeated for the output binding.
    pub repeats: Arc<crate::engine::pipeline::Repeats>,
    /// The subscriptions the webhook read, revalidated by ETag on every use.
    pub subscriptions: Arc<crate::store::cache::RecordCache<crate::store::SubscriptionRecord>>,
}

impl Deref for AppState {
    type Target = Context;
    fn deref(&self) -> &Context {
        &self.ctx
    }
}

impl AppState {
    /// Builds the state.
    pub fn new(settings: Settings, store: Store, mode: Mode) -> Self {
        let token_keys = JwksCache::new(&settings.app.authority_host);
        let ctx = Context::new(settings, store);
        Self {
            poller: Poller::new(ctx.graph.clone()),
            ctx,
            mode,
            started_at: Utc::now(),
            token_keys,
            sink_status: Default::default(),
            sinks: None,
            pbx: None,
            admin_token: None,
            page_sign_in: Default::default(),
            repeats: Default::default(),
            subscriptions: Arc::new(crate::store::cache::RecordCache::new(1024)),
        }
    }

    /// Turns the PBX sync on when `PBX` is set (stateless under the Functions host, where
    /// every invocation reloads the links from the store).
    pub fn with_pbx(mut self) -> Result<Self, crate::config::ConfigError> {
        self.pbx = PbxSync::from_context(&self.ctx, &self.poller, self.mode == Mode::Handler)?;
        Ok(self)
    }

    /// Sends changes straight to Service Bus (`PUBLISH_MODE=rest`); built from
    /// `ServiceBusConnection`, which then needs the Send right.
    pub fn with_direct_publishing(mut self) -> Result<Self, crate::config::ConfigError> {
        self.ctx = self.ctx.with_direct_publishing()?;
        Ok(self)
    }

    /// Replaces the client credential (a certificate loaded from Key Vault at start-up).
    pub fn with_client_credential(
        mut self,
        credential: crate::clients::entra::ClientCredential,
    ) -> Self {
        self.ctx = self.ctx.with_client_credential(credential);
        self
    }

    /// Sets the notification key ring (`serve`: generated or from the file; `handler`: from
    /// the file or, later, Key Vault).
    pub fn with_notification_keys(mut self, keys: KeyRing) -> Self {
        self.ctx = self.ctx.with_notification_keys(keys);
        self
    }

    /// Called after a user signed in (browser or device code): the place where their
    /// subscription and first poll start, at once rather than at the next tick.
    pub async fn on_signed_in(&self, user_id: &str) {
        self.poller.poll_soon(user_id);
        match self.mode {
            Mode::Serve => {
                // serve: subscribe right away rather than at the next maintenance pass.
                let ctx = self.ctx.clone();
                let poller = self.poller.clone();
                tokio::spawn(async move {
                    crate::engine::subscriptions::maintain(&ctx, &poller, ctx.clock.now()).await;
                });
            }
            Mode::Handler => self.signed_in_in_the_cloud(user_id).await,
        }
    }

    /// Under the Functions host nothing runs between timer ticks, and an instance may be
    /// frozen once it answered, so the work happens inside the sign-in's own invocation:
    /// the subscription is created and the user polled. With `PUBLISH_MODE=rest` the first
    /// state is sent at once; with the output binding (which `auth-end`, a forwarded HTTP
    /// function, does not have) it is stored pending and the next `presence-refresh` sends it.
    async fn signed_in_in_the_cloud(&self, user_id: &str) {
        let now = self.clock.now();
        let upkeep = crate::engine::subscriptions::maintain(&self.ctx, &self.poller, now);
        if tokio::time::timeout(SIGN_IN_WORK, upkeep).await.is_err() {
            tracing::warn!(
                user_id,
                "creating the subscription took too long; the next upkeep retries"
            );
        }
        let outbox = crate::engine::publish::Outbox::default();
        self.poller
            .poll_now(&self.ctx, Some(&outbox), user_id, now)
            .await;
        let msgs = outbox.drain();
        if let (Some(bus), false) = (&self.direct_bus, msgs.is_empty()) {
            if let Err(e) = crate::engine::pipeline::send_and_confirm(&self.store, bus, &msgs).await
            {
                tracing::warn!(user_id, error = %e, "cannot send the first presence; presence-refresh sends it again");
            }
        }
    }
}

/// The longest a sign-in waits for the subscription to be created (Graph validates it with
/// a request of its own, answered by another invocation of this app).
const SIGN_IN_WORK: std::time::Duration = std::time::Duration::from_secs(20);
