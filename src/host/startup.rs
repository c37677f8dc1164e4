//! The handler's start, and what it answers while it cannot work yet.
//!
//! The Functions host starts `teams-presence handler` and polls
//! `http://127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT/` until any HTTP answer comes back; after
//! `HttpWorkerOptions.InitializationTimeout` (30 s) it gives up and restarts the worker
//! (Azure/azure-functions-host, `DefaultHttpWorkerService.IsWorkerReady`: "Any Http response
//! indicates a valid server Url"). Loading the store and two Key Vault certificates first
//! could take longer than that when Key Vault is slow or unreachable, and a restart loop
//! follows. So [`serve`] binds first and answers the probe at once; the state is built behind
//! it, and until it is ready every function answers 503 with one line saying what the
//! start is waiting for (`starting: ...`), or why it failed (`not ready: ...`), while the
//! process stays up. An invocation that arrives during an ordinary start (the store and the
//! certificates load in well under a second) waits up to [`STARTING_GRACE`] for it rather
//! than failing at once; the host sends the first invocations right after the probe.
//!
//! Once ready, `host::handler::gate` keeps the functions that need a setting App Service left as an
//! unresolved Key Vault reference (`config::references`) from running without it: they
//! answer 503 with that setting's line, and `/api/health` lists every such line.
//!
//! The Key Vault certificates are not part of the state's build: `host::certificates` loads
//! them behind it, retrying until each is there, and the router is swapped for one whose
//! state holds it. Meanwhile the functions that need one answer 503 with its line; an
//! invocation that arrives during the first try waits up to [`STARTING_GRACE`] for it.

use std::future::{Future, IntoFuture};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::json;
use tower::ServiceExt;

use crate::config::Settings;
use crate::host::certificates::{Certificates, Held, Material};
use crate::host::gate::Certificate;
use crate::http::state::AppState;

/// The longest creating the store's tables may take before the start goes on without it,
/// as it does when that fails: its error is logged and the functions that need the store
/// report their own errors. A store that accepts connections and never answers would
/// otherwise keep every function at 503 for good.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a request that arrives before the state is ready waits for it before the 503.
/// Short of Graph's 3 s for a change notification's answer.
pub const STARTING_GRACE: Duration = Duration::from_secs(2);

/// Where the start is: what it is loading, or why it failed, or the ready router.
#[derive(Clone)]
pub struct Startup(Arc<Inner>);

struct Inner {
    began: Instant,
    step: Mutex<String>,
    failed: OnceLock<String>,
    /// The router of the newest state (replaced when a Key Vault certificate arrives).
    ready: RwLock<Option<Router>>,
    /// Woken when `ready` or `failed` is set.
    settled: tokio::sync::Notify,
    /// The Key Vault certificates, once the settings named them.
    certificates: OnceLock<Arc<Certificates>>,
}

impl Default for Startup {
    fn default() -> Self {
        Self(Arc::new(Inner {
            began: Instant::now(),
            step: Mutex::new("reading the settings".into()),
            failed: OnceLock::new(),
            ready: RwLock::new(None),
            settled: tokio::sync::Notify::new(),
            certificates: OnceLock::new(),
        }))
    }
}

impl Startup {
    /// Records what the start is doing now (named in the 503 line, never a value).
    pub fn step(&self, what: impl Into<String>) {
        *self.0.step.lock().unwrap_or_else(|p| p.into_inner()) = what.into();
    }

    /// The state is built (or rebuilt with a certificate): from now on requests go to
    /// `router`; those already in the previous one finish there.
    pub fn ready(&self, router: Router) {
        *self.0.ready.write().unwrap_or_else(|p| p.into_inner()) = Some(router);
        self.0.settled.notify_waiters();
    }

    fn current(&self) -> Option<Router> {
        self.0
            .ready
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The state cannot be built: every function answers 503 with `line` until a restart.
    pub fn failed(&self, line: String) {
        let _ = self.0.failed.set(line);
        self.0.settled.notify_waiters();
    }

    /// Waits until the start is ready or failed, at most `grace`.
    async fn settle(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let woken = self.0.settled.notified();
            if self.is_ready() || self.0.failed.get().is_some() {
                return;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return;
            }
        }
    }

    /// Whether the state is built.
    pub fn is_ready(&self) -> bool {
        self.0
            .ready
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// The one line of a 503 before the state is ready.
    pub fn not_ready_line(&self) -> String {
        match self.0.failed.get() {
            Some(why) => format!("not ready: {why}"),
            None => format!(
                "starting: {} ({} s so far); try again shortly",
                self.0.step.lock().unwrap_or_else(|p| p.into_inner()),
                self.0.began.elapsed().as_secs()
            ),
        }
    }

    /// The router the listener serves from the first moment: the readiness probe on `/`,
    /// everything else to the ready router, or a 503 until there is one.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", any(probe))
            .fallback(dispatch)
            .with_state(self.clone())
    }
}

/// The host only needs *an* answer on `/`; it is there from the first moment.
async fn probe(State(s): State<Startup>) -> String {
    if s.is_ready() {
        "teams-presence handler ready".into()
    } else {
        format!("teams-presence handler {}", s.not_ready_line())
    }
}

async fn dispatch(State(s): State<Startup>, req: Request) -> Response {
    if !s.is_ready() {
        s.settle(STARTING_GRACE).await;
    }
    if let (Some(certs), Some((def, _))) = (
        s.0.certificates.get(),
        crate::host::handler::function_of(req.method(), req.uri().path()),
    ) {
        certs.settle_first(def.name, STARTING_GRACE).await;
    }
    if let Some(router) = s.current() {
        return match router.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
    }
    let line = s.not_ready_line();
    let path = req.uri().path();
    if path == "/api/health" {
        return health_unavailable(
            if s.0.failed.get().is_some() {
                "failed"
            } else {
                "starting"
            },
            vec![line],
        );
    }
    if path.starts_with("/api/") {
        return crate::http::ApiError::Unavailable(line).into_response();
    }
    // A payload-mode invocation (`POST /{function}`): the host reads its `Logs`.
    crate::host::handler::failure(StatusCode::SERVICE_UNAVAILABLE, line)
}

/// `/api/health` while the handler cannot work: 503 with the reasons, one line each.
pub fn health_unavailable(status: &str, problems: Vec<String>) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({
            "status": status,
            "version": env!("CARGO_PKG_VERSION"),
            "mode": "handler",
            "problems": problems,
        })),
    )
        .into_response()
}

/// Binds `127.0.0.1:port`, answers the readiness probe at once and builds the state behind
/// it ([`build_state`]); then the Key Vault certificates load (`host::certificates`), the
/// edge package's reconcile starts, and once every certificate is in the state the
/// subscription upkeep runs once. Once `shutdown` completes: no new connection, the
/// requests under way and the state's build finish, within
/// [`crate::engine::shutdown::DRAIN_BOUND`].
pub async fn serve(
    settings: Settings,
    port: u16,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    tracing::info!(port, "custom handler listening");
    for r in &settings.unresolved_references {
        tracing::error!(setting = %r.setting, "{r}");
    }
    let startup = Startup::default();
    let certs = Certificates::from_settings(&settings);
    let _ = startup.0.certificates.set(certs.clone());
    // The certificates load beside the store, not after it; one that arrives before the
    // state is built waits in `newest` for it.
    let newest = Arc::new(Mutex::new(Newest::default()));
    let upkept = Arc::new(AtomicBool::new(false));
    {
        let (swap, wanted, newest, upkept) = (
            startup.clone(),
            certs.clone(),
            newest.clone(),
            upkept.clone(),
        );
        certs.spawn_loaders(&settings, move |which, material| {
            let mut n = newest.lock().unwrap_or_else(|p| p.into_inner());
            n.add(which, material);
            n.publish(&swap, &wanted, &upkept);
        });
    }
    let loading = startup.clone();
    let tasks = tokio_util::task::TaskTracker::new();
    tasks.spawn(async move {
        match build_state(settings, &loading).await {
            Ok(app) => {
                // The edge package (`hue-subscriber`): heal from the cloud's presence API too.
                crate::edge::spawn_trigger_reconcile(app.settings.clone());
                let mut n = newest.lock().unwrap_or_else(|p| p.into_inner());
                n.app = Some(app);
                n.publish(&loading, &certs, &upkept);
                tracing::info!(
                    after_ms = loading.0.began.elapsed().as_millis() as u64,
                    "handler ready"
                );
            }
            Err(e) => {
                // One line: the host's log stream and every 503 carry it.
                let line = format!("{e:#}")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                tracing::error!(error = %line, "the handler cannot start; answering 503 until it is restarted");
                loading.failed(line);
            }
        }
    });
    let stop = crate::engine::shutdown::Stop::new();
    let serving = axum::serve(listener, startup.router())
        .with_graceful_shutdown(stop.token().clone().cancelled_owned())
        .into_future();
    tokio::pin!(serving, shutdown);
    let result = tokio::select! {
        r = &mut serving => r,
        () = &mut shutdown => {
            let deadline = stop.begin(crate::engine::shutdown::DRAIN_BOUND);
            match tokio::time::timeout_at(deadline, &mut serving).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!("requests were still open at the bound; closing them");
                    Ok(())
                }
            }
        }
    };
    let deadline = stop.begin(crate::engine::shutdown::DRAIN_BOUND);
    crate::engine::shutdown::wait(&tasks, deadline, "the start-up work").await;
    result.map_err(|e| anyhow::anyhow!("handler server failed: {e}"))
}

/// Builds the handler's state: the Table Storage store (tables created if missing) and the
/// notification certificate from a file when one is set. Runs behind the readiness probe
/// ([`serve`]), naming each step in `progress`. The Key Vault certificates are not loaded
/// here but behind it (`host::certificates`).
///
/// It must not stall or die on a dependency that is briefly unavailable: creating the tables
/// when that fails, or takes longer than [`LOAD_TIMEOUT`], is logged and the start goes on;
/// the functions that need the store report their own errors. A setting left as an
/// unresolved Key Vault reference is not needed here: the functions that need it answer 503
/// with its line (`host::handler::gate`).
pub async fn build_state(
    settings: crate::config::Settings,
    progress: &Startup,
) -> anyhow::Result<AppState> {
    progress.step("opening the store");
    let store = crate::store::open(
        &settings,
        crate::config::StoreKind::Table,
        std::path::Path::new(".teams-presence"),
    )?;
    progress.step("creating the store's tables");
    match tokio::time::timeout(LOAD_TIMEOUT, store.ensure_tables()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "store not ready at start-up"),
        Err(_) => tracing::error!(
            after_s = LOAD_TIMEOUT.as_secs(),
            "store not ready at start-up: no answer in time"
        ),
    }
    let keys = crate::clients::graph::certs::from_settings(&settings, None)?;
    progress.step("building the clients");
    // An unresolved `ServiceBusConnection` reference: the functions that publish answer 503
    // with its line instead (`host::handler::gate`), so there is no client to build.
    let direct = settings.service_bus.publish_mode == crate::config::PublishMode::Rest
        && !settings
            .unresolved_references
            .iter()
            .any(|r| r.setting == "ServiceBusConnection");
    let mut state = AppState::new(settings, store, crate::http::state::Mode::Handler)
        .with_notification_keys(keys);
    // Keys retired by a rotation less than 4.5 hours ago: Graph may still retry for them.
    progress.step("loading the notification keys retired in the last hours");
    state.ctx =
        crate::engine::subscriptions::with_retired_keys(state.ctx, chrono::Utc::now()).await;
    if direct {
        state = state.with_direct_publishing()?;
    }
    state.with_pbx().map_err(Into::into)
}

/// The newest state and the certificates it holds; certificates loaded before the state is
/// built wait in `early`.
#[derive(Default)]
struct Newest {
    app: Option<AppState>,
    held: Held,
    early: Vec<(Certificate, Material)>,
}

impl Newest {
    fn add(&mut self, which: Certificate, material: Material) {
        self.early.push((which, material));
    }

    /// Puts the certificates that arrived into the state and serves it (when it is built);
    /// once the state holds every certificate, the upkeep runs.
    fn publish(&mut self, startup: &Startup, certs: &Arc<Certificates>, upkept: &AtomicBool) {
        let Some(mut app) = self.app.take() else {
            return;
        };
        for (which, material) in self.early.drain(..) {
            app = match material {
                // Keep what the state already decrypts with (a file's certificate, keys
                // retired in the last hours): Graph may still deliver for them.
                Material::Notification(keys) => {
                    let kept = (*app.ctx.notification_keys).clone();
                    app.with_notification_keys(keys.with_previous(kept))
                }
                Material::Client(credential) => app.with_client_credential(credential),
            };
            self.held = self.held.with(which);
        }
        startup.ready(crate::host::handler::router_with(
            app.clone(),
            certs.clone(),
            self.held,
        ));
        let complete = [Certificate::Notification, Certificate::Client]
            .into_iter()
            .all(|c| self.held.has(c) || !certs.names(c));
        if complete {
            upkeep_once(&app, upkept);
        }
        self.app = Some(app);
    }
}

/// The subscription upkeep at start, once per process, unless an unresolved reference keeps
/// `subscriptions-renew` from running.
fn upkeep_once(app: &AppState, done: &AtomicBool) {
    if crate::host::gate::blocking(&app.settings, "subscriptions-renew").is_none()
        && !done.swap(true, Ordering::SeqCst)
    {
        spawn_startup_upkeep(app);
    }
}

/// Subscription upkeep once at start, in the background (the host must get its answer on
/// `/` quickly): a fresh instance after a deployment or a long idle does not wait for the
/// next `subscriptions-renew` tick to have its subscriptions live.
pub fn spawn_startup_upkeep(app: &AppState) -> tokio::task::JoinHandle<()> {
    let app = app.clone();
    tokio::spawn(async move {
        let r = crate::engine::subscriptions::maintain(&app, &app.poller, app.clock.now()).await;
        tracing::info!(
            created = r.created,
            renewed = r.renewed,
            rekeyed = r.rekeyed,
            failed = r.failed,
            disabled = r.disabled.as_deref().unwrap_or(""),
            "subscription upkeep at start"
        );
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_not_ready_line_says_what_the_start_waits_for_or_why_it_failed() {
        let s = Startup::default();
        s.step("loading certificate graph-notifications from Key Vault");
        let line = s.not_ready_line();
        assert!(
            line.starts_with("starting: loading certificate graph-notifications from Key Vault ("),
            "{line}"
        );
        s.failed("setting ServiceBusConnection: is not set".into());
        assert_eq!(
            s.not_ready_line(),
            "not ready: setting ServiceBusConnection: is not set"
        );
    }
}
