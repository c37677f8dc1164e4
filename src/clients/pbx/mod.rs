//! PBX adapters: each speaks one PBX's wire format and turns it into the shared model in
//! `crate::core::pbx::model`.
//!
//! - [`events`]: the inbound `POST /api/pbx/events` body and its authentication (any PBX
//!   that can send an HTTP request: hosted PBXs, Asterisk dialplan `CURL`, webhooks).
//! - [`http_out`]: the outbound "set this extension's status" request, one per change.
//! - [`threecx`], [`threecx_calls`]: 3CX V20 (OAuth client credentials, XAPI users and
//!   profiles, Call Control REST and WebSocket).

pub mod events;
pub mod http_out;
pub mod threecx;
pub mod threecx_calls;
