//! Clients for IP-PBX systems. Each adapter turns its PBX's API into the shared
//! [`crate::core::pbx::model`] vocabulary (line states, profiles, events).

pub mod threecx;
pub mod threecx_calls;
