//! `teams-presence handler`: the Azure Functions custom-handler runtime.
//!
//! The host starts the binary, polls `http://127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT/` until
//! anything answers (`host::startup` answers at once and builds the state behind it), then
//! sends either forwarded HTTP requests (to `/api/...`, served by the API router as-is) or
//! payload-mode invocations (`POST /{FunctionName}` with the envelope).
//! For payload-mode HTTP functions the envelope's request is replayed through the *same* API
//! router, so a route behaves identically in both modes; what it publishes goes into the
//! invocation's outbox and comes back as the `message` output binding.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use tracing::Instrument;

use crate::engine::publish::Outbox;
use crate::host::certificates::{Certificates, Held};
use crate::host::envelope::{HttpOutput, HttpTriggerRequest, Invocation, InvocationResponse};
use crate::host::functions::{self, FunctionDef, Trigger};
use crate::http::state::AppState;

#[derive(Clone)]
struct HandlerState {
    app: AppState,
    api: Router,
}

/// The handler's router once its state is built: readiness probe, payload-mode invocations,
/// forwarded `/api/...`; functions that need a setting left as an unresolved Key Vault
/// reference answer 503 with its line ([`gate`]).
pub fn router(app: AppState) -> Router {
    router_with(app, Certificates::none(), Held::default())
}

/// Which Key Vault certificates one router's state holds, and why the others are missing.
#[derive(Clone)]
pub struct CertificateGate {
    certs: std::sync::Arc<Certificates>,
    held: Held,
}

/// [`router`] for a state that holds `held` of the Key Vault certificates in `certs`: the
/// functions that need one it lacks answer 503 with that certificate's line (HTTP functions
/// in both modes at the API router, where a validation handshake is told apart; timers in
/// [`gate`]), and `/api/health` lists every missing one.
pub fn router_with(app: AppState, certs: std::sync::Arc<Certificates>, held: Held) -> Router {
    let certificates = CertificateGate { certs, held };
    let api = crate::http::api_router(app.clone()).layer(axum::middleware::from_fn_with_state(
        certificates.clone(),
        certificate_gate,
    ));
    Router::new()
        .route("/", any(ready))
        .route("/{function}", post(invoke))
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::host::envelope::MAX_INVOCATION_BYTES,
        ))
        .with_state(HandlerState {
            app: app.clone(),
            api: api.clone(),
        })
        .merge(api)
        .layer(axum::middleware::from_fn_with_state(
            (app, certificates),
            gate,
        ))
        .layer(crate::http::trace::layer())
}

/// The host only needs *a* response on `/`; we say who we are.
async fn ready() -> &'static str {
    "teams-presence handler ready"
}

/// A failed invocation as the host reads it: `status`, no outputs, `message` in `Logs`.
pub(crate) fn failure(status: StatusCode, message: String) -> Response {
    // The host logs a failed invocation; Logs carries our one line for its log stream.
    (status, Json(json!({"Outputs": {}, "Logs": [message.clone()], "ReturnValue": null, "error": message}))).into_response()
}

async fn invoke(
    State(hs): State<HandlerState>,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let invocation_id = headers
        .get("x-azure-functions-invocationid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let span =
        tracing::info_span!("invocation", function = %function, invocation_id = %invocation_id);
    async move {
        let Some(def) = functions::find(&function) else {
            tracing::warn!("unknown function");
            return failure(
                StatusCode::NOT_FOUND,
                format!("no function named {function:?}"),
            );
        };
        let inv = match Invocation::parse(&body) {
            Ok(inv) => inv,
            Err(e) => {
                tracing::warn!(error = %e, "rejected invocation");
                return failure(StatusCode::BAD_REQUEST, e.to_string());
            }
        };
        match def.trigger {
            Trigger::Http { .. } => invoke_http(&hs, def, inv).await,
            Trigger::Timer => match inv.timer("timer") {
                Ok(_timer) => {
                    match crate::host::jobs::run_timer(&hs.app, def.name, Outbox::default()).await {
                        Ok((resp, outbox)) => match deliver(&hs.app, resp, &outbox).await {
                            Ok(resp) => Json(resp).into_response(),
                            Err(r) => r,
                        },
                        Err(e) => failure(e.status(), e.to_string()),
                    }
                }
                Err(e) => failure(StatusCode::BAD_REQUEST, e.to_string()),
            },
            Trigger::ServiceBus => match inv.service_bus("msg") {
                Ok(msg) => match crate::host::jobs::run_service_bus(&hs.app, def.name, msg).await {
                    Ok(resp) => Json(resp).into_response(),
                    Err(e) => failure(e.status(), e.to_string()),
                },
                Err(e) => failure(StatusCode::BAD_REQUEST, e.to_string()),
            },
        }
    }
    .instrument(span)
    .await
}

/// Replays an envelope's HTTP request through the API router.
async fn invoke_http(hs: &HandlerState, def: &FunctionDef, inv: Invocation) -> Response {
    let req = match inv.into_http_request("req") {
        Ok(r) => r,
        Err(e) => return failure(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let outbox = Outbox::default();
    let request = match to_http_request(def, req, outbox.clone()) {
        Ok(r) => r,
        Err(e) => return failure(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let response = match hs.api.clone().oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = response.status();
    let mut out_headers = BTreeMap::new();
    for (k, v) in response.headers() {
        if let Ok(v) = v.to_str() {
            out_headers.insert(k.as_str().to_owned(), v.to_owned());
        }
    }
    let body = match response.into_body().collect().await {
        Ok(b) => String::from_utf8(b.to_bytes().into())
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        Err(_) => String::new(),
    };
    let mut resp = InvocationResponse::default().with_http(
        "res",
        HttpOutput {
            status_code: status.as_u16().to_string(),
            headers: out_headers,
            body,
        },
    );
    if def.publishes {
        resp = match deliver(&hs.app, resp, &outbox).await {
            Ok(r) => r,
            Err(r) => return r,
        };
    }
    // The route logged what it did (e.g. "notification batch") and the host logs the
    // invocation itself: one more line per invocation would only add to its log stream.
    tracing::debug!(status = status.as_u16(), "http invocation done");
    Json(resp).into_response()
}

/// Hands an invocation's messages on: as the `message` output binding (JSON objects), or,
/// with `PUBLISH_MODE=rest`, straight to Service Bus. A failed send fails the invocation
/// (non-2xx, no outputs), so the host and Graph retry and duplicate detection drops what
/// already arrived.
async fn deliver(
    app: &AppState,
    resp: InvocationResponse,
    outbox: &Outbox,
) -> Result<InvocationResponse, Response> {
    let msgs = outbox.drain();
    // Teams → PBX in the cloud: every change this invocation found reaches the PBX sync.
    if let Some(sync) = &app.pbx {
        let now = chrono::Utc::now();
        for m in &msgs {
            if let crate::core::message::TopicMessage::PresenceChanged(c) = m {
                let freshness = crate::engine::pbx::Freshness::of(c.source);
                sync.on_teams(&c.user_id, &c.presence, freshness, now).await;
            }
        }
    }
    match &app.direct_bus {
        Some(bus) if !msgs.is_empty() => {
            // Confirmed by Service Bus: the pending marks go. On failure they stay, and the
            // next presence-refresh sends these changes again.
            match crate::engine::pipeline::send_and_confirm(&app.store, bus, &msgs).await {
                Ok(()) => Ok(resp.log(format!("{} message(s) sent to Service Bus", msgs.len()))),
                Err(e) => {
                    tracing::error!(error = %e, "cannot send to Service Bus");
                    Err(failure(
                        StatusCode::BAD_GATEWAY,
                        format!("cannot send to Service Bus: {e}"),
                    ))
                }
            }
        }
        Some(_) => Ok(resp),
        None => {
            // The output binding gives no confirmation; the hand-off to the host is the best
            // there is. A binding that fails after this is covered by presence-refresh sending
            // recent changes again (`RESEND_RECENT` in `host::jobs`).
            // Cleared with the marks of other invocations in one transaction, after this
            // one has answered.
            app.confirmer.confirm(&msgs).await;
            let json: Vec<Value> = msgs
                .iter()
                .map(crate::core::message::TopicMessage::to_json)
                .collect();
            Ok(resp.with_messages("message", json))
        }
    }
}

/// The route template of a function (`presence/{userId}`) with its parameters filled in.
fn function_path(def: &FunctionDef, params: &BTreeMap<String, String>) -> String {
    let mut path = format!("/api/{}", def.route());
    for (k, v) in params {
        let enc = percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC);
        path = path.replace(&format!("{{{k}}}"), &enc.to_string());
    }
    path
}

/// An invocation whose request axum cannot build (a header name or value HTTP forbids):
/// answered 400.
#[derive(Debug, thiserror::Error)]
#[error("invocation holds an invalid HTTP request: {0}")]
struct InvalidInvocation(#[source] axum::http::Error);

fn to_http_request(
    def: &FunctionDef,
    req: HttpTriggerRequest,
    outbox: Outbox,
) -> Result<Request<Body>, InvalidInvocation> {
    // The invoked function decides the route; the envelope's URL only contributes its query.
    let uri = req.path_and_query(&function_path(def, &req.params));
    let mut builder = Request::builder().method(req.method.as_str()).uri(uri);
    for (k, v) in &req.headers {
        // Hop-by-hop and length headers describe the host's request, not ours.
        if matches!(
            k.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "host"
        ) {
            continue;
        }
        builder = builder.header(k.as_str(), v.as_str());
    }
    let mut request = builder
        .body(Body::from(req.body))
        .map_err(InvalidInvocation)?;
    request.extensions_mut().insert(outbox);
    Ok(request)
}

/// How a request reached the handler from the Functions host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// A forwarded HTTP request (`/api/{route}`), answered as the API answers.
    Forwarded,
    /// A payload-mode invocation (`POST /{function}`), answered with an envelope.
    Payload,
}

/// The function a request to the handler invokes, and how it arrived.
pub fn function_of(
    method: &axum::http::Method,
    path: &str,
) -> Option<(&'static FunctionDef, Arrival)> {
    match path.strip_prefix("/api/") {
        Some(route) => functions::find_by_route(route).map(|f| (f, Arrival::Forwarded)),
        None if method == axum::http::Method::POST => {
            functions::find(path.trim_start_matches('/')).map(|f| (f, Arrival::Payload))
        }
        None => None,
    }
}

/// Middleware of the ready router: a function that needs a setting left as an unresolved Key
/// Vault reference answers 503 with that setting's line (payload mode: in `Logs` and
/// `error`; forwarded: the API's error body), and nothing else happens. So does a timer or
/// Service Bus function that needs a Key Vault certificate this router's state lacks (HTTP
/// functions meet `certificate_gate` at the API router).
pub async fn gate(
    State((app, certificates)): State<(AppState, CertificateGate)>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    if app.settings.unresolved_references.is_empty() && certificates.certs.is_empty() {
        return next.run(req).await;
    }
    let Some((def, arrival)) = function_of(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let function = def.name;
    if let Some(r) = crate::host::gate::blocking(&app.settings, function) {
        tracing::debug!(function, setting = %r.setting, "refused: unresolved Key Vault reference");
        let line = r.to_string();
        return match arrival {
            Arrival::Forwarded => crate::http::ApiError::Unavailable(line).into_response(),
            Arrival::Payload => failure(StatusCode::SERVICE_UNAVAILABLE, line),
        };
    }
    if !matches!(def.trigger, Trigger::Http { .. }) {
        if let Some(line) = certificates
            .certs
            .blocking(certificates.held, function, false)
        {
            tracing::debug!(function, "refused: a Key Vault certificate is not loaded");
            return failure(StatusCode::SERVICE_UNAVAILABLE, line);
        }
    }
    next.run(req).await
}

/// Middleware of the API router (forwarded requests and payload-mode HTTP functions replayed
/// through it): a function that needs a Key Vault certificate this router's state lacks
/// answers 503 with its line, except Graph's validation handshake; `/api/health` gets the
/// missing certificates' lines ([`crate::http::HealthProblems`]).
async fn certificate_gate(
    State(g): State<CertificateGate>,
    mut req: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    if g.certs.is_empty() {
        return next.run(req).await;
    }
    let path = req.uri().path();
    if path == "/api/health" {
        let problems = crate::http::HealthProblems(g.certs.problems());
        req.extensions_mut().insert(problems);
        return next.run(req).await;
    }
    let Some(function) = path
        .strip_prefix("/api/")
        .and_then(functions::find_by_route)
        .map(|f| f.name)
    else {
        return next.run(req).await;
    };
    let handshake = req.uri().query().is_some_and(|q| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .is_ok_and(|pairs| pairs.iter().any(|(k, _)| k == "validationToken"))
    });
    match g.certs.blocking(g.held, function, handshake) {
        None => next.run(req).await,
        Some(line) => {
            tracing::debug!(function, "refused: a Key Vault certificate is not loaded");
            crate::http::ApiError::Unavailable(line).into_response()
        }
    }
}
