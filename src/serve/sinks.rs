//! `serve`'s in-process sinks: every published change is logged and, when a Hue bridge is
//! configured, shown on the lights with the same code the edge runs (`edge::Applier`).
//!
//! At start the sink shows every user's stored presence once, so after a restart (even
//! `kill -9`) the lamp is right without waiting for the next change. A change goes to the
//! lights the moment it is published. A bridge that is down does not lose changes: the
//! latest message per user is kept (one per user, however long the outage) and retried with
//! back-off. A target that refuses a state the others took does not hold the change back: it
//! is sent the newest state again with the same back-off, and the status page says which
//! target it is (as it says which lamp the bridge warns may not answer).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::core::backoff::Backoff;
use crate::core::judge::Verdict;
use crate::core::message::{PresenceChanged, TopicMessage};
use crate::engine::applier::{set_status as set, Applier};
use crate::engine::shutdown::Stop;
use crate::http::state::AppState;
use crate::store::{PresenceRecord, Store, UserRecord};

/// At most this many received changes share one confirmation (one store transaction).
const CONFIRM_BATCH: usize = 64;

fn log(msg: &TopicMessage) {
    match msg {
        // Where a change is found (the webhook, the poller) it is logged at info already.
        TopicMessage::PresenceChanged(m) => {
            tracing::debug!(user_id = %m.user_id, presence = %m.presence, source = ?m.source, "presence change to the sinks")
        }
        TopicMessage::SignInRequired(m) => {
            tracing::warn!(user_id = %m.user_id, reason = %m.reason, "sign-in required")
        }
        TopicMessage::Unknown { .. } => {}
    }
}

async fn connect(state: &AppState) -> Option<Applier> {
    state.settings.hue.bridge.as_ref()?;
    match Applier::from_settings(&state.settings, None).await {
        Ok(a) => {
            set(&state.sink_status, |s| {
                s.description = format!(
                    "Hue bridge {}",
                    state.settings.hue.bridge.as_deref().unwrap_or("")
                );
                s.last_error = None;
                s.last_answer_at = Some(Utc::now());
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

/// The newest message per user not yet on the lights: bounded by the number of users however
/// long the bridge is down, and a newer message replaces an older one (coalescing).
type Pending = Arc<Mutex<BTreeMap<String, TopicMessage>>>;

fn lock(p: &Pending) -> std::sync::MutexGuard<'_, BTreeMap<String, TopicMessage>> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Applies everything pending; a failed one goes back unless a newer one arrived meanwhile.
/// Returns false if the bridge failed.
async fn flush(state: &AppState, applier: &mut Applier, pending: &Pending) -> bool {
    let taken = std::mem::take(&mut *lock(pending));
    let mut ok = true;
    for (user, msg) in taken {
        let verdict = applier.judge(&Ok(msg.clone()), Utc::now());
        if !ok {
            lock(pending).entry(user).or_insert(msg);
            continue;
        }
        match applier.apply(&verdict).await {
            Ok(()) => {
                if let Verdict::Apply { desired, .. } = &verdict {
                    set(&state.sink_status, |s| {
                        s.last_command = Some(format!("{user}: {}", describe(desired)));
                        s.last_command_at = Some(Utc::now());
                        s.last_answer_at = s.last_command_at;
                        s.last_error = None;
                    });
                }
            }
            Err(e) => {
                tracing::warn!(user_id = %user, error = %e, "the lights did not take the change; will retry");
                set(&state.sink_status, |s| s.last_error = Some(e.to_string()));
                lock(pending).entry(user).or_insert(msg);
                ok = false;
            }
        }
    }
    ok
}

/// The lights' first retry delay while the bridge is down; doubles up to [`LIGHTS_RETRY_CAP`].
const LIGHTS_RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
/// The lights' longest retry delay.
const LIGHTS_RETRY_CAP: std::time::Duration = std::time::Duration::from_secs(30);

/// Drives the lights: applies what is pending the moment it is known, and while the bridge
/// is down retries with back-off (1 s doubling to 30 s), never sooner than the bridge's own
/// rate limits allow. Returns once `all_received` is cancelled and everything handed over
/// is shown.
async fn lights(
    state: AppState,
    pending: Pending,
    wake: Arc<Notify>,
    all_received: CancellationToken,
) {
    let mut applier: Option<Applier> = None;
    let mut backoff = Backoff::new(LIGHTS_RETRY_FIRST, LIGHTS_RETRY_CAP);
    let mut failing = false;
    loop {
        if failing {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        } else {
            tokio::select! {
                _ = wake.notified() => {}
                _ = all_received.cancelled() => {}
            }
        }
        if !failing && all_received.is_cancelled() && lock(&pending).is_empty() {
            return;
        }
        if applier.is_none() {
            applier = connect(&state).await;
        }
        failing = match applier.as_mut() {
            Some(a) => {
                // A target that refused the last state gets it again, unless a newer change
                // is about to go to every target anyway.
                if a.lights_pending() && lock(&pending).is_empty() {
                    a.retry_lights().await;
                }
                let flushed = flush(&state, a, &pending).await;
                let problems = a.lights_problems();
                set(&state.sink_status, |s| s.warnings = problems);
                !flushed || a.lights_pending()
            }
            None => true,
        };
        if !failing {
            backoff.reset();
        }
        if !lock(&pending).is_empty() && !failing {
            // Arrived while the command was in flight: go again at once.
            wake.notify_one();
        }
    }
}

/// Hands the sinks the display name of a user signed in since the start (Home Assistant's
/// device names); in its own task, so receiving never waits on the store.
fn learn_name(store: &Store, sinks: &Arc<crate::engine::sinks::Fanout>, user: &str) {
    let (store, sinks, user) = (store.clone(), sinks.clone(), user.to_owned());
    tokio::spawn(async move {
        if let Ok(Some(u)) = store.get::<UserRecord>(&user, "user").await {
            sinks.set_names([(u.value.user_id, u.value.display_name)]);
        }
    });
}

/// Subscribes (before returning, so nothing published later is missed) and runs the sinks
/// until the task is aborted.
pub fn spawn(state: &AppState) -> tokio::task::JoinHandle<()> {
    start(state, &TaskTracker::new(), Stop::new())
}

/// [`spawn`] on `tasks`, and once `drain` begins: takes what was published before, hands it
/// to the lights and the other sinks, lets them deliver it until the drain's deadline, clears
/// the pending marks of what they took, and ends, saying how many changes were not
/// delivered by then (a start shows every stored presence again).
pub fn start(state: &AppState, tasks: &TaskTracker, drain: Stop) -> tokio::task::JoinHandle<()> {
    let mut rx = state.publisher.subscribe();
    let state = state.clone();
    let spawner = tasks.clone();
    tasks.spawn(async move {
        let tasks = spawner;
        let all_received = CancellationToken::new();
        let pending: Pending = Arc::default();
        let wake = Arc::new(Notify::new());
        let hue = state.settings.hue.bridge.is_some();
        let mut named = std::collections::HashSet::new();
        if let Some(f) = &state.sinks {
            // People's display names first, so Home Assistant's devices are named at once.
            let users = state.store.list::<UserRecord>().await.unwrap_or_default();
            named.extend(users.iter().map(|u| u.value.user_id.clone()));
            f.set_names(
                users
                    .into_iter()
                    .map(|u| (u.value.user_id, u.value.display_name)),
            );
            // After a restart MQTT's retained state and WLED must be right at once too.
            for rec in state
                .store
                .list::<PresenceRecord>()
                .await
                .unwrap_or_default()
            {
                let r = rec.value;
                f.offer(&TopicMessage::PresenceChanged(
                    PresenceChanged::from_change(&r.user_id, &r.tenant_id, &r.last, None),
                ));
            }
        }
        if hue {
            // Show what we know now: after a restart the lamp must be right at once.
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
                lock(&pending).insert(r.user_id.clone(), msg);
            }
            wake.notify_one();
        } else {
            set(&state.sink_status, |s| {
                s.description = if state.sinks.is_some() {
                    "no Hue bridge (HUE_BRIDGE is not set)".into()
                } else {
                    "no lights configured (HUE_BRIDGE is not set): changes are only logged".into()
                }
            });
        }
        // Receiving never waits for the lights: a slow or absent bridge only grows `pending`
        // by one entry per user. Both run in this task, so aborting it stops both.
        let driving = async {
            if !hue {
                return 0;
            }
            let lights = lights(
                state.clone(),
                pending.clone(),
                wake.clone(),
                all_received.clone(),
            );
            tokio::select! {
                () = lights => 0,
                _ = async { tokio::time::sleep_until(drain.begun().await).await } => {
                    lock(&pending).len()
                }
            }
        };
        let receiving = async {
            let mut batch = Vec::new();
            loop {
                // Once the drain begins: only what was already published, then stop.
                let next = tokio::select! {
                    biased;
                    m = rx.recv() => m,
                    _ = drain.token().cancelled() => rx.try_recv().ok(),
                };
                let Some(msg) = next else { break };
                // What arrived meanwhile goes along: one confirmation for the lot.
                batch.push(msg);
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                    if batch.len() >= CONFIRM_BATCH {
                        break;
                    }
                }
                for msg in &batch {
                    log(msg);
                    if let Some(f) = &state.sinks {
                        if let Some(user) = msg.user_id() {
                            if named.insert(user.to_owned()) {
                                learn_name(&state.store, f, user);
                            }
                        }
                        f.offer(msg);
                    }
                    if !hue {
                        continue;
                    }
                    if let Some(user) = msg.user_id().map(str::to_owned) {
                        lock(&pending).insert(user, msg.clone());
                        wake.notify_one();
                    }
                }
                // Confirmation clears the changes' pending marks: with PUBLISH_MODE=rest when
                // Service Bus accepted them (edges elsewhere get them too), otherwise now that
                // the sinks have them (the lights retry on their own, and show every stored
                // presence again after a restart). Unconfirmed, the scheduler sends them
                // again. In another task (the confirmer's, which clears the marks of many
                // batches in one transaction): receiving must never wait on the store, or a
                // burst reaches the lights in pieces instead of coalesced.
                let msgs = std::mem::take(&mut batch);
                match state.direct_bus.clone() {
                    Some(bus) => {
                        let store = state.store.clone();
                        tasks.spawn(async move {
                            let sent =
                                crate::engine::pipeline::send_and_confirm(&store, &bus, &msgs)
                                    .await;
                            if let Err(e) = sent {
                                tracing::warn!(error = %e, "cannot send to Service Bus; will send again");
                            }
                        });
                    }
                    None => state.confirmer.confirm(&msgs).await,
                }
            }
            all_received.cancel();
        };
        // The other sinks deliver their queues once everything is offered; the pending marks
        // of what the sinks took are cleared before the end.
        let others = async {
            let deadline = drain.begun().await;
            all_received.cancelled().await;
            let dropped = match &state.sinks {
                Some(f) => f.drain(deadline).await,
                None => 0,
            };
            let _ = tokio::time::timeout_at(deadline, state.confirmer.flush()).await;
            dropped
        };
        let (lights_dropped, (), others_dropped) = tokio::join!(driving, receiving, others);
        match lights_dropped + others_dropped {
            0 => tracing::info!("the sinks delivered every change they were handed"),
            dropped => tracing::warn!(
                dropped,
                "stopping with changes the sinks did not take in time; the next start shows the stored presence again"
            ),
        }
    })
}
