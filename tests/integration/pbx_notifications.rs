//! The PBX sync in `serve` (in-process, on a real socket) when Teams presence arrives as
//! change notifications: the fake Graph POSTs an encrypted notification for every change
//! of the aggregate, our own setPresence/clearPresence included, duplicated and with stale
//! copies overtaking newer ones, exactly as Graph gives no hint who wrote what. A 3CX call
//! must make Teams Busy/InACall and clear after the hang-up, and none of those echoes may
//! reach the phone.

use std::time::{Duration, Instant};

use chrono::Utc;
use teams_presence::clients::graph::notification::client_state_sha256_hex;
use teams_presence::store::{PbxMappingRecord, SubscriptionRecord};

use crate::fakes::entra::FakeEntra;
use crate::fakes::graph::FakeGraph;
use crate::fakes::graph_presence::NotificationTarget;
use crate::fakes::threecx::{self, FakeThreeCx};
use crate::support;

const USER: &str = "6b1f4f7e-7d3b-4b8e-9a61-2f5c0d1e3a10";
const TENANT: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
const SUB: &str = "5b5b5b5b-0000-4000-8000-000000000003";
const CLIENT_STATE: &str = "per-subscription-secret-4f1c";

async fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_learning_teams_by_notifications_never_sends_our_own_echo_to_the_phone() {
    support::init_logging();
    let entra = FakeEntra::start().await;
    let (graph, teams) = FakeGraph::start_with_presence_writes().await;
    let pbx = FakeThreeCx::start().await;
    teams.set_client_session(USER, Some(("Available", "Available")));

    let dir = tempfile::tempdir().unwrap();
    let key = teams_presence::clients::graph::certs::generate_self_signed("pbx echo test").unwrap();
    let pem = dir.path().join("notification.pem");
    std::fs::write(&pem, key.to_pem().unwrap()).unwrap();
    let settings = support::settings(&[
        ("STORE", "sqlite"),
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", CLIENT),
        ("AZURE_CLIENT_SECRET", "app-secret"),
        ("AZURE_AUTHORITY_HOST", &entra.url),
        ("GRAPH_ENDPOINT", &graph.url),
        ("NOTIFICATION_CERTIFICATE_PATH", pem.to_str().unwrap()),
        // Teams is read once at start; after that it is learnt from notifications only.
        ("POLL_INTERVAL", "3600"),
        ("PBX", "3cx"),
        ("PBX_3CX_URL", &pbx.url),
        ("PBX_3CX_CLIENT_ID", threecx::CLIENT_ID),
        ("PBX_3CX_CLIENT_SECRET", threecx::SECRET),
        ("PBX_STABLE_SECONDS", "1"),
        ("PBX_HOLD_SECONDS", "2"),
        ("PBX_PROFILE_POLL_SECONDS", "1"),
    ]);
    let state = teams_presence::serve::build_state(settings, &dir.path().join("data"))
        .await
        .unwrap();
    let now = Utc::now();
    state
        .store
        .upsert(&PbxMappingRecord {
            extension: "101".into(),
            user_id: USER.into(),
            user: "jane@contoso.com".into(),
            created_at: now,
        })
        .await
        .unwrap();
    // The subscription Graph would deliver for (the webhook checks clientState and tenant).
    state
        .store
        .insert(&SubscriptionRecord {
            subscription_id: SUB.into(),
            user_ids: vec![USER.into()],
            tenant_id: TENANT.into(),
            owner_user_id: USER.into(),
            resource: format!("/communications/presences/{USER}"),
            client_state_sha256: client_state_sha256_hex(CLIENT_STATE),
            expires_at: now + chrono::Duration::minutes(55),
            created_at: now,
            certificate_id: String::new(),
        })
        .await
        .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(teams_presence::serve::run(listener, state, async {
        let _ = stopped.await;
    }));
    let delivered = teams.notify(NotificationTarget {
        url: format!("http://{addr}/api/notifications"),
        subscription_id: SUB.into(),
        client_state: CLIENT_STATE.into(),
        tenant_id: TENANT.into(),
        key,
        validation_token: entra.validation_token(CLIENT, TENANT),
        // This seed duplicates our Busy/InACall and sends a stale copy of it after the
        // Available that follows the hang-up; the end of the test checks that it did.
        seed: 0x005e_ed0f_ec40,
    });
    // The sync is up once it has a 3CX token and has read the profiles.
    wait_until("3CX connected", Duration::from_secs(10), || {
        pbx.token_requests() > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // A call on the desk phone: Teams shows Busy / In a call. (Writes before it are the
    // start-up clearPresence of a session a crash may have left.)
    let writes_before = teams.calls().len();
    let call = pbx.start_call("101", "0441234567");
    let took = wait_until("Teams Busy/InACall", Duration::from_secs(5), || {
        teams.aggregate(USER) == ("Busy".into(), "InACall".into())
    })
    .await;
    assert!(
        took < Duration::from_secs(2),
        "Teams followed after {took:?}"
    );
    // Our Busy/InACall comes back as notifications (twice, maybe): the phone is left alone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        pbx.patches().is_empty(),
        "echo reached the PBX: {:?}",
        pbx.patches()
    );

    // Hang-up: the session is cleared after the hold-down; the Available that follows and
    // stale copies of our Busy/InACall arriving after it are echoes too.
    pbx.hang_up("101", call);
    wait_until("session cleared", Duration::from_secs(8), || {
        teams.app_sessions(USER).is_empty()
    })
    .await;
    assert_eq!(
        teams.aggregate(USER),
        ("Available".into(), "Available".into())
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        pbx.patches().is_empty(),
        "echo reached the PBX: {:?}",
        pbx.patches()
    );
    assert_eq!(pbx.user("101").profile, "Available");

    // The noise really happened: every notification was accepted, at least one was
    // duplicated, and a stale copy of our Busy/InACall arrived after the newer Available.
    let log = delivered.lock().unwrap().clone();
    assert!(log.iter().all(|d| d.status == 202), "{log:?}");
    let ours: Vec<_> = log.iter().filter(|d| d.activity == "InACall").collect();
    assert!(
        ours.len() >= 2,
        "our Busy/InACall came back {} time(s): {log:?}",
        ours.len()
    );
    let duplicated =
        (0..log.len()).any(|i| log.iter().filter(|d| d.change == i && !d.stale).count() > 1);
    assert!(duplicated, "no duplicate: {log:?}");
    assert!(
        log.iter()
            .any(|d| d.stale
                && (d.availability.as_str(), d.activity.as_str()) == ("Busy", "InACall")),
        "no stale copy of our Busy/InACall: {log:?}"
    );
    // Graph's own record: exactly one set and one clear, no fight.
    let writes: Vec<String> = teams
        .calls()
        .into_iter()
        .skip(writes_before)
        .map(|(path, _, _)| path)
        .filter(|p| p.contains("/presence/"))
        .collect();
    assert_eq!(
        writes,
        [
            format!("/users/{USER}/presence/setPresence"),
            format!("/users/{USER}/presence/clearPresence")
        ],
        "{writes:?}"
    );

    let _ = stop.send(());
    let _ = server.await;
}

/// Issue 28, item 14: the PBX sync reads its mapped users' presence itself (users nobody
/// signed in), and that read dropped Graph's `sequenceNumber`. A notification older than the
/// read that arrived after it then moved the presence back. The fake Graph answers as Graph
/// does today: lowerCamelCase values and a `sequenceNumber`.
#[tokio::test]
async fn the_pbx_syncs_own_presence_read_keeps_graphs_sequence_number() {
    use teams_presence::core::presence::{Observation, Presence, Source};
    use teams_presence::store::PresenceRecord;

    support::init_logging();
    let entra = FakeEntra::start().await;
    let graph = FakeGraph::start().await;
    let pbx = FakeThreeCx::start().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = support::settings(&[
        ("STORE", "sqlite"),
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", CLIENT),
        ("AZURE_CLIENT_SECRET", "app-secret"),
        ("AZURE_AUTHORITY_HOST", &entra.url),
        ("GRAPH_ENDPOINT", &graph.url),
        ("PBX", "3cx"),
        ("PBX_3CX_URL", &pbx.url),
        ("PBX_3CX_CLIENT_ID", threecx::CLIENT_ID),
        ("PBX_3CX_CLIENT_SECRET", threecx::SECRET),
    ]);
    let state = teams_presence::serve::build_state(settings, &dir.path().join("data"))
        .await
        .unwrap();
    state
        .store
        .upsert(&PbxMappingRecord {
            extension: "101".into(),
            user_id: USER.into(),
            user: "jane@contoso.com".into(),
            created_at: Utc::now(),
        })
        .await
        .unwrap();
    // Busy (sequence 1), then Available (sequence 2) by the time the sync reads.
    graph.set(USER, "Busy", "InACall");
    graph.set(USER, "Available", "Available");
    let sync = state.pbx.clone().unwrap();
    sync.load().await.unwrap();
    sync.follow(None, Utc::now()).await;
    let stored = || async {
        state
            .store
            .get::<PresenceRecord>(USER, "presence")
            .await
            .unwrap()
            .unwrap()
            .value
    };
    let rec = stored().await;
    assert_eq!(rec.last.presence, Presence::new("Available", "Available"));
    assert_eq!(
        rec.last.graph_sequence.as_deref(),
        Some("00000000000000000002")
    );
    // Graph's notification of the Busy (sequence 1), delivered late, as the webhook opens it.
    let late = Observation {
        user_id: USER.into(),
        tenant_id: TENANT.into(),
        presence: Presence::new("busy", "inACall"),
        source: Source::Notification,
        observed_at: Utc::now() + chrono::Duration::seconds(1),
        graph_sequence: Some("00000000000000000001".into()),
        item_digest: Some("a-late-item".into()),
    };
    let published = teams_presence::engine::pipeline::record_and_publish(
        &state.store,
        &state.publisher,
        None,
        &late,
    )
    .await
    .unwrap();
    assert_eq!(
        published,
        teams_presence::engine::pipeline::Outcome::NothingNew,
        "an older notification moved the presence back"
    );
    assert_eq!(
        stored().await.last.presence,
        Presence::new("Available", "Available")
    );
}
