//! Timer and queue work: what `presence-refresh`, `subscriptions-renew` and `hue-subscriber`
//! run under the Functions host, and what `serve`'s scheduler runs on its own clock.

use axum::http::StatusCode;

use crate::app::AppState;
use crate::envelope::{InvocationResponse, ServiceBusTrigger};
use crate::publish::Outbox;

/// Why a job invocation failed; the host sees a non-2xx and writes no output.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The job is not built yet (answered 501, never a fake success).
    #[error("{0} is not implemented yet")]
    NotImplemented(&'static str),
    /// The host sent a function name we have no job for.
    #[error("no job named {0:?}")]
    Unknown(String),
    /// The job ran and failed (e.g. the Hue bridge is down): 500, so the host abandons the
    /// Service Bus message and it is delivered again.
    #[error("{0}")]
    Failed(String),
}

impl JobError {
    /// The status answered to the host.
    pub fn status(&self) -> StatusCode {
        match self {
            JobError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            JobError::Unknown(_) => StatusCode::NOT_FOUND,
            JobError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Runs a timer-triggered function.
pub async fn run_timer(
    _state: &AppState,
    name: &str,
    outbox: Outbox,
) -> Result<(InvocationResponse, Outbox), JobError> {
    let _ = &outbox;
    match name {
        "presence-refresh" => Err(JobError::NotImplemented("presence-refresh (issue #4)")),
        "subscriptions-renew" => Err(JobError::NotImplemented("subscriptions-renew (issue #5)")),
        other => Err(JobError::Unknown(other.to_owned())),
    }
}

/// Runs a Service Bus-triggered function.
pub async fn run_service_bus(
    state: &AppState,
    name: &str,
    msg: ServiceBusTrigger,
) -> Result<InvocationResponse, JobError> {
    match name {
        "hue-subscriber" => crate::edge::run_trigger(&state.settings, &msg.body)
            .await
            .map(|()| InvocationResponse::default())
            .map_err(|e| JobError::Failed(format!("{e:#}"))),
        other => Err(JobError::Unknown(other.to_owned())),
    }
}
