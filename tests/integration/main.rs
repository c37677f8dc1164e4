//! The one integration-test binary. Each module is one area of behaviour:
//!
//! - `support`: the `TestApp`/host-invocation helpers, Azurite, ports, logging.
//! - `fakes`: loopback servers standing in for Graph, Entra ID and friends.
//! - `store`: one conformance suite run against SQLite and Azurite.
//! - `handler`: the custom handler as the Functions host drives it.
//! - `serve`: the standalone server from an empty environment.
//! - `cli`: the binary's exit codes and one-line errors.

mod auth;
mod cli;
mod fakes;
mod handler;
mod presence;
mod serve;
mod store;
mod support;
