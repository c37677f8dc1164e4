//! teams-presence: Microsoft Teams presence on your lights.
//!
//! One binary, three roles: the Azure Functions custom handler (`handler`), the edge
//! subscriber on a Raspberry Pi (`subscribe`) and the standalone server (`serve`).
//! ARCHITECTURE.md has the code map and the invariants.

#![warn(missing_docs)]

pub mod app;
pub mod azure_auth;
pub mod cli;
pub mod config;
pub mod edge;
pub mod envelope;
pub mod functions;
pub mod handler;
pub mod http;
pub mod hue;
pub mod jobs;
pub mod lights;
pub mod message;
pub mod presence;
pub mod publish;
pub mod serve;
pub mod servicebus;
pub mod store;
pub mod users;
