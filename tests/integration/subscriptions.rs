//! Subscription management against a fake Graph that enforces the real rules (60-minute
//! maximum, 650 ids, one presence subscription per user per app → 409, the validation
//! handshake against our own running webhook): create, renew, recreate after 404, replace
//! after 409, reauthorize on the lifecycle event, a certificate rotation PATCHed onto the live
//! subscription with the old key kept for Graph's 4 hours of retries, and tenant mode's bulk
//! subscriptions, one per sync account, with the rest polled visibly.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use teams_presence::clients::graph::certs::{generate_self_signed, KeyRing};
use teams_presence::clients::graph::notification::client_state_sha256_hex;
use teams_presence::engine::subscriptions::maintain;
use teams_presence::http::state::{AppState, Mode};
use teams_presence::store::{sqlite::SqliteStore, Store, SubscriptionRecord};

use crate::fakes::entra::FakeEntra;
use crate::fakes::graph::{retry_deliveries, FakeGraph};
use crate::support::{self, World};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// Our app (`serve`) on a socket of its own (Graph's handshake calls it), with a fresh
/// notification key, in a world whose Graph manages subscriptions.
async fn live(extra: &[(&str, &str)]) -> (World, AppState) {
    let w = World::builder()
        .subscriptions()
        .public_socket()
        .settings(extra)
        .start()
        .await;
    let keys = KeyRing::from_keys(vec![generate_self_signed("teams-presence-test").unwrap()]);
    let app = w.app(Mode::Serve).with_notification_keys(keys);
    w.serve_public(teams_presence::serve::router(app.clone()));
    (w, app)
}

async fn records(app: &AppState) -> Vec<SubscriptionRecord> {
    app.store
        .list::<SubscriptionRecord>()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.value)
        .collect()
}

fn at(l: &World, now: DateTime<Utc>) {
    l.subscriptions().lock().unwrap().now = Some(now);
}

#[tokio::test]
async fn create_renew_recreate_after_404_and_replace_after_409() {
    let (l, app) = live(&[]).await;
    l.sign_in(&app, "alice").await;
    let t0 = Utc::now();
    at(&l, t0);

    // Create: the fake ran the handshake against our webhook and checked every rule.
    let r = maintain(&app, &app.poller, t0).await;
    assert_eq!((r.created, r.failed), (1, 0), "{r:?}");
    let fake = l
        .subscriptions()
        .lock()
        .unwrap()
        .items
        .values()
        .next()
        .unwrap()
        .clone();
    assert_eq!(fake.resource, "/communications/presences/alice");
    assert!(fake.expires <= t0 + Duration::minutes(60));
    assert_eq!(
        fake.notification_url,
        format!("{}/api/notifications", l.base())
    );
    assert_eq!(fake.lifecycle_url, format!("{}/api/lifecycle", l.base()));
    let cert = app.notification_keys.current().unwrap();
    assert_eq!(fake.certificate_id, cert.id());
    assert_eq!(fake.certificate, cert.certificate_base64());
    let rec = records(&app).await.pop().unwrap();
    assert_eq!(rec.subscription_id, fake.id);
    // Only the digest of clientState is stored.
    assert_eq!(
        rec.client_state_sha256,
        client_state_sha256_hex(&fake.client_state)
    );
    let raw = app
        .store
        .scan_entities(teams_presence::store::Table::Subscriptions, None)
        .await
        .unwrap();
    assert!(!raw[0].data.to_string().contains(&fake.client_state));

    // Nothing to do while plenty of time is left.
    let r = maintain(&app, &app.poller, t0 + Duration::minutes(10)).await;
    assert_eq!((r.created, r.renewed), (0, 0));

    // Renew when less than 20 minutes are left.
    let t1 = t0 + Duration::minutes(45);
    at(&l, t1);
    let r = maintain(&app, &app.poller, t1).await;
    assert_eq!(r.renewed, 1, "{r:?}");
    assert!(l.subscriptions().lock().unwrap().items[&fake.id].expires > t1 + Duration::minutes(55));

    // Graph forgot it: PATCH answers 404, we create a new one.
    l.subscriptions().lock().unwrap().items.clear();
    let t2 = t1 + Duration::minutes(45);
    at(&l, t2);
    let r = maintain(&app, &app.poller, t2).await;
    assert_eq!((r.created, r.failed), (1, 0), "{r:?}");
    assert_eq!(records(&app).await.len(), 1);

    // Our record was lost (a new store): creating answers 409; we replace the leftover.
    for rec in records(&app).await {
        app.store
            .delete::<SubscriptionRecord>(&rec.subscription_id, "subscription", None)
            .await
            .unwrap();
    }
    let r = maintain(&app, &app.poller, t2).await;
    assert_eq!((r.created, r.failed), (1, 0), "{r:?}");
    let rec_id = {
        let s = l.subscriptions().lock().unwrap();
        assert_eq!(s.items.len(), 1, "exactly one subscription for the user");
        assert!(s.calls.iter().any(|(m, _)| m == "DELETE"));
        s.items.keys().next().unwrap().clone()
    };
    assert_eq!(records(&app).await[0].subscription_id, rec_id);
}

#[tokio::test]
async fn a_reauthorization_required_event_is_answered_with_reauthorize() {
    let (l, app) = live(&[]).await;
    l.sign_in(&app, "bob").await;
    let t0 = Utc::now();
    maintain(&app, &app.poller, t0).await;
    let fake = l
        .subscriptions()
        .lock()
        .unwrap()
        .items
        .values()
        .next()
        .unwrap()
        .clone();

    // Graph posts the lifecycle event to our webhook.
    let body = json!({"value": [{
        "subscriptionId": fake.id, "subscriptionExpirationDateTime": fake.expires.to_rfc3339(),
        "tenantId": TENANT, "clientState": fake.client_state, "lifecycleEvent": "reauthorizationRequired"
    }]});
    let r = reqwest::Client::new()
        .post(format!("{}/api/lifecycle", l.base()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let r = maintain(&app, &app.poller, t0 + Duration::minutes(1)).await;
    assert_eq!(r.reauthorized, 1, "{r:?}");
    assert_eq!(
        l.subscriptions().lock().unwrap().items[&fake.id].reauthorized,
        1
    );
    // The mark is cleared: the next run does nothing more.
    let r = maintain(&app, &app.poller, t0 + Duration::minutes(2)).await;
    assert_eq!(r.reauthorized, 0);

    // A forged event (wrong clientState) leaves no mark.
    let forged = json!({"value": [{"subscriptionId": fake.id, "tenantId": TENANT, "clientState": "guess", "lifecycleEvent": "subscriptionRemoved"}]});
    reqwest::Client::new()
        .post(format!("{}/api/lifecycle", l.base()))
        .json(&forged)
        .send()
        .await
        .unwrap();
    let r = maintain(&app, &app.poller, t0 + Duration::minutes(3)).await;
    assert_eq!((r.created, r.removed), (0, 0));
    assert!(l
        .subscriptions()
        .lock()
        .unwrap()
        .items
        .contains_key(&fake.id));
}

/// `GET /api/status` as a loopback peer would.
async fn status_json(app: &AppState) -> serde_json::Value {
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::Request;
    use tower::ServiceExt;
    let mut req = Request::get("/api/status").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo::<std::net::SocketAddr>(
            "127.0.0.1:9".parse().unwrap(),
        ));
    let resp = teams_presence::serve::router(app.clone())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

fn tenant_ids(n: usize) -> String {
    (0..n)
        .map(|i| format!("member-{i:04}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test]
async fn two_sync_accounts_for_1400_tenant_users_own_two_subscriptions_and_100_are_polled() {
    let list = tenant_ids(1400);
    // One account by UPN, one by object id; the old singular setting still counts.
    let (l, app) = live(&[
        ("TENANT_USERS", list.as_str()),
        ("TENANT_SYNC_USERS", "sync-a@contoso.example"),
        ("TENANT_SYNC_USER", "sync-b"),
        ("POLL_INTERVAL", "30"),
    ])
    .await;
    l.sign_in(&app, "sync-a").await;
    l.sign_in(&app, "sync-b").await;
    let t0 = Utc::now();
    let r = maintain(&app, &app.poller, t0).await;
    assert_eq!((r.created, r.failed), (2, 0), "{r:?}");
    let mut subs: Vec<(String, usize)> = l
        .subscriptions()
        .lock()
        .unwrap()
        .items
        .values()
        .map(|s| (s.owner.clone(), s.user_ids.len()))
        .collect();
    subs.sort();
    assert_eq!(
        subs,
        vec![("sync-a".to_owned(), 650), ("sync-b".to_owned(), 650)]
    );

    // The status says how many are polled and why.
    let v = status_json(&app).await;
    let t = &v["tenant"];
    assert_eq!(t["users"], 1400, "{t}");
    assert_eq!(t["syncAccounts"], 2);
    assert_eq!(t["subscriptions"], 2);
    assert_eq!(t["subscribed"], 1300);
    assert_eq!(t["polled"], 100);
    let why = t["reasons"][0].as_str().unwrap();
    assert!(
        why.starts_with("100 of 1400 tenant users are polled"),
        "{why}"
    );
    assert!(why.contains("sign in 1 more"), "{why}");

    // The poller reads the 100 every POLL_INTERVAL, the 1,300 only when reconciling.
    let first = app.poller.tick(&app, None, t0).await;
    assert_eq!((first.calls, first.polled), (3, 1400), "{first:?}");
    let again = app
        .poller
        .tick(&app, None, t0 + Duration::seconds(30))
        .await;
    assert_eq!((again.calls, again.polled), (1, 100), "{again:?}");

    // Graph's rule, as the fake enforces it: the account already owns one; a second is 409.
    let cert = app.notification_keys.current().unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/v1.0/subscriptions", l.graph.url))
        .bearer_auth("at-sync-a-99")
        .json(&json!({
            "changeType": "updated", "resource": "/communications/presences/member-1399",
            "notificationUrl": format!("{}/api/notifications", l.base()),
            "lifecycleNotificationUrl": format!("{}/api/lifecycle", l.base()),
            "expirationDateTime": (Utc::now() + Duration::minutes(30)).to_rfc3339(),
            "includeResourceData": true, "encryptionCertificate": cert.certificate_base64(),
            "encryptionCertificateId": cert.id(), "clientState": "x",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
}

#[tokio::test]
async fn three_sync_accounts_cover_1400_tenant_users_and_nobody_is_polled() {
    let list = tenant_ids(1400);
    let (l, app) = live(&[
        ("TENANT_USERS", list.as_str()),
        ("TENANT_SYNC_USERS", "sync-a,sync-b,sync-c@contoso.example"),
    ])
    .await;
    for a in ["sync-a", "sync-b", "sync-c"] {
        l.sign_in(&app, a).await;
    }
    let t0 = Utc::now();
    let r = maintain(&app, &app.poller, t0).await;
    assert_eq!((r.created, r.failed), (3, 0), "{r:?}");
    let mut sizes: Vec<usize> = l
        .subscriptions()
        .lock()
        .unwrap()
        .items
        .values()
        .map(|s| s.user_ids.len())
        .collect();
    sizes.sort();
    assert_eq!(sizes, vec![100, 650, 650]);
    let t = status_json(&app).await["tenant"].clone();
    assert_eq!(
        (t["subscribed"].as_u64(), t["polled"].as_u64()),
        (Some(1400), Some(0)),
        "{t}"
    );
    assert_eq!(t["reasons"], json!([]));
    // Nothing due at POLL_INTERVAL: every user is covered.
    app.poller.tick(&app, None, t0).await;
    let r = app
        .poller
        .tick(&app, None, t0 + Duration::seconds(30))
        .await;
    assert_eq!(r.calls, 0, "{r:?}");
}

#[tokio::test]
async fn a_sync_account_that_has_not_signed_in_leaves_its_users_polled_and_says_so() {
    let list = tenant_ids(700);
    let (l, app) = live(&[
        ("TENANT_USERS", list.as_str()),
        ("TENANT_SYNC_USERS", "sync-a,nobody@contoso.example"),
    ])
    .await;
    l.sign_in(&app, "sync-a").await;
    let r = maintain(&app, &app.poller, Utc::now()).await;
    assert_eq!((r.created, r.failed), (1, 1), "{r:?}");
    let t = status_json(&app).await["tenant"].clone();
    assert_eq!(t["polled"], 50, "{t}");
    assert_eq!(
        t["reasons"],
        json!(["sync account nobody@contoso.example has not signed in: its 50 users are polled"])
    );
}

/// Issue 28, item 13: Graph documents key rotation as a PATCH of `encryptionCertificate` /
/// `encryptionCertificateId` on the live subscription; we deleted and recreated it.
#[tokio::test]
async fn a_rotated_certificate_is_patched_onto_the_live_subscription() {
    let (l, app) = live(&[]).await;
    l.sign_in(&app, "gina").await;
    let t0 = Utc::now();
    at(&l, t0);
    maintain(&app, &app.poller, t0).await;
    let old = app.notification_keys.current().unwrap().id().to_owned();
    let before = records(&app).await;
    assert_eq!(before[0].certificate_id, old);

    // A restart after the rotation: a new current certificate, the old one kept as previous.
    let new = generate_self_signed("teams-presence-rotated").unwrap();
    let new_id = new.id().to_owned();
    let ring = KeyRing::from_keys(vec![new]);
    let old_pem = app.notification_keys.current().unwrap().to_pem().unwrap();
    let ring = ring.with_previous(KeyRing::from_pem(&old_pem).unwrap());
    let rotated = app.clone().with_notification_keys(ring);

    let t1 = t0 + Duration::minutes(5);
    at(&l, t1);
    let r = maintain(&rotated, &rotated.poller, t1).await;
    assert_eq!((r.rekeyed, r.created, r.failed), (1, 0, 0), "{r:?}");
    let (calls, fakes) = {
        let s = l.subscriptions().lock().unwrap();
        let fakes: Vec<_> = s.items.values().cloned().collect();
        (s.calls.clone(), fakes)
    };
    assert!(
        !calls.iter().any(|(m, _)| m == "DELETE"),
        "deleted: {calls:?}"
    );
    assert_eq!(fakes.len(), 1);
    assert_eq!(
        fakes[0].id, before[0].subscription_id,
        "the same subscription"
    );
    assert_eq!(fakes[0].certificate_id, new_id);
    let recs = records(&rotated).await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].certificate_id, new_id);
    assert_eq!(recs[0].subscription_id, before[0].subscription_id);
    // Steady again: nothing more to do.
    let r = maintain(&rotated, &rotated.poller, t1 + Duration::minutes(1)).await;
    assert_eq!(
        (r.rekeyed, r.created, r.renewed, r.failed),
        (0, 0, 0, 0),
        "{r:?}"
    );
}

/// Serves `app` on `addr` (again, after a "restart" of the process that served there).
async fn serve_at(addr: std::net::SocketAddr, app: AppState) -> tokio::task::JoinHandle<()> {
    let listener = loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    };
    let router = teams_presence::serve::router(app);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() })
}

/// Issue 28, item 13: Graph retries an undelivered notification for up to 4 hours, with the
/// certificate it first encrypted it for, while we dropped the old key after at most 60
/// minutes. Here the old pair is gone from the configuration at the switch and the process
/// restarts twice; a notification Graph first sent just before the switch and retries 3 h
/// after it must still be opened, and the old key is gone for good after Graph's 4 hours.
#[tokio::test]
async fn a_notification_graph_retries_3_hours_after_a_key_switch_is_still_opened() {
    use teams_presence::core::presence::Presence;
    use teams_presence::engine::subscriptions::with_retired_keys;
    use teams_presence::store::PresenceRecord;

    support::init_logging();
    let (graph, subs) = FakeGraph::start_with_subscriptions().await;
    let entra = FakeEntra::start().await;
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let pairs = [
        ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
        ("AZURE_CLIENT_SECRET", "test-secret"),
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_AUTHORITY_HOST", entra.url.as_str()),
        ("GRAPH_ENDPOINT", graph.url.as_str()),
        ("PUBLIC_BASE_URL", base.as_str()),
        (
            "TOKEN_ENCRYPTION_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ),
    ];
    let store = Store::Sqlite(SqliteStore::open(&dir.path().join("s.sqlite3")).unwrap());
    // A process start: the configured ring, plus what the store kept.
    let start = |ring: KeyRing, now: DateTime<Utc>| {
        let store = store.clone();
        let settings = support::settings(&pairs);
        async move {
            let mut app = AppState::new(settings, store, Mode::Serve).with_notification_keys(ring);
            app.ctx = with_retired_keys(app.ctx, now).await;
            app
        }
    };
    let old = generate_self_signed("before the switch").unwrap();
    let old_id = old.id().to_owned();
    let new = generate_self_signed("after the switch").unwrap();
    let new_id = new.id().to_owned();

    let t0 = Utc::now();
    let first = start(KeyRing::from_keys(vec![old]), t0).await;
    drop(listener);
    let server = serve_at(addr, first.clone()).await;
    support::sign_in_directly(&first, &entra, "hana", TENANT).await;
    subs.lock().unwrap().now = Some(t0);
    let r = maintain(&first, &first.poller, t0).await;
    assert_eq!(r.created, 1, "{r:?}");
    let rec = records(&first).await.remove(0);
    assert_eq!(rec.certificate_id, old_id);

    // Just before the switch Graph sends a change; our webhook does not answer in time.
    let t1 = t0 + Duration::minutes(30);
    subs.lock().unwrap().now = Some(t1);
    subs.lock().unwrap().undelivered_change(
        &rec.subscription_id,
        TENANT,
        &rec.user_ids[0],
        "Busy",
        "InACall",
        &entra.validation_token("11111111-2222-3333-4444-555555555555", TENANT),
    );

    // The switch: a restart with only the new pair configured; the subscription is PATCHed.
    server.abort();
    let _ = server.await;
    let second = start(KeyRing::from_keys(vec![new.clone()]), t1).await;
    assert!(
        second.notification_keys.find(&old_id).is_some(),
        "the old key came back from the store"
    );
    let server = serve_at(addr, second.clone()).await;
    let r = maintain(&second, &second.poller, t1).await;
    assert_eq!((r.rekeyed, r.created), (1, 0), "{r:?}");
    assert_eq!(
        subs.lock().unwrap().items[&rec.subscription_id].certificate_id,
        new_id
    );

    // Three hours after the switch, after another restart, Graph retries.
    let t2 = t1 + Duration::hours(3);
    subs.lock().unwrap().now = Some(t2);
    server.abort();
    let _ = server.await;
    let third = start(KeyRing::from_keys(vec![new.clone()]), t2).await;
    assert!(third.notification_keys.find(&old_id).is_some());
    let server = serve_at(addr, third.clone()).await;
    maintain(&third, &third.poller, t2).await;
    let statuses = retry_deliveries(&subs).await;
    assert_eq!(statuses, vec![202]);
    let stored = third
        .store
        .get::<PresenceRecord>(&rec.user_ids[0], "presence")
        .await
        .unwrap()
        .expect("the retried notification was opened and recorded");
    assert_eq!(stored.value.last.presence, Presence::new("Busy", "InACall"));

    // Kept sealed: no stored row shows a private key.
    for row in third
        .store
        .scan_entities(teams_presence::store::Table::Meta, None)
        .await
        .unwrap()
    {
        assert!(!row.data.to_string().contains("PRIVATE KEY"), "{}", row.rk);
    }

    // Past Graph's 4 hours the old key goes: deleted at a run, and not loaded again.
    let t3 = t1 + Duration::hours(5);
    subs.lock().unwrap().now = Some(t3);
    maintain(&third, &third.poller, t3).await;
    server.abort();
    let _ = server.await;
    let fourth = start(KeyRing::from_keys(vec![new]), t3).await;
    assert!(fourth.notification_keys.find(&old_id).is_none());
}

#[tokio::test]
async fn without_https_or_a_certificate_presence_is_polled_and_nothing_is_created() {
    let (l, app) = live(&[("PUBLIC_BASE_URL", "http://presence.example")]).await;
    l.sign_in(&app, "carol").await;
    let r = maintain(&app, &app.poller, Utc::now()).await;
    assert!(r.disabled.unwrap().contains("https"));
    assert!(l.subscriptions().lock().unwrap().calls.is_empty());
}

/// Issue 13, item 6: under the Functions host `subscriptions-renew` has no output binding, so
/// when it was the first to find a dead refresh token its `user.signin_required` went
/// nowhere and the user was never announced again. Whichever job finds it, the message must
/// come out of some invocation.
#[tokio::test]
async fn signin_required_found_by_subscriptions_renew_still_reaches_the_topic() {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let w = World::builder()
        .subscriptions()
        .settings(&[("PUBLIC_BASE_URL", "https://presence.example")])
        .start()
        .await;
    let keys = KeyRing::from_keys(vec![generate_self_signed("teams-presence-test").unwrap()]);
    let app = w.app(Mode::Handler).with_notification_keys(keys);
    w.sign_in(&app, "bob").await;
    // The user revokes the app's consent: the refresh token is dead.
    w.entra.state.lock().unwrap().refresh_tokens.clear();

    let timer = json!({"Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false}}, "Metadata": {}});
    let mut messages = Vec::new();
    for function in ["subscriptions-renew", "presence-refresh"] {
        let resp = teams_presence::host::handler::router(app.clone())
            .oneshot(
                axum::http::Request::post(format!("/{function}"))
                    .header("content-type", "application/json")
                    .body(Body::from(timer.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{function}: {}", resp.status());
        let out: serde_json::Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        match &out["Outputs"]["message"] {
            serde_json::Value::Array(a) => messages.extend(a.iter().cloned()),
            serde_json::Value::Null => {}
            m => messages.push(m.clone()),
        }
    }
    let announced: Vec<_> = messages
        .iter()
        .filter(|m| m["type"] == "user.signin_required" && m["userId"] == "bob")
        .collect();
    assert_eq!(announced.len(), 1, "{messages:?}");
}

/// Issue 13, item 7: in `serve` a sign-in spawns a maintenance pass while the minute timer
/// may run one; two at once each created a subscription, the second replaced the first
/// (Graph's 409) and one dead record was left behind.
#[tokio::test]
async fn concurrent_maintenance_for_a_new_user_leaves_one_live_subscription() {
    let (l, app) = live(&[]).await;
    l.sign_in(&app, "carol").await;
    let t0 = Utc::now();
    at(&l, t0);
    let (a, b) = tokio::join!(
        maintain(&app, &app.poller, t0),
        maintain(&app, &app.poller, t0)
    );
    assert_eq!(a.failed + b.failed, 0, "{a:?} {b:?}");
    let recs = records(&app).await;
    assert_eq!(recs.len(), 1, "{recs:?}");
    let live_ids: Vec<String> = l
        .subscriptions()
        .lock()
        .unwrap()
        .items
        .keys()
        .cloned()
        .collect();
    assert_eq!(live_ids, vec![recs[0].subscription_id.clone()]);
}
