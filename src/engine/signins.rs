//! Sign-ins: bounding what anonymous `GET /api/auth/start` can make us store, and who may
//! sign in at all.
//!
//! Each start stores a pending row (state, sealed PKCE verifier, nonce) for ten minutes.
//! Without bounds an anonymous client could add rows forever, so starts are rate limited
//! (per client and overall, token buckets on the caller's clock) and the minute timers purge
//! rows past their expiry.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::clients::entra::Identity;
use crate::config::Settings;
use crate::store::{PendingSignIn, Store, StoreError};

/// Starts one client may make in a burst; it regains one every six seconds (10 a minute).
pub const PER_CLIENT_BURST: f64 = 10.0;
/// Starts all clients together may make in a burst; they regain five a second (300 a minute),
/// which also bounds pending rows at 3,000 over their ten-minute life when spoofed client
/// addresses defeat the per-client limit.
pub const OVERALL_BURST: f64 = 300.0;
/// Client entries kept before idle ones are forgotten.
const MAX_CLIENTS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(capacity: f64, at: Instant) -> Self {
        Self {
            tokens: capacity,
            at,
        }
    }

    fn refill(&mut self, capacity: f64, per_minute: f64, now: Instant) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + secs * per_minute / 60.0).min(capacity);
        self.at = now;
    }
}

/// The rate limit of sign-in starts, per client and overall.
#[derive(Debug, Default)]
pub struct StartLimiter {
    state: Mutex<Option<(Bucket, HashMap<String, Bucket>)>>,
}

impl StartLimiter {
    /// Takes one start for `client` at `now`; `false` means answer 429.
    pub fn allow(&self, client: &str, now: Instant) -> bool {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (overall, clients) =
            guard.get_or_insert_with(|| (Bucket::full(OVERALL_BURST, now), HashMap::new()));
        overall.refill(OVERALL_BURST, OVERALL_BURST, now);
        if clients.len() >= MAX_CLIENTS {
            clients.retain(|_, b| {
                b.refill(PER_CLIENT_BURST, PER_CLIENT_BURST, now);
                b.tokens < PER_CLIENT_BURST
            });
        }
        let mine = clients
            .entry(client.to_owned())
            .or_insert_with(|| Bucket::full(PER_CLIENT_BURST, now));
        mine.refill(PER_CLIENT_BURST, PER_CLIENT_BURST, now);
        if mine.tokens < 1.0 || overall.tokens < 1.0 {
            return false;
        }
        mine.tokens -= 1.0;
        overall.tokens -= 1.0;
        true
    }
}

/// Whether `ALLOWED_TENANTS` / `ALLOWED_USERS` let this verified identity sign in (an unset
/// list allows everyone). Call it with the id_token's identity, never with `login_hint`.
#[tracing::instrument(level = "debug", name = "sign_in_allowed", skip_all, fields(user_id = %who.user_id, tenant_id = %who.tenant_id))]
pub fn allowed(settings: &Settings, who: &Identity) -> bool {
    let tenant_ok = settings.access.allowed_tenants.is_empty()
        || settings
            .access
            .allowed_tenants
            .contains(&who.tenant_id.to_ascii_lowercase());
    let user_ok = settings.access.allowed_users.is_empty()
        || [&who.user_id, &who.upn]
            .iter()
            .any(|u| !u.is_empty() && settings.access.allowed_users.contains(&u.to_lowercase()));
    tenant_ok && user_ok
}

/// Deletes the pending sign-ins that expired before `now`. Returns how many went.
pub async fn purge_expired(store: &Store, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let mut purged = 0;
    for p in store.list::<PendingSignIn>().await? {
        if p.value.expires_at >= now {
            continue;
        }
        match store
            .delete::<PendingSignIn>(&p.value.state, "pending", Some(&p.etag))
            .await
        {
            // Gone already (used, or another instance purged it): fine either way.
            Ok(()) | Err(StoreError::NotFound | StoreError::PreconditionFailed) => purged += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(purged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_client_gets_its_burst_then_one_every_six_seconds() {
        let l = StartLimiter::default();
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(l.allow("a", t0));
        }
        assert!(!l.allow("a", t0));
        assert!(l.allow("b", t0), "another client is not affected");
        assert!(!l.allow("a", t0 + Duration::from_secs(5)));
        assert!(l.allow("a", t0 + Duration::from_secs(7)));
    }
}
