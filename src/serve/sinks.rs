//! `serve`'s in-process sinks: every published change is logged and, when a Hue bridge is
//! configured, shown on the lights with the same code the edge runs (`edge::Applier`).
//!
//! At start the sink shows every user's stored presence once, so after a restart (even
//! `kill -9`) the lamp is right without waiting for the next change. A bridge that is down
//! does not lose changes: the latest verdict per user is kept and retried every 10 seconds.

use std::collections::BTreeMap;

use chrono::Utc;

use crate::core::judge::Verdict;
use crate::core::message::{PresenceChanged, TopicMessage};
use crate::engine::applier::{set_status as set, Applier};
use crate::http::state::AppState;
use crate::store::PresenceRecord;

fn log(msg: &TopicMessage) {
    match msg {
        TopicMessage::PresenceChanged(m) => {
            tracing::info!(user_id = %m.user_id, presence = %m.presence, source = ?m.source, "presence changed")
        }
        TopicMessage::SignInRequired(m) => {
            tracing::warn!(user_id = %m.user_id, reason = %m.reason, "sign-in required")
        }
        TopicMessage::Unknown { .. } => {}
    }
}

async fn connect(state: &AppState) -> Option<Applier> {
    state.settings.hue_bridge.as_ref()?;
    match Applier::from_settings(&state.settings, None).await {
        Ok(a) => {
            set(&state.sink_status, |s| {
                s.description = format!(
                    "Hue bridge {}",
                    state.settings.hue_bridge.as_deref().unwrap_or("")
                );
                s.last_error = None;
            });
            Some(a)
        }
        Err(e) => {
            let e = format!("{e:#}");
            tracing::warn!(error = %e, "Hue bridge not usable yet; retrying");
            set(&state.sink_status, |s| s.last_error = Some(e));
            None
        }
    }
}

/// A light state in words, for people.
fn describe(d: &crate::core::lights::Desired) -> String {
    use crate::core::lights::{Desired, Effect};
    match d {
        Desired::Keep => "left as it was (outside working hours)".into(),
        Desired::Set(s) if !s.on => "off".into(),
        Desired::Set(s) => {
            let mut parts = vec!["on".to_owned()];
            if let Some(xy) = s.xy {
                parts.push(format!("colour xy({:.3}, {:.3})", xy.x, xy.y));
            }
            if let Some(b) = s.brightness {
                parts.push(format!("{b:.0}% brightness"));
            }
            if s.effect == Effect::Breathe {
                parts.push("breathing".into());
            }
            parts.join(", ")
        }
    }
}

/// Applies pending verdicts; the ones that fail stay pending.
async fn flush(state: &AppState, applier: &mut Applier, pending: &mut BTreeMap<String, Verdict>) {
    let users: Vec<String> = pending.keys().cloned().collect();
    for user in users {
        let verdict = pending.remove(&user).expect("key listed");
        match applier.apply(&verdict).await {
            Ok(()) => {
                if let Verdict::Apply { desired, .. } = &verdict {
                    set(&state.sink_status, |s| {
                        s.last_command = Some(format!("{user}: {}", describe(desired)));
                        s.last_command_at = Some(Utc::now());
                        s.last_error = None;
                    });
                }
            }
            Err(e) => {
                tracing::warn!(user_id = %user, error = %e, "the lights did not take the change; will retry");
                set(&state.sink_status, |s| s.last_error = Some(e.to_string()));
                pending.insert(user, verdict);
            }
        }
    }
}

/// Subscribes (before returning, so nothing published later is missed) and runs the sinks.
pub fn spawn(state: &AppState) -> tokio::task::JoinHandle<()> {
    let mut rx = state.publisher.subscribe();
    let state = state.clone();
    tokio::spawn(async move {
        if state.settings.hue_bridge.is_none() {
            set(&state.sink_status, |s| {
                s.description =
                    "no lights configured (HUE_BRIDGE is not set): changes are only logged".into()
            });
        }
        let mut applier = connect(&state).await;
        let mut pending: BTreeMap<String, Verdict> = BTreeMap::new();
        // Show what we know now: after a restart the lamp must be right at once.
        if let Some(a) = applier.as_mut() {
            for rec in state
                .store
                .list::<PresenceRecord>()
                .await
                .unwrap_or_default()
            {
                let r = rec.value;
                let msg = TopicMessage::PresenceChanged(PresenceChanged::from_change(
                    &r.user_id,
                    &r.tenant_id,
                    &r.last,
                    None,
                ));
                let v = a.judge(&Ok(msg), Utc::now());
                if let Verdict::Apply { user, .. } = &v {
                    pending.insert(user.clone(), v);
                }
            }
            flush(&state, a, &mut pending).await;
        }
        let mut retry = tokio::time::interval(std::time::Duration::from_secs(10));
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    log(&msg);
                    if let Some(bus) = state.direct_bus.clone() {
                        // PUBLISH_MODE=rest: edges elsewhere get it too.
                        let m = msg.clone();
                        tokio::spawn(async move {
                            for attempt in 0..3u64 {
                                match crate::engine::publish::send_direct(&bus, std::slice::from_ref(&m)).await {
                                    Ok(()) => return,
                                    Err(e) => {
                                        tracing::warn!(error = %e, attempt, "cannot send to Service Bus");
                                        tokio::time::sleep(std::time::Duration::from_secs(2 << attempt)).await;
                                    }
                                }
                            }
                        });
                    }
                    if state.settings.hue_bridge.is_none() {
                        continue;
                    }
                    if applier.is_none() {
                        applier = connect(&state).await;
                    }
                    if let Some(a) = applier.as_mut() {
                        let v = a.judge(&Ok(msg), Utc::now());
                        if let Verdict::Apply { user, .. } = &v {
                            // The newest verdict per user wins.
                            pending.insert(user.clone(), v);
                        }
                        flush(&state, a, &mut pending).await;
                    }
                }
                _ = retry.tick() => {
                    if state.settings.hue_bridge.is_some() && applier.is_none() {
                        applier = connect(&state).await;
                    }
                    if let (Some(a), false) = (applier.as_mut(), pending.is_empty()) {
                        flush(&state, a, &mut pending).await;
                    }
                }
            }
        }
    })
}
