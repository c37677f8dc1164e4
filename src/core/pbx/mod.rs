//! PBX ↔ Teams presence sync, the pure part: the model every PBX adapter speaks.

pub mod model;
