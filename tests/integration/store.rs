//! One conformance suite for both store backends: SQLite and Azure Table Storage (against
//! Azurite, the real emulator, started by `support::azurite`). Every test uses fresh
//! partition keys, so the shared Azurite tables never make tests depend on each other.

use chrono::{TimeZone, Utc};
use serde_json::json;
use teams_presence::core::message::TopicMessage;
use teams_presence::core::presence::{Observation, Presence, Source};
use teams_presence::engine::pipeline;
use teams_presence::store::sqlite::SqliteStore;
use teams_presence::store::table::TableStore;
use teams_presence::store::{PresenceRecord, Store, StoreError, Table, UserRecord, UserState};

use crate::support;

fn sqlite_store() -> Store {
    let dir = tempfile::tempdir().unwrap().keep();
    Store::Sqlite(SqliteStore::open(&dir.join("t.sqlite3")).unwrap())
}

async fn azurite_store() -> Store {
    let az = support::azurite();
    let store = Store::Table(
        TableStore::from_connection_string(&az.connection_string.clone().into()).unwrap(),
    );
    store.ensure_tables().await.unwrap();
    // Idempotent: a second call sees 409 TableAlreadyExists and is fine with it.
    store.ensure_tables().await.unwrap();
    store
}

fn key() -> String {
    uuid::Uuid::new_v4().to_string()
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::sqlite_store()).await
                }
            )*
        }
        mod azurite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::azurite_store().await).await
                }
            )*
        }
    };
}

conformance!(
    insert_then_get_returns_the_document_and_a_second_insert_conflicts,
    replace_succeeds_with_the_current_etag_and_fails_with_a_stale_one,
    upsert_creates_and_replaces_without_a_precondition,
    delete_honours_the_etag_and_reports_missing_rows,
    scan_of_a_partition_follows_continuations_past_one_page,
    two_writers_racing_on_one_row_one_wins_one_gets_412,
    typed_records_round_trip_with_keys_that_need_escaping,
    racing_identical_observations_publish_exactly_once,
    racing_different_observations_never_lose_an_update,
    a_batch_is_recorded_in_order_and_stays_pending_until_confirmed,
    a_cached_record_is_revalidated_on_every_read,
    the_confirmer_clears_the_marks_of_many_hand_offs_together,
    a_guard_is_claimed_once_until_it_expires_and_racing_claimants_get_it_once,
    a_rate_guard_allows_its_burst_then_one_per_interval_across_racing_takers,
    purging_guards_removes_only_the_expired_ones,
    a_tenant_mode_subscription_of_650_users_round_trips,
    scan_where_finds_the_pending_and_the_recent_presence_rows,
    scan_as_reads_every_row_of_a_table,
);

async fn insert_then_get_returns_the_document_and_a_second_insert_conflicts(s: Store) {
    let pk = key();
    assert!(s.get_entity(Table::Meta, &pk, "r").await.unwrap().is_none());
    let etag = s
        .insert_entity(Table::Meta, &pk, "r", &json!({"a": 1, "b": "x"}))
        .await
        .unwrap();
    let e = s.get_entity(Table::Meta, &pk, "r").await.unwrap().unwrap();
    assert_eq!(e.data, json!({"a": 1, "b": "x"}));
    assert_eq!(e.etag, etag);
    assert!(matches!(
        s.insert_entity(Table::Meta, &pk, "r", &json!({})).await,
        Err(StoreError::Conflict)
    ));
    // The loser's insert changed nothing.
    assert_eq!(
        s.get_entity(Table::Meta, &pk, "r")
            .await
            .unwrap()
            .unwrap()
            .data,
        json!({"a": 1, "b": "x"})
    );
}

async fn replace_succeeds_with_the_current_etag_and_fails_with_a_stale_one(s: Store) {
    let pk = key();
    let e1 = s
        .insert_entity(Table::Meta, &pk, "r", &json!({"v": 1}))
        .await
        .unwrap();
    let e2 = s
        .replace_entity(Table::Meta, &pk, "r", &json!({"v": 2}), &e1)
        .await
        .unwrap();
    assert_ne!(e1, e2);
    assert!(matches!(
        s.replace_entity(Table::Meta, &pk, "r", &json!({"v": 3}), &e1)
            .await,
        Err(StoreError::PreconditionFailed)
    ));
    assert_eq!(
        s.get_entity(Table::Meta, &pk, "r")
            .await
            .unwrap()
            .unwrap()
            .data,
        json!({"v": 2})
    );
    assert!(matches!(
        s.replace_entity(Table::Meta, &key(), "r", &json!({}), &e2)
            .await,
        Err(StoreError::NotFound)
    ));
}

async fn upsert_creates_and_replaces_without_a_precondition(s: Store) {
    let pk = key();
    let e1 = s
        .upsert_entity(Table::Meta, &pk, "r", &json!({"v": 1}))
        .await
        .unwrap();
    let e2 = s
        .upsert_entity(Table::Meta, &pk, "r", &json!({"v": 2}))
        .await
        .unwrap();
    assert_ne!(e1, e2);
    let got = s.get_entity(Table::Meta, &pk, "r").await.unwrap().unwrap();
    assert_eq!((got.data, got.etag), (json!({"v": 2}), e2));
}

async fn delete_honours_the_etag_and_reports_missing_rows(s: Store) {
    let pk = key();
    let e1 = s
        .insert_entity(Table::Meta, &pk, "r", &json!({"v": 1}))
        .await
        .unwrap();
    let e2 = s
        .replace_entity(Table::Meta, &pk, "r", &json!({"v": 2}), &e1)
        .await
        .unwrap();
    assert!(matches!(
        s.delete_entity(Table::Meta, &pk, "r", Some(&e1)).await,
        Err(StoreError::PreconditionFailed)
    ));
    s.delete_entity(Table::Meta, &pk, "r", Some(&e2))
        .await
        .unwrap();
    assert!(s.get_entity(Table::Meta, &pk, "r").await.unwrap().is_none());
    assert!(matches!(
        s.delete_entity(Table::Meta, &pk, "r", None).await,
        Err(StoreError::NotFound)
    ));
    // Re-created row: the old ETag must not match it.
    s.insert_entity(Table::Meta, &pk, "r", &json!({"v": 3}))
        .await
        .unwrap();
    assert!(matches!(
        s.delete_entity(Table::Meta, &pk, "r", Some(&e2)).await,
        Err(StoreError::PreconditionFailed)
    ));
}

async fn scan_of_a_partition_follows_continuations_past_one_page(s: Store) {
    // Table Storage returns at most 1,000 entities a page.
    let pk = key();
    let n = 1_050usize;
    let mut tasks = tokio::task::JoinSet::new();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    for i in 0..n {
        let (s, pk, sem) = (s.clone(), pk.clone(), sem.clone());
        tasks.spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            s.insert_entity(Table::Meta, &pk, &format!("{i:05}"), &json!({"i": i}))
                .await
                .unwrap();
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    // Another partition must not leak into the scan.
    s.insert_entity(Table::Meta, &key(), "00000", &json!({"other": true}))
        .await
        .unwrap();
    let all = s.scan_entities(Table::Meta, Some(&pk)).await.unwrap();
    assert_eq!(all.len(), n);
    let rks: Vec<_> = all.iter().map(|e| e.rk.clone()).collect();
    let mut sorted = rks.clone();
    sorted.sort();
    assert_eq!(rks, sorted, "key order");
    assert_eq!(all[1_049].data, json!({"i": 1_049}));
}

async fn two_writers_racing_on_one_row_one_wins_one_gets_412(s: Store) {
    let pk = key();
    let base = s
        .insert_entity(Table::Meta, &pk, "r", &json!({"v": 0}))
        .await
        .unwrap();
    let (va, vb) = (json!({"v": "a"}), json!({"v": "b"}));
    let (a, b) = tokio::join!(
        s.replace_entity(Table::Meta, &pk, "r", &va, &base),
        s.replace_entity(Table::Meta, &pk, "r", &vb, &base),
    );
    let wins = [a.is_ok(), b.is_ok()];
    assert_eq!(
        wins.iter().filter(|w| **w).count(),
        1,
        "exactly one writer wins: {a:?} {b:?}"
    );
    let loser = if a.is_ok() { b } else { a };
    assert!(matches!(loser, Err(StoreError::PreconditionFailed)));
    let final_v = s
        .get_entity(Table::Meta, &pk, "r")
        .await
        .unwrap()
        .unwrap()
        .data;
    assert_eq!(final_v["v"], if wins[0] { "a" } else { "b" });
}

async fn typed_records_round_trip_with_keys_that_need_escaping(s: Store) {
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 1, 0, 0).unwrap();
    let user = UserRecord {
        user_id: format!("o'brien/{}?#%", key()),
        tenant_id: "t".into(),
        upn: "o'brien@example.com".into(),
        display_name: "Ó Briain".into(),
        state: UserState::SignInRequired {
            reason: "AADSTS700082".into(),
            since: now,
            announced: false,
        },
        refresh_token_sealed: Some("v1.k.n.c".into()),
        refresh_token_updated_at: Some(now),
        created_at: now,
        updated_at: now,
    };
    let etag = s.insert(&user).await.unwrap();
    let got = s
        .get::<UserRecord>(&user.user_id, "user")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.value, user);
    assert_eq!(got.etag, etag);
    assert!(s
        .list::<UserRecord>()
        .await
        .unwrap()
        .iter()
        .any(|u| u.value == user));
}

fn observation(user: &str, av: &str, ac: &str, secs: i64) -> Observation {
    Observation {
        user_id: user.into(),
        tenant_id: "tenant".into(),
        presence: Presence::new(av, ac),
        source: Source::Poll,
        observed_at: Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap(),
        graph_sequence: None,
        item_digest: None,
    }
}

async fn racing_identical_observations_publish_exactly_once(s: Store) {
    let user = key();
    let obs = observation(&user, "Busy", "InACall", 10);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (s, obs) = (s.clone(), obs.clone());
        tasks.spawn(async move { pipeline::record(&s, &obs).await.unwrap() });
    }
    let mut published = 0;
    while let Some(r) = tasks.join_next().await {
        published += usize::from(r.unwrap().is_some());
    }
    assert_eq!(published, 1);
}

async fn racing_different_observations_never_lose_an_update(s: Store) {
    let user = key();
    pipeline::record(&s, &observation(&user, "Available", "Available", 0))
        .await
        .unwrap();
    // A poll and a notification with different presences race.
    let poll = observation(&user, "Busy", "InAMeeting", 5);
    let mut notif = observation(&user, "Busy", "InACall", 6);
    notif.source = Source::Notification;
    let (a, b) = tokio::join!(pipeline::record(&s, &poll), pipeline::record(&s, &notif));
    let (a, b) = (a.unwrap(), b.unwrap());
    let stored = s
        .get::<PresenceRecord>(&user, "presence")
        .await
        .unwrap()
        .unwrap()
        .value;
    // The newest observation always ends up stored, whatever the interleaving.
    assert_eq!(stored.last.presence, notif.presence);
    // The notification always publishes; the poll publishes only if it got in first.
    let b = b.expect("newest observation publishes");
    if let Some(a) = a {
        assert_eq!(b.previous, Some(a.presence.clone()));
        assert!(b.sequence > a.sequence);
    }
}

async fn a_batch_is_recorded_in_order_and_stays_pending_until_confirmed(s: Store) {
    let (a, b) = (key(), key());
    let batch = vec![
        observation(&a, "Busy", "InACall", 10),
        observation(&b, "Away", "Away", 10),
        observation(&a, "Available", "Available", 20),
        // The same again: nothing new.
        observation(&b, "Away", "Away", 10),
    ];
    let msgs: Vec<_> = pipeline::record_batch(&s, batch)
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(msgs[..3].iter().all(Option::is_some));
    assert!(msgs[3].is_none());
    // Two changes of one user in one batch are decided one after the other.
    assert_eq!(
        msgs[2].as_ref().unwrap().previous,
        Some(Presence::new("Busy", "InACall"))
    );
    let stored = |user: String| {
        let s = s.clone();
        async move {
            s.get::<PresenceRecord>(&user, "presence")
                .await
                .unwrap()
                .unwrap()
                .value
        }
    };
    let a_now = stored(a.clone()).await;
    assert_eq!(a_now.last.presence, Presence::new("Available", "Available"));
    assert!(a_now.pending_publish.is_some());
    assert!(stored(b.clone()).await.pending_publish.is_some());

    let topic: Vec<TopicMessage> = msgs
        .into_iter()
        .flatten()
        .map(TopicMessage::PresenceChanged)
        .collect();
    // Confirming the older change of `a` leaves the newer one's mark alone.
    pipeline::confirm_all(&s, &topic[..1]).await;
    assert!(stored(a.clone()).await.pending_publish.is_some());
    pipeline::confirm_all(&s, &topic).await;
    assert!(stored(a).await.pending_publish.is_none());
    assert!(stored(b).await.pending_publish.is_none());
}

async fn the_confirmer_clears_the_marks_of_many_hand_offs_together(s: Store) {
    let users: Vec<String> = (0..5).map(|_| key()).collect();
    let confirmer = pipeline::Confirmer::new(s.clone());
    let mut handed_off = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let msg = pipeline::record(&s, &observation(u, "Busy", "InACall", 10 + i as i64))
            .await
            .unwrap()
            .unwrap();
        handed_off.push(TopicMessage::PresenceChanged(msg));
    }
    // The last user changes again before its first change is confirmed.
    let newer = pipeline::record(&s, &observation(&users[4], "Away", "Away", 30))
        .await
        .unwrap()
        .unwrap();
    for m in &handed_off {
        confirmer.confirm(std::slice::from_ref(m)).await;
    }
    confirmer.flush().await;
    for u in &users[..4] {
        let rec = s
            .get::<PresenceRecord>(u, "presence")
            .await
            .unwrap()
            .unwrap();
        assert!(rec.value.pending_publish.is_none(), "{u}");
    }
    // The newer change keeps its own mark until it is handed off in turn.
    let last = |s: Store, u: String| async move {
        s.get::<PresenceRecord>(&u, "presence")
            .await
            .unwrap()
            .unwrap()
            .value
    };
    assert!(last(s.clone(), users[4].clone())
        .await
        .pending_publish
        .is_some());
    confirmer
        .confirm(&[TopicMessage::PresenceChanged(newer)])
        .await;
    confirmer.flush().await;
    assert!(last(s, users[4].clone()).await.pending_publish.is_none());
}

async fn a_cached_record_is_revalidated_on_every_read(s: Store) {
    use teams_presence::store::cache::RecordCache;
    let user = key();
    let cache = RecordCache::<PresenceRecord>::new(8);
    assert!(cache.get(&s, &user, "presence").await.unwrap().is_none());
    pipeline::record(&s, &observation(&user, "Busy", "InACall", 10))
        .await
        .unwrap();
    let first = cache.get(&s, &user, "presence").await.unwrap().unwrap();
    let again = cache.get(&s, &user, "presence").await.unwrap().unwrap();
    // Unchanged: the very record kept, not parsed again.
    assert!(std::sync::Arc::ptr_eq(&first, &again));
    // Changed by another writer: seen on the next read.
    pipeline::record(&s, &observation(&user, "Away", "Away", 20))
        .await
        .unwrap();
    let changed = cache.get(&s, &user, "presence").await.unwrap().unwrap();
    assert_eq!(changed.last.presence, Presence::new("Away", "Away"));
    // Deleted: gone on the next read.
    s.delete::<PresenceRecord>(&user, "presence", None)
        .await
        .unwrap();
    assert!(cache.get(&s, &user, "presence").await.unwrap().is_none());
}

/// A database written by an older version (`WITHOUT ROWID`, the ETag after the document)
/// opens with its rows, ETags and conditional writes intact, in the current layout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_older_column_order_is_migrated_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite3");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE entities (
                 tbl TEXT NOT NULL, pk TEXT NOT NULL, rk TEXT NOT NULL,
                 data TEXT NOT NULL, etag TEXT NOT NULL,
                 PRIMARY KEY (tbl, pk, rk)) WITHOUT ROWID;
             INSERT INTO entities VALUES ('TeamsPresenceUsers', 'u1', 'user', '{\"a\":1}', '\"e1\"');",
        )
        .unwrap();
    }
    // Opens the file and reads the one row back.
    let open_and_read = |path: std::path::PathBuf| async move {
        let s = Store::Sqlite(SqliteStore::open(&path).unwrap());
        let e = s.get_entity(Table::Users, "u1", "user").await.unwrap();
        (s, e.unwrap())
    };
    let (s, e) = open_and_read(path.clone()).await;
    assert_eq!((e.data, e.etag.0.as_str()), (json!({"a": 1}), "\"e1\""));
    let stale = teams_presence::store::Etag("\"e0\"".into());
    assert!(matches!(
        s.replace_entity(Table::Users, "u1", "user", &json!({"a": 2}), &stale)
            .await,
        Err(StoreError::PreconditionFailed)
    ));
    s.replace_entity(Table::Users, "u1", "user", &json!({"a": 2}), &e.etag)
        .await
        .unwrap();
    drop(s);
    let c = rusqlite::Connection::open(&path).unwrap();
    let columns: Vec<String> = c
        .prepare("SELECT name FROM pragma_table_info('entities') ORDER BY cid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(columns, ["tbl", "pk", "rk", "etag", "data"]);
    let sql: String = c
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name='entities'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!sql.contains("WITHOUT ROWID"), "{sql}");
    // Opening again leaves it as it is.
    drop(c);
    let (_, e) = open_and_read(path).await;
    assert_eq!(e.data, json!({"a": 2}));
}

/// `update_each_if` writes only while what the batch was decided against keeps its ETag,
/// checked in the same SQLite transaction; other stores leave such a batch to the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_each_if_writes_only_while_its_dependencies_are_unchanged() {
    let s = sqlite_store();
    let (dep, user) = (key(), key());
    let etag = s
        .insert_entity(Table::Subscriptions, &dep, "subscription", &json!({"v": 1}))
        .await
        .unwrap();
    let record = |s: Store,
                  unchanged: Vec<(Table, String, String, teams_presence::store::Etag)>,
                  secs: i64| {
        let obs = observation(&user, "Busy", "InACall", secs);
        async move {
            pipeline::record_batch_if(&s, unchanged, vec![obs])
                .await
                .unwrap()
        }
    };
    let dep_at = |e: &teams_presence::store::Etag| {
        vec![(
            Table::Subscriptions,
            dep.clone(),
            "subscription".to_owned(),
            e.clone(),
        )]
    };
    assert!(record(s.clone(), dep_at(&etag), 10).await.is_some());
    let moved = s
        .replace_entity(
            Table::Subscriptions,
            &dep,
            "subscription",
            &json!({"v": 2}),
            &etag,
        )
        .await
        .unwrap();
    // Decided against the old version: nothing written.
    let before = s
        .get::<PresenceRecord>(&user, "presence")
        .await
        .unwrap()
        .unwrap();
    assert!(record(s.clone(), dep_at(&etag), 20).await.is_none());
    let after = s
        .get::<PresenceRecord>(&user, "presence")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before.etag, after.etag);
    assert!(record(s.clone(), dep_at(&moved), 20).await.is_some());
    // Gone: nothing written either.
    s.delete_entity(Table::Subscriptions, &dep, "subscription", None)
        .await
        .unwrap();
    assert!(record(s.clone(), dep_at(&moved), 30).await.is_none());

    let table = azurite_store().await;
    assert!(record(table.clone(), dep_at(&moved), 40).await.is_none());
    assert!(record(table, Vec::new(), 40).await.is_some());
}

/// Issue 32: the guards that hold across instances, on both backends.
async fn a_guard_is_claimed_once_until_it_expires_and_racing_claimants_get_it_once(s: Store) {
    use teams_presence::store::guards;
    let now = Utc::now();
    let later = now + chrono::Duration::minutes(10);
    let k = key();
    assert_eq!(
        guards::claim(&s, "test-claim", &k, now, later)
            .await
            .unwrap(),
        guards::Claim::Claimed
    );
    assert_eq!(
        guards::claim(&s, "test-claim", &k, now, later)
            .await
            .unwrap(),
        guards::Claim::AlreadyClaimed
    );
    // Another kind is another guard.
    assert_eq!(
        guards::claim(&s, "test-claim-2", &k, now, later)
            .await
            .unwrap(),
        guards::Claim::Claimed
    );
    // Past its expiry the key can be claimed again, once.
    let after = later + chrono::Duration::seconds(1);
    let until = after + chrono::Duration::minutes(10);
    assert_eq!(
        guards::claim(&s, "test-claim", &k, after, until)
            .await
            .unwrap(),
        guards::Claim::Claimed
    );
    assert_eq!(
        guards::claim(&s, "test-claim", &k, after, until)
            .await
            .unwrap(),
        guards::Claim::AlreadyClaimed
    );
    // Eight claimants at once, on a fresh key and on an expired one: one wins each.
    for (k, at) in [(key(), now), (k, until + chrono::Duration::seconds(1))] {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (s, k) = (s.clone(), k.clone());
                tokio::spawn(async move {
                    guards::claim(&s, "test-claim", &k, at, at + chrono::Duration::minutes(1))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            won += usize::from(t.await.unwrap() == guards::Claim::Claimed);
        }
        assert_eq!(won, 1);
    }
}

async fn a_rate_guard_allows_its_burst_then_one_per_interval_across_racing_takers(s: Store) {
    use teams_presence::core::rate::Rate;
    use teams_presence::store::guards;
    let rate = Rate {
        per_minute: 10,
        burst: 10,
    };
    let now = Utc::now();
    let k = key();
    // 30 takers at once: exactly the burst passes.
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let (s, k) = (s.clone(), k.clone());
            tokio::spawn(async move { guards::take(&s, "test-rate", &k, rate, now).await })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        allowed += usize::from(t.await.unwrap().unwrap() == guards::Take::Allowed);
    }
    assert_eq!(allowed, 10);
    let at = |secs| now + chrono::Duration::seconds(secs);
    assert_eq!(
        guards::take(&s, "test-rate", &k, rate, at(5))
            .await
            .unwrap(),
        guards::Take::Refused
    );
    assert_eq!(
        guards::take(&s, "test-rate", &k, rate, at(6))
            .await
            .unwrap(),
        guards::Take::Allowed
    );
    assert_eq!(
        guards::take(&s, "test-rate", &k, rate, at(6))
            .await
            .unwrap(),
        guards::Take::Refused
    );
    // Another key has its own burst.
    assert_eq!(
        guards::take(&s, "test-rate", &key(), rate, now)
            .await
            .unwrap(),
        guards::Take::Allowed
    );
}

async fn purging_guards_removes_only_the_expired_ones(s: Store) {
    use teams_presence::store::guards::{self, GuardRecord};
    // Expired in the past by the real clock, so a purge at the real time (the shared Azurite
    // serves other tests too) takes only rows that have really expired.
    let now = Utc::now();
    let (gone, kept) = (key(), key());
    let past = now - chrono::Duration::minutes(1);
    assert_eq!(
        guards::claim(
            &s,
            "test-purge",
            &gone,
            past - chrono::Duration::minutes(1),
            past
        )
        .await
        .unwrap(),
        guards::Claim::Claimed
    );
    assert_eq!(
        guards::claim(
            &s,
            "test-purge",
            &kept,
            now,
            now + chrono::Duration::minutes(5)
        )
        .await
        .unwrap(),
        guards::Claim::Claimed
    );
    let purged = guards::purge(&s, now).await.unwrap();
    assert!(purged >= 1, "{purged}");
    assert!(s
        .get::<GuardRecord>("test-purge", &gone)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .get::<GuardRecord>("test-purge", &kept)
        .await
        .unwrap()
        .is_some());
}

/// Issue 32: a Table Storage client decides a write on what it last read or wrote (no read
/// first); another process (another client on the same account) that wrote since makes
/// that write fail, and it reads again. Deciding to write nothing takes a fresh read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_remembers_an_older_version_decides_again_on_the_current_one() {
    let (a, b) = (azurite_store().await, azurite_store().await);
    let user = key();
    let msg = pipeline::record(&a, &observation(&user, "Busy", "Busy", 0)).await;
    assert!(msg.unwrap().is_some());
    // B moves the user on; A still remembers Busy.
    assert!(
        pipeline::record(&b, &observation(&user, "Away", "Away", 10))
            .await
            .unwrap()
            .is_some()
    );
    // Busy again is a change against the store's Away, though A's memory says Busy.
    let again = pipeline::record(&a, &observation(&user, "Busy", "Busy", 20))
        .await
        .unwrap()
        .expect("a change against the current record");
    assert_eq!(again.previous, Some(Presence::new("Away", "Away")));
    // And a change A decides on its memory of its own write meets B's write: read again.
    assert!(
        pipeline::record(&b, &observation(&user, "Available", "Available", 30))
            .await
            .unwrap()
            .is_some()
    );
    let last = pipeline::record(&a, &observation(&user, "Away", "Away", 40))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last.previous, Some(Presence::new("Available", "Available")));
}

/// Issue 32: a tenant-mode subscription (650 ids, and a resource naming them all) is more
/// than Table Storage takes in one property (64 KiB); it was refused with
/// `PropertyValueTooLarge`, so no tenant-mode subscription could be kept in the cloud.
async fn a_tenant_mode_subscription_of_650_users_round_trips(s: Store) {
    use teams_presence::store::SubscriptionRecord;
    let ids: Vec<String> = (0..650).map(|_| key()).collect();
    let quoted: Vec<String> = ids.iter().map(|i| format!("'{i}'")).collect();
    let now = Utc::now();
    let rec = SubscriptionRecord {
        subscription_id: key(),
        user_ids: ids.clone(),
        tenant_id: "tenant".into(),
        owner_user_id: ids[0].clone(),
        resource: format!(
            "/communications/presences?$filter=id in ({})",
            quoted.join(",")
        ),
        client_state_sha256: "00".repeat(32),
        expires_at: now,
        created_at: now,
        certificate_id: String::new(),
    };
    let etag = s.insert(&rec).await.unwrap();
    let got = s
        .get::<SubscriptionRecord>(&rec.subscription_id, "subscription")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.value, rec);
    // Replaced by a smaller one and read back whole (no piece of the longer one left).
    let smaller = SubscriptionRecord {
        user_ids: ids[..3].to_vec(),
        resource: "/communications/presences?$filter=id in ('a')".into(),
        ..rec.clone()
    };
    s.replace(&smaller, &etag).await.unwrap();
    let listed: Vec<_> = s
        .list::<SubscriptionRecord>()
        .await
        .unwrap()
        .into_iter()
        .filter(|v| v.value.subscription_id == rec.subscription_id)
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].value, smaller);
}

/// Issue 32: the re-send reads only the rows that can qualify (Table Storage filters on the
/// index properties), the first time a whole table (rows from before the properties).
async fn scan_where_finds_the_pending_and_the_recent_presence_rows(s: Store) {
    use teams_presence::store::Bound;
    let (pending, recent, old) = (key(), key(), key());
    let at = |secs: i64| Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap();
    let record = |user: &str, observed, pending_since: Option<chrono::DateTime<Utc>>| {
        let mut r = PresenceRecord {
            user_id: user.into(),
            tenant_id: "t".into(),
            last: teams_presence::core::presence::LastKnown {
                presence: Presence::new("Busy", "Busy"),
                sequence: "1".into(),
                observed_at: observed,
                graph_sequence: None,
                source: Source::Poll,
                applied_items: Vec::new(),
            },
            pending_publish: None,
        };
        r.pending_publish = pending_since.map(|since| teams_presence::store::PendingPublish {
            since,
            previous: None,
        });
        r
    };
    s.insert(&record(&pending, at(0), Some(at(0))))
        .await
        .unwrap();
    s.insert(&record(&recent, at(100), None)).await.unwrap();
    s.insert(&record(&old, at(0), None)).await.unwrap();
    let wanted = [
        Bound::AtMost("PendingSince", at(10)),
        Bound::AtLeast("ObservedAt", at(50)),
    ];
    // Twice: until a marker says it was done once, a query reads the table whole.
    for round in 0..2 {
        let found: Vec<String> = s
            .scan_where(Table::Presence, &wanted)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.pk)
            .collect();
        assert!(
            found.contains(&pending) && found.contains(&recent),
            "round {round}"
        );
        assert!(!found.contains(&old), "round {round}");
    }
    let only_pending = s
        .scan_where(Table::Presence, &[Bound::AtMost("PendingSince", at(10))])
        .await
        .unwrap();
    assert!(!only_pending.iter().any(|e| e.pk == recent));
}

async fn scan_as_reads_every_row_of_a_table(s: Store) {
    use std::collections::HashMap;
    // Keys starting with every hex digit and beyond (Table Storage reads key ranges).
    let keys: Vec<String> = "0123456789abcdefABCZz~"
        .chars()
        .map(|c| format!("{c}{}", key()))
        .collect();
    for k in &keys {
        s.insert_entity(Table::Meta, k, "r", &json!({"n": k}))
            .await
            .unwrap();
    }
    let all: HashMap<String, serde_json::Value> = s.scan_as(Table::Meta).await.unwrap();
    for k in &keys {
        assert_eq!(all.get(k), Some(&json!({"n": k})), "{k}");
    }
}
