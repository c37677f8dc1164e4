//! PBX adapters: each speaks one PBX's wire format and turns it into the shared model in
//! `crate::core::pbx::model`.
//!
//! - [`events`]: the inbound `POST /api/pbx/events` body and its authentication (any PBX
//!   that can send an HTTP request: hosted PBXs, Asterisk dialplan `CURL`, webhooks).
//! - [`http_out`]: the outbound "set this extension's status" request, one per change.

pub mod events;
pub mod http_out;
