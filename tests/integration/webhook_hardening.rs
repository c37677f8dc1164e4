//! The webhook against an attacker and against Graph's own redeliveries (issue 13):
//! replays, unauthenticated store reads, keys we cannot fetch yet, and where the user id of
//! an item comes from. Uses `webhook`'s `TestApp` (Python-encrypted items, fake JWKS).

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::webhook::TestApp;

/// Issue 13, item 4: a redelivered item (Graph's retry after a timeout or our 503, or a
/// captured body replayed within its token's hour) used to be observed "now" and roll the
/// user back to what it said.
#[tokio::test]
async fn webhook_replay_of_an_older_item_does_not_roll_presence_back() {
    let app = TestApp::start().await;
    let a = app.batch(&[app.item(21, "Busy", "Busy")]);
    let b = app.batch(&[app.item(21, "Away", "Away")]);
    assert_eq!(app.notify(&a).await, StatusCode::ACCEPTED);
    assert_eq!(app.notify(&b).await, StatusCode::ACCEPTED);
    assert_eq!(app.published().len(), 2);
    // A again, byte for byte.
    assert_eq!(app.notify(&a).await, StatusCode::ACCEPTED);
    assert!(app.published().is_empty(), "a replay publishes nothing");
    let kept = app.stored_presence(21).await.unwrap();
    assert_eq!(kept.last.presence.availability.as_str(), "Away");
}

/// Issue 13, item 4: Graph's sequence numbers as strings, "10" after "9".
#[tokio::test]
async fn webhook_orders_string_sequence_numbers_numerically() {
    let app = TestApp::start().await;
    let with_seq = |av: &str, seq: &str| {
        let mut i = app.item(22, av, av);
        i["resource"]["sequenceNumber"] = json!(seq);
        i
    };
    assert_eq!(
        app.notify(&app.batch(&[with_seq("Busy", "9")])).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.notify(&app.batch(&[with_seq("Away", "10")])).await,
        StatusCode::ACCEPTED
    );
    let av: Vec<Value> = app
        .published()
        .iter()
        .map(|m| m["availability"].clone())
        .collect();
    assert_eq!(av, vec![json!("Busy"), json!("Away")]);
}
