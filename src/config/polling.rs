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
    /// `TENANT_USERS`: tenant mode, the user ids to follow in batches; with those of
    /// `TENANT_USERS_FILE` (a file of ids, for more than an environment variable holds).
    pub tenant_users: Vec<String>,
    /// `TENANT_SYNC_USERS` (or its older singular alias `TENANT_SYNC_USER`): in tenant mode,
    /// the signed-in accounts (object ids or UPNs) whose delegated tokens own the presence
    /// subscriptions, at most 650 followed users each (Graph allows one presence subscription
    /// per user per app). The first one that has a token also reads presence; app-only
    /// client credentials do when the list is empty.
    pub tenant_sync_users: Vec<String>,
}

impl PollingSettings {
    /// `tenant_users` is [`tenant_users`]' list, read once before (tenant mode decides how
    /// `AZURE_TENANT_ID` is checked).
    pub(super) fn parse(src: &Sources, tenant_users: Vec<String>) -> Result<Self, ConfigError> {
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
            tenant_users,
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
pub(super) fn check_tenant_mode_tenant(
    src: &Sources,
    tenant_users: &[String],
) -> Result<(), ConfigError> {
    if tenant_users.is_empty() {
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

/// `TENANT_USERS` and the ids in the file `TENANT_USERS_FILE` names (separated by commas,
/// spaces or new lines), once each. The file is for tenants too large for one environment
/// variable: Linux passes a process at most 128 KiB per variable, about 3,500 ids.
pub(super) fn tenant_users(src: &Sources) -> Result<Vec<String>, ConfigError> {
    let mut users = src.setting("TENANT_USERS").list();
    if let Some(path) = src.setting("TENANT_USERS_FILE").path() {
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError {
            setting: "TENANT_USERS_FILE".into(),
            problem: format!("cannot read {}: {}", path.display(), e.kind()),
        })?;
        let mut seen: std::collections::HashSet<String> = users.iter().cloned().collect();
        for id in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|x| !x.is_empty())
        {
            if seen.insert(id.to_owned()) {
                users.push(id.to_owned());
            }
        }
    }
    Ok(users)
}
