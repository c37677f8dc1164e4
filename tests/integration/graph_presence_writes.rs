//! Graph presence writes: the client's requests against the fake Graph's presence rules
//! (allowed pairs, expiration range, session ids, aggregation, decay and expiry, the
//! record of aggregate changes) and user resolution by UPN or mail.

use std::time::Duration as StdDuration;

use chrono::Duration;
use secrecy::SecretString;
use serde_json::{json, Value};
use teams_presence::clients::graph::client::GraphError;

use crate::support::World;

const APP_ID: &str = "11111111-2222-3333-4444-555555555555";
const USER: &str = "8b6f1a8e-0000-4000-8000-00000000a11c";

/// The app's token, registered with the fake Graph for `APP_ID`.
const TOKEN: &str = "app-1";

fn token() -> SecretString {
    SecretString::from(TOKEN)
}

/// Sets our session's presence for an hour.
async fn set(w: &World, a: &str, b: &str) -> Result<(), GraphError> {
    w.graph_client()
        .set_presence(&token(), USER, APP_ID, a, b, Duration::hours(1))
        .await
}

async fn clear(w: &World) -> Result<(), GraphError> {
    w.graph_client()
        .clear_presence(&token(), USER, APP_ID)
        .await
}

/// What Teams shows for the user (the aggregate).
fn shown(w: &World) -> (String, String) {
    w.writes().aggregate(USER)
}

/// A raw POST, to see the fake's own status codes.
async fn raw(w: &World, action: &str, body: Value) -> u16 {
    reqwest::Client::new()
        .post(format!(
            "{}/v1.0/users/{USER}/presence/{action}",
            w.graph.url
        ))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

fn is_400(e: &GraphError) -> bool {
    matches!(e, GraphError::Failed(d) if d.starts_with("HTTP 400"))
}

#[tokio::test]
async fn set_presence_accepts_only_the_five_session_pairs() {
    let w = World::builder()
        .presence_writes()
        .app_token(TOKEN, APP_ID)
        .start()
        .await;
    w.writes().set_client_session(USER, Some(("Away", "Away")));
    let cases = [
        ("Available", "Available", true),
        ("Busy", "InACall", true),
        ("Busy", "InAConferenceCall", true),
        ("Away", "Away", true),
        ("DoNotDisturb", "Presenting", true),
        ("Busy", "Busy", false),
        ("Busy", "InAMeeting", false),
        ("OutOfOffice", "OutOfOffice", false),
        ("BeRightBack", "BeRightBack", false),
        ("DoNotDisturb", "DoNotDisturb", false),
    ];
    for (a, b, ok) in cases {
        match set(&w, a, b).await {
            Ok(()) => {
                assert!(ok, "{a}/{b} should be refused");
                assert_eq!(
                    shown(&w),
                    pair(a, b),
                    "our session shows over the client's Away"
                );
            }
            Err(e) => assert!(!ok && is_400(&e), "{a}/{b}: {e:?}"),
        }
    }
}

#[tokio::test]
async fn set_presence_refuses_an_expiration_outside_pt5m_to_pt4h_before_sending() {
    let w = World::builder()
        .presence_writes()
        .app_token(TOKEN, APP_ID)
        .start()
        .await;
    for d in [
        Duration::minutes(4),
        Duration::hours(4) + Duration::seconds(1),
    ] {
        let e = w
            .graph_client()
            .set_presence(&token(), USER, APP_ID, "Busy", "InACall", d)
            .await
            .unwrap_err();
        assert!(matches!(e, GraphError::Invalid(_)), "{e:?}");
    }
    assert!(w.writes().calls().is_empty(), "nothing was sent");
    for d in [Duration::minutes(5), Duration::hours(4)] {
        let r = w
            .graph_client()
            .set_presence(&token(), USER, APP_ID, "Busy", "InACall", d)
            .await;
        assert_eq!(r, Ok(()));
    }
    let sent = w.writes().calls();
    assert_eq!(sent[0].2["expirationDuration"], "PT5M");
    assert_eq!(
        sent[1].2,
        json!({"sessionId": APP_ID, "availability": "Busy", "activity": "InACall", "expirationDuration": "PT4H"})
    );
    // The fake enforces the range too, for clients that do not check.
    for d in ["PT4M59S", "PT4H1M", "P1D", "soon"] {
        let body = json!({"sessionId": APP_ID, "availability": "Busy", "activity": "InACall", "expirationDuration": d});
        assert_eq!(raw(&w, "setPresence", body).await, 400, "{d}");
    }
}

#[tokio::test]
async fn set_presence_needs_the_callers_app_id_as_session_id() {
    let w = World::builder()
        .presence_writes()
        .app_token(TOKEN, APP_ID)
        .start()
        .await;
    let e = w
        .graph_client()
        .set_presence(
            &token(),
            USER,
            "some-other-app",
            "Busy",
            "InACall",
            Duration::hours(1),
        )
        .await
        .unwrap_err();
    assert!(is_400(&e), "{e:?}");
    let e = w
        .graph_client()
        .set_presence(&token(), USER, " ", "Busy", "InACall", Duration::hours(1))
        .await
        .unwrap_err();
    assert!(matches!(e, GraphError::Invalid(_)), "{e:?}");
    set(&w, "Busy", "InACall").await.unwrap();
    assert_eq!(w.writes().app_sessions(USER), [APP_ID]);
}

#[tokio::test]
async fn preferred_presence_accepts_only_the_six_pairs() {
    let w = World::builder()
        .presence_writes()
        .app_token(TOKEN, APP_ID)
        .start()
        .await;
    w.writes()
        .set_client_session(USER, Some(("Available", "Available")));
    let cases = [
        ("Available", "Available", true),
        ("Busy", "Busy", true),
        ("DoNotDisturb", "DoNotDisturb", true),
        ("BeRightBack", "BeRightBack", true),
        ("Away", "Away", true),
        ("Offline", "OffWork", true),
        ("Busy", "InACall", false),
        ("DoNotDisturb", "Presenting", false),
        ("Offline", "Offline", false),
        ("OutOfOffice", "OutOfOffice", false),
    ];
    for (a, b, ok) in cases {
        let r = w
            .graph_client()
            .set_user_preferred_presence(&token(), USER, a, b, Some(Duration::hours(8)))
            .await;
        match r {
            Ok(()) => {
                assert!(ok, "{a}/{b} should be refused");
                assert_eq!(shown(&w), pair(a, b));
            }
            Err(e) => assert!(!ok && is_400(&e), "{a}/{b}: {e:?}"),
        }
    }
    let sent = w.writes().calls();
    assert_eq!(sent[0].2["expirationDuration"], "PT8H");
    assert!(sent[0].2.get("sessionId").is_none());
}

/// Issue 28, item 12: Graph documents `Content-Type: application/json` and `{}` for
/// clearUserPreferredPresence; we sent no body at all.
#[tokio::test]
async fn clear_user_preferred_presence_sends_json_and_an_empty_object() {
    let w = World::builder()
        .presence_writes()
        .app_token(TOKEN, APP_ID)
        .start()
        .await;
    w.writes()
        .set_client_session(USER, Some(("Available", "Available")));
    w.graph_client()
        .set_user_preferred_presence(&token(), USER, "Away", "Away", None)
        .await
        .unwrap();
    assert_eq!(shown(&w), pair("Away", "Away"));
    w.graph_client()
        .clear_user_preferred_presence(&token(), USER)
        .await
        .unwrap();
    assert_eq!(shown(&w), pair("Available", "Available"));
    let (path, _, body) = w.writes().calls().pop().unwrap();
    assert!(path.ends_with("/clearUserPreferredPresence"), "{path}");
    assert_eq!(body, json!({}));
    // What the fake refuses, as the docs ask: no JSON content type, or another body.
    let url = format!(
        "{}/v1.0/users/{USER}/presence/clearUserPreferredPresence",
        w.graph.url
    );
    let bare = reqwest::Client::new()
        .post(&url)
        .bearer_auth("app-1")
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status().as_u16(), 415);
    assert_eq!(
        raw(&w, "clearUserPreferredPresence", json!({"x": 1})).await,
        400
    );
}

#[tokio::test]
async fn clear_presence_is_404_without_a_session_and_the_client_counts_that_as_done() {
    let w = World::builder()
        .presence_writes()
        .app_token(TOKEN, APP_ID)
        .start()
        .await;
    assert_eq!(
        raw(&w, "clearPresence", json!({"sessionId": APP_ID})).await,
        404
    );
    assert_eq!(clear(&w).await, Ok(()));
    set(&w, "Busy", "InACall").await.unwrap();
    assert_eq!(
        raw(&w, "clearPresence", json!({"sessionId": APP_ID})).await,
        200
    );
    assert_eq!(
        shown(&w),
        pair("Offline", "Offline"),
        "our session was the only one"
    );
}

#[tokio::test]
async fn aggregation_ranks_preferred_then_dnd_busy_available_away() {
    let w = World::builder()
        .presence_writes()
        .app_token(TOKEN, APP_ID)
        .start()
        .await;
    // No session: Offline, whatever the preferred state.
    w.writes().set_preferred(USER, Some(("Busy", "Busy")));
    assert_eq!(shown(&w), pair("Offline", "Offline"));
    // A session makes the preferred state visible; it hides ours too.
    w.writes().set_client_session(USER, Some(("Away", "Away")));
    assert_eq!(shown(&w), pair("Busy", "Busy"));
    set(&w, "DoNotDisturb", "Presenting").await.unwrap();
    assert_eq!(shown(&w), pair("Busy", "Busy"));
    w.graph_client()
        .clear_user_preferred_presence(&token(), USER)
        .await
        .unwrap();
    assert_eq!(shown(&w), pair("DoNotDisturb", "Presenting"));
    // Busy over Available over Away.
    set(&w, "Available", "Available").await.unwrap();
    assert_eq!(
        shown(&w),
        pair("Available", "Available"),
        "app Available over client Away"
    );
    w.writes()
        .set_client_session(USER, Some(("Busy", "InAMeeting")));
    assert_eq!(shown(&w), pair("Busy", "InAMeeting"));
    w.writes()
        .set_client_session(USER, Some(("DoNotDisturb", "DoNotDisturb")));
    set(&w, "Busy", "InACall").await.unwrap();
    assert_eq!(
        shown(&w),
        pair("DoNotDisturb", "DoNotDisturb"),
        "DND over our Busy"
    );
    w.writes().set_client_session(USER, None);
    assert_eq!(shown(&w), pair("Busy", "InACall"));
    clear(&w).await.unwrap();
    assert_eq!(shown(&w), pair("Offline", "Offline"));
}

#[tokio::test]
async fn an_app_available_session_goes_inactive_then_away_then_expires_to_offline() {
    let w = World::builder()
        .presence_writes()
        .app_token(TOKEN, APP_ID)
        .start()
        .await;
    let t0 = w.writes().now();
    set(&w, "Available", "Available").await.unwrap();
    let steps = [
        (4, pair("Available", "Available")),
        (1, pair("Available", "AvailableInactive")),
        (5, pair("Away", "Away")),
    ];
    for (minutes, want) in steps {
        w.writes().advance(Duration::minutes(minutes));
        assert_eq!(shown(&w), want, "after {minutes} more minutes");
    }
    let inactive = &w.writes().changes()[1];
    assert_eq!(inactive.activity, "AvailableInactive");
    assert!(
        inactive.at - t0 >= Duration::minutes(5),
        "stamped with the fake clock"
    );
    // Re-posting holds it at Available.
    set(&w, "Available", "Available").await.unwrap();
    assert_eq!(shown(&w), pair("Available", "Available"));
    // A busy session does not decay, but it expires.
    set(&w, "Busy", "InACall").await.unwrap();
    w.writes().advance(Duration::minutes(59));
    assert_eq!(shown(&w), pair("Busy", "InACall"));
    w.writes().advance(Duration::minutes(1));
    assert_eq!(shown(&w), pair("Offline", "Offline"));
    assert!(w.writes().app_sessions(USER).is_empty());
}

#[tokio::test]
async fn every_aggregate_change_is_recorded_and_sent_to_the_hook_our_writes_included() {
    let w = World::builder()
        .presence_writes()
        .app_token(TOKEN, APP_ID)
        .start()
        .await;
    let mut rx = w.writes().on_change();
    w.writes()
        .set_client_session(USER, Some(("Available", "Available")));
    set(&w, "Busy", "InACall").await.unwrap();
    set(&w, "Busy", "InACall").await.unwrap(); // no change, no record
    clear(&w).await.unwrap();
    w.writes().set_client_session(USER, None);
    let want = [
        pair("Available", "Available"),
        pair("Busy", "InACall"),
        pair("Available", "Available"),
        pair("Offline", "Offline"),
    ];
    let got: Vec<_> = w
        .writes()
        .changes()
        .into_iter()
        .map(|c| (c.availability, c.activity))
        .collect();
    assert_eq!(got, want);
    for expected in want {
        let c = rx.recv().await.unwrap();
        assert_eq!(c.user_id, USER);
        assert_eq!((c.availability, c.activity), expected);
    }
    // The aggregate is what presence reads see.
    let p: Value = reqwest::Client::new()
        .post(format!(
            "{}/v1.0/communications/getPresencesByUserId",
            w.graph.url
        ))
        .bearer_auth("app-1")
        .json(&json!({"ids": [USER]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // As Graph writes it today (lowerCamelCase).
    assert_eq!(p["value"][0]["availability"], "offline");
}

#[tokio::test]
async fn a_throttled_write_surfaces_retry_after() {
    let w = World::builder()
        .presence_writes()
        .app_token(TOKEN, APP_ID)
        .start()
        .await;
    w.graph.state.lock().unwrap().throttle_next.push(7);
    let e = set(&w, "Busy", "InACall").await.unwrap_err();
    assert_eq!(
        e,
        GraphError::Throttled {
            retry_after: StdDuration::from_secs(7)
        }
    );
    assert_eq!(set(&w, "Busy", "InACall").await, Ok(()));
}

#[tokio::test]
async fn resolve_user_by_upn_then_by_mail_with_odata_quotes_escaped() {
    let w = World::builder()
        .presence_writes()
        .app_token(TOKEN, APP_ID)
        .start()
        .await;
    w.writes()
        .add_user("id-alice", "alice@contoso.com", "alice@contoso.com");
    w.writes().add_user(
        "id-bob",
        "bob_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        "o'brien@fabrikam.com",
    );
    let id = w
        .graph_client()
        .resolve_user(&token(), "alice@contoso.com")
        .await;
    assert_eq!(id.as_deref(), Ok("id-alice"));
    let id = w
        .graph_client()
        .resolve_user(&token(), "o'brien@fabrikam.com")
        .await;
    assert_eq!(id.as_deref(), Ok("id-bob"));
    let e = w
        .graph_client()
        .resolve_user(&token(), "nobody@contoso.com")
        .await;
    assert_eq!(e, Err(GraphError::NotFound));
    let calls = w.writes().calls();
    assert_eq!(calls[0].0, "/users/alice@contoso.com");
    assert!(
        calls[0]
            .1
            .contains("%24select=id%2CuserPrincipalName%2Cmail%2CdisplayName"),
        "{}",
        calls[0].1
    );
    assert_eq!(calls[1].0, "/users/o'brien@fabrikam.com");
    assert_eq!(calls[2].0, "/users");
    let q: Vec<(String, String)> = url::form_urlencoded::parse(calls[2].1.as_bytes())
        .into_owned()
        .collect();
    assert!(
        q.contains(&("$filter".into(), "mail eq 'o''brien@fabrikam.com'".into())),
        "{q:?}"
    );
}
