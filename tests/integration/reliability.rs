//! Nothing lost, nothing stale: a stored change is published at least once (pending marks,
//! re-sent by the next tick), the output binding's recent changes are repeated, and under the
//! emulated host `POLL_INTERVAL=30` holds for a user without a subscription. Time is a manual
//! clock: no test waits for real.

use axum::http::StatusCode;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};

use teams_presence::core::presence::{Observation, Presence, Source};
use teams_presence::http::state::{AppState, Mode};
use teams_presence::store::{sqlite::SqliteStore, PresenceRecord, Store};

use crate::fakes::servicebus::FakeServiceBus;
use crate::support::{self, World, TENANT};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

/// The `message` output binding's messages (one object, or an array).
fn outputs(v: &Value) -> Vec<Value> {
    match &v["Outputs"]["message"] {
        Value::Null => vec![],
        Value::Array(a) => a.clone(),
        one => vec![one.clone()],
    }
}

async fn stored(store: &Store, user: &str) -> PresenceRecord {
    store
        .get::<PresenceRecord>(user, "presence")
        .await
        .unwrap()
        .expect("stored")
        .value
}

fn sent_bodies(sb: &FakeServiceBus) -> Vec<Value> {
    sb.with(|b| {
        b.queue
            .iter()
            .map(|m| serde_json::from_slice(&m.body).unwrap())
            .collect()
    })
}

#[tokio::test]
async fn a_change_stored_while_service_bus_answers_500_is_published_by_the_next_tick() {
    let w = World::builder().service_bus_rest().start().await;
    let sb = w.service_bus();
    let app = w.handler_at(t0());
    w.sign_in(&app, "alice").await;
    w.graph.set("alice", "Busy", "InACall");
    sb.set_failing_sends(true);

    // The change is stored, the send fails: the invocation fails and the mark stays.
    let (status, _) = w.presence_refresh(&app).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(sb.with(|b| b.failed_sends) >= 1);
    let rec = stored(&w.store, "alice").await;
    assert_eq!(rec.last.presence, Presence::new("Busy", "InACall"));
    assert!(
        rec.pending_publish.is_some(),
        "stored, not confirmed: pending"
    );

    // The next tick (15 s later, nothing new from Graph and alice not due) sends it.
    sb.set_failing_sends(false);
    app.clock.set(t0() + Duration::seconds(15));
    let (status, v) = w.presence_refresh(&app).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let sent = sent_bodies(sb);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["activity"], "InACall");
    assert_eq!(sent[0]["sequence"], rec.last.sequence.as_str());
    assert!(stored(&w.store, "alice").await.pending_publish.is_none());

    // Confirmed: the tick after sends nothing again.
    app.clock.set(t0() + Duration::seconds(20));
    w.presence_refresh(&app).await;
    assert_eq!(sent_bodies(sb).len(), 1);
}

#[tokio::test]
async fn a_change_stored_by_a_process_that_died_before_publishing_is_published_after_restart() {
    let w = World::builder().service_bus_rest().start().await;
    let sb = w.service_bus();
    // The dying process: the change is stored (pipeline::record), then nothing.
    let obs = Observation {
        user_id: "bob".into(),
        tenant_id: TENANT.into(),
        presence: Presence::new("DoNotDisturb", "Presenting"),
        source: Source::Notification,
        observed_at: t0(),
        graph_sequence: None,
        item_digest: None,
    };
    let msg = teams_presence::engine::pipeline::record(&w.store, &obs)
        .await
        .unwrap()
        .expect("a change");
    assert!(sent_bodies(sb).is_empty());

    // A new process; its first presence-refresh sends what was left pending.
    let app = w.handler_at(t0() + Duration::seconds(15));
    let (status, v) = w.presence_refresh(&app).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let sent = sent_bodies(sb);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["userId"], "bob");
    assert_eq!(sent[0]["activity"], "Presenting");
    assert_eq!(sent[0]["sequence"], msg.sequence.as_str());
    assert!(v["Logs"][0].as_str().unwrap().contains("1 pending"), "{v}");
    assert!(stored(&w.store, "bob").await.pending_publish.is_none());
}

#[tokio::test]
async fn with_the_output_binding_presence_refresh_sends_recent_changes_again() {
    let w = World::builder().start().await;
    let app = w.handler_at(t0());
    w.sign_in(&app, "carol").await;
    w.graph.set("carol", "Busy", "InAMeeting");
    let (_, v) = w.presence_refresh(&app).await;
    let first = outputs(&v);
    assert_eq!(first.len(), 1);
    // Handed to the binding: no longer pending once the confirmer has cleared the marks
    // it gathered (the binding cannot confirm more).
    app.confirmer.flush().await;
    assert!(stored(&w.store, "carol").await.pending_publish.is_none());

    // Suppose the binding then failed: the next invocation repeats the change (carol is not
    // due, Graph is not asked); edges drop it if they had it.
    app.clock.set(t0() + Duration::seconds(15));
    let (_, v) = w.presence_refresh(&app).await;
    let again = outputs(&v);
    assert_eq!(again.len(), 1, "{v}");
    assert_eq!(again[0]["sequence"], first[0]["sequence"]);
    assert!(v["Logs"][0].as_str().unwrap().contains("1 recent"), "{v}");

    // Once (issue 32): every tick of the window used to repeat it, eight times in all at the
    // shipped 15 s schedule.
    app.clock.set(t0() + Duration::seconds(30));
    let (_, v) = w.presence_refresh(&app).await;
    assert!(outputs(&v).is_empty(), "repeated twice: {v}");

    // Past the window, an unchanged user is not repeated.
    app.clock
        .set(t0() + teams_presence::host::jobs::RESEND_RECENT + Duration::seconds(15));
    let (_, v) = w.presence_refresh(&app).await;
    assert!(outputs(&v).is_empty(), "{v}");
}

/// The seconds between two `presence-refresh` ticks, from the shipped schedule (the
/// NCRONTAB's seconds field, `*/N`).
fn shipped_tick() -> i64 {
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/local.settings.json.example"
        ))
        .unwrap(),
    )
    .unwrap();
    let schedule = example["Values"]["PresenceRefreshSchedule"]
        .as_str()
        .unwrap()
        .to_owned();
    let bicep =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/infra/main.bicep")).unwrap();
    assert!(
        bicep.contains(&format!(
            "param presenceRefreshSchedule string = '{schedule}'"
        )),
        "infra deploys the same schedule as the example"
    );
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    assert_eq!(fields.len(), 6, "{schedule}");
    assert!(fields[1..].iter().all(|f| *f == "*"), "{schedule}");
    fields[0].strip_prefix("*/").unwrap().parse().unwrap()
}

#[tokio::test]
async fn under_the_host_poll_interval_30_holds_for_a_user_without_a_subscription() {
    let tick = shipped_tick();
    assert!(tick <= 15, "presence-refresh every {tick} s");
    let w = World::builder().start().await;
    let app = w.handler_at(t0());
    w.sign_in(&app, "dan").await;
    w.graph.set("dan", "Available", "Available");

    // Sign-in in the cloud (auth-end calls this): no PUBLIC_BASE_URL, so no subscription;
    // the user is polled at once and, with the output binding, the state is stored pending
    // and goes out with the very next presence-refresh.
    app.on_signed_in("dan").await;
    assert!(stored(&w.store, "dan").await.pending_publish.is_some());
    let mut now = t0() + Duration::seconds(tick);
    app.clock.set(now);
    let (_, v) = w.presence_refresh(&app).await;
    let first = outputs(&v);
    assert!(
        first.iter().any(|m| m["activity"] == "Available"),
        "first state within one tick of the sign-in: {v}"
    );
    let mut last_seq = first[0]["sequence"].as_str().unwrap().to_owned();

    // Changes at awkward moments (just after a poll, just before, between ticks): each is
    // published by a tick no later than 30 s + one tick after it happened. Every tick of the
    // schedule runs, before the change too.
    let changes = [
        (1, "Busy", "InACall"),
        (29, "Away", "Away"),
        (14, "DoNotDisturb", "Presenting"),
        (31, "Available", "Available"),
        (7, "Busy", "InAMeeting"),
    ];
    for (after, availability, activity) in changes {
        let changed_at = now + Duration::seconds(after);
        let mut at = now + Duration::seconds(tick);
        while at < changed_at {
            app.clock.set(at);
            assert_eq!(w.presence_refresh(&app).await.0, StatusCode::OK);
            at += Duration::seconds(tick);
        }
        w.graph.set("dan", availability, activity);
        let published = loop {
            assert!(
                at - changed_at <= Duration::seconds(30 + tick),
                "{activity}: not published within 30 s + one tick"
            );
            app.clock.set(at);
            let (status, v) = w.presence_refresh(&app).await;
            assert_eq!(status, StatusCode::OK);
            let new = outputs(&v).into_iter().find(|m| {
                m["activity"] == activity
                    && m["availability"] == availability
                    && m["sequence"].as_str().unwrap() > last_seq.as_str()
            });
            if let Some(m) = new {
                last_seq = m["sequence"].as_str().unwrap().to_owned();
                break at;
            }
            at += Duration::seconds(tick);
        };
        let latency = published - changed_at;
        assert!(
            latency <= Duration::seconds(30 + tick),
            "{activity} took {latency}"
        );
        now = published;
    }
}

/// The edge's lamp is right again within the reconcile interval although the message of a
/// change never reached it: `subscribe` reads `GET /api/presence/{id}` (here from `serve`,
/// with its bearer token) for the users in its state file (WATCH_USERS unset = all).
#[tokio::test]
async fn an_edge_that_missed_a_message_shows_the_right_state_after_the_reconcile_interval() {
    use std::time::Duration as StdDuration;
    use teams_presence::clients::hue::{Address, HueSink};
    use teams_presence::clients::presence_api::PresenceApi;
    use teams_presence::clients::servicebus::{self, ConnectionString};
    use teams_presence::config::HueTarget;
    use teams_presence::core::lights::LightMap;
    use teams_presence::edge::{self, Options, Reconcile};
    use teams_presence::engine::applier::Applier;

    use crate::fakes::hue::{Api, FakeHue, KEY as HUE_KEY};

    support::init_logging();
    // The cloud side: serve's router with PRESENCE_API_TOKEN, on a real socket.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(SqliteStore::open(&dir.path().join("c.sqlite3")).unwrap());
    let cloud = AppState::new(
        support::settings(&[("PRESENCE_API_TOKEN", "edge-key")]),
        store.clone(),
        Mode::Serve,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base: url::Url = format!("http://{}", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let router = teams_presence::serve::router(cloud)
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // The edge: one message for u1 arrives normally (so its state file knows u1).
    let sb = FakeServiceBus::start(10).await;
    let hue = FakeHue::start(Api::V1).await;
    let sink = HueSink::connect(
        &Address::parse(&hue.url).unwrap(),
        &secrecy::SecretString::from(HUE_KEY),
        &[HueTarget::Light("1".into())],
    )
    .await
    .unwrap();
    let state_file = dir.path().join("edge-state.json");
    let mut applier = Applier::new(LightMap::default(), sink, vec![], Some(state_file));
    sb.enqueue(json!({
        "type": "presence.changed", "version": 1, "userId": "u1", "tenantId": TENANT,
        "availability": "Available", "activity": "Available", "source": "poll",
        "observedAt": "2026-11-22T10:00:00.000Z", "sequence": "00000000000000000001-000000",
    }));
    let client = servicebus::Client::new(
        ConnectionString::parse(&sb.connection_string()).unwrap(),
        Some(sb.url.parse().unwrap()),
        "presence",
    )
    .unwrap()
    .subscription("pi");
    let opts = Options {
        wait: StdDuration::from_secs(1),
        reconcile: Some(Reconcile {
            api: PresenceApi::new(
                &base,
                Some(secrecy::SecretString::from("edge-key")),
                StdDuration::from_secs(5),
            ),
            every: StdDuration::from_millis(300),
        }),
        ..Options::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        edge::run(&client, &mut applier, &opts, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
        applier
    });
    sb.wait_for(10, "the first message", |b| b.completed.len() == 1)
        .await;

    // The cloud stores a change whose message never reaches this edge.
    let change = teams_presence::engine::pipeline::record(
        &store,
        &Observation {
            user_id: "u1".into(),
            tenant_id: TENANT.into(),
            presence: Presence::new("Busy", "InACall"),
            source: Source::Notification,
            observed_at: Utc::now(),
            graph_sequence: None,
            item_digest: None,
        },
    )
    .await
    .unwrap()
    .unwrap();

    // Within a few reconcile intervals the lamp is red (Busy/InACall) and the edge has
    // recorded the cloud's sequence.
    let deadline = std::time::Instant::now() + StdDuration::from_secs(5);
    while hue.puts().last().map(|p| p.body["xy"].clone()) != Some(json!([0.7006, 0.2993])) {
        assert!(
            std::time::Instant::now() < deadline,
            "not healed: {:?}",
            hue.puts()
        );
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    let _ = stop.send(());
    let applier = task.await.unwrap();
    assert_eq!(
        applier.applied()["u1"].sequence.as_deref(),
        Some(change.sequence.as_str())
    );
    // Reading it again and again changes nothing: one command for the healed state.
    let red = hue
        .puts()
        .iter()
        .filter(|p| p.body["xy"] == json!([0.7006, 0.2993]))
        .count();
    assert_eq!(red, 1);
}
