//! The one integration-test binary. Each module is one area of behaviour:
//!
//! - `architecture`: no import cycle, dependencies pointing down the layers, a core without I/O.
//! - `support`: the `TestApp`/host-invocation helpers, Azurite, ports, logging.
//! - `fakes`: loopback servers standing in for Graph, Entra ID and friends.
//! - `store`: one conformance suite run against SQLite and Azurite.
//! - `handler`: the custom handler as the Functions host drives it.
//! - `serve`: the standalone server from an empty environment.
//! - `cli`: the binary's exit codes and one-line errors.
//! - `auth`: sign-in and tokens against the fake Entra ID.
//! - `presence`: polling, change detection and publishing against the fake Graph.
//! - `webhook`: change notifications, decryption and validation tokens.
//! - `auth_hardening`, `webhook_hardening`, `store_retries`: issue 13's attacks and lost answers.
//! - `edge`: `subscribe` and `hue-subscriber` against fake Service Bus and Hue bridges.

mod architecture;
mod auth;
mod auth_hardening;
mod cli;
mod doctor;
mod edge;
mod fakes;
mod handler;
mod hue_tls;
mod presence;
mod private_files;
mod serve;
mod serve_e2e;
mod status_page;
mod store;
mod store_retries;
mod subscriptions;
mod support;
mod webhook;
mod webhook_hardening;
