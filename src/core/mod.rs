//! The pure core: no I/O, no tokio. Time and keys come in as arguments, so every rule here
//! is tested with tables of cases.

pub mod backoff;
pub mod judge;
pub mod lights;
pub mod message;
pub mod pbx;
pub mod presence;
pub mod rate;
pub mod seal;
