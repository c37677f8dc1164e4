//! Microsoft Graph's change-notification wire formats: the only place that knows their JSON.
//!
//! Pure code: parsing, checking and decrypting take the key ring, the subscription records
//! and `now` as arguments. The HTTP side lives in `crate::http::webhook`; the signing keys of
//! validation tokens are fetched by [`validation_token::JwksCache`], the one piece with I/O.

pub mod certs;
pub mod client;
pub mod notification;
pub mod testing;
pub mod validation_token;
