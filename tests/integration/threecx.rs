//! The 3CX V20 client against the fake PBX: one shared token, XAPI paging and profile
//! writes, the preflight, and call state over the Call Control WebSocket (with 3CX's
//! nullable entries, and a heartbeat that notices a half-open socket).

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use teams_presence::clients::pbx::threecx::{ThreeCx, ThreeCxError};
use teams_presence::clients::pbx::threecx_calls::Heartbeat;
use teams_presence::core::pbx::model::{Extension, LineState, PbxEvent, Profile};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::fakes::threecx::{FakeThreeCx, CLIENT_ID, SECRET};

fn client(fake: &FakeThreeCx, secret: &str) -> Arc<ThreeCx> {
    Arc::new(
        ThreeCx::new(
            fake.url.parse().unwrap(),
            CLIENT_ID,
            SecretString::from(secret.to_owned()),
            Duration::from_secs(5),
        )
        .unwrap(),
    )
}

fn ext(n: &str) -> Extension {
    Extension(n.into())
}

/// A running event task and its receiving end.
struct Events {
    rx: mpsc::Receiver<PbxEvent>,
    /// Stops the follower when the test lets go of it.
    _stop: tokio_util::sync::DropGuard,
}

/// A client whose socket pings every 200 ms and gives up after 1 s of silence.
fn quick_heartbeat_client(fake: &FakeThreeCx) -> Arc<ThreeCx> {
    Arc::new(
        ThreeCx::new(
            fake.url.parse().unwrap(),
            CLIENT_ID,
            SecretString::from(SECRET.to_owned()),
            Duration::from_secs(5),
        )
        .unwrap()
        .with_heartbeat(Heartbeat {
            every: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
        }),
    )
}

fn follow(c: &Arc<ThreeCx>) -> Events {
    let (tx, rx) = mpsc::channel(64);
    let stop = tokio_util::sync::CancellationToken::new();
    let (c, stopped) = (c.clone(), stop.clone());
    tokio::spawn(async move { c.run_call_events(tx, stopped).await });
    Events {
        rx,
        _stop: stop.drop_guard(),
    }
}

impl Events {
    async fn next(&mut self) -> PbxEvent {
        tokio::time::timeout(Duration::from_secs(5), self.rx.recv())
            .await
            .expect("no 3CX event within 5 s")
            .expect("event task ended")
    }

    /// The next Line event, within `within`.
    async fn line(&mut self, within: Duration) -> (Extension, LineState) {
        match tokio::time::timeout(within, self.rx.recv()).await {
            Ok(Some(PbxEvent::Line {
                extension, state, ..
            })) => (extension, state),
            other => panic!("expected a Line event, got {other:?}"),
        }
    }

    /// Health(true) then a Snapshot; returns the snapshot's (extension, line) pairs.
    async fn connected(&mut self) -> Vec<(String, LineState)> {
        assert!(matches!(
            self.next().await,
            PbxEvent::Health {
                connected: true,
                ..
            }
        ));
        match self.next().await {
            PbxEvent::Snapshot { extensions, .. } => extensions
                .into_iter()
                .map(|e| (e.extension.0, e.line))
                .collect(),
            other => panic!("expected a Snapshot, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn threecx_concurrent_callers_share_one_token_request() {
    let fake = FakeThreeCx::start().await;
    let c = client(&fake, SECRET);
    let (a, b) = tokio::join!(c.check_connectivity(), c.users());
    a.unwrap();
    b.unwrap();
    assert_eq!(fake.token_requests(), 1);
}

#[tokio::test]
async fn threecx_revoked_token_is_refetched_once_for_all_callers() {
    let fake = FakeThreeCx::start().await;
    let c = client(&fake, SECRET);
    c.check_connectivity().await.unwrap();
    fake.revoke_token();
    let (a, b) = tokio::join!(c.check_connectivity(), c.native_presence_sync());
    a.unwrap();
    b.unwrap();
    assert_eq!(fake.token_requests(), 2, "one initial token, one refetch");
}

/// Issue 28, item 10: before 20.0.9 3CX sent `expires_in` in minutes. Read as seconds, a
/// 1-minute token was refreshed after half a second, and each refresh revokes the token
/// every other caller (the Call Control socket among them) holds.
#[tokio::test]
async fn threecx_an_old_builds_expires_in_minutes_is_not_refreshed_every_few_seconds() {
    let fake = FakeThreeCx::start().await;
    fake.play_build_before_20_0_9(1);
    let c = client(&fake, SECRET);
    c.check_connectivity().await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    c.check_connectivity().await.unwrap();
    c.users().await.unwrap();
    assert_eq!(
        fake.token_requests(),
        1,
        "a 1-minute token is good for a minute"
    );
}

#[tokio::test]
async fn threecx_wrong_secret_is_unauthorized_without_echoing_it() {
    let fake = FakeThreeCx::start().await;
    let err = client(&fake, "not-the-secret-xyz")
        .check_connectivity()
        .await
        .unwrap_err();
    assert!(matches!(err, ThreeCxError::Unauthorized(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("PBX_3CX_CLIENT_SECRET"), "{msg}");
    assert!(!msg.contains("not-the-secret-xyz"), "{msg}");
}

/// Issue 28, item 10: V20 is reported to cap `$top` at 100 and its schema has no
/// `@odata.nextLink`, so users past the first hundred were never found.
#[tokio::test]
async fn threecx_users_past_the_first_page_of_100_are_found() {
    let fake = FakeThreeCx::start().await;
    fake.add_users(1000, 250);
    let c = client(&fake, SECRET);
    let users = c.users().await.unwrap();
    assert_eq!(users.len(), 255);
    assert_eq!(fake.user_pages(), 3, "255 users, 100 a page");
    assert_eq!(users[1].number.0, "101");
    assert_eq!(users[1].id, fake.user("101").id);
    assert_eq!(users[1].email.as_deref(), Some("user101@example.com"));
    assert_eq!(users[254].number.0, "1249");
    let profiles = c.current_profiles().await.unwrap();
    assert_eq!(profiles.len(), 255);
    c.set_profile(&ext("1249"), &Profile::new("Away"))
        .await
        .unwrap();
    assert_eq!(fake.user("1249").profile, "Away");
}

/// Issue 28, item 10: a status profile's `CustomName` ("Lunch") is what the 3CX apps show,
/// but `CurrentProfileName` takes and shows the canonical `Name` ("Custom 1").
#[tokio::test]
async fn threecx_a_profile_named_by_its_custom_name_is_patched_by_its_canonical_name() {
    let fake = FakeThreeCx::start().await;
    let c = client(&fake, SECRET);
    c.preflight(
        &[ext("101")],
        &[Profile::new("Lunch"), Profile::new("Away")],
    )
    .await
    .unwrap();
    c.set_profile(&ext("101"), &Profile::new("Lunch"))
        .await
        .unwrap();
    let patches = fake.patches();
    assert_eq!(
        patches[0].body,
        serde_json::json!({"CurrentProfileName": "Custom 1"})
    );
    assert_eq!(patches[0].status, 204);
    assert_eq!(fake.user("101").profile, "Custom 1");
    // Read back by the name the configuration uses, so the sync sees its own echo.
    let profiles = c.current_profiles().await.unwrap();
    assert_eq!(profiles[&ext("101")].as_str(), "Lunch");
    assert_eq!(profiles[&ext("102")].as_str(), "Available");
    // A name that is neither is refused with both spellings listed.
    let err = c
        .preflight(&[ext("101")], &[Profile::new("Holiday")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Custom 1 (Lunch)"), "{err}");
}

#[tokio::test]
async fn threecx_set_profile_patches_current_profile_name_by_id() {
    let fake = FakeThreeCx::start().await;
    let c = client(&fake, SECRET);
    c.set_profile(&ext("101"), &Profile::new("Away"))
        .await
        .unwrap();
    let patches = fake.patches();
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].id, fake.user("101").id);
    assert_eq!(
        patches[0].body,
        serde_json::json!({"CurrentProfileName": "Away"})
    );
    assert_eq!(patches[0].status, 204);
    assert_eq!(fake.user("101").profile, "Away");

    let err = c
        .set_profile(&ext("101"), &Profile::new("Lunch"))
        .await
        .unwrap_err();
    assert!(matches!(err, ThreeCxError::UnknownProfile { .. }), "{err}");
    let err = c
        .set_profile(&ext("199"), &Profile::new("Away"))
        .await
        .unwrap_err();
    assert!(matches!(err, ThreeCxError::UnknownExtension(_)), "{err}");
}

#[tokio::test]
async fn threecx_profile_changed_by_hand_is_read_by_one_poll() {
    let fake = FakeThreeCx::start().await;
    let c = client(&fake, SECRET);
    fake.set_profile_by_hand("102", "Out of office");
    let profiles = c.current_profiles().await.unwrap();
    assert_eq!(profiles.len(), 5);
    assert_eq!(profiles[&ext("102")], Profile::new("out of office"));
    assert_eq!(profiles[&ext("101")], Profile::new("Available"));
}

#[tokio::test]
async fn threecx_preflight_refuses_while_native_teams_presence_sync_is_on() {
    let fake = FakeThreeCx::start().await;
    let c = client(&fake, SECRET);
    let wanted = [Profile::new("Available"), Profile::new("Away")];
    fake.set_native_sync(true);
    let err = c.preflight(&[ext("101")], &wanted).await.unwrap_err();
    assert!(matches!(err, ThreeCxError::NativeSyncOn), "{err}");
    assert!(err.to_string().contains("Integrations → Microsoft 365"));

    fake.set_native_sync(false);
    c.preflight(&[ext("101"), ext("102")], &wanted)
        .await
        .unwrap();
    let err = c
        .preflight(&[ext("101")], &[Profile::new("Holiday")])
        .await
        .unwrap_err();
    assert!(matches!(err, ThreeCxError::UnknownProfile { .. }), "{err}");
    assert!(err.to_string().contains("Out of office"), "{err}");
}

#[tokio::test]
async fn threecx_socket_refuses_an_upgrade_without_a_bearer_token() {
    let fake = FakeThreeCx::start().await;
    let url = format!("{}/callcontrol/ws", fake.url.replace("http://", "ws://"));
    let req = url.into_client_request().unwrap();
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 401)
        }
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn threecx_call_on_101_reports_dialing_in_call_then_idle_after_hang_up() {
    let fake = FakeThreeCx::start().await;
    let c = client(&fake, SECRET);
    let mut events = follow(&c);
    let snapshot = events.connected().await;
    assert_eq!(
        snapshot,
        [
            ("101".into(), LineState::Idle),
            ("102".into(), LineState::Idle)
        ]
    );

    let call = fake.start_call("101", "200");
    let two = Duration::from_secs(2);
    assert_eq!(events.line(two).await, (ext("101"), LineState::Dialing));
    fake.answer("101", call);
    assert_eq!(events.line(two).await, (ext("101"), LineState::InCall));
    // Hold is still a call: no event for it.
    fake.hold("101", call);
    fake.hang_up("101", call);
    assert_eq!(events.line(two).await, (ext("101"), LineState::Idle));
    assert!(fake.entity_gets() >= 3, "each Upsert is followed by a GET");
}

#[tokio::test]
async fn threecx_forced_disconnect_reports_health_then_resyncs_with_a_snapshot() {
    let fake = FakeThreeCx::start().await;
    let c = client(&fake, SECRET);
    let mut events = follow(&c);
    events.connected().await;
    let call = fake.incoming_call("102", "300");
    let two = Duration::from_secs(2);
    assert_eq!(events.line(two).await, (ext("102"), LineState::Ringing));

    fake.disconnect_all();
    match events.next().await {
        PbxEvent::Health { connected, detail } => {
            assert!(!connected);
            assert!(!detail.contains(SECRET), "{detail}");
        }
        other => panic!("expected Health(false), got {other:?}"),
    }
    // Answered while we were away: the resync snapshot has it.
    fake.answer("102", call);
    let snapshot = events.connected().await;
    assert!(
        snapshot.contains(&("102".into(), LineState::InCall)),
        "{snapshot:?}"
    );
    fake.hang_up("102", call);
    assert_eq!(events.line(two).await, (ext("102"), LineState::Idle));
}

#[tokio::test]
async fn threecx_unmonitored_dn_never_appears() {
    let fake = FakeThreeCx::start().await;
    let c = client(&fake, SECRET);
    let mut events = follow(&c);
    let snapshot = events.connected().await;
    assert!(snapshot.iter().all(|(dn, _)| dn != "103"));
    let call = fake.start_call("103", "200");
    fake.answer("103", call);
    fake.hang_up("103", call);
    // Something on a monitored DN, so the unmonitored one had every chance to show first.
    fake.start_call("101", "200");
    assert_eq!(
        events.line(Duration::from_secs(2)).await,
        (ext("101"), LineState::Dialing)
    );
}

/// Issue 28, item 8: 3CX's own types make `dn` and participant `id` optional and nullable;
/// one such entry made every `GET /callcontrol` fail and the socket loop on reconnects.
#[tokio::test]
async fn threecx_a_snapshot_with_nullable_dn_and_participant_id_still_connects_and_follows_calls() {
    let fake = FakeThreeCx::start().await;
    fake.add_nullable_entries();
    let c = client(&fake, SECRET);
    let mut events = follow(&c);
    let snapshot = events.connected().await;
    assert_eq!(
        snapshot,
        [
            ("101".into(), LineState::Idle),
            ("102".into(), LineState::Idle)
        ]
    );
    fake.start_call("102", "200");
    assert_eq!(
        events.line(Duration::from_secs(2)).await,
        (ext("102"), LineState::Dialing)
    );
}

/// Issue 28, item 9: a half-open socket (open, silent, no pongs) went unnoticed for ever.
/// The client pings (3CX's sample: every 5 s; 200 ms here), gives up after its timeout,
/// reconnects and resyncs: a call placed meanwhile is in the fresh snapshot.
#[tokio::test]
async fn threecx_a_half_open_socket_is_noticed_by_the_heartbeat_and_resynced() {
    let fake = FakeThreeCx::start().await;
    let c = quick_heartbeat_client(&fake);
    let mut events = follow(&c);
    events.connected().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(fake.pings() >= 2, "pings: {}", fake.pings());

    fake.half_open_all();
    let silenced = std::time::Instant::now();
    let call = fake.start_call("101", "200");
    match tokio::time::timeout(Duration::from_secs(4), events.rx.recv()).await {
        Ok(Some(PbxEvent::Health { connected, detail })) => {
            assert!(!connected);
            assert!(detail.contains("half-open"), "{detail}");
        }
        other => panic!("expected Health(false) after the socket went silent, got {other:?}"),
    }
    assert!(
        silenced.elapsed() >= Duration::from_millis(800),
        "gave up before the timeout: {:?}",
        silenced.elapsed()
    );
    let snapshot = events.connected().await;
    assert!(
        snapshot.contains(&("101".into(), LineState::Dialing)),
        "{snapshot:?}"
    );
    // And the new socket follows: the hang-up arrives.
    fake.hang_up("101", call);
    assert_eq!(
        events.line(Duration::from_secs(2)).await,
        (ext("101"), LineState::Idle)
    );
}
