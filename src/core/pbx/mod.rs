//! PBX ↔ Teams presence sync, the pure part: the model every PBX adapter speaks, the
//! mapping rules and the per-user sync state machine. No I/O; time comes in as arguments.

pub mod model;
mod presets;
pub mod rules;
mod settings;
#[cfg(test)]
mod simulation;
pub mod sync;
