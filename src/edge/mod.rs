//! The edge role: topic messages in, light states out. `teams-presence subscribe` runs [`run`]
//! (Service Bus peek-lock over REST); the `hue-subscriber` function runs
//! [`Applier::handle_body`] under the Functions host. Both use the same rules
//! ([`crate::core::judge`]) and the same [`Applier`].
//!
//! A burst: whatever is already waiting is drained (up to [`Options::batch`]) and coalesced;
//! all are completed together. The sink succeeds: completed. The sink fails: abandoned (the
//! broker redelivers, and dead-letters after the subscription's max delivery count), and the
//! loop backs off before receiving again. While a slow sink works, the locks are renewed.
//!
//! With several watched users the lamps show whoever changed last.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clients::servicebus::{self, LockUri, ReceivedMessage, ServiceBusError};
use crate::config::{ConfigError, Settings};
use crate::core::judge::{coalesce, Verdict};
use crate::core::message::TopicMessage;
use crate::engine::applier::{log_skip, Applier};

/// Knobs of the receive loop.
#[derive(Debug, Clone)]
pub struct Options {
    /// Touched on every turn of the loop (`HEALTHCHECK_FILE`, else `heartbeat` in the data
    /// directory), so `teams-presence healthcheck` can tell a live loop from a stuck one.
    pub heartbeat: Option<PathBuf>,
    /// Long-poll timeout of a receive.
    pub wait: Duration,
    /// Most messages drained and coalesced in one go.
    pub batch: usize,
    /// Long-poll timeout while draining a burst (kept short: it adds to the latency of the
    /// last message of every burst).
    pub drain_wait: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            heartbeat: None,
            // Also the idle heartbeat period: `healthcheck` allows several of these.
            wait: Duration::from_secs(30),
            batch: 32,
            // timeout=0 is not documented as "do not wait", so 1 s it is.
            drain_wait: Duration::from_secs(1),
        }
    }
}

/// Exponential back-off with ±25 % jitter.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            next: min,
            min,
            max,
        }
    }

    fn step(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        // uuid's v4 randomness is enough for jitter; no extra crate.
        let r = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0; // 0..1
        base.mul_f64(0.75 + r * 0.5)
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// The subscribe loop; returns when `shutdown` resolves (the current batch is finished first).
pub async fn run(
    client: &servicebus::Client,
    applier: &mut Applier,
    opts: &Options,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let mut net_backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let mut sink_backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    tracing::info!(from = client.source().unwrap_or_default(), "subscribed");
    loop {
        if let Some(path) = &opts.heartbeat {
            crate::files::beat(path);
        }
        let received = tokio::select! {
            _ = &mut shutdown => break,
            r = client.peek_lock(opts.wait) => r,
        };
        let first = match received {
            Ok(Some(m)) => m,
            Ok(None) => {
                net_backoff.reset();
                continue;
            }
            Err(e) => {
                let wait = if e.is_transient() {
                    tracing::warn!(error = %e, "receive failed; retrying");
                    net_backoff.step()
                } else {
                    tracing::error!(error = %e, "receive failed");
                    net_backoff.step().max(Duration::from_secs(30))
                };
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        net_backoff.reset();
        let mut batch = vec![first];
        while batch.len() < opts.batch {
            match client.peek_lock(opts.drain_wait).await {
                Ok(Some(m)) => batch.push(m),
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "draining stopped");
                    break;
                }
            }
        }
        if process_batch(client, applier, batch).await {
            sink_backoff.reset();
        } else {
            let wait = sink_backoff.step();
            tracing::info!(?wait, "waiting before receiving again after a sink failure");
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
    tracing::info!("subscriber stopped");
    Ok(())
}

/// Judges, coalesces, applies, then completes or abandons every message of a batch.
/// Returns false if the sink failed.
///
/// All users share the lights, so only the newest user's winner is shown; the other users'
/// winners are recorded (their sequence moves on) without a command that would be
/// overwritten at once. The applied messages share the outcome of that one command.
async fn process_batch(
    client: &servicebus::Client,
    applier: &mut Applier,
    batch: Vec<ReceivedMessage>,
) -> bool {
    let now = Utc::now();
    let verdicts: Vec<Verdict> = batch
        .iter()
        .map(|m| applier.judge(&TopicMessage::parse(&m.body), now))
        .collect();
    for (v, m) in verdicts.iter().zip(&batch) {
        log_skip(v, m.props.message_id.as_deref());
    }
    let winners = coalesce(&verdicts);
    let chosen: Vec<&Verdict> = verdicts
        .iter()
        .enumerate()
        .filter(|(i, v)| winners[*i] == *i && matches!(v, Verdict::Apply { .. }))
        .map(|(_, v)| v)
        .collect();
    let mut ok = true;
    if let Some(shown) = chosen.last() {
        let locks: Vec<LockUri> = batch.iter().map(|m| m.lock.clone()).collect();
        let every = renew_interval(&batch, now);
        match with_renewal(client, &locks, every, applier.show(shown)).await {
            Ok(()) => {
                applier.record(&chosen);
                tracing::info!(messages = batch.len(), users = chosen.len(), "applied");
            }
            Err(e) => {
                let deliveries = batch.iter().filter_map(|m| m.props.delivery_count).max();
                tracing::warn!(error = %e, deliveries, "sink failed; abandoning");
                ok = false;
            }
        }
    }
    for (m, v) in batch.iter().zip(&verdicts) {
        let r = if ok || matches!(v, Verdict::Skip(_)) {
            client.complete(&m.lock).await
        } else {
            client.abandon(&m.lock).await
        };
        if let Err(e) = r {
            // The lock may have expired: the broker redelivers, and the sequence check
            // drops what was already applied.
            log_settle_error(&e, m.props.message_id.as_deref());
        }
    }
    ok
}

fn log_settle_error(e: &ServiceBusError, message_id: Option<&str>) {
    tracing::warn!(message_id, error = %e, "could not settle a message");
}

/// Renew at half the time the earliest lock has left (5 s to 30 s; 20 s if unknown).
fn renew_interval(batch: &[ReceivedMessage], now: DateTime<Utc>) -> Duration {
    batch
        .iter()
        .filter_map(|m| m.props.locked_until())
        .map(|t| (t - now).to_std().unwrap_or_default() / 2)
        .min()
        .unwrap_or(Duration::from_secs(20))
        .clamp(Duration::from_secs(5), Duration::from_secs(30))
}

async fn with_renewal<T>(
    client: &servicebus::Client,
    locks: &[LockUri],
    every: Duration,
    work: impl Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => {
                for lock in locks {
                    if let Err(e) = client.renew_lock(lock).await {
                        tracing::warn!(error = %e, "lock renewal failed");
                    }
                }
            }
        }
    }
}

/// The Service Bus client for `subscribe`, from settings: the edge's own queue
/// (`PRESENCE_QUEUE`) when set, else its subscription on the topic (`PRESENCE_SUBSCRIPTION`).
pub fn client_from(settings: &Settings) -> anyhow::Result<(servicebus::Client, Options)> {
    let client = match (&settings.presence_queue, &settings.presence_subscription) {
        (Some(queue), _) => servicebus::Client::queue_from_settings(settings, queue)?,
        (None, Some(sub)) => servicebus::Client::subscription_from_settings(settings, sub)?,
        (None, None) => {
            return Err(ConfigError::missing(
                "PRESENCE_QUEUE or PRESENCE_SUBSCRIPTION",
                "this edge's queue (`edge-<name>`) or its subscription on the topic",
            )
            .into())
        }
    };
    Ok((client, Options::default()))
}

static TRIGGER: tokio::sync::OnceCell<tokio::sync::Mutex<Applier>> =
    tokio::sync::OnceCell::const_new();

/// The `hue-subscriber` function: one message through the same applier, built once per
/// process (the bridge connection, rate limits and memory outlive an invocation).
pub async fn run_trigger(settings: &Settings, body: &[u8]) -> anyhow::Result<()> {
    let applier = TRIGGER
        .get_or_try_init(|| async {
            Applier::from_settings(
                settings,
                Some(PathBuf::from(".teams-presence/edge-state.json")),
            )
            .await
            .map(tokio::sync::Mutex::new)
        })
        .await?;
    let mut applier = applier.lock().await;
    applier.handle_body(body, Utc::now()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let steps: Vec<Duration> = (0..6).map(|_| b.step()).collect();
        let bases = [1, 2, 4, 8, 8, 8];
        for (s, base) in steps.iter().zip(bases) {
            let base = Duration::from_secs(base);
            assert!(
                *s >= base.mul_f64(0.75) && *s <= base.mul_f64(1.25),
                "{s:?} vs {base:?}"
            );
        }
        b.reset();
        assert!(b.step() <= Duration::from_millis(1250));
    }
}
