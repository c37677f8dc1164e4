//! One TLS context for every HTTPS client in the process.
//!
//! Each `reqwest` client otherwise builds its own OpenSSL context and parses the system's CA
//! bundle into it, twice (OpenSSL's default paths, then the bundle `openssl-probe` finds):
//! about 0.3 MB of heap per copy, kept for the client's life. `subscribe` holds three clients
//! (Service Bus, the Hue bridge, the presence API), so most of its heap was CA bundles
//! (docs/performance.md, the edge footprint). Clients that trust the system's roots take
//! their builder from [`client_builder`] and share one context; the clients that pin their
//! own roots (the Hue bridge's CA) keep building theirs.

use std::sync::OnceLock;

/// A `reqwest` client builder whose TLS is the process-wide context with the system's
/// trusted roots. Everything else (timeouts, redirects, user agent) is the caller's.
pub fn client_builder() -> reqwest::ClientBuilder {
    static SHARED: OnceLock<Option<native_tls::TlsConnector>> = OnceLock::new();
    let shared = SHARED.get_or_init(|| {
        // The settings reqwest applies to a context it builds itself: HTTP/1.1 only
        // (no HTTP/2 in this build), certificates and host names checked, SNI sent.
        native_tls::TlsConnector::builder()
            .request_alpns(&["http/1.1"])
            .build()
            .map_err(|e| tracing::warn!(error = %e, "cannot build the shared TLS context"))
            .ok()
    });
    let builder = reqwest::Client::builder();
    match shared {
        Some(tls) => builder.tls_backend_preconfigured(tls.clone()),
        // reqwest reports the same failure when the client is built.
        None => builder,
    }
}
