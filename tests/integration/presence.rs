//! The presence pipeline against the fake Graph and fake Entra ID: one message per real
//! change, cadence, throttling, tenant-mode batching, isolation of failures, the handler's
//! `presence-refresh` output and `GET /api/presence/{id}`.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Duration, TimeZone, Utc};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use teams_presence::core::message::TopicMessage;
use teams_presence::core::presence::{Observation, Presence, Source};
use teams_presence::engine::publish::Outbox;
use teams_presence::http::state::{AppState, Mode};
use teams_presence::store::SubscriptionRecord;

use crate::fakes::graph::FakeGraph;
use crate::support::{self, World, TENANT};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

/// One poll tick of the handler at `now`, with the messages it published.
async fn tick(
    app: &AppState,
    now: DateTime<Utc>,
) -> (
    teams_presence::engine::poller::TickReport,
    Vec<TopicMessage>,
) {
    let outbox = Outbox::default();
    let r = app.poller.tick(app, Some(&outbox), now).await;
    (r, outbox.drain())
}

fn changed(m: &TopicMessage) -> &teams_presence::core::message::PresenceChanged {
    match m {
        TopicMessage::PresenceChanged(c) => c,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_change_gives_one_message_no_change_none_and_a_change_back_carries_previous() {
    let w = World::builder().start().await;
    let app = w.app(Mode::Handler);
    w.sign_in(&app, "alice").await;
    w.graph.set("alice", "Available", "Available");
    let (_, msgs) = tick(&app, t0()).await;
    assert_eq!(msgs.len(), 1, "first sighting");
    let first = changed(&msgs[0]).clone();
    assert_eq!(first.previous, None);

    // Not due yet: no Graph call at all.
    let calls = w.graph.state.lock().unwrap().calls.len();
    let (r, msgs) = tick(&app, t0() + Duration::seconds(10)).await;
    assert_eq!((r.calls, msgs.len()), (0, 0));
    assert_eq!(w.graph.state.lock().unwrap().calls.len(), calls);

    // Due, but unchanged: a call, no message.
    let (r, msgs) = tick(&app, t0() + Duration::seconds(30)).await;
    assert_eq!((r.calls, r.polled, msgs.len()), (1, 1, 0));

    // A real change: exactly one message with every contract field.
    w.graph.set("alice", "Busy", "InACall");
    let (_, msgs) = tick(&app, t0() + Duration::seconds(60)).await;
    assert_eq!(msgs.len(), 1);
    let v = msgs[0].to_json();
    for field in [
        "type",
        "version",
        "userId",
        "tenantId",
        "availability",
        "activity",
        "previous",
        "source",
        "observedAt",
        "sequence",
    ] {
        assert!(v.get(field).is_some(), "missing {field}: {v}");
    }
    assert_eq!(v["type"], "presence.changed");
    assert_eq!(v["version"], 1);
    assert_eq!(v["userId"], "alice");
    assert_eq!(v["tenantId"], TENANT);
    assert_eq!(
        (v["availability"].as_str(), v["activity"].as_str()),
        (Some("Busy"), Some("InACall"))
    );
    assert_eq!(
        v["previous"],
        json!({"availability": "Available", "activity": "Available"})
    );
    assert_eq!(v["source"], "poll");
    assert!(v["sequence"].as_str().unwrap() > first.sequence.as_str());

    // And back.
    w.graph.set("alice", "Available", "Available");
    let (_, msgs) = tick(&app, t0() + Duration::seconds(90)).await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        changed(&msgs[0]).previous,
        Some(Presence::new("Busy", "InACall"))
    );
}

#[tokio::test]
async fn unknown_activity_values_pass_through() {
    let w = World::builder().start().await;
    let app = w.app(Mode::Handler);
    w.sign_in(&app, "bob").await;
    w.graph.set("bob", "Busy", "InASpaceWalk");
    let (_, msgs) = tick(&app, t0()).await;
    let v = msgs[0].to_json();
    assert_eq!(v["activity"], "InASpaceWalk");
    assert_eq!(v["availability"], "Busy");
}

#[tokio::test]
async fn throttling_with_retry_after_blocks_the_tenant_until_it_elapses() {
    let w = World::builder().start().await;
    let app = w.app(Mode::Handler);
    w.sign_in(&app, "carol").await;
    w.graph.set("carol", "Away", "Away");
    w.graph.state.lock().unwrap().throttle_next.push(120);
    let (r, msgs) = tick(&app, t0()).await;
    assert_eq!((r.calls, r.deferred, msgs.len()), (1, 1, 0));
    assert_eq!(
        app.poller.blocked_until(TENANT),
        Some(t0() + Duration::seconds(120))
    );
    // Due again by POLL_INTERVAL, but the tenant is still blocked: nothing is sent.
    for secs in [30, 60, 119] {
        let (r, _) = tick(&app, t0() + Duration::seconds(secs)).await;
        assert_eq!(r.calls, 0, "at +{secs}s");
    }
    assert_eq!(w.graph.state.lock().unwrap().calls.len(), 1);
    let (r, msgs) = tick(&app, t0() + Duration::seconds(121)).await;
    assert_eq!((r.calls, msgs.len()), (1, 1));
}

#[tokio::test]
async fn a_failing_user_does_not_block_the_others_and_backs_off() {
    let w = World::builder().start().await;
    let app = w.app(Mode::Handler);
    for u in ["u1", "u2", "u3"] {
        w.sign_in(&app, u).await;
        w.graph.set(u, "Available", "Available");
    }
    w.graph
        .state
        .lock()
        .unwrap()
        .failing_users
        .insert("u2".into());
    let (r, msgs) = tick(&app, t0()).await;
    assert_eq!((r.polled, r.failed, msgs.len()), (2, 1, 2));
    // u2 recovers; it is retried after its backoff (one poll interval for a first failure).
    w.graph.state.lock().unwrap().failing_users.clear();
    let (r, msgs) = tick(&app, t0() + Duration::seconds(30)).await;
    assert_eq!(r.failed, 0);
    assert!(msgs.iter().any(|m| m.user_id() == Some("u2")));
}

#[tokio::test]
async fn users_with_a_live_subscription_are_only_reconciled_rarely() {
    let w = World::builder()
        .settings(&[("RECONCILE_INTERVAL", "15")])
        .start()
        .await;
    let app = w.app(Mode::Handler);
    w.sign_in(&app, "dave").await;
    w.graph.set("dave", "Available", "Available");
    let sub = SubscriptionRecord {
        subscription_id: "sub-1".into(),
        user_ids: vec!["dave".into()],
        tenant_id: TENANT.into(),
        owner_user_id: "dave".into(),
        resource: "/communications/presences/dave".into(),
        client_state_sha256: "00".into(),
        expires_at: t0() + Duration::minutes(55),
        created_at: t0(),
        certificate_id: String::new(),
    };
    app.store.insert(&sub).await.unwrap();
    let (r, _) = tick(&app, t0()).await;
    assert_eq!(r.calls, 1, "first reconcile");
    let (r, _) = tick(&app, t0() + Duration::minutes(5)).await;
    assert_eq!(r.calls, 0, "covered by the subscription");
    let (r, _) = tick(&app, t0() + Duration::minutes(15)).await;
    assert_eq!(r.calls, 1, "reconciled after RECONCILE_INTERVAL");
}

#[tokio::test]
async fn two_thousand_tenant_mode_users_take_four_batch_calls() {
    let ids: Vec<String> = (0..2000).map(|i| format!("user-{i:04}")).collect();
    let list = ids.join(",");
    let w = World::builder()
        .settings(&[("TENANT_USERS", list.as_str())])
        .start()
        .await;
    let app = w.app(Mode::Handler);
    for id in &ids {
        w.graph.set(id, "Available", "Available");
    }
    let (r, msgs) = tick(&app, t0()).await;
    assert_eq!(r.calls, 4);
    assert_eq!(r.polled, 2000);
    assert_eq!(msgs.len(), 2000);
    let calls = w.graph.state.lock().unwrap().calls.clone();
    let mut sizes: Vec<usize> = calls.iter().map(|(_, ids)| ids.len()).collect();
    sizes.sort();
    assert_eq!(sizes, vec![50, 650, 650, 650]);
    // App-only token from client credentials.
    let s = w.entra.state.lock().unwrap();
    assert_eq!(
        s.token_requests
            .iter()
            .filter(|r| r["grant_type"] == "client_credentials")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_poll_and_a_notification_racing_on_one_user_publish_once() {
    let w = World::builder().start().await;
    let app = w.app(Mode::Handler);
    w.sign_in(&app, "erin").await;
    w.graph.set("erin", "Busy", "InACall");
    let outbox = Outbox::default();
    let notification = Observation {
        user_id: "erin".into(),
        tenant_id: TENANT.into(),
        presence: Presence::new("Busy", "InACall"),
        source: Source::Notification,
        observed_at: t0(),
        graph_sequence: None,
        item_digest: None,
    };
    let (_, published) = tokio::join!(
        app.poller.tick(&app, Some(&outbox), t0()),
        teams_presence::engine::pipeline::record_and_publish(
            &app.store,
            &app.publisher,
            Some(&outbox),
            &notification
        ),
    );
    published.unwrap();
    assert_eq!(outbox.drain().len(), 1);
}

#[tokio::test]
async fn presence_refresh_under_the_host_returns_messages_as_json_objects() {
    let w = World::builder().start().await;
    let app = w.app(Mode::Handler);
    w.sign_in(&app, "fred").await;
    w.graph.set("fred", "DoNotDisturb", "Presenting");
    let body = json!({"Data": {"timer": {"Schedule": {"AdjustForDST": true}, "IsPastDue": false}}, "Metadata": {}});
    let resp = teams_presence::host::handler::router(app.clone())
        .oneshot(
            Request::post("/presence-refresh")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let msg = &v["Outputs"]["message"];
    assert!(
        msg.is_object(),
        "one message, an object (never a string the host would base64-decode): {v}"
    );
    assert_eq!(msg["activity"], "Presenting");
    assert!(v["Logs"][0].as_str().unwrap().contains("1 changes"));
}

#[tokio::test]
async fn the_presence_api_returns_the_last_known_state_and_honours_its_token() {
    let w = World::builder().start().await;
    let app = w.app(Mode::Handler);
    w.sign_in(&app, "gina").await;
    w.graph.set("gina", "Busy", "InAMeeting");
    tick(&app, t0()).await;
    let get = |app: AppState, auth: Option<&'static str>| async move {
        let mut req = Request::get("/api/presence/gina");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = teams_presence::serve::router(app)
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let v: Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes())
                .unwrap_or(Value::Null);
        (status, v)
    };
    let (status, v) = get(app.clone(), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (v["type"].as_str(), v["activity"].as_str()),
        (Some("presence.changed"), Some("InAMeeting"))
    );
    let missing = teams_presence::serve::router(app.clone())
        .oneshot(
            Request::get("/api/presence/nobody")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // In serve with PRESENCE_API_TOKEN, the bearer token is required.
    let dir = tempfile::tempdir().unwrap();
    let serve_state = AppState::new(
        support::settings(&[("PRESENCE_API_TOKEN", "s3cret-token")]),
        app.store.clone(),
        Mode::Serve,
    );
    let _ = dir;
    assert_eq!(
        get(serve_state.clone(), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(serve_state.clone(), Some("Bearer wrong")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(serve_state, Some("Bearer s3cret-token")).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn with_publish_mode_rest_changes_go_straight_to_service_bus_with_user_id() {
    let w = World::builder().service_bus_rest().start().await;
    let sb = w.service_bus();
    let app = w.app(Mode::Handler).with_direct_publishing().unwrap();
    w.sign_in(&app, "hana").await;
    w.graph.set("hana", "Busy", "InACall");
    let body = json!({"Data": {"timer": {"IsPastDue": false}}, "Metadata": {}});
    let resp = teams_presence::host::handler::router(app.clone())
        .oneshot(
            Request::post("/presence-refresh")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    // Sent over REST, so not also through the output binding.
    assert!(v["Outputs"].get("message").is_none(), "{v}");
    let (user, id, body) = sb.with(|b| {
        let m = &b.queue[0];
        (
            m.user_id_header.clone(),
            m.message_id.clone(),
            m.body.clone(),
        )
    });
    assert_eq!(
        user.as_deref(),
        Some("hana"),
        "userId application property for SQL filters"
    );
    let msg: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(msg["activity"], "InACall");
    assert_eq!(
        id.unwrap(),
        format!("hana:{}", msg["sequence"].as_str().unwrap())
    );
    // A retry that sends the same change again is dropped by duplicate detection.
    let m = TopicMessage::parse(&body).unwrap();
    teams_presence::engine::publish::send_direct(app.direct_bus.as_ref().unwrap(), &[m])
        .await
        .unwrap();
    assert_eq!(sb.with(|b| (b.queue.len(), b.duplicates)), (1, 1));
}

/// The fake Graph itself (moved here from the fake when the fakes became a crate of their
/// own): the 650-id limit and scripted throttling the poller tests rely on.
#[tokio::test]
async fn the_fake_enforces_the_650_id_limit_and_scripts_throttling() {
    let g = FakeGraph::start().await;
    g.set("a", "Busy", "InACall");
    g.state.lock().unwrap().throttle_next.push(7);
    let http = reqwest::Client::new();
    let url = format!("{}/v1.0/communications/getPresencesByUserId", g.url);
    let r = http
        .post(&url)
        .bearer_auth("app-1")
        .json(&json!({"ids": ["a"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let r: Value = http
        .post(&url)
        .bearer_auth("app-1")
        .json(&json!({"ids": ["a"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["value"][0]["activity"], "inACall");
    assert_eq!(r["value"][0]["sequenceNumber"], "00000000000000000001");
    let ids: Vec<String> = (0..651).map(|i| i.to_string()).collect();
    let r = http
        .post(&url)
        .bearer_auth("app-1")
        .json(&json!({"ids": ids}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
