//! Accepting Graph's change and lifecycle notifications: everything after the validation
//! handshake, without HTTP, so the most security-critical path is tested on its own. The
//! webhook (`http::webhook`) answers the handshake, calls [`accept`] or [`accept_lifecycle`],
//! maps the outcome to 400, 202 or 503 and writes the one log line.
//!
//! The order of the steps for a change-notification batch, written here and only here
//! (the checks themselves are in [`crate::clients::graph::notification`] and
//! [`crate::clients::graph::validation_token`]). Cheapest and most selective first, so a
//! forged request costs almost nothing and learns nothing:
//!
//! 1. **parse** the body as a batch ([`notification::parse_batch`]); a body that is not one is
//!    [`NotAccepted::Malformed`] (400); an item that is not a notification is rejected alone;
//! 2. **validation tokens** ([`validation_token::vouched_tenants`]): the batch's tokens are
//!    checked against the cached signing keys and each item's tenant must be vouched for.
//!    This comes before anything costs a store read, so an unauthenticated batch is turned
//!    away here whatever it names (a forged batch naming 64 subscriptions used to cost 64
//!    reads). Keys that cannot be had are [`DeliverAgain::Keys`];
//! 3. **subscription** ([`notification::check_subscription`]): the item names a subscription
//!    of ours (at most [`MAX_SUBSCRIPTIONS_PER_BATCH`] distinct ones are looked up), its
//!    `clientState` hashes to the stored digest (constant time), its tenant is the
//!    subscription's;
//! 4. **open** ([`notification::open`]): RSA-OAEP unwraps the key, HMAC-SHA256 is checked
//!    before anything is decrypted, AES-256-CBC decrypts, and the decrypted user must be one
//!    the subscription covers;
//! 5. **record and publish** ([`pipeline::record_and_publish_batch`], the same path as
//!    polling) in batch order, the whole batch in one store transaction where the store has
//!    them. A replayed or redelivered item finds its digest already recorded and publishes
//!    nothing. A store failure is [`DeliverAgain::Record`]: Graph delivers the batch again,
//!    and change detection makes the items already recorded publish nothing the second time.
//!
//! On SQLite, when every subscription named is in the cache, steps 3 and 4 use the cached
//! records and step 5's transaction confirms their ETags (one store round trip less per
//! request). If that confirmation fails, or anything is rejected against a cached record,
//! the whole batch is checked again against the store's current records: nothing is
//! accepted or dropped on a stale copy.
//!
//! Everything else is accepted (202), including batches whose items are all rejected, so a
//! forger gets no retry loop. What comes back carries subscription ids, counts and rejection
//! reasons: never bodies, tokens, keys or `clientState`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::clients::graph::notification::{
    self, loggable_id, BatchError, ChangeNotification, LifecycleNotification, Rejection,
};
use crate::clients::graph::validation_token::{self, JwksCache, KeysUnavailable};
use crate::core::presence::Observation;
use crate::engine::context::Context;
use crate::engine::pipeline::{self, BatchOutcome, Outcome, PipelineError};
use crate::engine::publish::Outbox;
use crate::store::cache::RecordCache;
use crate::store::{Etag, Store, StoreError, SubscriptionRecord, Table};

/// At most this many distinct subscriptions are looked up per request (Graph batches
/// carry one or a few; a tenant-mode subscription covers 650 users). Items of further
/// subscriptions are rejected as unknown, which bounds what a forged batch costs.
pub const MAX_SUBSCRIPTIONS_PER_BATCH: usize = 64;

/// Batches of at most this many items are decrypted on the async worker (one RSA operation,
/// about 0.2 ms); larger ones on the blocking pool.
const OPEN_INLINE: usize = 1;

/// What acceptance needs besides the body: the engine's context, the signing keys of
/// validation tokens and the subscriptions already read.
#[derive(Clone, Copy)]
pub struct Checks<'a> {
    /// Settings (`AZURE_CLIENT_ID`), the store, the publisher, the notification keys.
    pub ctx: &'a Context,
    /// Signing keys of the validation tokens.
    pub token_keys: &'a JwksCache,
    /// The subscriptions the webhook read, revalidated by ETag on every use.
    pub subscriptions: &'a RecordCache<SubscriptionRecord>,
}

/// What became of an accepted batch (answered 202).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Items in the batch.
    pub items: usize,
    /// Items that passed every check and were recorded.
    pub accepted: usize,
    /// Items turned away, with the subscription they named (empty when the item was not
    /// even a notification) and why.
    pub rejected: Vec<(String, Rejection)>,
    /// Changes published (an item that changed nothing, or was seen before, publishes none).
    pub published: usize,
    /// Changes recorded but not published: a redelivery would find nothing new, so this is
    /// not Graph's to repeat.
    pub unpublished: Vec<String>,
}

impl Tally {
    /// The rejections for one log field ([`rejections`]).
    pub fn rejections(&self) -> String {
        rejections(&self.rejected)
    }
}

/// Rejections grouped by reason and subscription, for one log field: at most eight groups,
/// ids made loggable (`no_valid_token:5b5b...×3 malformed×1`).
pub fn rejections(rejected: &[(String, Rejection)]) -> String {
    let mut groups: BTreeMap<(&'static str, String), usize> = BTreeMap::new();
    for (sub, reason) in rejected {
        *groups
            .entry((reason.as_str(), loggable_id(sub)))
            .or_default() += 1;
    }
    let mut out: Vec<String> = groups
        .iter()
        .take(8)
        .map(|((reason, sub), n)| {
            if sub.is_empty() {
                format!("{reason}×{n}")
            } else {
                format!("{reason}:{sub}×{n}")
            }
        })
        .collect();
    if groups.len() > 8 {
        out.push(format!("+{} more", groups.len() - 8));
    }
    out.join(" ")
}

/// Why a batch was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum NotAccepted {
    /// 400: the body is not a notification batch; nothing was looked at.
    #[error(transparent)]
    Malformed(#[from] BatchError),
    /// 503: we could not finish; Graph should deliver the batch again.
    #[error(transparent)]
    DeliverAgain(#[from] DeliverAgain),
}

/// What kept a batch from being recorded: each answers 503 with its text and "deliver again
/// later". Fixed text; the sources carry store or key-fetch errors, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum DeliverAgain {
    /// The signing keys of a validation token cannot be had (yet).
    #[error("cannot check validation tokens")]
    Keys(#[source] KeysUnavailable),
    /// The store could not be read for the subscriptions.
    #[error("cannot read subscriptions")]
    Subscriptions(#[source] StoreError),
    /// The decryption task on the blocking pool failed.
    #[error("decryption failed")]
    Decryption(#[source] tokio::task::JoinError),
    /// The store failed while recording; `tally` says how far the batch got.
    #[error("cannot record presence")]
    Record {
        /// The batch so far.
        tally: Tally,
        /// The users whose change could not be stored.
        users: Vec<String>,
        /// The first store error.
        #[source]
        error: StoreError,
    },
    /// The store failed while recording a lifecycle event.
    #[error("cannot record lifecycle event")]
    Lifecycle(#[source] StoreError),
}

/// Steps 1 to 5 (module doc) for one change-notification batch received at `now`. What it
/// publishes goes into `outbox` when the Functions host gave one.
#[tracing::instrument(name = "notifications", skip_all)]
pub async fn accept(
    checks: Checks<'_>,
    outbox: Option<&Outbox>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Tally, NotAccepted> {
    let (items, tokens, mut tally) = parse(body)?;
    let items = vouched_items(checks, items, &tokens, now, &mut tally).await?;
    let items = Arc::new(items);
    let mut cached = match &checks.ctx.store {
        Store::Sqlite(_) => cached_subscriptions(checks.subscriptions, &items),
        _ => None,
    };
    loop {
        let (subs, unchanged) = match cached.take() {
            Some((subs, unchanged)) => (subs, Some(unchanged)),
            None => {
                let ids = items.iter().map(|i| i.subscription_id.as_str());
                let subs = lookup_subscriptions(checks, ids)
                    .await
                    .map_err(DeliverAgain::Subscriptions)?;
                (subs, None)
            }
        };
        let (to_open, mut refused) = match_subscriptions(&items, &subs);
        let (observations, failed) = open_items(checks, &items, to_open, now).await?;
        refused.extend(failed);
        if unchanged.is_some() && !refused.is_empty() {
            continue;
        }
        let mut this = tally.clone();
        this.rejected.extend(refused);
        match record(
            checks,
            outbox,
            unchanged.unwrap_or_default(),
            observations,
            this,
        )
        .await?
        {
            // A subscription moved since it was cached: check everything again.
            Recorded::Stale => continue,
            Recorded::Done(done) => {
                tally = done;
                break;
            }
        }
    }
    Ok(tally)
}

/// Step 1: the batch, its items that are notifications, its tokens; the others rejected.
fn parse(body: &[u8]) -> Result<(Vec<ChangeNotification>, Vec<String>, Tally), BatchError> {
    let batch = notification::parse_batch::<ChangeNotification>(body)?;
    let mut tally = Tally {
        items: batch.items.len(),
        ..Tally::default()
    };
    let items = batch
        .items
        .into_iter()
        .filter_map(|i| i.map_err(|r| tally.rejected.push((String::new(), r))).ok())
        .collect();
    Ok((items, batch.validation_tokens, tally))
}

/// Step 2: the items whose tenant a valid validation token vouches for; the others rejected.
async fn vouched_items(
    checks: Checks<'_>,
    items: Vec<ChangeNotification>,
    tokens: &[String],
    now: DateTime<Utc>,
    tally: &mut Tally,
) -> Result<Vec<ChangeNotification>, DeliverAgain> {
    let vouched = if items.is_empty() {
        HashSet::new()
    } else {
        match checks.ctx.settings.app.client_id.as_deref() {
            None => {
                // A setting missing, not a request gone wrong: said on every batch until set.
                tracing::error!(
                    "AZURE_CLIENT_ID is not set: validation tokens cannot be checked, notifications are dropped"
                );
                HashSet::new()
            }
            Some(client_id) => {
                validation_token::vouched_tenants(checks.token_keys, tokens, client_id, now)
                    .await
                    .map_err(DeliverAgain::Keys)?
            }
        }
    };
    Ok(items
        .into_iter()
        .filter_map(|item| {
            let tenant = item.tenant_id.as_deref().map(str::to_ascii_lowercase);
            if tenant.is_some_and(|t| vouched.contains(&t)) {
                Some(item)
            } else {
                tally
                    .rejected
                    .push((item.subscription_id, Rejection::NoValidToken));
                None
            }
        })
        .collect())
}

/// The subscriptions a batch names, by id.
type Subscriptions = HashMap<String, Arc<SubscriptionRecord>>;

/// Entities the record transaction must find at these ETags: `(table, pk, rk, etag)`.
type Unchanged = Vec<(Table, String, String, Etag)>;

/// Looks up the subscriptions a batch names. Ids that cannot be Graph's (or beyond the
/// per-batch cap) are not looked up and stay unknown.
async fn lookup_subscriptions<'a>(
    checks: Checks<'_>,
    ids: impl Iterator<Item = &'a str>,
) -> Result<Subscriptions, StoreError> {
    let mut found = HashMap::new();
    let mut looked = HashSet::new();
    for id in ids {
        if looked.contains(id)
            || looked.len() >= MAX_SUBSCRIPTIONS_PER_BATCH
            || id.is_empty()
            || loggable_id(id) != id
        {
            continue;
        }
        looked.insert(id.to_owned());
        if let Some(v) = checks
            .subscriptions
            .get(&checks.ctx.store, id, "subscription")
            .await?
        {
            found.insert(id.to_owned(), v);
        }
    }
    Ok(found)
}

/// The subscriptions a batch names, all from the cache with the ETags they were read at,
/// without asking the store; `None` when one is not cached (or could not be looked up at
/// all), and the batch takes [`lookup_subscriptions`].
fn cached_subscriptions(
    cache: &RecordCache<SubscriptionRecord>,
    items: &[ChangeNotification],
) -> Option<(Subscriptions, Unchanged)> {
    let mut found = HashMap::new();
    let mut unchanged = Vec::new();
    for item in items {
        let id = item.subscription_id.as_str();
        if found.contains_key(id) {
            continue;
        }
        if found.len() >= MAX_SUBSCRIPTIONS_PER_BATCH || id.is_empty() || loggable_id(id) != id {
            return None;
        }
        let (etag, record) = cache.known(id, "subscription")?;
        unchanged.push((
            Table::Subscriptions,
            id.to_owned(),
            "subscription".to_owned(),
            etag,
        ));
        found.insert(id.to_owned(), record);
    }
    Some((found, unchanged))
}

/// Step 3: subscription, clientState, tenant. The items to open (by index, with their
/// record: a tenant-mode one lists 650 users, so no copy) and the ones refused.
#[expect(
    clippy::type_complexity,
    reason = "the two halves of one answer, each named where it is built and taken apart"
)]
fn match_subscriptions(
    items: &[ChangeNotification],
    subs: &Subscriptions,
) -> (
    Vec<(usize, Arc<SubscriptionRecord>)>,
    Vec<(String, Rejection)>,
) {
    let mut to_open = Vec::new();
    let mut refused = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let sub = subs.get(&item.subscription_id);
        let checked = notification::check_subscription(
            item.client_state.as_ref(),
            item.tenant_id.as_deref(),
            sub.map(|s| &**s),
        );
        match (checked, sub) {
            (Ok(_), Some(sub)) => to_open.push((i, sub.clone())),
            (Ok(_), None) => {
                refused.push((item.subscription_id.clone(), Rejection::UnknownSubscription))
            }
            (Err(r), _) => refused.push((item.subscription_id.clone(), r)),
        }
    }
    (to_open, refused)
}

/// Step 4: RSA unwrap, HMAC, AES. One item (a quarter of a millisecond) is opened right
/// here: the trip to the blocking pool and back cost a tenth of that again. More go to the
/// blocking pool, so a batch never holds up the async workers for long.
async fn open_items(
    checks: Checks<'_>,
    items: &Arc<Vec<ChangeNotification>>,
    to_open: Vec<(usize, Arc<SubscriptionRecord>)>,
    now: DateTime<Utc>,
) -> Result<(Vec<Observation>, Vec<(String, Rejection)>), DeliverAgain> {
    let keys = checks.ctx.notification_keys.clone();
    let all = items.clone();
    let open_all = move |to_open: Vec<(usize, Arc<SubscriptionRecord>)>| {
        to_open
            .into_iter()
            .map(|(i, sub)| (i, notification::open(&all[i], &*sub, &keys, now)))
            .collect::<Vec<_>>()
    };
    let opened = if to_open.len() <= OPEN_INLINE {
        open_all(to_open)
    } else {
        tokio::task::spawn_blocking(move || open_all(to_open))
            .await
            .map_err(DeliverAgain::Decryption)?
    };
    let mut observations = Vec::with_capacity(opened.len());
    let mut refused = Vec::new();
    for (i, r) in opened {
        match r {
            Ok(o) => observations.push(o),
            Err(reason) => refused.push((items[i].subscription_id.clone(), reason)),
        }
    }
    Ok((observations, refused))
}

/// What step 5 came to.
enum Recorded {
    /// A cached subscription changed since it was read: the batch is checked again.
    Stale,
    /// Recorded (and published where something changed).
    Done(Tally),
}

/// Step 5: record and publish, in batch order (two changes of one user stay ordered).
async fn record(
    checks: Checks<'_>,
    outbox: Option<&Outbox>,
    unchanged: Unchanged,
    observations: Vec<Observation>,
    mut tally: Tally,
) -> Result<Recorded, DeliverAgain> {
    tally.accepted = observations.len();
    if observations.is_empty() {
        return Ok(Recorded::Done(tally));
    }
    let user_ids: Vec<String> = observations.iter().map(|o| o.user_id.clone()).collect();
    let ctx = checks.ctx;
    let results = match pipeline::record_and_publish_batch(
        &ctx.store,
        &ctx.publisher,
        outbox,
        unchanged,
        observations,
    )
    .await
    {
        Ok(BatchOutcome::Done(results)) => results,
        Ok(BatchOutcome::Stale) => return Ok(Recorded::Stale),
        Err(error) => {
            return Err(DeliverAgain::Record {
                tally,
                users: Vec::new(),
                error,
            })
        }
    };
    let mut failed: Option<(Vec<String>, StoreError)> = None;
    for (user_id, r) in user_ids.into_iter().zip(results) {
        match r {
            Ok(Outcome::Published) => tally.published += 1,
            Ok(Outcome::NothingNew) => {}
            Err(PipelineError::Store(e)) => match &mut failed {
                Some((users, _)) => users.push(user_id),
                None => failed = Some((vec![user_id], e)),
            },
            Err(PipelineError::Publish(_)) => tally.unpublished.push(user_id),
        }
    }
    match failed {
        None => Ok(Recorded::Done(tally)),
        Some((users, error)) => Err(DeliverAgain::Record {
            tally,
            users,
            error,
        }),
    }
}

/// What became of a lifecycle batch (answered 202).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LifecycleTally {
    /// Items in the batch.
    pub items: usize,
    /// Events recorded for subscription management.
    pub recorded: usize,
    /// Items turned away, with the subscription they named and why.
    pub rejected: Vec<(String, Rejection)>,
}

/// A lifecycle batch: parse, then per item subscription, clientState and tenant (a missing
/// tenant means the subscription's own: the tenant is not a secret here, clientState is),
/// a known event, and the mark recorded ([`crate::engine::lifecycle::on_lifecycle_event`]).
/// Lifecycle batches carry no validation tokens.
#[tracing::instrument(name = "lifecycle", skip_all)]
pub async fn accept_lifecycle(
    checks: Checks<'_>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<LifecycleTally, NotAccepted> {
    let batch = notification::parse_batch::<LifecycleNotification>(body)?;
    let mut tally = LifecycleTally {
        items: batch.items.len(),
        ..LifecycleTally::default()
    };
    let items: Vec<LifecycleNotification> = batch
        .items
        .into_iter()
        .filter_map(|i| i.map_err(|r| tally.rejected.push((String::new(), r))).ok())
        .collect();
    let subs = lookup_subscriptions(checks, items.iter().map(|i| i.subscription_id.as_str()))
        .await
        .map_err(DeliverAgain::Subscriptions)?;
    for item in &items {
        let sub = subs.get(&item.subscription_id).map(|s| &**s);
        let tenant = item
            .tenant_id
            .as_deref()
            .or(sub.map(|s| s.tenant_id.as_str()));
        let checked = notification::check_subscription(item.client_state.as_ref(), tenant, sub)
            .and_then(|_| item.event());
        let (Some(sub), Ok(event)) = (sub, checked) else {
            let reason = checked.err().unwrap_or(Rejection::UnknownSubscription);
            tally.rejected.push((item.subscription_id.clone(), reason));
            continue;
        };
        crate::engine::lifecycle::on_lifecycle_event(&checks.ctx.store, sub, event, now)
            .await
            .map_err(DeliverAgain::Lifecycle)?;
        tally.recorded += 1;
    }
    Ok(tally)
}
