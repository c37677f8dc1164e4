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

/// Starts building the shared TLS context on a thread of its own, so a role that answers a
/// readiness probe first (the Functions handler) does not wait for the CA bundle's parse:
/// the clients are [`LazyClient`]s and the first request that needs TLS finds it ready.
pub fn warm_up() {
    std::thread::spawn(|| drop(client_builder()));
}

type Configure = dyn Fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder + Send + Sync;

/// A `reqwest` client on the shared TLS context, built the first time it is used (it
/// dereferences to [`reqwest::Client`]). Building it takes the TLS context, which parses the
/// system's CA bundle once per process (tens of milliseconds): the handler's start does not
/// pay it before the host's readiness probe is answered.
#[derive(Clone)]
pub struct LazyClient(std::sync::Arc<Lazy>);

struct Lazy {
    client: OnceLock<reqwest::Client>,
    configure: Box<Configure>,
}

impl LazyClient {
    /// A client that `configure` sets up (timeouts, user agent) on top of [`client_builder`].
    pub fn new(
        configure: impl Fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder + Send + Sync + 'static,
    ) -> Self {
        Self(std::sync::Arc::new(Lazy {
            client: OnceLock::new(),
            configure: Box::new(configure),
        }))
    }
}

impl std::ops::Deref for LazyClient {
    type Target = reqwest::Client;

    fn deref(&self) -> &reqwest::Client {
        self.0.client.get_or_init(|| {
            (self.0.configure)(client_builder())
                .build()
                .expect("TLS backend initialises")
        })
    }
}

impl std::fmt::Debug for LazyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LazyClient")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lazy_client_is_built_once_on_first_use_and_shared_by_its_clones() {
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = calls.clone();
        let lazy = LazyClient::new(move |b| {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            b.timeout(std::time::Duration::from_secs(1))
        });
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
        let copy = lazy.clone();
        let a: &reqwest::Client = &lazy;
        let b: &reqwest::Client = &copy;
        assert!(std::ptr::eq(a, b));
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
