//! Polling Graph (`POLL_INTERVAL`, `RECONCILE_INTERVAL`, `POLL_CONCURRENCY`) and tenant mode
//! (`TENANT_USERS`, `TENANT_SYNC_USERS`).

use std::time::Duration;

use super::error::ConfigError;
use super::sources::Sources;

/// How presence is polled, and whom tenant mode follows.
#[derive(Debug)]
pub struct PollingSettings {
    /// `POLL_INTERVAL` (default 30 s).
    pub interval: Duration,
    /// `RECONCILE_INTERVAL` (minutes, default 15): how often a user with a live
    /// change-notification subscription is still polled, as a safety net; on an edge, how
    /// often it reads the current presence from `PRESENCE_API_URL`.
    pub reconcile_interval: Duration,
    /// `POLL_CONCURRENCY` (default 8): Graph calls in flight at once.
    pub concurrency: usize,
    /// `TENANT_USERS`: tenant mode, the user ids to follow in batches.
    pub tenant_users: Vec<String>,
    /// `TENANT_SYNC_USERS` (or its older singular alias `TENANT_SYNC_USER`): in tenant mode,
    /// the signed-in accounts (object ids or UPNs) whose delegated tokens own the presence
    /// subscriptions, at most 650 followed users each (Graph allows one presence subscription
    /// per user per app). The first one that has a token also reads presence; app-only
    /// client credentials do when the list is empty.
    pub tenant_sync_users: Vec<String>,
}

impl PollingSettings {
    pub(super) fn parse(src: &Sources) -> Result<Self, ConfigError> {
        Ok(Self {
            interval: src
                .setting("POLL_INTERVAL")
                .seconds(1..=86_400)?
                .unwrap_or(Duration::from_secs(30)),
            reconcile_interval: src
                .setting("RECONCILE_INTERVAL")
                .minutes(1..=1440)?
                .unwrap_or(Duration::from_secs(15 * 60)),
            concurrency: src.setting("POLL_CONCURRENCY").number(1..=64)?.unwrap_or(8),
            tenant_users: src.setting("TENANT_USERS").list(),
            tenant_sync_users: {
                // Both spellings may be set (an old one left behind): join them, once each.
                let mut v = src.setting("TENANT_SYNC_USERS").list();
                for u in src.setting("TENANT_SYNC_USER").list() {
                    if !v.iter().any(|x| x.eq_ignore_ascii_case(&u)) {
                        v.push(u);
                    }
                }
                v
            },
        })
    }
}

/// Tenant mode (`TENANT_USERS`) follows one tenant's users with app credentials: its
/// `AZURE_TENANT_ID` must name that tenant by id, not a domain or `common`/`organizations`
/// (an authority any tenant's users could sign in through).
pub(super) fn check_tenant_mode_tenant(src: &Sources) -> Result<(), ConfigError> {
    if src.setting("TENANT_USERS").list().is_empty() {
        return Ok(());
    }
    match src.get("AZURE_TENANT_ID") {
        Some(t) if t.trim().len() != 36 || uuid::Uuid::parse_str(t.trim()).is_err() => {
            Err(ConfigError::invalid(
                "AZURE_TENANT_ID",
                Some(&t),
                "the tenant's id (a GUID) in tenant mode (TENANT_USERS is set)",
            ))
        }
        _ => Ok(()),
    }
}
