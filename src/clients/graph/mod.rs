//! Microsoft Graph: [`client`] is the only module that knows its REST JSON; [`notification`]
//! and [`validation_token`] are the only ones that know its change notifications; [`certs`]
//! is the notification certificate ring; [`testing`] is Graph's encrypting side, for tests.
//!
//! The notification side is pure: parsing, checking and decrypting take the key ring, the
//! subscription (a [`notification::Subscription`]: the store's record, bound in the engine)
//! and `now` as arguments. The HTTP side lives in `crate::http::webhook`; the signing keys of
//! validation tokens are fetched by [`validation_token::JwksCache`], its one piece with I/O.

pub mod certs;
pub mod client;
pub mod notification;
pub mod testing;
pub mod validation_token;
