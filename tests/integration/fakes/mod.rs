//! Loopback fakes for services out of reach here. Each follows the documented protocol,
//! ugly parts included, and is started per test on 127.0.0.1:0.

pub mod entra;
pub mod entra_keys;
pub mod graph;
pub mod graph_presence;
pub mod hue;
// Only the cloud build has a Key Vault client to point at it.
#[cfg(feature = "azure-sdk")]
pub mod keyvault;
pub mod outage;
pub mod pbx_receiver;
pub mod servicebus;
pub mod sinks;
pub mod table_proxy;
pub mod threecx;
