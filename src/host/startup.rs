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
//! Once ready, [`gate`] keeps the functions that need a setting App Service left as an
//! unresolved Key Vault reference (`config::references`) from running without it: they
//! answer 503 with that setting's line, and `/api/health` lists every such line.

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::json;
use tower::ServiceExt;

use crate::config::references::KeyVaultReference;
use crate::config::Settings;
use crate::host::functions;
use crate::http::state::AppState;

/// The longest one start-up load (the store's tables, one Key Vault certificate) may take
/// before the start goes on without it, as it does when the load fails: its error is logged
/// and the functions that need it report their own errors. A Key Vault that accepts
/// connections and never answers would otherwise keep every function at 503 for good.
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
    ready: OnceLock<Router>,
    /// Woken when `ready` or `failed` is set.
    settled: tokio::sync::Notify,
}

impl Default for Startup {
    fn default() -> Self {
        Self(Arc::new(Inner {
            began: Instant::now(),
            step: Mutex::new("reading the settings".into()),
            failed: OnceLock::new(),
            ready: OnceLock::new(),
            settled: tokio::sync::Notify::new(),
        }))
    }
}

impl Startup {
    /// Records what the start is doing now (named in the 503 line, never a value).
    pub fn step(&self, what: impl Into<String>) {
        *self.0.step.lock().unwrap_or_else(|p| p.into_inner()) = what.into();
    }

    /// The state is built: from now on requests go to `router`.
    pub fn ready(&self, router: Router) {
        let _ = self.0.ready.set(router);
        self.0.settled.notify_waiters();
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
            if self.0.ready.get().is_some() || self.0.failed.get().is_some() {
                return;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return;
            }
        }
    }

    /// Whether the state is built.
    pub fn is_ready(&self) -> bool {
        self.0.ready.get().is_some()
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
    if let Some(router) = s.0.ready.get() {
        return match router.clone().oneshot(req).await {
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
/// it (`host::handler::build_state`); then the subscription upkeep runs once and the edge
/// package's reconcile starts. Returns when `shutdown` completes.
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
    let loading = startup.clone();
    tokio::spawn(async move {
        match crate::host::handler::build_state(settings, &loading).await {
            Ok(app) => {
                if blocking(&app.settings, "subscriptions-renew").is_none() {
                    crate::host::handler::spawn_startup_upkeep(&app);
                }
                // The edge package (`hue-subscriber`): heal from the cloud's presence API too.
                crate::edge::spawn_trigger_reconcile(app.settings.clone());
                loading.ready(crate::host::handler::router(app));
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
    axum::serve(listener, startup.router())
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("handler server failed: {e}"))
}

/// Which functions cannot work without `setting`'s value. The token key and the client
/// secret: everything that signs in, refreshes or uses tokens. The publisher's connection
/// string: what publishes. The edge's keys: the edge function. Anything else (the store's
/// connection, a setting not named here): every function but `health`, since which ones
/// need it is not known here.
fn needed_by(setting: &str, function: &str) -> bool {
    const TOKENS: &[&str] = &[
        "auth-start",
        "auth-end",
        "lifecycle",
        "presence-refresh",
        "subscriptions-renew",
        "pbx-events",
    ];
    const PUBLISHING: &[&str] = &["notifications", "presence-refresh", "auth-end"];
    match setting {
        "TOKEN_ENCRYPTION_KEY" | "TOKEN_ENCRYPTION_KEY_PREVIOUS" | "AZURE_CLIENT_SECRET" => {
            TOKENS.contains(&function)
        }
        "ServiceBusConnection" => PUBLISHING.contains(&function),
        "PRESENCE_API_KEY" | "HUE_APPLICATION_KEY" => function == "hue-subscriber",
        _ => function != "health",
    }
}

/// The unresolved reference that keeps `function` from running, if any.
pub fn blocking<'a>(settings: &'a Settings, function: &str) -> Option<&'a KeyVaultReference> {
    settings
        .unresolved_references
        .iter()
        .find(|r| needed_by(&r.setting, function))
}

/// Middleware of the ready router: a function that needs a setting left as an unresolved Key
/// Vault reference answers 503 with that setting's line (payload mode: in `Logs` and
/// `error`; forwarded: the API's error body), and nothing else happens.
pub async fn gate(State(app): State<AppState>, req: Request<Body>, next: Next) -> Response {
    if app.settings.unresolved_references.is_empty() {
        return next.run(req).await;
    }
    let path = req.uri().path();
    let (function, forwarded) = match path.strip_prefix("/api/") {
        Some(route) => (functions::find_by_route(route).map(|f| f.name), true),
        None if req.method() == Method::POST => (
            functions::find(path.trim_start_matches('/')).map(|f| f.name),
            false,
        ),
        None => (None, false),
    };
    let Some(function) = function else {
        return next.run(req).await;
    };
    match blocking(&app.settings, function) {
        None => next.run(req).await,
        Some(r) => {
            tracing::debug!(function, setting = %r.setting, "refused: unresolved Key Vault reference");
            let line = r.to_string();
            if forwarded {
                crate::http::ApiError::Unavailable(line).into_response()
            } else {
                crate::host::handler::failure(StatusCode::SERVICE_UNAVAILABLE, line)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::parse(&crate::config::Sources::from_map(map)).unwrap()
    }

    #[test]
    fn each_unresolved_setting_blocks_the_functions_that_need_it_and_no_others() {
        let kv = "@Microsoft.KeyVault(VaultName=kv;SecretName=s)";
        let cases: &[(&str, &[&str])] = &[
            (
                "TOKEN_ENCRYPTION_KEY",
                &[
                    "auth-start",
                    "auth-end",
                    "lifecycle",
                    "presence-refresh",
                    "subscriptions-renew",
                    "pbx-events",
                ],
            ),
            (
                "ServiceBusConnection",
                &["auth-end", "notifications", "presence-refresh"],
            ),
            (
                "TABLES_CONNECTION_STRING",
                &[
                    "auth-start",
                    "auth-end",
                    "notifications",
                    "lifecycle",
                    "presence-refresh",
                    "subscriptions-renew",
                    "presence-get",
                    "pbx-events",
                    "hue-subscriber",
                ],
            ),
        ];
        for (setting, blocked) in cases {
            let s = settings(&[(setting, kv)]);
            for f in functions::FUNCTIONS {
                assert_eq!(
                    blocking(&s, f.name).is_some(),
                    blocked.contains(&f.name),
                    "{setting} / {}",
                    f.name
                );
            }
            assert!(blocking(&s, "health").is_none(), "health always answers");
        }
        assert!(blocking(&settings(&[]), "auth-start").is_none());
    }

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
