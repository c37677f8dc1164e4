//! PBX adapters: each speaks one PBX's wire format and turns it into the shared model in
//! `crate::core::pbx::model`.
//!
//! - [`events`]: the inbound `POST /api/pbx/events` body and its authentication (any PBX
//!   that can send an HTTP request: hosted PBXs, Asterisk dialplan `CURL`, webhooks).

pub mod events;
