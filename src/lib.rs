//! teams-presence: Microsoft Teams presence on your lights.
//!
//! One binary, three roles: the Azure Functions custom handler (`handler`), the edge
//! subscriber on a Raspberry Pi (`subscribe`) and the standalone server (`serve`).
//! ARCHITECTURE.md has the code map and the invariants.

#![warn(missing_docs)]

pub mod app;
pub mod azure_auth;
pub mod certs;
pub mod cli;
pub mod clients;
pub mod config;
pub mod core;
pub mod doctor;
pub mod edge;
pub mod entra;
pub mod envelope;
pub mod functions;
pub mod graph;
pub mod handler;
pub mod http;
pub mod hue;
pub mod jobs;
pub mod keyvault;
pub mod lifecycle;
pub mod lights;
pub mod login;
pub mod message;
pub mod pipeline;
pub mod poller;
pub mod presence;
pub mod publish;
pub mod seal;
pub mod serve;
pub mod servicebus;
pub mod sinks;
pub mod store;
pub mod subscriptions;
pub mod tokens;
pub mod users;
