//! `engine::notifications::accept` called directly, without HTTP: the webhook's
//! security-critical path (forged tokens, misdirected items, replays, a failing store) and
//! the outcome it hands the handler to answer with. The batches are those of the `webhook`
//! module: encrypted by an independent implementation (tests/fixtures/encrypt_notification.py)
//! and vouched for by tokens from a fake JWKS endpoint.

use serde_json::{json, Value};

use crate::fakes::entra_keys::FakeEntraKeys;
use crate::webhook::{TestApp, CLIENT_ID, CLIENT_STATE, SUB, TENANT};
use teams_presence::clients::graph::notification::Rejection;
use teams_presence::engine::notifications::{
    accept, accept_lifecycle, Checks, DeliverAgain, NotAccepted, Tally,
};

/// A tenant of nobody's, with a valid token of its own.
const OTHER_TENANT: &str = "0d0d0d0d-0000-4000-8000-000000000009";

fn checks(app: &TestApp) -> Checks<'_> {
    Checks {
        ctx: &app.state.ctx,
        token_keys: &app.state.token_keys,
        subscriptions: &app.state.subscriptions,
    }
}

async fn run(app: &TestApp, batch: &Value) -> Result<Tally, NotAccepted> {
    accept(
        checks(app),
        None,
        batch.to_string().as_bytes(),
        chrono::Utc::now(),
    )
    .await
}

/// Runs a batch that must be accepted with every item rejected for `reason`, nothing stored
/// and nothing published.
async fn assert_rejected(app: &TestApp, batch: &Value, reason: Rejection) {
    let tally = run(app, batch).await.expect("accepted (202), not retried");
    assert_eq!(tally.accepted, 0, "{reason}");
    assert_eq!(tally.published, 0, "{reason}");
    assert_eq!(
        tally.rejected.iter().map(|(_, r)| *r).collect::<Vec<_>>(),
        vec![reason]
    );
    assert!(app.published().is_empty(), "{reason}: published something");
    assert!(
        app.stored_presence(2).await.is_none(),
        "{reason}: stored something"
    );
}

#[tokio::test]
async fn a_valid_batch_is_accepted_recorded_and_published_once() {
    let app = TestApp::start().await;
    let tally = run(&app, &app.batch(&[app.item(2, "Busy", "InACall")]))
        .await
        .unwrap();
    assert_eq!((tally.items, tally.accepted, tally.published), (1, 1, 1));
    assert!(tally.rejected.is_empty() && tally.unpublished.is_empty());
    assert_eq!(app.published().len(), 1);
    assert!(app.stored_presence(2).await.is_some());
}

#[tokio::test]
async fn a_forged_validation_token_rejects_the_item_before_its_subscription_is_read() {
    let app = TestApp::start().await;
    let mut batch = app.batch(&[app.item(2, "Busy", "Busy")]);
    // Signed with a key of the same id that the endpoint does not publish.
    let forger = FakeEntraKeys::start().await;
    batch["validationTokens"] = json!([forger.token(CLIENT_ID, TENANT)]);
    assert_rejected(&app, &batch, Rejection::NoValidToken).await;
    assert!(
        app.state.subscriptions.known(SUB, "subscription").is_none(),
        "the subscription was never read for an unauthenticated item"
    );
}

#[tokio::test]
async fn an_item_naming_an_unknown_subscription_is_rejected() {
    let app = TestApp::start().await;
    let mut batch = app.batch(&[app.item(2, "Busy", "Busy")]);
    batch["value"][0]["subscriptionId"] = json!("6c6c6c6c-0000-4000-8000-000000000004");
    assert_rejected(&app, &batch, Rejection::UnknownSubscription).await;
}

#[tokio::test]
async fn an_item_with_the_wrong_client_state_is_rejected() {
    let app = TestApp::start().await;
    let mut batch = app.batch(&[app.item(2, "Busy", "Busy")]);
    batch["value"][0]["clientState"] = json!("guessed-client-state");
    assert_rejected(&app, &batch, Rejection::ClientStateMismatch).await;
}

#[tokio::test]
async fn an_item_of_another_tenant_is_rejected_even_with_a_valid_token_for_that_tenant() {
    let app = TestApp::start().await;
    let mut batch = app.batch(&[app.item(2, "Busy", "Busy")]);
    batch["value"][0]["tenantId"] = json!(OTHER_TENANT);
    // Without a token for it: turned away at the tokens.
    assert_rejected(&app, &batch, Rejection::NoValidToken).await;
    // With one: turned away at the subscription, whose tenant it is not.
    batch["validationTokens"] = json!([app.entra.token(CLIENT_ID, OTHER_TENANT)]);
    assert_rejected(&app, &batch, Rejection::TenantMismatch).await;
}

#[tokio::test]
async fn a_replayed_item_is_accepted_again_but_publishes_nothing() {
    let app = TestApp::start().await;
    let batch = app.batch(&[app.item(2, "Away", "Away")]);
    assert_eq!(run(&app, &batch).await.unwrap().published, 1);
    assert_eq!(app.published().len(), 1);
    let again = run(&app, &batch).await.unwrap();
    assert_eq!((again.accepted, again.published), (1, 0));
    assert!(app.published().is_empty());
}

#[tokio::test]
async fn a_store_that_cannot_record_asks_graph_to_deliver_again() {
    let app = TestApp::start().await;
    let batch = app.batch(&[app.item(5, "Busy", "Busy")]);
    let db = app.state.store.describe();
    let path = db.strip_prefix("SQLite at ").unwrap().to_owned();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER fail_presence BEFORE INSERT ON entities
         WHEN NEW.tbl = 'TeamsPresencePresence' BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;",
    )
    .unwrap();
    match run(&app, &batch).await {
        Err(NotAccepted::DeliverAgain(e @ DeliverAgain::Record { .. })) => {
            assert_eq!(e.to_string(), "cannot record presence");
        }
        other => panic!("expected deliver again, got {other:?}"),
    }
    assert!(app.published().is_empty());
    conn.execute_batch("DROP TRIGGER fail_presence;").unwrap();
    assert_eq!(run(&app, &batch).await.unwrap().published, 1);
}

#[tokio::test]
async fn unreachable_signing_keys_ask_graph_to_deliver_again() {
    let app = TestApp::start().await;
    app.entra.set_failing(true);
    let result = run(&app, &app.batch(&[app.item(2, "Busy", "Busy")])).await;
    assert!(
        matches!(
            result,
            Err(NotAccepted::DeliverAgain(DeliverAgain::Keys(_)))
        ),
        "{result:?}"
    );
    assert!(app.published().is_empty());
}

#[tokio::test]
async fn a_body_that_is_not_a_batch_is_malformed_and_items_that_are_not_notifications_are_rejected()
{
    let app = TestApp::start().await;
    for body in ["", "not json", "[]", "{\"value\": 5}"] {
        let r = accept(checks(&app), None, body.as_bytes(), chrono::Utc::now()).await;
        assert!(matches!(r, Err(NotAccepted::Malformed(_))), "{body:?}");
    }
    let tally = run(
        &app,
        &json!({"value": [1, {"x": 2}], "validationTokens": [7]}),
    )
    .await
    .unwrap();
    assert_eq!(tally.items, 2);
    assert_eq!(tally.rejections(), "malformed×2");
}

#[tokio::test]
async fn a_lifecycle_event_is_recorded_only_with_its_subscriptions_client_state() {
    let app = TestApp::start().await;
    let event = |client_state: &str| {
        json!({"value": [{
            "subscriptionId": SUB, "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
            "tenantId": TENANT, "clientState": client_state, "lifecycleEvent": "missed",
        }]})
        .to_string()
    };
    let now = chrono::Utc::now();
    let wrong = accept_lifecycle(checks(&app), event("wrong").as_bytes(), now)
        .await
        .unwrap();
    assert_eq!(wrong.recorded, 0);
    assert_eq!(
        wrong.rejected,
        vec![(SUB.to_owned(), Rejection::ClientStateMismatch)]
    );
    let right = accept_lifecycle(checks(&app), event(CLIENT_STATE).as_bytes(), now)
        .await
        .unwrap();
    assert_eq!((right.recorded, right.rejected.len()), (1, 0));
    let marks = teams_presence::engine::lifecycle::pending(&app.state.store)
        .await
        .unwrap();
    assert_eq!(marks.len(), 1);
}
