//! One `presence-refresh` tick for 10,000 tenant-mode users against a loopback fake Graph
//! that takes 50 ms per call (docs/performance.md). 10,000 ids are 16 calls of at most 650;
//! with `POLL_CONCURRENCY` 8 the ideal is ceil(16 / 8) × 50 ms = 100 ms of Graph time, plus
//! reading (and, on the first tick, writing) 10,000 presence rows.
//!
//! `cargo bench --bench poll_tick`

use std::time::Duration;

use criterion::{criterion_main, Criterion};

use test_fakes::entra;
use test_fakes::graph;

use teams_presence::config::{Settings, Sources};
use teams_presence::http::state::{AppState, Mode};
use teams_presence::store::{sqlite::SqliteStore, Store};

const USERS: usize = 10_000;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (app, fake) = rt.block_on(async {
        let g = graph::FakeGraph::start().await;
        let e = entra::FakeEntra::start().await;
        let ids: Vec<String> = (0..USERS)
            .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
            .collect();
        for id in &ids {
            g.set(id, "Available", "Available");
        }
        g.state.lock().unwrap().latency = Duration::from_millis(50);
        let map = [
            ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
            ("AZURE_CLIENT_SECRET", "bench"),
            ("AZURE_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
            ("AZURE_AUTHORITY_HOST", e.url.as_str()),
            ("GRAPH_ENDPOINT", g.url.as_str()),
            ("POLL_CONCURRENCY", "8"),
            ("TENANT_USERS", ids.join(",").as_str()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let settings = Settings::parse(&Sources::from_map(map)).unwrap();
        let store = Store::Sqlite(SqliteStore::open(&dir.path().join("bench.sqlite3")).unwrap());
        let app = AppState::new(settings, store, Mode::Serve);
        let _rx = app.publisher.subscribe();
        // The first tick stores everyone (10,000 inserts); later ticks see no change.
        let first = std::time::Instant::now();
        let r = app.poller.tick(&app, None, chrono::Utc::now()).await;
        println!(
            "first tick (10,000 inserts): {:?}, {} calls, {} users",
            first.elapsed(),
            r.calls,
            r.polled
        );
        std::mem::forget(_rx);
        (app, g)
    });
    let mut group = c.benchmark_group("poll_tick");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("10000_tenant_users_50ms_graph", |b| {
        b.iter(|| {
            rt.block_on(async {
                // A fresh poller each time: every user is due, no backoff state.
                let poller = teams_presence::engine::poller::Poller::new(app.graph.clone());
                let r = poller.tick(&app, None, chrono::Utc::now()).await;
                assert_eq!(r.calls, 16);
            })
        })
    });
    group.finish();
    drop(fake);
}

/// In a module of its own: `criterion_group!` defines an undocumented `pub fn`.
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
