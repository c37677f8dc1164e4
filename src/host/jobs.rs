//! Timer and queue work: what `presence-refresh`, `subscriptions-renew` and `hue-subscriber`
//! run under the Functions host, and what `serve`'s scheduler runs on its own clock.

use axum::http::StatusCode;

use crate::engine::publish::Outbox;
use crate::host::envelope::{InvocationResponse, ServiceBusTrigger};
use crate::http::state::AppState;

/// Why a job invocation failed; the host sees a non-2xx and writes no output.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
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
            JobError::Unknown(_) => StatusCode::NOT_FOUND,
            JobError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// With the output binding (no confirmation of a send), how recent a change must be for
/// `presence-refresh` to send it once more (once per change: `pipeline::Repeats`); edges drop
/// the duplicate, and a longer topic outage is healed by the edges' own reconcile
/// (`RECONCILE_INTERVAL`).
pub const RESEND_RECENT: chrono::Duration = chrono::Duration::minutes(2);

/// Runs a timer-triggered function.
pub async fn run_timer(
    state: &AppState,
    name: &str,
    outbox: Outbox,
) -> Result<(InvocationResponse, Outbox), JobError> {
    match name {
        "presence-refresh" => {
            let now = state.clock.now();
            // Durable publishing: changes stored but never confirmed sent (the process died in
            // between, the topic was down) go again; with the output binding, which cannot
            // confirm, so do the recent ones.
            let recent = state
                .direct_bus
                .is_none()
                .then(|| (now - RESEND_RECENT, &*state.repeats));
            let resent = crate::engine::pipeline::resend_pending(
                &state.store,
                &state.publisher,
                Some(&outbox),
                now,
                recent,
            )
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot look for changes to send again");
                Default::default()
            });
            let r = state.poller.tick(state, Some(&outbox), now).await;
            if let Some(sync) = &state.pbx {
                // The PBX sync's own clock in the cloud: follow the mapped users, and run the
                // hold-downs, stable windows and re-posts that are due.
                sync.follow(Some(&outbox), now).await;
                sync.tick(now).await;
            }
            let line = format!(
                "presence-refresh: {} calls, {} users read, {} changes, {} failed, {} deferred (throttled), {} pending and {} recent sent again",
                r.calls, r.polled, r.changed, r.failed, r.deferred, resent.pending, resent.recent
            );
            Ok((InvocationResponse::default().log(line), outbox))
        }
        "subscriptions-renew" => {
            let r = crate::engine::subscriptions::maintain(state, &state.poller, state.clock.now())
                .await;
            let line = match &r.disabled {
                Some(why) => format!("subscriptions-renew: {why}"),
                None => format!(
                    "subscriptions-renew: {} created, {} renewed, {} moved to the current certificate, {} reauthorized, {} removed, {} failed",
                    r.created, r.renewed, r.rekeyed, r.reauthorized, r.removed, r.failed
                ),
            };
            Ok((InvocationResponse::default().log(line), outbox))
        }
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
