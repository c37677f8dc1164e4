//! `teams-presence users`: list and remove signed-in users.

use anyhow::Context;

use crate::store::{PresenceRecord, Store, StoreError, SubscriptionRecord, UserRecord, UserState};

/// Prints one line per user: id, UPN, state, last presence, subscription expiry; in tenant
/// mode first a summary of how many followed users are subscribed and polled, and why.
pub async fn print_list(store: &Store, settings: &crate::config::Settings) -> anyhow::Result<()> {
    let users = store
        .list::<UserRecord>()
        .await
        .context("cannot read users")?;
    {
        let s = settings;
        let people: Vec<UserRecord> = users.iter().map(|u| u.value.clone()).collect();
        let subs: Vec<SubscriptionRecord> = store
            .list::<SubscriptionRecord>()
            .await
            .context("cannot read subscriptions")?
            .into_iter()
            .map(|v| v.value)
            .collect();
        if let Some(t) =
            crate::engine::subscriptions::tenant_coverage(s, &people, &subs, chrono::Utc::now())
        {
            println!(
                "Tenant mode: {} users followed, {} by change notifications ({} subscriptions, {} sync accounts), {} polled every {} s.",
                t.users,
                t.subscribed,
                t.subscriptions,
                t.sync_accounts,
                t.polled,
                s.polling.interval.as_secs()
            );
            for r in &t.reasons {
                println!("  - {r}");
            }
            println!();
        }
    }
    if users.is_empty() {
        println!("No users. Sign in with `teams-presence login` or at /api/auth/start.");
        return Ok(());
    }
    let presence = store
        .list::<PresenceRecord>()
        .await
        .context("cannot read presence")?;
    let subs = store
        .list::<SubscriptionRecord>()
        .await
        .context("cannot read subscriptions")?;
    println!(
        "{:<38} {:<32} {:<18} {:<28} SUBSCRIPTION",
        "USER ID", "UPN", "STATE", "PRESENCE"
    );
    for u in users {
        let u = u.value;
        let state = match &u.state {
            UserState::Active => "active".to_owned(),
            UserState::SignInRequired { .. } => "needs sign-in again".to_owned(),
        };
        let p = presence
            .iter()
            .find(|p| p.value.user_id == u.user_id)
            .map(|p| p.value.last.presence.to_string())
            .unwrap_or_else(|| "-".into());
        let s = subs
            .iter()
            .filter(|s| s.value.user_ids.contains(&u.user_id))
            .map(|s| s.value.expires_at)
            .max()
            .map(|t| format!("until {}", t.format("%Y-%m-%d %H:%M UTC")))
            .unwrap_or_else(|| "polling".into());
        println!(
            "{:<38} {:<32} {:<18} {:<28} {}",
            u.user_id, u.upn, state, p, s
        );
    }
    Ok(())
}

/// Removes a user and everything kept for them: first their Home Assistant entities and
/// retained MQTT state (when `MQTT_URL` is set; a running `serve` or edge hears it and stops
/// publishing them), then their presence and the user (their subscriptions lapse within
/// the hour). An edge has no users in its store, only ids in messages: there, with
/// `MQTT_URL` set, an id not in the store still has its entities removed. An unknown id
/// without MQTT, or a broker that cannot be reached, changes nothing.
pub async fn remove(
    store: &Store,
    settings: &crate::config::Settings,
    id: &str,
) -> anyhow::Result<()> {
    let stored = match store.get::<UserRecord>(id, "user").await {
        Ok(found) => found.is_some(),
        Err(e) => return Err(e).context("cannot read the user"),
    };
    if !stored && settings.sinks.mqtt.is_none() {
        anyhow::bail!("no user with id {id}");
    }
    if let Some(m) = &settings.sinks.mqtt {
        let host = m.url.host_str().unwrap_or_default();
        crate::clients::mqtt::clear_user(m, id, std::time::Duration::from_secs(10))
            .await
            .with_context(|| {
                format!(
                    "cannot remove {id}'s Home Assistant entities from the MQTT broker {host}; \
                     nothing was removed (try again once the broker is reachable, or unset \
                     MQTT_URL to leave them)"
                )
            })?;
        println!("Removed {id}'s Home Assistant entities and MQTT state from {host}.");
        if !stored {
            println!("{id} is not a signed-in user here; nothing else to remove.");
            return Ok(());
        }
    }
    match store.delete::<UserRecord>(id, "user", None).await {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(e) => return Err(e).context("cannot remove user"),
    }
    match store.delete::<PresenceRecord>(id, "presence", None).await {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(e) => return Err(e).context("cannot remove presence"),
    }
    println!("Removed {id}.");
    Ok(())
}
