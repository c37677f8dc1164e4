//! The pure core: no I/O, no tokio. Time and keys come in as arguments.

pub mod pbx;
