//! Loopback fakes that follow the real protocols closely enough to test the edge end to end.

pub mod hue;
pub mod servicebus;
