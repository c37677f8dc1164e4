//! Graph and Entra ID misbehaving: throttling with `Retry-After`, a storm of 5xx, a refresh
//! token revoked. The cloud runs on a manual clock (one `presence-refresh` per simulated
//! second or tick), so the timing rules are checked exactly without waiting.

use axum::http::StatusCode;
use chrono::Duration;
use teams_presence::store::{sqlite::SqliteStore, Store};

use super::{assert_no_repeats, t0, Cloud, Lamp};

async fn cloud(lamp: &Lamp, poll_interval: &str) -> (Cloud, Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(SqliteStore::open(&dir.path().join("c.sqlite3")).unwrap());
    let cloud = Cloud::start(lamp, store.clone(), &[("POLL_INTERVAL", poll_interval)]).await;
    (cloud, store, dir)
}

/// Graph answers 429 with `Retry-After: 20`: no call goes out before the 20 s are over
/// (ticks every second of the clock), then the change is published. Then 2 minutes of 500s:
/// the user's polls back off (10, 20, 40, 80 s), nothing is published during the storm, and
/// the change made during it is on the lamp right after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_429_with_retry_after_and_a_5xx_storm_pause_back_off_and_end_right() {
    let started = std::time::Instant::now();
    let lamp = Lamp::start().await;
    let (cloud, _store, _dir) = cloud(&lamp, "10").await;
    cloud.world.sign_in(&cloud.app, "bob").await;
    cloud.world.graph.set("bob", "Available", "Available");
    let mut now = t0();
    assert_eq!(cloud.tick(now).await.0, StatusCode::OK);
    lamp.wait_for(15, "green").await;

    // 429, Retry-After 20.
    cloud.world.graph.set("bob", "Busy", "InACall");
    cloud
        .world
        .graph
        .state
        .lock()
        .unwrap()
        .throttle_next
        .push(20);
    now += Duration::seconds(10);
    let calls = cloud.graph_calls();
    cloud.tick(now).await;
    assert_eq!(cloud.graph_calls(), calls + 1, "the throttled call");
    let throttled_at = now;
    for _ in 1..20 {
        now += Duration::seconds(1);
        assert_eq!(cloud.tick(now).await.0, StatusCode::OK);
        assert_eq!(
            cloud.graph_calls(),
            calls + 1,
            "a call {} s after a Retry-After of 20 s",
            (now - throttled_at).num_seconds()
        );
    }
    now += Duration::seconds(1);
    cloud.tick(now).await;
    assert_eq!(
        cloud.graph_calls(),
        calls + 2,
        "called again at Retry-After"
    );
    lamp.wait_for(15, "red").await;

    // A storm of 500s for 2 minutes; bob changes at its start.
    cloud
        .world
        .graph
        .state
        .lock()
        .unwrap()
        .failing_users
        .insert("bob".into());
    cloud.world.graph.set("bob", "Busy", "InAMeeting");
    let storm_start = now;
    let mut storm_calls = Vec::new();
    while now < storm_start + Duration::seconds(120) {
        now += Duration::seconds(1);
        let before = cloud.graph_calls();
        cloud.tick(now).await;
        if cloud.graph_calls() > before {
            storm_calls.push((now - storm_start).num_seconds());
        }
    }
    // Due every 10 s it would have been called 12 times; backing off it is called at
    // 10, 10+10, 20+20, 40+40 s (then 80+80 > 120).
    assert_eq!(storm_calls, [10, 20, 40, 80], "back-off during the storm");
    assert_eq!(
        lamp.shown(),
        ["green", "red"],
        "nothing published in the storm"
    );

    // The storm ends; the next try (at most the last back-off later) publishes the change.
    cloud
        .world
        .graph
        .state
        .lock()
        .unwrap()
        .failing_users
        .clear();
    let end = now;
    while lamp.shown().last() != Some(&"orange") {
        assert!(
            now - end <= Duration::seconds(160),
            "not right after the storm: {:?}",
            lamp.shown()
        );
        now += Duration::seconds(1);
        let before = lamp.sb.all_bodies().len();
        cloud.tick(now).await;
        if lamp.sb.all_bodies().len() > before {
            lamp.wait_for(15, "orange").await;
        }
    }
    let after = (now - end).num_seconds();
    let shown = lamp.shown();
    let applied = lamp.stop().await;
    assert_eq!(shown, ["green", "red", "orange"]);
    assert_no_repeats(&shown);
    applied.assert_strictly_increasing("bob");
    assert_eq!(applied.of("bob").len(), 3);
    eprintln!(
        "graph: 429 held calls for 20 s; storm calls at {storm_calls:?} s; right {after} s after the storm; {:?}",
        started.elapsed()
    );
}

/// The refresh token is revoked (and with it the access token): the next poll gets 401,
/// the refresh is refused with `invalid_grant`, the user is marked as needing sign-in
/// (`/api/status`) and one `user.signin_required` is published (the documented blue
/// breathe on the lamp); no further token or Graph calls for them. After a fresh sign-in the
/// lamp shows the presence again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_marks_sign_in_required_and_a_new_sign_in_restores_the_lamp() {
    let started = std::time::Instant::now();
    let lamp = Lamp::start().await;
    let (cloud, _store, _dir) = cloud(&lamp, "30").await;
    cloud.world.sign_in(&cloud.app, "carol").await;
    cloud.world.graph.set("carol", "Busy", "InACall");
    let mut now = t0();
    assert_eq!(cloud.tick(now).await.0, StatusCode::OK);
    lamp.wait_for(15, "red").await;

    // Revoked: every refresh token of carol's is dead, and Graph refuses her access token.
    {
        let mut e = cloud.world.entra.state.lock().unwrap();
        e.refresh_tokens.retain(|_, p| p.oid != "carol");
    }
    cloud.world.graph.state.lock().unwrap().reject_tokens = true;
    let refreshes = || {
        cloud
            .world
            .entra
            .state
            .lock()
            .unwrap()
            .token_requests
            .iter()
            .filter(|r| r.get("grant_type").map(String::as_str) == Some("refresh_token"))
            .count()
    };
    let before = refreshes();
    now += Duration::seconds(30);
    cloud.tick(now).await;
    assert_eq!(refreshes(), before + 1, "one refresh, refused");
    lamp.wait_for(15, "blue").await;
    let status = super::status(&cloud.app).await;
    let user = &status["users"][0];
    assert_eq!(user["signInRequired"], true, "{status}");
    // Later ticks leave carol alone: no refresh, no Graph call, nothing published.
    let (calls, sent) = (cloud.graph_calls(), lamp.sb.all_bodies().len());
    for _ in 0..4 {
        now += Duration::seconds(30);
        assert_eq!(cloud.tick(now).await.0, StatusCode::OK);
    }
    assert_eq!(refreshes(), before + 1);
    assert_eq!(cloud.graph_calls(), calls);
    assert_eq!(lamp.sb.all_bodies().len(), sent);

    // A fresh sign-in (the same presence as before the revocation): the lamp is red again.
    cloud.world.graph.state.lock().unwrap().reject_tokens = false;
    cloud.world.sign_in(&cloud.app, "carol").await;
    cloud.app.on_signed_in("carol").await;
    now += Duration::seconds(15);
    cloud.tick(now).await;
    lamp.wait_for(15, "red").await;
    let status = super::status(&cloud.app).await;
    assert_eq!(status["users"][0]["signInRequired"], false, "{status}");
    let shown = lamp.shown();
    let applied = lamp.stop().await;
    assert_eq!(shown, ["red", "blue", "red"]);
    applied.assert_strictly_increasing("carol");
    eprintln!(
        "revoked refresh token: lamp {shown:?}, {:?}",
        started.elapsed()
    );
}
