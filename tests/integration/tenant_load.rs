//! Tenant mode under load: 10,000 followed users against a fake Graph that throttles as
//! Graph does (1,500 presence requests per 30 s per app per tenant, on the same clock the
//! poller is given). The poller's per-tenant budget must keep every request under the
//! limit, also while the PBX sync's Graph calls take from the same budget: zero 429s.

use chrono::{DateTime, Duration, TimeZone, Utc};

use teams_presence::http::state::{AppState, Mode};
use teams_presence::store::{sqlite::SqliteStore, Store};

use crate::fakes::entra::FakeEntra;
use crate::fakes::graph::{FakeGraph, RateLimit};
use crate::support;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

fn set_clock(graph: &FakeGraph, now: DateTime<Utc>) {
    graph
        .state
        .lock()
        .unwrap()
        .rate_limit
        .as_mut()
        .unwrap()
        .clock = now;
}

#[tokio::test]
async fn a_tenant_tick_for_10000_users_and_pbx_writes_sharing_the_budget_provoke_no_429() {
    support::init_logging();
    let graph = FakeGraph::start().await;
    let entra = FakeEntra::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(SqliteStore::open(&dir.path().join("load.sqlite3")).unwrap());
    let ids: Vec<String> = (0..10_000).map(|i| format!("user-{i:05}")).collect();
    let list = ids.join(",");
    let mut pairs = support::cloud_pairs(TENANT, &entra.url, &graph.url);
    pairs.extend([
        // As often as the setting allows: every tick wants all 16 batches.
        ("POLL_INTERVAL", "1"),
        ("TENANT_USERS", list.as_str()),
    ]);
    let settings = support::settings(&pairs);
    let app = AppState::new(settings, store, Mode::Handler);
    for id in &ids {
        graph.set(id, "Available", "Available");
    }
    graph.state.lock().unwrap().rate_limit = Some(RateLimit::graph(t0()));

    // One tick: 10,000 users are 16 batch calls (15 of 650 and one of 250).
    let r = app.poller.tick(&app, None, t0()).await;
    assert_eq!(
        (r.calls, r.polled, r.deferred, r.failed),
        (16, 10_000, 0, 0),
        "{r:?}"
    );
    {
        let s = graph.state.lock().unwrap();
        let mut sizes: Vec<usize> = s.calls.iter().map(|(_, ids)| ids.len()).collect();
        sizes.sort();
        assert_eq!(sizes[0], 250);
        assert!(sizes[1..].iter().all(|n| *n == 650));
        assert_eq!(s.rate_limit.as_ref().unwrap().provoked, 0);
    }

    // Then 40 s (past the end of the first window), one tick a second, with the PBX sync wanting 80 Graph calls a second
    // beside it (its writes and read-backs take a slot from the same budget before each
    // call, as engine::pbx does). Together they want far more than Graph allows.
    let http = reqwest::Client::new();
    let url = format!("{}/v1.0/communications/getPresencesByUserId", graph.url);
    let (mut poll_calls, mut pbx_calls, mut pbx_held) = (16, 0, 0);
    for sec in 1..=40 {
        let now = t0() + Duration::seconds(sec);
        set_clock(&graph, now);
        let r = app.poller.tick(&app, None, now).await;
        assert_eq!(r.failed, 0, "{r:?}");
        poll_calls += r.calls;
        for n in 0..80 {
            if !app.poller.take_pbx_budget(TENANT, now) {
                pbx_held += 1;
                continue;
            }
            let resp = http
                .post(&url)
                .bearer_auth("app-1")
                .json(&serde_json::json!({"ids": [ids[(sec as usize * 80 + n) % ids.len()]]}))
                .send()
                .await
                .unwrap();
            assert_eq!(
                resp.status(),
                200,
                "second {sec}: the budget let a 429 through"
            );
            pbx_calls += 1;
        }
    }
    let s = graph.state.lock().unwrap();
    let rl = s.rate_limit.as_ref().unwrap();
    eprintln!(
        "tenant load: {} accepted Graph calls ({poll_calls} poll batches, {pbx_calls} PBX), {pbx_held} PBX calls held back, peak {} in one 30 s window, {} 429s provoked",
        rl.total, rl.peak, rl.provoked
    );
    assert_eq!(rl.provoked, 0, "no 429 provoked");
    assert!(rl.peak <= 1_500);
    assert_eq!(rl.total, poll_calls + pbx_calls);
    // The budget, not luck, kept it under: it was spent and held calls back...
    assert_eq!(rl.peak, 1_500, "the load reached the limit");
    assert!(pbx_held > 0);
    // ...and the poller still got its turns while the PBX sync wanted more than all of it.
    assert!(poll_calls > 16 * 5, "{poll_calls}");
}
