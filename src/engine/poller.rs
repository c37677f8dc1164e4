//! The polling safety net: `presence-refresh` under the Functions host and `serve`'s own
//! scheduler run the same [`Poller::tick`].
//!
//! * **Who.** Personal mode: every active user with their own delegated token
//!   (`GET /me/presence`). Tenant mode (`TENANT_USERS`): the listed users in batches of 650
//!   through `getPresencesByUserId`, with the first `TENANT_SYNC_USERS` account's token or an
//!   app-only one.
//! * **Cadence.** A user whose change-notification subscription is alive is only reconciled
//!   every `RECONCILE_INTERVAL`; one without is polled every `POLL_INTERVAL`. A failing user
//!   backs off exponentially; the others are not held up.
//! * **Limits.** Graph allows 1,500 presence requests per 30 s per app per tenant: a sliding
//!   window per tenant keeps us under it, at most `POLL_CONCURRENCY` calls run at once, and a
//!   429's `Retry-After` blocks that tenant until it elapses (nothing is sent before).
//!
//! A tick never sleeps: everything time-based compares against the `now` it is given, so a
//! throttled tenant or a backing-off user is simply skipped until a later tick. That also
//! makes the timing rules testable without waiting.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::clients::graph::client::{GraphClient, GraphError, GraphPresence, MAX_IDS_PER_CALL};
use crate::engine::context::Context;
use crate::engine::pipeline::Outcome as Recorded;
use crate::engine::publish::Outbox;
use crate::engine::tokens::AccessError;
use crate::store::{SubscriptionRecord, UserRecord, UserState};

/// The presence every tenant-mode user had at the tick's scan, shared by the tick's calls.
type Known = futures_util::future::Shared<
    futures_util::future::BoxFuture<
        'static,
        Arc<HashMap<String, crate::core::presence::LastKnown>>,
    >,
>;

/// Graph's presence limit: requests per window per app per tenant.
pub const TENANT_BUDGET: usize = 1_500;
/// The window of that limit.
pub const TENANT_WINDOW: Duration = Duration::from_secs(30);

/// What one tick did (for logs, the status page and tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// Graph calls made.
    pub calls: usize,
    /// Users whose presence was read.
    pub polled: usize,
    /// Messages published.
    pub changed: usize,
    /// Users or batches that failed (and will back off).
    pub failed: usize,
    /// Users or batches skipped because their tenant is throttled or over budget.
    pub deferred: usize,
}

/// Who takes a slot of a tenant's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// A presence poll (the safety net every user depends on).
    Poll,
    /// The PBX sync's writes and read-backs.
    Pbx,
}

#[derive(Default)]
struct TenantBudget {
    calls: VecDeque<DateTime<Utc>>,
    /// The PBX sync's share of `calls`.
    pbx_calls: VecDeque<DateTime<Utc>>,
    /// When polls asked for a slot (granted or not), over the last two windows: their demand.
    poll_asks: VecDeque<DateTime<Utc>>,
    blocked_until: Option<DateTime<Utc>>,
}

impl TenantBudget {
    /// Takes a slot for a call at `now`, or says no.
    ///
    /// Fairness: the PBX sync may hold at most the budget less what polls asked for (in this
    /// window or the one before, whichever is more; at most half the budget), so a flood of PBX writes cannot starve polling, and
    /// what polls do not need is not wasted: with no poll in the window the PBX sync may use
    /// the whole budget, against polls that want more than half it keeps half.
    fn try_take(&mut self, now: DateTime<Utc>, caller: Caller) -> bool {
        if self.blocked_until.is_some_and(|t| t > now) {
            return false;
        }
        let window = chrono::Duration::from_std(TENANT_WINDOW).expect("small");
        for q in [&mut self.calls, &mut self.pbx_calls] {
            while q.front().is_some_and(|t| *t + window <= now) {
                q.pop_front();
            }
        }
        while self
            .poll_asks
            .front()
            .is_some_and(|t| *t + window + window <= now)
        {
            self.poll_asks.pop_front();
        }
        let spent = self.calls.len() >= TENANT_BUDGET;
        match caller {
            Caller::Poll => {
                self.poll_asks.push_back(now);
                if spent {
                    return false;
                }
            }
            Caller::Pbx => {
                // The previous window's demand counts too: the asks that just aged out of
                // this one are about to come again.
                let recent = self.poll_asks.iter().filter(|t| **t + window > now).count();
                let before = self.poll_asks.len() - recent;
                let reserved = recent.max(before).min(TENANT_BUDGET / 2);
                if spent || self.pbx_calls.len() >= TENANT_BUDGET - reserved {
                    return false;
                }
                self.pbx_calls.push_back(now);
            }
        }
        self.calls.push_back(now);
        true
    }
}

#[derive(Default, Clone)]
struct UserPoll {
    last_polled: Option<DateTime<Utc>>,
    failures: u32,
    next_try: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct State {
    tenants: HashMap<String, TenantBudget>,
    users: HashMap<String, UserPoll>,
}

/// The poller; one per process, kept across ticks. Cheap to clone.
#[derive(Clone)]
pub struct Poller {
    graph: GraphClient,
    state: Arc<Mutex<State>>,
}

/// How polling one user went.
enum Outcome {
    /// Graph answered, and the answer was recorded with this result.
    Polled(Recorded),
    /// Out of the tenant's budget or held back by `Retry-After`: due again next tick.
    Deferred,
    Failed,
    Skipped,
}

impl Poller {
    /// A poller using `graph`.
    pub fn new(graph: GraphClient) -> Self {
        Self {
            graph,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one Graph call for a poll from the tenant's presence budget; false when it is
    /// spent or the tenant is throttled.
    pub fn take_budget(&self, tenant: &str, now: DateTime<Utc>) -> bool {
        self.take(tenant, now, Caller::Poll)
    }

    /// Takes one Graph call for the PBX sync from the same budget; false also when the PBX
    /// sync already holds what polls leave it (see `TenantBudget::try_take`).
    pub fn take_pbx_budget(&self, tenant: &str, now: DateTime<Utc>) -> bool {
        self.take(tenant, now, Caller::Pbx)
    }

    fn take(&self, tenant: &str, now: DateTime<Utc>, caller: Caller) -> bool {
        self.lock()
            .tenants
            .entry(tenant.to_owned())
            .or_default()
            .try_take(now, caller)
    }

    /// Pauses the tenant's Graph calls for `retry_after` (a 429's `Retry-After`).
    pub fn throttle(&self, tenant: &str, now: DateTime<Utc>, retry_after: Duration) {
        let until =
            now + chrono::Duration::from_std(retry_after).unwrap_or(chrono::Duration::seconds(10));
        let mut st = self.lock();
        let b = st.tenants.entry(tenant.to_owned()).or_default();
        b.blocked_until = Some(b.blocked_until.map_or(until, |t| t.max(until)));
        tracing::warn!(
            tenant,
            retry_after_s = retry_after.as_secs(),
            "Graph throttled this tenant; pausing its calls"
        );
    }

    /// Makes a user due at the next tick (after sign-in, or a missed notification).
    pub fn poll_soon(&self, user_id: &str) {
        self.lock().users.remove(user_id);
    }

    /// When the tenant may be called again, if it is throttled.
    pub fn blocked_until(&self, tenant: &str) -> Option<DateTime<Utc>> {
        self.lock()
            .tenants
            .get(tenant)
            .and_then(|b| b.blocked_until)
    }

    fn record_result(&self, key: &str, now: DateTime<Utc>, ok: bool, base: Duration) {
        let mut st = self.lock();
        let u = st.users.entry(key.to_owned()).or_default();
        u.last_polled = Some(now);
        if ok {
            u.failures = 0;
            u.next_try = None;
        } else {
            u.failures = u.failures.saturating_add(1);
            // 1, 2, 4, ... times the base interval, at most 10 minutes.
            let factor = 2u32.saturating_pow(u.failures.min(10) - 1);
            let wait = base.saturating_mul(factor).min(Duration::from_secs(600));
            u.next_try = Some(
                now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::seconds(600)),
            );
        }
    }

    fn due(&self, key: &str, now: DateTime<Utc>, interval: Duration) -> bool {
        let st = self.lock();
        let Some(u) = st.users.get(key) else {
            return true;
        };
        if u.next_try.is_some_and(|t| t > now) {
            return false;
        }
        if u.failures > 0 {
            return true;
        }
        let interval =
            chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::seconds(30));
        u.last_polled.is_none_or(|t| t + interval <= now)
    }

    /// Polls whoever is due at `now` and publishes changes (into `outbox` under the host).
    #[tracing::instrument(name = "poll_tick", skip_all)]
    pub async fn tick(
        &self,
        state: &Context,
        outbox: Option<&Outbox>,
        now: DateTime<Utc>,
    ) -> TickReport {
        let mut report = TickReport::default();
        if !state.settings.polling.tenant_users.is_empty() {
            // The sync user may have been found dead by a job that could not publish.
            if let Ok(users) = state.store.list::<UserRecord>().await {
                state.tokens.announce_pending(&users, outbox).await;
            }
            self.tick_tenant(state, outbox, now, &mut report).await;
        } else {
            self.tick_personal(state, outbox, now, &mut report).await;
        }
        if report.calls > 0 {
            tracing::debug!(?report, "poll tick");
        }
        report
    }

    async fn tick_personal(
        &self,
        state: &Context,
        outbox: Option<&Outbox>,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) {
        let users = match state.store.list::<UserRecord>().await {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(error = %e, "cannot list users to poll");
                report.failed += 1;
                return;
            }
        };
        // Users found dead by a job that could not publish are announced from here.
        state.tokens.announce_pending(&users, outbox).await;
        let live: Vec<SubscriptionRecord> = state
            .store
            .list::<SubscriptionRecord>()
            .await
            .map(|v| v.into_iter().map(|s| s.value).collect())
            .unwrap_or_default();
        let margin = chrono::Duration::seconds(60);
        let s = &state.settings;
        let due: Vec<UserRecord> = users
            .into_iter()
            .map(|u| u.value)
            .filter(|u| matches!(u.state, UserState::Active))
            .filter(|u| {
                let covered = live
                    .iter()
                    .any(|sub| sub.expires_at > now + margin && sub.user_ids.contains(&u.user_id));
                let interval = if covered {
                    s.polling.reconcile_interval
                } else {
                    s.polling.interval
                };
                self.due(&u.user_id, now, interval)
            })
            .collect();
        let sem = Arc::new(tokio::sync::Semaphore::new(s.polling.concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        for user in due {
            let (this, state, outbox, sem) =
                (self.clone(), state.clone(), outbox.cloned(), sem.clone());
            tasks.spawn(async move {
                let _permit = sem.acquire_owned().await;
                this.poll_user(&state, outbox.as_ref(), &user, now).await
            });
        }
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok((outcome, calls)) => {
                    report.calls += calls;
                    match outcome {
                        Outcome::Polled(recorded) => {
                            report.polled += 1;
                            report.changed += usize::from(recorded == Recorded::Published);
                        }
                        Outcome::Deferred => report.deferred += 1,
                        Outcome::Failed => report.failed += 1,
                        Outcome::Skipped => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "poll task failed");
                    report.failed += 1;
                }
            }
        }
    }

    /// Polls one signed-in user now, due or not (personal mode; right after a sign-in, so the
    /// first state is known at once). What it came to: [`Recorded::Published`] when a
    /// change was published into `outbox`.
    pub async fn poll_now(
        &self,
        state: &Context,
        outbox: Option<&Outbox>,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> Recorded {
        if !state.settings.polling.tenant_users.is_empty() {
            return Recorded::NothingNew;
        }
        let user = match state.store.get::<UserRecord>(user_id, "user").await {
            Ok(Some(u)) => u.value,
            Ok(None) => return Recorded::NothingNew,
            Err(e) => {
                tracing::warn!(user_id, error = %e, "cannot read the user to poll");
                return Recorded::NothingNew;
            }
        };
        match self.poll_user(state, outbox, &user, now).await.0 {
            Outcome::Polled(recorded) => recorded,
            _ => Recorded::NothingNew,
        }
    }

    /// Polls one user; returns the outcome and the number of Graph calls made.
    #[tracing::instrument(level = "debug", name = "poll_user", skip_all, fields(user_id = %user.user_id))]
    async fn poll_user(
        &self,
        state: &Context,
        outbox: Option<&Outbox>,
        user: &UserRecord,
        now: DateTime<Utc>,
    ) -> (Outcome, usize) {
        let base = state.settings.polling.interval;
        let mut calls = 0;
        for attempt in 0..2 {
            let token = match state.tokens.access_token(&user.user_id, outbox).await {
                Ok(t) => t,
                Err(AccessError::SignInRequired { .. } | AccessError::UnknownUser(_)) => {
                    return (Outcome::Skipped, calls)
                }
                Err(e) => {
                    tracing::warn!(user_id = %user.user_id, error = %e, "no token to poll with");
                    self.record_result(&user.user_id, now, false, base);
                    return (Outcome::Failed, calls);
                }
            };
            if !self.take_budget(&user.tenant_id, now) {
                return (Outcome::Deferred, calls);
            }
            calls += 1;
            match self.graph.me_presence(&token).await {
                Ok(p) => {
                    self.record_result(&user.user_id, now, true, base);
                    // /me answers for the token's user; key on the stored id regardless.
                    let p = GraphPresence {
                        id: user.user_id.clone(),
                        ..p
                    };
                    let recorded = self.record(state, outbox, &p, &user.tenant_id, now).await;
                    return (Outcome::Polled(recorded), calls);
                }
                Err(GraphError::Unauthorized) if attempt == 0 => {
                    state.tokens.forget(&user.user_id);
                    continue;
                }
                Err(GraphError::Throttled { retry_after }) => {
                    self.throttle(&user.tenant_id, now, retry_after);
                    return (Outcome::Deferred, calls);
                }
                Err(e) => {
                    tracing::warn!(user_id = %user.user_id, error = %e, "presence poll failed");
                    self.record_result(&user.user_id, now, false, base);
                    return (Outcome::Failed, calls);
                }
            }
        }
        self.record_result(&user.user_id, now, false, base);
        (Outcome::Failed, calls)
    }

    async fn record(
        &self,
        state: &Context,
        outbox: Option<&Outbox>,
        p: &GraphPresence,
        tenant: &str,
        now: DateTime<Utc>,
    ) -> Recorded {
        let obs = p.observation(tenant, now);
        match crate::engine::pipeline::record_and_publish(
            &state.store,
            &state.publisher,
            outbox,
            &obs,
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(e) => {
                // Logged here; the user is due again next tick like any unchanged one.
                tracing::error!(user_id = %p.id, error = %e, "cannot record presence");
                Recorded::NothingNew
            }
        }
    }

    /// The token tenant-mode polls read with: the first sync account that has one (object id
    /// or UPN, as `TENANT_SYNC_USERS` names it), or an app-only token when none is configured.
    async fn tenant_token(
        &self,
        state: &Context,
        outbox: Option<&Outbox>,
    ) -> Result<SecretString, TenantTokenError> {
        let accounts = &state.settings.polling.tenant_sync_users;
        if accounts.is_empty() {
            return Ok(state.tokens.app_token(&state.settings.app.tenant).await?);
        }
        let users: Vec<UserRecord> = state
            .store
            .list::<UserRecord>()
            .await
            .map(|v| v.into_iter().map(|u| u.value).collect())
            .unwrap_or_default();
        let mut first_error = None;
        for account in accounts {
            let id = crate::engine::tokens::resolve_account(account, &users)
                .map_or(account.as_str(), |u| u.user_id.as_str());
            match state.tokens.access_token(id, outbox).await {
                Ok(t) => return Ok(t),
                Err(source) => {
                    first_error.get_or_insert(TenantTokenError::SyncAccount {
                        account: account.clone(),
                        source,
                    });
                }
            }
        }
        Err(first_error.unwrap_or(TenantTokenError::NoSyncAccount))
    }

    #[tracing::instrument(name = "poll_tenant", skip_all, fields(tenant_id = %state.settings.app.tenant))]
    async fn tick_tenant(
        &self,
        state: &Context,
        outbox: Option<&Outbox>,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) {
        let s = &state.settings;
        let tenant = s.app.tenant.clone();
        // Users a live subscription covers are only reconciled every RECONCILE_INTERVAL; the
        // rest (too few sync accounts, or a subscription that could not be kept) are polled
        // every POLL_INTERVAL. Each group shares one cadence; failed batches retry next tick.
        let margin = chrono::Duration::seconds(60);
        let covered: std::collections::HashSet<String> = state
            .store
            .list::<SubscriptionRecord>()
            .await
            .map(|v| {
                v.into_iter()
                    .map(|r| r.value)
                    .filter(|r| r.expires_at > now + margin)
                    .flat_map(|r| r.user_ids)
                    .collect()
            })
            .unwrap_or_default();
        let (subscribed, polled): (Vec<String>, Vec<String>) = s
            .polling
            .tenant_users
            .iter()
            .cloned()
            .partition(|u| covered.contains(u));
        let groups: Vec<(&str, Vec<String>, Duration)> = [
            ("tenant-mode", polled, s.polling.interval),
            (
                "tenant-mode/subscribed",
                subscribed,
                s.polling.reconcile_interval,
            ),
        ]
        .into_iter()
        .filter(|(key, users, interval)| !users.is_empty() && self.due(key, now, *interval))
        .collect();
        if groups.is_empty() {
            return;
        }
        let token = match self.tenant_token(state, outbox).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "no token for tenant-mode polling");
                for (key, _, interval) in &groups {
                    self.record_result(key, now, false, *interval);
                }
                report.failed += 1;
                return;
            }
        };
        // One scan of what we know instead of a read per user: most polls change nothing,
        // and only users whose presence differs from the snapshot go through the ETag path
        // (which reads again, so a snapshot that went stale meanwhile cannot lose an update).
        // The scan runs while the first calls wait on Graph, so a tick costs Graph's latency
        // and not the scan before it (docs/performance.md, the poll tick).
        let store = state.store.clone();
        // The stored documents are read straight into what `decide` compares (a presence
        // row's partition key is its user id): the typed `PresenceRecord` would buffer each
        // of the 10,000 rows once more for its flattened part.
        let known: Known = futures_util::FutureExt::shared(Box::pin(async move {
            // Off the async workers (the store decodes on the blocking pool), which
            // meanwhile send the calls and read their answers.
            Arc::new(
                store
                    .scan_as(crate::store::Table::Presence)
                    .await
                    .unwrap_or_default(),
            )
        }));
        let sem = Arc::new(tokio::sync::Semaphore::new(s.polling.concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        let mut group_ok = vec![true; groups.len()];
        for (g, (_, users, _)) in groups.iter().enumerate() {
            for chunk in users.chunks(MAX_IDS_PER_CALL) {
                if !self.take_budget(&tenant, now) {
                    report.deferred += 1;
                    group_ok[g] = false;
                    continue;
                }
                report.calls += 1;
                let known = known.clone();
                let (this, state, outbox, sem, token, tenant, ids) = (
                    self.clone(),
                    state.clone(),
                    outbox.cloned(),
                    sem.clone(),
                    token.clone(),
                    tenant.clone(),
                    chunk.to_vec(),
                );
                tasks.spawn(async move {
                    let permit = sem.acquire_owned().await;
                    let answer = this.graph.presences_by_user_id(&token, &ids).await;
                    // The limit is on calls in flight: the next call goes out while this
                    // answer is compared with what we know.
                    drop(permit);
                    let result = match answer {
                        Ok(list) => {
                            let known = known.await;
                            let mut changed = 0;
                            for p in &list {
                                let obs = p.observation(&tenant, now);
                                if crate::core::presence::decide(known.get(&p.id), &obs)
                                    == crate::core::presence::Decision::Unchanged
                                {
                                    continue;
                                }
                                changed += usize::from(
                                    this.record(&state, outbox.as_ref(), p, &tenant, now).await
                                        == Recorded::Published,
                                );
                            }
                            PollBatch::Polled {
                                polled: list.len(),
                                changed,
                            }
                        }
                        Err(GraphError::Throttled { retry_after }) => {
                            this.throttle(&tenant, now, retry_after);
                            PollBatch::Throttled
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, batch = ids.len(), "presence batch failed");
                            PollBatch::Failed
                        }
                    };
                    (g, result)
                });
            }
        }
        // Started once the calls are queued, so the first calls go out before it takes a
        // core; they hold their own handles on it, this one only makes it start now.
        drop(tokio::spawn(known));
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok((_, PollBatch::Polled { polled, changed })) => {
                    report.polled += polled;
                    report.changed += changed;
                }
                Ok((g, PollBatch::Throttled)) => {
                    report.deferred += 1;
                    group_ok[g] = false;
                }
                Ok((g, PollBatch::Failed)) => {
                    report.failed += 1;
                    group_ok[g] = false;
                }
                Err(e) => {
                    tracing::error!(error = %e, "poll task failed");
                    report.failed += 1;
                    group_ok.iter_mut().for_each(|ok| *ok = false);
                }
            }
        }
        for ((key, _, interval), ok) in groups.iter().zip(group_ok) {
            self.record_result(key, now, ok, *interval);
        }
    }
}

/// Why tenant-mode polling has no token this tick.
#[derive(Debug, thiserror::Error)]
enum TenantTokenError {
    /// No sync account is configured and the app token cannot be had.
    #[error(transparent)]
    App(#[from] AccessError),
    /// No sync account gave a token: the first one's reason.
    #[error("sync account {account}: {source}")]
    SyncAccount {
        /// As `TENANT_SYNC_USERS` names it.
        account: String,
        /// Why it gave none.
        source: AccessError,
    },
    /// `TENANT_SYNC_USERS` lists no account (never: the app token is used then).
    #[error("no sync account")]
    NoSyncAccount,
}

/// How one presence batch of a tenant's tick went.
enum PollBatch {
    /// Graph answered: how many presences came back and how many changes were recorded.
    Polled { polled: usize, changed: usize },
    /// Graph answered 429: the tenant is held back (counted as deferred).
    Throttled,
    /// Any other failure (counted as failed; the users are due again next tick).
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// Two minutes of a PBX flood (80 calls wanted a second, taking its slots before the
    /// poller each second) beside polls: Graph allows 50 calls a second on average. Returns
    /// the poll and PBX calls granted per second.
    fn flood(polls_per_second: usize) -> Vec<(usize, usize)> {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
        let mut b = TenantBudget::default();
        (0..120)
            .map(|sec| {
                let now = t0 + chrono::Duration::seconds(sec);
                let pbx = (0..80).filter(|_| b.try_take(now, Caller::Pbx)).count();
                let polls = (0..polls_per_second)
                    .filter(|_| b.try_take(now, Caller::Poll))
                    .count();
                assert!(b.calls.len() <= TENANT_BUDGET, "second {sec}");
                (polls, pbx)
            })
            .collect()
    }

    /// The calls granted in each 30 s window once the first two have passed (the flood
    /// took the whole first window before any poll asked).
    fn windows(granted: &[(usize, usize)]) -> Vec<(usize, usize)> {
        (60..=90)
            .map(|from| {
                granted[from..from + 30]
                    .iter()
                    .fold((0, 0), |(p, x), (dp, dx)| (p + dp, x + dx))
            })
            .collect()
    }

    #[test]
    fn polls_keep_their_share_of_the_budget_under_a_pbx_flood() {
        // Polls wanting less than half the budget (16 a second) get all they want, and the
        // PBX sync all the rest: the budget is used up.
        for (polls, pbx) in windows(&flood(16)) {
            assert_eq!(polls, 16 * 30, "polls {polls}, pbx {pbx}");
            assert_eq!(polls + pbx, TENANT_BUDGET);
        }
        // Polls wanting more (30 a second) get half of every window, the PBX sync the other.
        for (polls, pbx) in windows(&flood(30)) {
            assert!(polls >= TENANT_BUDGET / 2, "polls {polls}, pbx {pbx}");
            assert_eq!(polls + pbx, TENANT_BUDGET);
        }
    }

    #[test]
    fn without_waiting_polls_the_pbx_sync_may_use_the_whole_budget() {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
        let mut b = TenantBudget::default();
        let taken = (0..2_000).filter(|_| b.try_take(now, Caller::Pbx)).count();
        assert_eq!(taken, TENANT_BUDGET);
        // Polls ask for 900 slots 10 s later and are refused; in the next window (the flood's
        // calls have aged out) the PBX sync is held to half and the polls get the other half.
        let asked = now + chrono::Duration::seconds(10);
        assert_eq!(
            (0..900).filter(|_| b.try_take(asked, Caller::Poll)).count(),
            0
        );
        let later = now + chrono::Duration::seconds(30);
        let pbx = (0..2_000)
            .filter(|_| b.try_take(later, Caller::Pbx))
            .count();
        assert_eq!(pbx, TENANT_BUDGET / 2);
        let polls = (0..2_000)
            .filter(|_| b.try_take(later, Caller::Poll))
            .count();
        assert_eq!(polls, TENANT_BUDGET / 2);
    }
}
