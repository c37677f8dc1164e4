//! `teams-presence serve`: the standalone all-in-one server on the embedded SQLite store.
//!
//! Starts with no settings at all: it creates its data directory, generates what it can
//! (the token encryption key, mode 0600), and its status page says what to configure next.

pub mod sinks;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::routing::get;
use axum::Router;
use base64::Engine;
use secrecy::{SecretBox, SecretString};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Settings, StoreKind};
use crate::engine::shutdown::{Stop, DRAIN_BOUND};
use crate::files::write_private;
use crate::http::state::{AppState, Mode};

/// Loads `token-key` from the data directory, generating it (32 random bytes, base64,
/// mode 0600) on first run. Used when `TOKEN_ENCRYPTION_KEY` is not set.
pub fn load_or_create_token_key(dir: &Path) -> anyhow::Result<SecretBox<[u8; 32]>> {
    let path = dir.join("token-key");
    let decode = |text: &str| -> anyhow::Result<SecretBox<[u8; 32]>> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .with_context(|| format!("{} is not base64 of 32 bytes", path.display()))?;
        Ok(SecretBox::new(Box::new(bytes)))
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => decode(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            openssl::rand::rand_bytes(&mut key).context("cannot get random bytes")?;
            let text = base64::engine::general_purpose::STANDARD.encode(key);
            write_private(&path, text.as_bytes())?;
            Ok(SecretBox::new(Box::new(key)))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Loads `admin-token` from the data directory, generating it (mode 0600) on first run and
/// printing it that once: it opens the status page from another machine
/// (`/?token=...`, or `Authorization: Bearer ...`). Used when `PRESENCE_API_TOKEN` is not set.
pub fn load_or_create_admin_token(dir: &Path) -> anyhow::Result<SecretString> {
    let path = dir.join("admin-token");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(SecretString::from(text.trim().to_owned())),
        Ok(_) => anyhow::bail!("{} is empty; delete it to get a new token", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 24];
            openssl::rand::rand_bytes(&mut bytes).context("cannot get random bytes")?;
            let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            write_private(&path, token.as_bytes())?;
            // Printed, not logged: log lines may be shipped elsewhere.
            println!(
                "The status page answers on this machine only. From elsewhere, open it once with ?token={token} (kept in {}).",
                path.display()
            );
            Ok(SecretString::from(token))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Builds `serve`'s state: data directory, generated key, store.
pub async fn build_state(mut settings: Settings, data_dir: &Path) -> anyhow::Result<AppState> {
    crate::files::prepare_data_dir(data_dir)?;
    if settings.encryption.key.is_none() {
        settings.encryption.key = Some(load_or_create_token_key(data_dir)?);
    }
    // Settings problems first, so a wrong setting is the one line the user sees.
    let store = crate::store::open(&settings, StoreKind::Sqlite, data_dir)?;
    let keys = crate::clients::graph::certs::from_settings(&settings, Some(data_dir))?;
    store.ensure_tables().await?;
    let direct = settings.service_bus.publish_mode == crate::config::PublishMode::Rest;
    let admin = if settings.access.presence_api_token.is_none() {
        Some(load_or_create_admin_token(data_dir)?)
    } else {
        None
    };
    let mut state = AppState::new(settings, store, Mode::Serve).with_notification_keys(keys);
    // Keys retired by a rotation less than 4.5 hours ago: Graph may still retry for them.
    state.ctx =
        crate::engine::subscriptions::with_retired_keys(state.ctx, chrono::Utc::now()).await;
    let mut state = state.with_pbx()?;
    state.admin_token = admin;
    // MQTT, webhook, WLED: started here, fed by `sinks::spawn` with every change.
    state.sinks = crate::engine::sinks::Fanout::from_settings(
        &state.settings,
        crate::engine::applier::lights_from(&state.settings)?,
    )
    .map(Arc::new);
    Ok(if direct {
        state.with_direct_publishing()?
    } else {
        state
    })
}

/// `serve`'s router: the API plus the status page.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/",
            get(crate::http::status::status_page).route_layer(
                axum::middleware::from_fn_with_state(state.clone(), crate::http::access::guard),
            ),
        )
        .with_state(state.clone())
        .merge(crate::http::api_router(state))
        .layer(crate::http::trace::layer())
}

/// How often `serve` sends again the changes whose publishing is not confirmed (the cloud's
/// `presence-refresh` cadence).
pub const RESEND_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// `serve`'s own clock: every second, whoever is due is polled (the same code the
/// `presence-refresh` timer runs); every minute, subscriptions are maintained (the same code
/// as `subscriptions-renew`); every [`RESEND_EVERY`], changes still pending are sent again.
/// Stops at the first tick after `stop`, never inside one.
async fn scheduler(state: AppState, stop: CancellationToken) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_maintenance: Option<tokio::time::Instant> = None;
    let mut last_resend: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.cancelled() => break,
        }
        // At start too: what a killed process stored but never handed on goes now.
        if last_resend.is_none_or(|t| t.elapsed() >= RESEND_EVERY) {
            // Changes younger than a few seconds are still on their way.
            let before = state.clock.now() - chrono::Duration::seconds(5);
            if let Err(e) = crate::engine::pipeline::resend_pending(
                &state.store,
                &state.publisher,
                None,
                before,
                None,
            )
            .await
            {
                tracing::warn!(error = %e, "cannot send pending changes again");
            }
            last_resend = Some(tokio::time::Instant::now());
        }
        // Subscriptions first (every minute), so a fresh one is there before polling
        // decides between the fast and the slow cadence.
        if last_maintenance.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60)) {
            crate::engine::subscriptions::maintain(&state, &state.poller, chrono::Utc::now()).await;
            last_maintenance = Some(tokio::time::Instant::now());
        }
        state.poller.tick(&state, None, chrono::Utc::now()).await;
    }
}

/// Serves until `shutdown` resolves, then stops in order within [`DRAIN_BOUND`]: the
/// listener takes no new connection and the requests under way finish; the scheduler
/// finishes its tick and the PBX sync its step; then the sinks deliver what they were handed
/// (the lights, MQTT, webhook, WLED) and the pending marks of what they took are cleared.
/// What is still undelivered at the bound is counted in one line. The listener is injected
/// so tests bind port 0.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, store = %state.store.describe(), "serving; status page at http://{addr}/");
    // Producers (the listener, the scheduler, the PBX sync) stop first; the sinks, which
    // consume what they publish, drain after them.
    let (stop, drain) = (Stop::new(), Stop::new());
    let (producers, consumers) = (TaskTracker::new(), TaskTracker::new());
    crate::serve::sinks::start(&state, &consumers, drain.clone());
    producers.spawn(scheduler(state.clone(), stop.token().clone()));
    start_pbx(&state, &producers, stop.token().clone());
    // The peer address decides who may read the status (crate::http::access).
    let service = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let serving = axum::serve(listener, service)
        .with_graceful_shutdown(stop.token().clone().cancelled_owned())
        .into_future();
    tokio::pin!(serving, shutdown);
    let result = tokio::select! {
        r = &mut serving => r,
        () = &mut shutdown => {
            let deadline = stop.begin(DRAIN_BOUND);
            match tokio::time::timeout_at(deadline, &mut serving).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!("requests were still open at the bound; closing them");
                    Ok(())
                }
            }
        }
    }
    .context("server failed");
    let deadline = stop.begin(DRAIN_BOUND);
    crate::engine::shutdown::wait(&producers, deadline, "the scheduler or the PBX sync").await;
    drain.begin(deadline.saturating_duration_since(tokio::time::Instant::now()));
    crate::engine::shutdown::wait(&consumers, deadline, "the sinks").await;
    tracing::info!("stopped");
    result
}

/// The PBX sync in-process, fed with every presence change `serve` publishes, on `tasks`
/// (when `PBX` is set), stopping after its step under way
/// once `stop` is cancelled.
fn start_pbx(
    state: &AppState,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let sync = state.pbx.clone()?;
    let mut changes = state.publisher.subscribe();
    let (tx, teams) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(msg) = changes.recv().await {
            if let crate::core::message::TopicMessage::PresenceChanged(m) = msg {
                let t = crate::engine::pbx::TeamsPresence {
                    freshness: crate::engine::pbx::Freshness::of(m.source),
                    user_id: m.user_id,
                    presence: m.presence,
                };
                if tx.send(t).is_err() {
                    return;
                }
            }
        }
    });
    let every = state.settings.polling.interval;
    tracing::info!("PBX sync on");
    Some(tasks.spawn(crate::engine::pbx::run(sync, teams, every, stop)))
}
