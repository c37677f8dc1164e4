//! teams-presence: Microsoft Teams presence on your lights and desk phones.
//!
//! One binary, three roles: the Azure Functions custom handler (`handler`), the edge
//! subscriber on a Raspberry Pi (`subscribe`) and the standalone server (`serve`).
//! ARCHITECTURE.md has the layers (its "Layers" table is the one statement of which module
//! may use which, checked by `tests/integration/architecture.rs`), the code map and the
//! invariants.

pub mod cli;
pub mod clients;
pub mod config;
pub mod core;
pub mod edge;
pub mod engine;
pub mod files;
pub mod host;
pub mod http;
pub mod serve;
pub mod store;
