//! The guards of the routes anyone can reach, kept in the store so they hold across
//! instances: Flex Consumption runs as many handler instances as load asks for, and a guard
//! in one process's memory would be one guard per instance.
//!
//! | guard | store rows | round trips on Table Storage |
//! |---|---|---|
//! | sign-in starts ([`sign_in_start`]): 10 a minute per client, 300 a minute overall | one rate row per client (a digest of its address, never the address) and one overall | refused by the client's limit: 1 read; allowed: 2 reads and 2 conditional writes |
//! | `POST /api/pbx/events` bodies ([`accept_pbx_events`]): each accepted once | one row per accepted body (its SHA-256), until no replay of it could be fresh | a new body: 1 insert; a replay: the insert and 1 read |
//!
//! Change notifications need no row of their own: the item's digest is written into the
//! user's presence record in the very write that applies it, or, for an item without a
//! sequence number that changed nothing, in a write of its own
//! (`crate::core::presence::remember_item`), so a replay to any instance finds it there.
//!
//! Every row expires; [`purge_expired`] deletes the expired ones (from the maintenance pass
//! `subscriptions-renew` and `serve`'s minute timer run, through
//! `crate::engine::signins::purge_expired`).

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use crate::clients::pbx::events::{self, AuthHeaders, EventsError, Verified};
use crate::core::pbx::model::PbxEvent;
use crate::core::rate::Rate;
use crate::store::guards::{self, Claim, Take};
use crate::store::{Store, StoreError};

/// Sign-in starts one client may make: 10 at once, then one every six seconds.
pub const START_PER_CLIENT: Rate = Rate {
    per_minute: 10,
    burst: 10,
};

/// Sign-in starts all clients together may make: 300 at once, then five a second. With
/// pending sign-ins living ten minutes, this bounds them at about 3,300 even when spoofed
/// client addresses defeat the per-client limit.
pub const START_OVERALL: Rate = Rate {
    per_minute: 300,
    burst: 300,
};

const SIGN_IN_CLIENT: &str = "signin-client";
const SIGN_IN_ALL: &str = "signin-all";
const PBX_BODY: &str = "pbx-body";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a sign-in may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInStart {
    /// Within both limits: one start taken.
    Allowed,
    /// Over the client's own limit or the overall one: answer 429, nothing taken.
    Limited,
}

/// Takes one sign-in start for `client` (the address the rate limit keys on) at `now`.
/// The client's own limit is asked first, so a client that is over it costs one read and
/// never touches the overall row.
pub async fn sign_in_start(
    store: &Store,
    client: &str,
    now: DateTime<Utc>,
) -> Result<SignInStart, StoreError> {
    // The row names a digest: the store holds no client addresses.
    let key = hex(&Sha256::digest(client.as_bytes())[..16]);
    let allowed = guards::take(store, SIGN_IN_CLIENT, &key, START_PER_CLIENT, now).await?
        == Take::Allowed
        && guards::take(store, SIGN_IN_ALL, "all", START_OVERALL, now).await? == Take::Allowed;
    Ok(if allowed {
        SignInStart::Allowed
    } else {
        SignInStart::Limited
    })
}

/// Why a PBX events request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum PbxEventsError {
    /// Refused for what it is (401 or 400, [`EventsError`]), replays included.
    #[error(transparent)]
    Refused(#[from] EventsError),
    /// The replay guard could not be asked: nothing was accepted, the sender may retry.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Authenticates and parses a `POST /api/pbx/events` request
/// ([`crate::clients::pbx::events::verify`]) and accepts its body once across every instance
/// sharing the store: the body's digest is claimed until no replay of it could be fresh.
pub async fn accept_pbx_events(
    store: &Store,
    headers: AuthHeaders<'_>,
    body: &[u8],
    secret: &SecretString,
    now: DateTime<Utc>,
) -> Result<Vec<PbxEvent>, PbxEventsError> {
    let Verified {
        events,
        digest,
        replayable_until,
    } = events::verify(headers, body, secret, now)?;
    if guards::claim(store, PBX_BODY, &hex(&digest), now, replayable_until).await? == Claim::Claimed
    {
        Ok(events)
    } else {
        Err(events::replayed().into())
    }
}

/// Deletes the guard rows that expired before `now`. Returns how many went.
pub async fn purge_expired(store: &Store, now: DateTime<Utc>) -> Result<usize, StoreError> {
    guards::purge(store, now).await
}
