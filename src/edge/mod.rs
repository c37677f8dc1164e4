//! The edge role: topic messages in, light states out. `teams-presence subscribe` runs [`run`]
//! (Service Bus peek-lock over REST); the `hue-subscriber` function runs
//! [`Applier::handle_body`] under the Functions host. Both use the same rules
//! ([`crate::core::judge`]) and the same [`Applier`].
//!
//! No waiting for more: a message is applied the moment it arrives. A burst coalesces by
//! itself: the receiver keeps receiving while a bridge command is in flight, and the next
//! batch is whatever arrived meanwhile (up to [`Options::batch`]); all are completed together.
//! The sink succeeds: completed. The bridge cannot be reached or is rate limiting: the
//! newest message per user is kept locked (renewed) while the loop backs off, what it
//! supersedes is completed, and each retry first collects what arrived meanwhile, so a bridge
//! that is away for minutes costs no deliveries and gets only the newest state when it is
//! back. The bridge refuses the command on every target: abandoned (the broker redelivers,
//! and dead-letters after the subscription's max delivery count), and the loop backs off
//! before receiving again. While a slow sink works, the locks are renewed.
//!
//! One target is not the lamp: a state that at least one target shows is applied, recorded
//! and completed (so no older message can follow it), and a target that refused it is sent
//! the newest state again, between messages, with its own back-off (1 s doubling to 30 s, with jitter: [`Backoff`]),
//! until it takes one ([`Applier::retry_lights`]). A bridge's 207 for an unplugged bulb is a
//! success with a warning.
//!
//! With several watched users the lamps show whoever changed last.
//!
//! **Self-healing.** With `PRESENCE_API_URL` set, the edge also reads the current presence of
//! the users it shows from the cloud ([`reconcile`]) at start and every
//! `RECONCILE_INTERVAL`, and applies what is newer than what it applied: a message that never
//! arrived (lost, expired, sent while the edge's queue did not exist) is made up for within
//! that interval. The users are `WATCH_USERS`, or, when it is unset ("all"), the users in the
//! edge's state file: an edge that has never heard of a user cannot ask for them.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};

use crate::clients::hue::HueError;
use crate::clients::presence_api::PresenceApi;
use crate::clients::servicebus::{self, LockUri, ReceivedMessage, ServiceBusError};
use crate::config::{ReceiveFrom, Settings};
use crate::core::backoff::Backoff;
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
    /// Most messages coalesced in one go (and most received ahead while a command runs).
    pub batch: usize,
    /// Reading the current presence from the cloud (`PRESENCE_API_URL`), if configured.
    pub reconcile: Option<Reconcile>,
}

/// Where and how often the edge reads the current presence of its users.
#[derive(Debug, Clone)]
pub struct Reconcile {
    /// The cloud's presence API.
    pub api: PresenceApi,
    /// `RECONCILE_INTERVAL`; the first read is at start.
    pub every: Duration,
}

impl Reconcile {
    /// From `PRESENCE_API_URL`, `PRESENCE_API_KEY` and `RECONCILE_INTERVAL`; `None` when the
    /// URL is not set.
    pub fn from_settings(settings: &Settings) -> Option<Self> {
        let url = settings.edge.presence_api_url.as_ref()?;
        Some(Self {
            api: PresenceApi::new(
                url,
                settings.edge.presence_api_key.clone(),
                Duration::from_secs(10),
            ),
            every: settings.polling.reconcile_interval,
        })
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            heartbeat: None,
            // Also the idle heartbeat period: `healthcheck` allows several of these.
            wait: Duration::from_secs(30),
            batch: 32,
            reconcile: None,
        }
    }
}

/// The receive loop's first wait after a failed receive; doubles up to [`RECEIVE_RETRY_CAP`].
const RECEIVE_RETRY_FIRST: Duration = Duration::from_secs(1);
const RECEIVE_RETRY_CAP: Duration = Duration::from_secs(60);
/// The least wait after a receive failure that will not pass by itself (a wrong key, a
/// missing entity): someone has to fix it, so there is no point asking often.
const RECEIVE_PERMANENT_WAIT: Duration = Duration::from_secs(30);
/// The wait before a batch the handler could not take is tried again; doubles up to
/// [`HANDLER_RETRY_CAP`].
const HANDLER_RETRY_FIRST: Duration = Duration::from_secs(1);
const HANDLER_RETRY_CAP: Duration = Duration::from_secs(30);
/// The wait before lamps that refused the newest state get it again; doubles up to
/// [`LIGHTS_RETRY_CAP`].
const LIGHTS_RETRY_FIRST: Duration = Duration::from_secs(1);
const LIGHTS_RETRY_CAP: Duration = Duration::from_secs(30);
/// The wait between tries for a Hue bridge that does not answer at start: a bridge on the
/// LAN is cheap to ask, so at most 10 s, and the lamp is right soon after it boots.
const BRIDGE_WAIT_FIRST: Duration = Duration::from_secs(1);
const BRIDGE_WAIT_CAP: Duration = Duration::from_secs(10);

/// What becomes of one message of a batch, as a [`Handler`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Done with (applied, superseded or skipped): completed.
    Complete,
    /// Refused: abandoned, so the broker redelivers it (and dead-letters it after the
    /// subscription's max delivery count); the loop backs off before receiving again.
    Abandon,
    /// Worth trying again soon (the sink is away or busy): kept locked, its lock renewed,
    /// and handed over again after a back-off together with whatever arrived meanwhile.
    Hold,
}

/// What the receive loop hands its messages to: `subscribe`'s lights ([`run`]) or
/// `pbx run`'s sync. The loop owns receiving, batching, settling, lock renewal, back-off,
/// the heartbeat and shutdown; a handler only says what became of each message.
pub trait Handler {
    /// Work due between batches ([`Handler::due`] says which).
    type Due;
    /// Resolves when work between batches is due (pending forever when there is none). It
    /// races the next message, so it must only wait (a timer), never do the work.
    fn due(&mut self) -> impl Future<Output = Self::Due> + Send;
    /// Does the work [`Handler::due`] announced; not interrupted by arriving messages.
    fn idle(&mut self, due: Self::Due) -> impl Future<Output = ()> + Send;
    /// Handles a batch (in the order received) and says, per message in the same order,
    /// what becomes of it. The loop renews the batch's locks while this runs.
    fn handle(&mut self, batch: &[ReceivedMessage]) -> impl Future<Output = Vec<Settle>> + Send;
}

/// The subscribe loop; returns when `shutdown` resolves (the current batch is finished first,
/// and messages received but not yet applied are abandoned so the broker redelivers them at
/// once).
///
/// Two halves run concurrently in this task: a receiver that long-polls and hands each
/// message over as soon as it arrives, and an applier that takes the first message, adds
/// whatever is already waiting (never waiting for more), and applies the batch. While a
/// bridge command is in flight the receiver keeps receiving, so a burst coalesces into the
/// next batch by itself.
pub async fn run(
    client: &servicebus::Client,
    applier: &mut Applier,
    opts: &Options,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut lights = Lights::new(applier, opts.reconcile.clone());
    run_with(client, opts, &mut lights, shutdown).await
}

/// The receive loop with any [`Handler`] (see [`run`] for how it works); returns when
/// `shutdown` resolves.
pub async fn run_with<H: Handler>(
    client: &servicebus::Client,
    opts: &Options,
    handler: &mut H,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    // Receive only while the sink works: during a sink back-off, messages stay unreceived
    // (not locked in our hands, where their locks would run out).
    let (healthy_tx, healthy_rx) = watch::channel(true);
    let (tx, mut rx) = mpsc::channel::<ReceivedMessage>(opts.batch.max(1));
    tracing::info!(from = client.source().unwrap_or_default(), "subscribed");
    let stopper = async {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let receiving = receive(client, opts, tx, stop_rx.clone(), healthy_rx);
    let applying = async {
        apply_loop(client, handler, opts, &mut rx, stop_rx.clone(), healthy_tx).await;
        // Whatever was received but not applied goes back to the broker.
        rx.close();
        while let Some(m) = rx.recv().await {
            if let Err(e) = client.abandon(&m.lock).await {
                log_settle_error(&e, m.props.message_id.as_deref());
            }
        }
    };
    tokio::join!(stopper, receiving, applying);
    tracing::info!("subscriber stopped");
    Ok(())
}

/// Resolves once `stop` is set.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Long-polls the subscription and hands every message over the moment it arrives.
async fn receive(
    client: &servicebus::Client,
    opts: &Options,
    tx: mpsc::Sender<ReceivedMessage>,
    mut stop: watch::Receiver<bool>,
    mut healthy: watch::Receiver<bool>,
) {
    let mut net_backoff = Backoff::new(RECEIVE_RETRY_FIRST, RECEIVE_RETRY_CAP);
    loop {
        if let Some(path) = &opts.heartbeat {
            crate::files::beat(path);
        }
        // Not while the sink backs off.
        tokio::select! {
            _ = stopped(&mut stop) => break,
            r = healthy.wait_for(|h| *h) => if r.is_err() { break },
        }
        let received = tokio::select! {
            _ = stopped(&mut stop) => break,
            r = client.peek_lock(opts.wait) => r,
        };
        match received {
            Ok(Some(m)) => {
                net_backoff.reset();
                // Bounded: a slow sink slows receiving instead of piling up locks.
                if tx.send(m).await.is_err() {
                    break;
                }
            }
            Ok(None) => net_backoff.reset(),
            Err(e) => {
                let wait = if e.is_transient() {
                    tracing::warn!(error = %e, "receive failed; retrying");
                    net_backoff.next_delay()
                } else {
                    tracing::error!(error = %e, "receive failed");
                    net_backoff.next_delay().max(RECEIVE_PERMANENT_WAIT)
                };
                tokio::select! {
                    _ = stopped(&mut stop) => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Takes the first waiting message, everything else already there, and hands them to the
/// handler.
async fn apply_loop<H: Handler>(
    client: &servicebus::Client,
    handler: &mut H,
    opts: &Options,
    rx: &mut mpsc::Receiver<ReceivedMessage>,
    mut stop: watch::Receiver<bool>,
    healthy: watch::Sender<bool>,
) {
    let mut sink_backoff = Backoff::new(HANDLER_RETRY_FIRST, HANDLER_RETRY_CAP);
    // The newest message per user of a batch the bridge could not take (unreachable or
    // busy): kept locked (renewed) while backing off, not abandoned, so a bridge that is away
    // for minutes costs no deliveries (no dead-lettering) and only the newest state is shown
    // when it is back.
    let mut held: Vec<ReceivedMessage> = Vec::new();
    loop {
        let mut batch = std::mem::take(&mut held);
        if batch.is_empty() {
            let first = tokio::select! {
                _ = stopped(&mut stop) => break,
                due = handler.due() => {
                    handler.idle(due).await;
                    continue;
                }
                m = rx.recv() => match m { Some(m) => m, None => break },
            };
            batch.push(first);
        } else {
            // Retrying after a back-off: first collect what arrived meanwhile (the receiver
            // is paused), so the newest state wins.
            while batch.len() < opts.batch {
                match client.peek_lock(Duration::ZERO).await {
                    Ok(Some(m)) => batch.push(m),
                    _ => break,
                }
            }
        }
        while batch.len() < opts.batch {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let failure = match process_batch(client, handler, batch).await {
            Processed::Done => {
                sink_backoff.reset();
                let _ = healthy.send(true);
                continue;
            }
            Processed::Held(kept) => {
                held = kept;
                "the bridge is unreachable; keeping the newest state"
            }
            Processed::Abandoned => "sink failure",
        };
        let _ = healthy.send(false);
        // What was received during the failed command is kept with the held state (its lock
        // renewed with theirs), or goes back: it would only wait here with its lock running
        // out.
        while let Ok(m) = rx.try_recv() {
            if !held.is_empty() {
                held.push(m);
            } else if let Err(e) = client.abandon(&m.lock).await {
                log_settle_error(&e, m.props.message_id.as_deref());
            }
        }
        let wait = sink_backoff.next_delay();
        tracing::info!(
            ?wait,
            held = held.len(),
            "waiting before trying again after a {failure}"
        );
        let locks: Vec<LockUri> = held.iter().map(|m| m.lock.clone()).collect();
        let every = renew_interval(&held, Utc::now());
        tokio::select! {
            _ = stopped(&mut stop) => break,
            _ = with_renewal(client, &locks, every, tokio::time::sleep(wait)) => {}
        }
        if held.is_empty() {
            let _ = healthy.send(true);
        }
    }
    // Stopping: what is held goes back to the broker for the next process.
    for m in held {
        if let Err(e) = client.abandon(&m.lock).await {
            log_settle_error(&e, m.props.message_id.as_deref());
        }
    }
}

/// The next tick of an optional timer (never, without one).
async fn next_tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Reads the current presence of the users this edge shows (`WATCH_USERS`, else those in its
/// state file) and applies what is newer than what it applied, with the rules a topic
/// message goes through (`crate::core::judge`: older or equal sequences are dropped).
/// Returns how many users' states were newer. A user the cloud does not know, or a failed
/// read, is skipped (logged); only a failure of the lights is an error.
pub async fn reconcile(
    api: &PresenceApi,
    applier: &mut Applier,
    now: DateTime<Utc>,
) -> Result<usize, HueError> {
    let users: Vec<String> = if applier.watched().is_empty() {
        let mut known: Vec<String> = applier.applied().keys().cloned().collect();
        known.sort();
        known
    } else {
        applier.watched().to_vec()
    };
    let mut verdicts = Vec::new();
    for user in &users {
        match api.current(user).await {
            Ok(Some(body)) => verdicts.push(applier.judge(&TopicMessage::parse(&body), now)),
            Ok(None) => {
                tracing::debug!(user_id = %user, "the cloud has no presence for this user yet")
            }
            Err(e) => {
                tracing::warn!(user_id = %user, error = %e, "cannot read the current presence")
            }
        }
    }
    let winners = coalesce(&verdicts);
    let chosen: Vec<&Verdict> = verdicts
        .iter()
        .enumerate()
        .filter(|(i, v)| winners[*i] == *i && matches!(v, Verdict::Apply { .. }))
        .map(|(_, v)| v)
        .collect();
    if let Some(shown) = chosen.last() {
        applier.show(shown).await?;
        applier.record(&chosen);
        tracing::info!(
            users = chosen.len(),
            "reconciled: applied presence this edge had missed"
        );
    }
    Ok(chosen.len())
}

/// What became of a batch.
enum Processed {
    /// Handled: every message completed.
    Done,
    /// The sink could not be reached or was busy: the superseded and skipped messages are
    /// completed, these (the newest per user) are kept locked to try again.
    Held(Vec<ReceivedMessage>),
    /// The sink refused: the messages it refused are abandoned (redelivered, dead-lettered
    /// after the subscription's max delivery count).
    Abandoned,
}

/// Hands a batch to the handler (renewing its locks meanwhile), then completes, keeps or
/// abandons every message as the handler said.
async fn process_batch<H: Handler>(
    client: &servicebus::Client,
    handler: &mut H,
    batch: Vec<ReceivedMessage>,
) -> Processed {
    let locks: Vec<LockUri> = batch.iter().map(|m| m.lock.clone()).collect();
    let every = renew_interval(&batch, Utc::now());
    let mut settle = with_renewal(client, &locks, every, handler.handle(&batch)).await;
    // A handler that says nothing of a message is done with it.
    settle.resize(batch.len(), Settle::Complete);
    let mut outcome = if settle.contains(&Settle::Hold) {
        Processed::Held(Vec::new())
    } else if settle.contains(&Settle::Abandon) {
        Processed::Abandoned
    } else {
        Processed::Done
    };
    for (m, s) in batch.into_iter().zip(settle) {
        let r = match (s, &mut outcome) {
            (Settle::Hold, Processed::Held(kept)) => {
                kept.push(m);
                continue;
            }
            (Settle::Abandon, _) => client.abandon(&m.lock).await,
            _ => client.complete(&m.lock).await,
        };
        if let Err(e) = r {
            // The lock may have expired: the broker redelivers, and the sequence check
            // drops what was already applied.
            log_settle_error(&e, m.props.message_id.as_deref());
        }
    }
    outcome
}

/// Whether a failure of the lights will pass by itself (the bridge unplugged, rebooting or
/// rate limiting), so the state is worth keeping rather than handing back to the broker.
fn passing(e: &HueError) -> bool {
    matches!(e, HueError::Network(_) | HueError::RateLimited { .. })
}

/// `subscribe`'s [`Handler`]: topic messages judged and shown on the lamps, the other sinks
/// offered every change, lamps that refused a state tried again between batches, and the
/// periodic reconcile.
struct Lights<'a> {
    applier: &'a mut Applier,
    reconcile: Option<Reconcile>,
    reconcile_timer: Option<tokio::time::Interval>,
    /// Targets that refused the newest state while others took it: tried again between
    /// batches, never holding a message back.
    lights_backoff: Backoff,
    lights_wait: Duration,
}

/// Which work between batches is due for [`Lights`].
enum LightsDue {
    Retry,
    Reconcile,
}

impl<'a> Lights<'a> {
    fn new(applier: &'a mut Applier, reconcile: Option<Reconcile>) -> Self {
        let mut lights_backoff = Backoff::new(LIGHTS_RETRY_FIRST, LIGHTS_RETRY_CAP);
        let lights_wait = lights_backoff.next_delay();
        // The applier is this loop's alone, so the reconcile runs here, between batches.
        let reconcile_timer = reconcile.as_ref().map(|r| {
            let mut t = tokio::time::interval(r.every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        Self {
            applier,
            reconcile,
            reconcile_timer,
            lights_backoff,
            lights_wait,
        }
    }
}

impl Handler for Lights<'_> {
    type Due = LightsDue;

    async fn due(&mut self) -> LightsDue {
        let retrying = self.applier.lights_pending();
        tokio::select! {
            _ = tokio::time::sleep(self.lights_wait), if retrying => LightsDue::Retry,
            _ = next_tick(&mut self.reconcile_timer) => LightsDue::Reconcile,
        }
    }

    async fn idle(&mut self, due: LightsDue) {
        match due {
            LightsDue::Retry => {
                if self.applier.retry_lights().await {
                    self.lights_backoff.reset();
                }
                self.lights_wait = self.lights_backoff.next_delay();
            }
            LightsDue::Reconcile => {
                if let Some(r) = &self.reconcile {
                    if let Err(e) = reconcile(&r.api, self.applier, Utc::now()).await {
                        tracing::warn!(error = %e, "the lights did not take the reconciled state; trying again at the next reconcile");
                    }
                }
            }
        }
    }

    /// Judges, coalesces and applies a batch.
    ///
    /// All users share the lights, so only the newest user's winner is shown; the other
    /// users' winners are recorded (their sequence moves on) without a command that would be
    /// overwritten at once. The applied messages share the outcome of that one command: the
    /// bridge unreachable or rate limiting keeps the winners ([`Settle::Hold`]), a refusal
    /// abandons every message to apply.
    async fn handle(&mut self, batch: &[ReceivedMessage]) -> Vec<Settle> {
        let applier = &mut *self.applier;
        let now = Utc::now();
        let verdicts: Vec<Verdict> = batch
            .iter()
            .map(|m| {
                let parsed = TopicMessage::parse(&m.body);
                // The other sinks (MQTT, webhook, WLED) get every user's change at once,
                // whatever Hue does with it.
                applier.offer(&parsed);
                applier.judge(&parsed, now)
            })
            .collect();
        for (v, m) in verdicts.iter().zip(batch) {
            log_skip(v, m.props.message_id.as_deref());
        }
        let winners = coalesce(&verdicts);
        let chosen: Vec<&Verdict> = verdicts
            .iter()
            .enumerate()
            .filter(|(i, v)| winners[*i] == *i && matches!(v, Verdict::Apply { .. }))
            .map(|(_, v)| v)
            .collect();
        let mut failed: Option<Settle> = None;
        if let Some(shown) = chosen.last() {
            match applier.show(shown).await {
                Ok(()) => {
                    applier.record(&chosen);
                    tracing::info!(messages = batch.len(), users = chosen.len(), "applied");
                }
                Err(e) => {
                    let deliveries = batch.iter().filter_map(|m| m.props.delivery_count).max();
                    if passing(&e) {
                        tracing::warn!(error = %e, deliveries, "sink failed; keeping the newest state to try again");
                        failed = Some(Settle::Hold);
                    } else {
                        tracing::warn!(error = %e, deliveries, "sink failed; abandoning");
                        failed = Some(Settle::Abandon);
                    }
                }
            }
        }
        if failed.is_none() && !applier.lights_pending() {
            self.lights_backoff.reset();
            self.lights_wait = self.lights_backoff.next_delay();
        }
        verdicts
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let to_apply = matches!(v, Verdict::Apply { .. });
                match failed {
                    // A winner is kept; what it supersedes is done with.
                    Some(Settle::Hold) if to_apply && winners[i] == i => Settle::Hold,
                    Some(Settle::Abandon) if to_apply => Settle::Abandon,
                    _ => Settle::Complete,
                }
            })
            .collect()
    }
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
    let client = match settings.require_receive_from()? {
        ReceiveFrom::Queue(queue) => servicebus::Client::queue_from_settings(settings, queue)?,
        ReceiveFrom::Subscription(sub) => {
            servicebus::Client::subscription_from_settings(settings, sub)?
        }
    };
    Ok((
        client,
        Options {
            reconcile: Reconcile::from_settings(settings),
            ..Options::default()
        },
    ))
}

/// Builds the applier, waiting for a bridge that does not answer yet: after a power cut the
/// Pi is usually up before its bridge. Nothing is received meanwhile, so messages wait
/// unlocked in the subscription and the latest state is applied once the bridge answers.
/// Anything but an unreachable bridge (a wrong key, a missing setting) ends it at once.
/// `Ok(None)`: shut down while waiting.
pub async fn wait_for_bridge(
    settings: &Settings,
    state_file: Option<PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Option<Applier>> {
    tokio::pin!(shutdown);
    let mut backoff = Backoff::new(BRIDGE_WAIT_FIRST, BRIDGE_WAIT_CAP);
    let mut said = false;
    loop {
        let e = match Applier::from_settings(settings, state_file.clone()).await {
            Ok(a) => {
                if said {
                    tracing::info!("the Hue bridge answered");
                }
                return Ok(Some(a));
            }
            Err(e) if bridge_unreachable(&e) => e,
            Err(e) => return Err(e),
        };
        let wait = backoff.next_delay();
        if !said {
            tracing::warn!(bridge = settings.hue.bridge.as_deref().unwrap_or(""), error = %format!("{e:#}"), "waiting for the Hue bridge; messages stay in the subscription until it answers");
            said = true;
        } else {
            tracing::info!(?wait, error = %format!("{e:#}"), "still waiting for the Hue bridge");
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(None),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The bridge is down or busy (worth waiting for), as opposed to misconfigured.
fn bridge_unreachable(e: &anyhow::Error) -> bool {
    e.downcast_ref::<HueError>()
        .is_some_and(HueError::is_passing)
}

static TRIGGER: tokio::sync::OnceCell<tokio::sync::Mutex<Applier>> =
    tokio::sync::OnceCell::const_new();

/// The process's one applier for `hue-subscriber` (and its reconcile), built on first use.
async fn trigger_applier(
    settings: &Settings,
) -> anyhow::Result<&'static tokio::sync::Mutex<Applier>> {
    TRIGGER
        .get_or_try_init(|| async {
            Applier::from_settings(
                settings,
                Some(PathBuf::from(".teams-presence/edge-state.json")),
            )
            .await
            .map(tokio::sync::Mutex::new)
        })
        .await
}

/// The `hue-subscriber` function: one message through the same applier, built once per
/// process (the bridge connection, rate limits and memory outlive an invocation).
pub async fn run_trigger(settings: &Settings, body: &[u8]) -> anyhow::Result<()> {
    let mut applier = trigger_applier(settings).await?.lock().await;
    applier.handle_body(body, Utc::now()).await?;
    Ok(())
}

/// The `hue-subscriber` side of self-healing: the Functions host only calls us when a
/// message arrives, so this process reads the current presence itself, at start and every
/// `RECONCILE_INTERVAL`, through the same applier the trigger uses. Nothing to do without
/// `PRESENCE_API_URL` or `HUE_BRIDGE`.
pub fn spawn_trigger_reconcile(
    settings: std::sync::Arc<Settings>,
) -> Option<tokio::task::JoinHandle<()>> {
    settings.hue.bridge.as_ref()?;
    let r = Reconcile::from_settings(&settings)?;
    Some(tokio::spawn(async move {
        let mut every = tokio::time::interval(r.every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let applier = match trigger_applier(&settings).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "reconcile: the Hue bridge is not usable yet");
                    continue;
                }
            };
            let mut applier = applier.lock().await;
            // A target that refused the last state (the others took it) gets it again.
            if applier.lights_pending() {
                applier.retry_lights().await;
            }
            if let Err(e) = reconcile(&r.api, &mut applier, Utc::now()).await {
                tracing::warn!(error = %e, "the lights did not take the reconciled state");
            }
        }
    }))
}
