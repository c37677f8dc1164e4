//! The Azure Functions custom handler role (`teams-presence handler`): the host's envelope,
//! the function registry, payload-mode dispatch, the timer / Service Bus jobs and the start
//! (readiness first, the state behind it, unresolved Key Vault references, Key Vault
//! certificates loaded and retried behind it).

pub mod certificates;
pub mod envelope;
pub mod functions;
pub mod gate;
pub mod handler;
pub mod jobs;
pub mod startup;
