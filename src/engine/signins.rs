//! Sign-ins: bounding what anonymous `GET /api/auth/start` can make us store, and who may
//! sign in at all.
//!
//! Each start stores a pending row (state, sealed PKCE verifier, nonce) for ten minutes.
//! Without bounds an anonymous client could add rows forever, so starts are rate limited
//! (per client and overall, in the store so every instance counts against the same limits:
//! `crate::engine::guards::sign_in_start`) and the maintenance pass purges rows past their
//! expiry, the guards' own rows with them.

use chrono::{DateTime, Utc};

use crate::clients::entra::Identity;
use crate::config::Settings;
use crate::store::{PendingSignIn, Store, StoreError};

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

/// Deletes the pending sign-ins that expired before `now`, and the expired rows of the
/// guards (`crate::engine::guards`): the maintenance pass, which both roles run on a timer,
/// calls this. Returns how many pending sign-ins went.
pub async fn purge_expired(store: &Store, now: DateTime<Utc>) -> Result<usize, StoreError> {
    match crate::engine::guards::purge_expired(store, now).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(purged = n, "expired guard rows removed"),
        Err(e) => tracing::warn!(error = %e, "cannot purge expired guard rows"),
    }
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
