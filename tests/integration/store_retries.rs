//! Issue 13, item 5: a write whose response was lost after Azurite committed it. The Table
//! client retries; the retry meets 409/412 (its own write) and used to be read as a lost
//! race, so the change was dropped. Driven through a proxy that drops one response.

use chrono::{TimeZone, Utc};
use teams_presence::core::presence::{Observation, Presence, Source};
use teams_presence::engine::pipeline;
use teams_presence::store::table::TableStore;
use teams_presence::store::{Store, Table};

use crate::fakes::table_proxy::{upstream_of, TableProxy};
use crate::support;

fn observation(user: &str, av: &str, secs: i64) -> Observation {
    Observation {
        user_id: user.into(),
        tenant_id: "tenant".into(),
        presence: Presence::new(av, av),
        source: Source::Poll,
        observed_at: Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap(),
        graph_sequence: None,
        item_digest: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_write_committed_but_unanswered_is_not_read_as_a_lost_race() {
    let az = support::azurite();
    let proxy = TableProxy::start(upstream_of(&az.connection_string)).await;
    let store = Store::Table(
        TableStore::from_connection_string(&proxy.connection_string(&az.connection_string).into())
            .unwrap(),
    );
    store.ensure_tables().await.unwrap();
    let user = uuid::Uuid::new_v4().to_string();

    // Insert (POST): committed, answer lost, the retry gets 409.
    proxy.state.lock().unwrap().drop_next = Some("POST".into());
    let first = pipeline::record(&store, &observation(&user, "Busy", 0))
        .await
        .unwrap();
    assert!(
        first.is_some(),
        "the committed insert is a change to publish"
    );

    // Replace (PUT with If-Match): committed, answer lost, the retry gets 412.
    proxy.state.lock().unwrap().drop_next = Some("PUT".into());
    let second = pipeline::record(&store, &observation(&user, "Away", 10))
        .await
        .unwrap();
    assert!(
        second.is_some(),
        "the committed replace is a change to publish"
    );
    assert!(
        proxy.count("PUT", Table::Presence.name()) >= 2,
        "it was retried"
    );

    // Delete: committed, answer lost, the retry gets 404: still a success.
    proxy.state.lock().unwrap().drop_next = Some("DELETE".into());
    store
        .delete_entity(Table::Presence, &user, "presence", None)
        .await
        .unwrap();
}
