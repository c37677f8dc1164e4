//! One module per outside system and wire format. Each is the only place that knows its
//! system's requests and JSON; the rest of the crate works with typed values.

pub mod busylight;
pub mod entra;
pub mod graph;
pub mod hue;
pub mod keyvault;
pub mod mqtt;
pub mod pbx;
pub mod presence_api;
pub mod servicebus;
pub mod webhook;
pub mod wled;

/// A `reqwest` client builder on the process's one TLS set-up. Every client built the plain
/// way parses the system's trust store again (tens of milliseconds each, several of them
/// before the handler answers the host's readiness probe); these share one parse. Only
/// for clients that set no TLS options of their own (those would be ignored).
pub fn http_builder() -> reqwest::ClientBuilder {
    static TLS: std::sync::OnceLock<Option<native_tls::TlsConnector>> = std::sync::OnceLock::new();
    let builder = reqwest::Client::builder();
    match TLS.get_or_init(|| native_tls::TlsConnector::new().ok()) {
        Some(tls) => builder.use_preconfigured_tls(tls.clone()),
        // `build()` then reports the same failure the way it always did.
        None => builder,
    }
}
