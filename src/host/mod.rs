//! The Azure Functions custom handler role (`teams-presence handler`): the host's envelope,
//! the function registry, payload-mode dispatch and the timer / Service Bus jobs.

pub mod envelope;
pub mod functions;
pub mod handler;
pub mod jobs;
