//! One module per outside system and wire format. Each is the only place that knows its
//! system's requests and JSON; the rest of the crate works with typed values.

pub mod busylight;
pub mod entra;
pub mod graph;
pub mod hue;
pub mod keyvault;
pub mod mqtt;
pub mod pbx;
pub mod presence_api;
pub mod servicebus;
pub mod tls;
pub mod webhook;
pub mod wled;
