//! USB busylights (Luxafor Flag, Kuando Busylight Alpha/Omega, Embrava Blynclight):
//! **the only module that knows their HID reports**.
//!
//! [`protocol`] is pure: which vendor/product ids are which model, and the bytes of the HID
//! output report that shows a colour (tested byte for byte against each vendor's published
//! table). The device I/O (`device`: hidapi discovery, hot-plug, the sink the
//! [`crate::engine::sinks`] fan-out drives, the Kuando keep-alive) is built with the
//! `busylight` cargo feature, on by default and in the Pi builds: hidapi's pure Rust hidraw
//! backend needs no system library at build or run time.

#[cfg(feature = "busylight")]
pub mod device;
pub mod protocol;
