//! Loopback fakes for services out of reach here. Each follows the documented protocol,
//! ugly parts included, and is started per test on 127.0.0.1:0.
//!
//! A dev-only crate (`publish = false`, a path dev-dependency of `teams-presence`): the
//! integration tests, the benches and the examples use the same fakes through it, so no
//! program includes their source files by path and none needs a `dead_code` exception for
//! the parts it does not use.

pub mod entra;
pub mod entra_keys;
pub mod graph;
pub mod graph_presence;
pub mod hue;
// Only the cloud build has a Key Vault client to point at it; the fake itself is plain
// OpenSSL and HTTP, so it builds in every feature set.
pub mod keyvault;
pub mod net;
pub mod outage;
pub mod pbx_receiver;
pub mod servicebus;
pub mod sinks;
pub mod table_proxy;
pub mod threecx;
