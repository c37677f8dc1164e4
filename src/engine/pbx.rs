//! The PBX sync engine: PBX events and Teams presence in, writes to Graph and to the PBX out.
//!
//! One [`PbxSync`] per process. It keeps one [`Link`] (the pure state machine in
//! `core::pbx::sync`) per mapped extension, feeds it what it observes, carries out the
//! actions it returns (Graph `setPresence`/`clearPresence` through the app session, the
//! PBX's status profile through the adapter) and stores the link after every step, so the
//! echo ledger and the ownership of a profile we set survive a restart.
//!
//! The same engine runs in `serve` and `pbx run` (in memory, with [`run`] driving it) and
//! under the Functions host (stateless: every invocation reloads from the store first).
//! A failed write is retried with back-off until a newer write in the same direction
//! replaces it: the link has already moved on, so the latest value is what must land.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;

use crate::clients::graph::client::GraphError;
use crate::clients::pbx::http_out::{HttpPbx, HttpPbxConfig, HttpPbxError};
use crate::clients::pbx::threecx::{ThreeCx, ThreeCxError};
use crate::config::pbx::PbxSettings;
use crate::config::ConfigError;
use crate::core::backoff::Backoff;
use crate::core::pbx::model::{Extension, PbxEvent, Profile};
use crate::core::pbx::rules::TeamsOutcome;
use crate::core::pbx::sync::{Action, Link, Policy, Step};
use crate::core::presence::Presence;
use crate::engine::context::Context;
use crate::engine::poller::Poller;
use crate::engine::tokens::AccessError;
use crate::store::{PbxLinkRecord, PbxMappingRecord, StoreError};

/// How long a failed write waits before it is tried again (doubling up to 5 minutes, with
/// jitter: [`Backoff`]).
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(300);
/// How long the sync waits for a PBX whose preflight failed (doubling up to 5 minutes).
const PREFLIGHT_FIRST: Duration = Duration::from_secs(5);
const PREFLIGHT_MAX: Duration = Duration::from_secs(300);

/// The PBX side of the sync.
#[derive(Clone)]
pub enum Adapter {
    /// 3CX V20 (one client per API client id: a new token revokes the old one).
    ThreeCx(Arc<ThreeCx>),
    /// The generic HTTP adapter; `None` when no outbound URL is configured (events in only).
    Http(Option<Arc<HttpPbx>>),
}

impl Adapter {
    /// The adapter the settings ask for; `None` when the sync is off.
    pub fn from_settings(p: &PbxSettings) -> Result<Option<Self>, ConfigError> {
        match p {
            PbxSettings::Off => Ok(None),
            PbxSettings::ThreeCx { api: t, .. } => {
                let client = ThreeCx::new(
                    t.url.clone(),
                    t.client_id.clone(),
                    t.client_secret.clone(),
                    Duration::from_secs(10),
                )
                .map_err(|e| ConfigError {
                    setting: "PBX_3CX_URL".into(),
                    problem: e.to_string(),
                })?;
                Ok(Some(Adapter::ThreeCx(Arc::new(client))))
            }
            PbxSettings::Http { http, .. } => {
                let config = HttpPbxConfig::from_lookup(|k| http.value(k))?;
                Ok(Some(Adapter::Http(
                    config.map(|c| Arc::new(HttpPbx::new(c))),
                )))
            }
        }
    }

    async fn set_profile(
        &self,
        extension: &Extension,
        profile: &Profile,
    ) -> Result<(), WriteError> {
        match self {
            Adapter::ThreeCx(c) => Ok(c.set_profile(extension, profile).await?),
            Adapter::Http(Some(c)) => Ok(c.set_profile(extension, profile).await?),
            Adapter::Http(None) => Err(WriteError::NoSetUrl),
        }
    }
}

/// Why a write of the sync (to the PBX or to Teams) did not land: logged, kept as the
/// link's last error for the status page, and retried with back-off.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// 3CX refused or could not be reached.
    #[error(transparent)]
    ThreeCx(#[from] ThreeCxError),
    /// The generic PBX's status request failed.
    #[error(transparent)]
    Http(#[from] HttpPbxError),
    /// The generic PBX has no status URL to write to.
    #[error("PBX_HTTP_SET_URL is not set: the PBX status cannot be changed")]
    NoSetUrl,
    /// The presence session is named by the app's client id, which is not set.
    #[error("AZURE_CLIENT_ID is not set")]
    NoClientId,
    /// The tenant's Graph budget (shared with the poller) is spent for now.
    #[error("Graph presence budget for this tenant is spent; waiting")]
    BudgetSpent,
    /// No app token for Graph.
    #[error(transparent)]
    Token(#[from] AccessError),
    /// Graph refused the presence write.
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// Failed writes waiting for another try.
#[derive(Debug)]
struct Retry {
    to_teams: Option<Action>,
    to_pbx: Option<Action>,
    at: Option<DateTime<Utc>>,
    backoff: Backoff,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            to_teams: None,
            to_pbx: None,
            at: None,
            backoff: Backoff::new(RETRY_FIRST, RETRY_MAX),
        }
    }
}

struct Entry {
    rec: PbxLinkRecord,
    link: Link,
    retry: Retry,
}

/// The sync: links by extension, the policy, the adapter, and where to write.
pub struct PbxSync {
    ctx: Context,
    poller: Poller,
    policy: Policy,
    adapter: Adapter,
    /// Under the Functions host every call reloads the links first (other instances write).
    stateless: bool,
    links: Mutex<BTreeMap<Extension, Entry>>,
    health: std::sync::Mutex<(bool, String)>,
}

impl PbxSync {
    /// The sync for `ctx`'s PBX settings; `Ok(None)` when no PBX is configured.
    pub fn from_context(
        ctx: &Context,
        poller: &Poller,
        stateless: bool,
    ) -> Result<Option<Arc<Self>>, ConfigError> {
        let (Some(p), Some(adapter)) = (
            ctx.settings.pbx.sync(),
            Adapter::from_settings(&ctx.settings.pbx)?,
        ) else {
            return Ok(None);
        };
        Ok(Some(Arc::new(Self {
            adapter,
            policy: p.policy.clone(),
            ctx: ctx.clone(),
            poller: poller.clone(),
            stateless,
            links: Mutex::new(BTreeMap::new()),
            health: std::sync::Mutex::new((false, "not connected yet".into())),
        })))
    }

    /// The adapter (for `doctor` and the run loop).
    pub fn adapter(&self) -> &Adapter {
        &self.adapter
    }

    /// The PBX connection's health for the status page: connected, and one line.
    pub fn health(&self) -> (bool, String) {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_health(&self, connected: bool, detail: String) {
        *self.health.lock().unwrap_or_else(|p| p.into_inner()) = (connected, detail);
    }

    /// Reads the mapping and the stored links; mappings without a link get a fresh one and
    /// links whose mapping was removed are dropped.
    pub async fn load(&self) -> Result<(), StoreError> {
        let mappings = self.ctx.store.list::<PbxMappingRecord>().await?;
        let stored: HashMap<String, PbxLinkRecord> = self
            .ctx
            .store
            .list::<PbxLinkRecord>()
            .await?
            .into_iter()
            .map(|r| (r.value.extension.clone(), r.value))
            .collect();
        let mut links = self.links.lock().await;
        let mut next = BTreeMap::new();
        for m in mappings.into_iter().map(|m| m.value) {
            let ext = Extension(m.extension.clone());
            let retry = links.remove(&ext).map(|e| e.retry).unwrap_or_default();
            let rec = match stored.get(&m.extension) {
                Some(r) if r.user_id == m.user_id => r.clone(),
                _ => PbxLinkRecord {
                    extension: m.extension.clone(),
                    user_id: m.user_id.clone(),
                    link: serde_json::Value::Null,
                    next_wake: None,
                    line: None,
                    profile: None,
                    teams: None,
                    last_to_teams: None,
                    last_to_pbx: None,
                    last_error: None,
                },
            };
            let link = serde_json::from_value(rec.link.clone()).unwrap_or_else(|_| Link::new());
            next.insert(ext, Entry { rec, link, retry });
        }
        *links = next;
        Ok(())
    }

    /// At start: for every mapped user, clear a session a crash may have left behind.
    pub async fn start(&self, now: DateTime<Utc>) {
        let _ = self
            .with_links(
                now,
                |link, policy| link.session_may_be_left_behind(policy, now),
                |_| true,
            )
            .await;
    }

    /// Checks the PBX before syncing (3CX: credentials, licence, its own Microsoft 365
    /// presence sync off, profile names known). An error is one line to show the admin.
    pub async fn preflight(&self) -> Result<(), ThreeCxError> {
        let Adapter::ThreeCx(c) = &self.adapter else {
            return Ok(());
        };
        let extensions: Vec<Extension> = self.links.lock().await.keys().cloned().collect();
        let mut profiles: Vec<Profile> = Vec::new();
        for rule in &self.policy.rules.teams_to_pbx {
            if let TeamsOutcome::SetPbx { profile, .. } = &rule.outcome {
                if !profiles.contains(profile) {
                    profiles.push(profile.clone());
                }
            }
        }
        c.preflight(&extensions, &profiles).await
    }

    /// The mapped Teams user ids (followed for presence even when nobody signed them in).
    pub async fn mapped_users(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .links
            .lock()
            .await
            .values()
            .map(|e| e.rec.user_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// What the PBX said.
    pub async fn on_events(&self, events: Vec<PbxEvent>, now: DateTime<Utc>) {
        for event in events {
            tracing::debug!(?event, "PBX event");
            match event {
                PbxEvent::Line {
                    extension, state, ..
                } => {
                    self.on_extension(
                        &extension,
                        now,
                        |link, policy| link.observe_line(policy, state, now),
                        |rec| rec.line = Some(state.as_str().into()),
                    )
                    .await
                }
                PbxEvent::Profile {
                    extension,
                    profile,
                    at,
                } => {
                    let seen = profile.as_str().to_owned();
                    self.on_extension(
                        &extension,
                        now,
                        |link, policy| link.observe_pbx_profile(policy, profile.clone(), at, now),
                        |rec| rec.profile = Some(seen.clone()),
                    )
                    .await
                }
                PbxEvent::Snapshot { extensions, at } => {
                    for s in extensions {
                        let (line, profile) = (s.line, s.profile.clone());
                        self.on_extension(
                            &s.extension,
                            now,
                            |link, policy| {
                                link.observe_snapshot(policy, line, profile.clone(), at, now)
                            },
                            |rec| {
                                rec.line = Some(line.as_str().into());
                                if let Some(p) = &s.profile {
                                    rec.profile = Some(p.as_str().into());
                                }
                            },
                        )
                        .await
                    }
                }
                PbxEvent::Health { connected, detail } => {
                    if connected {
                        tracing::info!(detail = %detail, "PBX connected");
                    } else {
                        tracing::warn!(detail = %detail, "PBX connection lost; reconnecting");
                    }
                    self.set_health(connected, detail);
                }
            }
        }
    }

    /// What Teams said about a user (a presence change, ours included: the links tell
    /// our echo from the person's own changes), and how fresh it is.
    pub async fn on_teams(
        &self,
        user_id: &str,
        presence: &Presence,
        freshness: Freshness,
        now: DateTime<Utc>,
    ) {
        let text = presence.to_string();
        let _ = self
            .with_links(
                now,
                |link, policy| {
                    if freshness == Freshness::ReadNow {
                        link.observe_teams_read(policy, presence.clone(), now)
                    } else {
                        link.observe_teams(policy, presence.clone(), now)
                    }
                },
                |rec| {
                    if rec.user_id.eq_ignore_ascii_case(user_id) {
                        rec.teams = Some(text.clone());
                        true
                    } else {
                        false
                    }
                },
            )
            .await;
    }

    /// Runs whatever is due at `now`: hold-downs, stable windows, re-posts, retries.
    pub async fn tick(&self, now: DateTime<Utc>) {
        let _ = self
            .with_links(
                now,
                |link, policy| link.tick(policy, now),
                |rec| rec.next_wake.is_some_and(|w| w <= now),
            )
            .await;
        self.retry_due(now).await;
    }

    /// The earliest time anything is due, for the run loop's timer.
    pub async fn next_wake(&self) -> Option<DateTime<Utc>> {
        let links = self.links.lock().await;
        links
            .values()
            .flat_map(|e| [e.rec.next_wake, e.retry.at])
            .flatten()
            .min()
    }

    /// One row per mapped extension (status page, `pbx map list`).
    pub async fn rows(&self) -> Vec<PbxLinkRecord> {
        self.links
            .lock()
            .await
            .values()
            .map(|e| e.rec.clone())
            .collect()
    }

    async fn on_extension(
        &self,
        extension: &Extension,
        now: DateTime<Utc>,
        step: impl Fn(&mut Link, &Policy) -> Step,
        note: impl Fn(&mut PbxLinkRecord),
    ) {
        let found = self
            .with_links(now, step, |rec| {
                if rec.extension == extension.0 {
                    note(rec);
                    true
                } else {
                    false
                }
            })
            .await;
        if !found {
            tracing::debug!(extension = %extension, "event for an extension that is not mapped");
        }
    }

    /// Applies `step` to every link `select` picks (it may also note what was seen), carries
    /// out the actions and stores the links. Returns whether any link was picked.
    async fn with_links(
        &self,
        now: DateTime<Utc>,
        step: impl Fn(&mut Link, &Policy) -> Step,
        mut select: impl FnMut(&mut PbxLinkRecord) -> bool,
    ) -> bool {
        if self.stateless {
            if let Err(e) = self.load().await {
                tracing::error!(error = %e, "cannot load the PBX mapping");
                return false;
            }
        }
        let mut links = self.links.lock().await;
        let mut any = false;
        for (ext, entry) in links.iter_mut() {
            if !select(&mut entry.rec) {
                continue;
            }
            any = true;
            let s = step(&mut entry.link, &self.policy);
            entry.rec.next_wake = s.next_wake;
            self.carry_out(ext, entry, s.actions, now).await;
            self.save(entry).await;
        }
        any
    }

    async fn retry_due(&self, now: DateTime<Utc>) {
        let mut links = self.links.lock().await;
        for (ext, entry) in links.iter_mut() {
            if entry.retry.at.is_none_or(|t| t > now) {
                continue;
            }
            let actions: Vec<Action> = [entry.retry.to_teams.take(), entry.retry.to_pbx.take()]
                .into_iter()
                .flatten()
                .collect();
            entry.retry.at = None;
            self.carry_out(ext, entry, actions, now).await;
            self.save(entry).await;
        }
    }

    /// Carries out `actions`. 3CX answers a profile PATCH with 204 once the profile is set,
    /// and its profiles are only polled (changes only): the link is told at once that the
    /// PBX shows what we wrote, and the polls are compared with it. Otherwise the person
    /// changing it back within one poll interval would never be seen, and our value would
    /// wait for a poll to be recognised as ours (issue 28, item 11).
    async fn carry_out(
        &self,
        ext: &Extension,
        entry: &mut Entry,
        actions: Vec<Action>,
        now: DateTime<Utc>,
    ) {
        let mut written = self.execute(ext, entry, actions, now).await;
        if !matches!(self.adapter, Adapter::ThreeCx(_)) {
            // Generic PBXs report their profile changes themselves, ours included.
            return;
        }
        // Settling an echo rarely asks for more; bounded all the same.
        for _ in 0..4 {
            let Some(profile) = written.pop() else { return };
            entry.rec.profile = Some(profile.as_str().to_owned());
            let s = entry
                .link
                .observe_pbx_profile(&self.policy, profile, now, now);
            entry.rec.next_wake = match (entry.rec.next_wake, s.next_wake) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            written.extend(self.execute(ext, entry, s.actions, now).await);
        }
    }

    async fn save(&self, entry: &mut Entry) {
        entry.rec.link = serde_json::to_value(&entry.link).unwrap_or(serde_json::Value::Null);
        if let Err(e) = self.ctx.store.upsert(&entry.rec).await {
            tracing::error!(extension = %entry.rec.extension, error = %e, "cannot store the PBX link");
        }
    }

    /// Makes the writes, with retries for failures; returns the PBX profiles written.
    async fn execute(
        &self,
        ext: &Extension,
        entry: &mut Entry,
        actions: Vec<Action>,
        now: DateTime<Utc>,
    ) -> Vec<Profile> {
        let mut written = Vec::new();
        for action in actions {
            let to_pbx = matches!(action, Action::SetPbxProfile(_));
            // A newer write in a direction replaces a failed older one.
            if to_pbx {
                entry.retry.to_pbx = None;
            } else {
                entry.retry.to_teams = None;
            }
            let (what, result) = match &action {
                Action::SetPbxProfile(p) => (
                    p.as_str().to_owned(),
                    self.adapter.set_profile(ext, p).await,
                ),
                other => (
                    describe(other),
                    self.write_teams(&entry.rec.user_id, other, now).await,
                ),
            };
            match result {
                Ok(()) => {
                    tracing::info!(extension = %ext, user_id = %entry.rec.user_id, write = %what, to = if to_pbx { "pbx" } else { "teams" }, "PBX sync wrote");
                    if let Action::SetPbxProfile(p) = &action {
                        written.push(p.clone());
                        entry.rec.last_to_pbx = Some((what, now));
                    } else {
                        entry.rec.last_to_teams = Some((what, now));
                    }
                    entry.rec.last_error = None;
                    if entry.retry.to_pbx.is_none() && entry.retry.to_teams.is_none() {
                        entry.retry.backoff.reset();
                    }
                }
                Err(e) => {
                    tracing::warn!(extension = %ext, user_id = %entry.rec.user_id, write = %what, error = %e, "PBX sync write failed; will retry");
                    entry.rec.last_error = Some(format!("{what}: {e}"));
                    if to_pbx {
                        entry.retry.to_pbx = Some(action);
                    } else {
                        entry.retry.to_teams = Some(action);
                    }
                    let delay = entry.retry.backoff.next_delay();
                    entry.retry.at =
                        Some(now + chrono::Duration::from_std(delay).unwrap_or_default());
                }
            }
        }
        written
    }

    async fn write_teams(
        &self,
        user_id: &str,
        action: &Action,
        now: DateTime<Utc>,
    ) -> Result<(), WriteError> {
        let s = &self.ctx.settings;
        let session = s.app.client_id.as_deref().ok_or(WriteError::NoClientId)?;
        // One budget with the poller: presence writes and reads share Graph's limit.
        if !self.poller.take_pbx_budget(&s.app.tenant, now) {
            return Err(WriteError::BudgetSpent);
        }
        let token = self.ctx.tokens.app_token(&s.app.tenant).await?;
        let graph = &self.ctx.graph;
        let result = match action {
            Action::SetSession {
                availability,
                activity,
                expires,
            } => {
                let expires =
                    chrono::Duration::from_std(*expires).unwrap_or(chrono::Duration::hours(1));
                graph
                    .set_presence(
                        &token,
                        user_id,
                        session,
                        availability.as_str(),
                        activity.as_str(),
                        expires,
                    )
                    .await
            }
            Action::ClearSession => graph.clear_presence(&token, user_id, session).await,
            Action::SetPreferred {
                availability,
                activity,
            } => {
                graph
                    .set_user_preferred_presence(
                        &token,
                        user_id,
                        availability.as_str(),
                        activity.as_str(),
                        None,
                    )
                    .await
            }
            Action::ClearPreferred => graph.clear_user_preferred_presence(&token, user_id).await,
            Action::SetPbxProfile(_) => return Ok(()),
        };
        result.map_err(|e| {
            if let GraphError::Throttled { retry_after } = &e {
                self.poller.throttle(&s.app.tenant, now, *retry_after);
            }
            e.into()
        })
    }

    /// Polls the mapped users' presence with the app token and records it through the
    /// pipeline, so users nobody signed in are followed too (tenant mode for the PBX).
    pub async fn follow(
        &self,
        outbox: Option<&crate::engine::publish::Outbox>,
        now: DateTime<Utc>,
    ) {
        let ids = self.mapped_users().await;
        if ids.is_empty() {
            return;
        }
        let s = &self.ctx.settings;
        let token: SecretString = match self.ctx.tokens.app_token(&s.app.tenant).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "no app token to follow the mapped users' presence");
                return;
            }
        };
        for chunk in ids.chunks(crate::clients::graph::client::MAX_IDS_PER_CALL) {
            if !self.poller.take_pbx_budget(&s.app.tenant, now) {
                return;
            }
            match self.ctx.graph.presences_by_user_id(&token, chunk).await {
                Ok(list) => {
                    for p in list {
                        // With Graph's `sequenceNumber`: a notification older than this read
                        // that arrives after it must not move the presence back.
                        let obs = p.observation(&s.app.tenant, now);
                        if let Err(e) = crate::engine::pipeline::record_and_publish(
                            &self.ctx.store,
                            &self.ctx.publisher,
                            outbox,
                            &obs,
                        )
                        .await
                        {
                            tracing::warn!(user_id = %p.id, error = %e, "cannot record a mapped user's presence");
                        }
                    }
                }
                Err(e) => {
                    if let crate::clients::graph::client::GraphError::Throttled { retry_after } = &e
                    {
                        self.poller.throttle(&s.app.tenant, now, *retry_after);
                    }
                    tracing::warn!(error = %e, "cannot read the mapped users' presence");
                    return;
                }
            }
        }
    }
}

fn describe(a: &Action) -> String {
    match a {
        Action::SetSession {
            availability,
            activity,
            ..
        } => format!("setPresence {availability}/{activity}"),
        Action::ClearSession => "clearPresence".into(),
        Action::SetPreferred {
            availability,
            activity,
        } => format!("setUserPreferredPresence {availability}/{activity}"),
        Action::ClearPreferred => "clearUserPreferredPresence".into(),
        Action::SetPbxProfile(p) => p.as_str().into(),
    }
}

/// How fresh a Teams presence handed to the sync is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Read from Graph just now (a poll): it is the presence now.
    ReadNow,
    /// A change notification, or a copy kept elsewhere: it may be a late copy.
    MayBeLate,
}

impl Freshness {
    /// How fresh a published change is, by where it came from.
    pub fn of(source: crate::core::presence::Source) -> Self {
        match source {
            crate::core::presence::Source::Poll => Self::ReadNow,
            crate::core::presence::Source::Notification => Self::MayBeLate,
        }
    }
}

/// A Teams presence for [`run`]'s sync: whose, what, how fresh.
#[derive(Debug, Clone)]
pub struct TeamsPresence {
    /// Entra object id.
    pub user_id: String,
    /// The presence.
    pub presence: Presence,
    /// How fresh it is.
    pub freshness: Freshness,
}

/// Drives a [`PbxSync`] in a long-running process (`serve`, `pbx run`): the adapter's call
/// events, profile polling (3CX pushes none), Teams presence from `teams`, PBX events from
/// `inbound` (the HTTP route), the links' timers and following the mapped users. Returns
/// when `shutdown` is cancelled, after the step under way (a write is never cut off).
pub async fn run(
    sync: Arc<PbxSync>,
    mut teams: mpsc::UnboundedReceiver<TeamsPresence>,
    poll_interval: Duration,
    shutdown: CancellationToken,
) {
    if let Err(e) = sync.load().await {
        tracing::error!(error = %e, "cannot load the PBX mapping");
    }
    // The PBX may come up after us (a power cut): keep trying, and say why meanwhile.
    let mut backoff = Backoff::new(PREFLIGHT_FIRST, PREFLIGHT_MAX);
    while let Err(e) = sync.preflight().await {
        let wait = backoff.next_delay();
        tracing::error!(error = %e, retry_in_s = wait.as_secs(), "PBX preflight failed; the sync waits until it passes");
        sync.set_health(false, format!("preflight failed: {e}"));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
    sync.start(Utc::now()).await;
    let (tx, mut events) = mpsc::channel::<PbxEvent>(256);
    let mut profile_poll = None;
    match sync.adapter().clone() {
        Adapter::ThreeCx(client) => {
            let stop = shutdown.clone();
            let c = client.clone();
            tokio::spawn(async move { c.run_call_events(tx, stop).await });
            let every = sync
                .ctx
                .settings
                .pbx
                .threecx()
                .map_or(Duration::from_secs(5), |t| t.profile_poll);
            profile_poll = Some((client, tokio::time::interval(every)));
        }
        Adapter::Http(_) => {
            drop(tx);
            sync.set_health(true, "waiting for events on /api/pbx/events".into());
        }
    }
    let mut follow = tokio::time::interval(poll_interval);
    follow.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let wake = sync.next_wake().await;
        let sleep = match wake {
            Some(w) => (w - Utc::now()).to_std().unwrap_or(Duration::ZERO),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(ev) = events.recv() => sync.on_events(vec![ev], Utc::now()).await,
            Some(t) = teams.recv() => sync.on_teams(&t.user_id, &t.presence, t.freshness, Utc::now()).await,
            _ = tokio::time::sleep(sleep) => sync.tick(Utc::now()).await,
            _ = follow.tick() => sync.follow(None, Utc::now()).await,
            Some(()) = async {
                match profile_poll.as_mut() {
                    Some((_, every)) => { every.tick().await; Some(()) }
                    None => std::future::pending().await,
                }
            } => {
                if let Some((client, _)) = &profile_poll {
                    match client.current_profiles().await {
                        Ok(now_profiles) => {
                            let at = Utc::now();
                            // Only changes: the same profile again would read as the person
                            // picking it. Compared with what the links believe, our own
                            // writes included, so a change back within one poll is seen.
                            // Mapped extensions only (nothing else has a link): an
                            // extension without a profile yet gets its baseline.
                            let known: BTreeMap<Extension, Option<Profile>> = sync
                                .rows()
                                .await
                                .into_iter()
                                .map(|r| (Extension(r.extension), r.profile.map(Profile::new)))
                                .collect();
                            let changed: Vec<PbxEvent> = now_profiles
                                .into_iter()
                                .filter(|(ext, p)| known.get(ext).is_some_and(|k| k.as_ref() != Some(p)))
                                .map(|(extension, profile)| PbxEvent::Profile { extension, profile, at })
                                .collect();
                            if !changed.is_empty() {
                                sync.on_events(changed, at).await;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot read the 3CX status profiles"),
                    }
                }
            }
        }
    }
}
