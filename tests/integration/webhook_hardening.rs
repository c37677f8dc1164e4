//! The webhook against an attacker and against Graph's own redeliveries (issue 13):
//! replays, unauthenticated store reads, keys we cannot fetch yet, and where the user id of
//! an item comes from. Uses `webhook`'s `TestApp` (Python-encrypted items, fake JWKS).

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::fakes::table_proxy::{upstream_of, TableProxy};
use crate::support;
use crate::webhook::{TestApp, CLIENT_ID, CLIENT_STATE, TENANT};
use teams_presence::config::{Settings, Sources};

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

/// Issue 13, item 8: an anonymous batch naming 64 subscriptions used to cost 64 store reads
/// before anything was authenticated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_reads_no_subscription_before_a_validation_token_verifies() {
    let az = support::azurite();
    let proxy = TableProxy::start(upstream_of(&az.connection_string)).await;
    let entra = crate::fakes::entra_keys::FakeEntraKeys::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("AZURE_CLIENT_ID", CLIENT_ID.to_owned()),
        ("AZURE_AUTHORITY_HOST", entra.base_url.clone()),
        ("STORE", "table".to_owned()),
        (
            "TABLES_CONNECTION_STRING",
            proxy.connection_string(&az.connection_string),
        ),
    ];
    let settings = Settings::parse(&Sources::from_map(
        env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    ))
    .unwrap();
    let state = teams_presence::serve::build_state(settings, &dir.path().join("data"))
        .await
        .unwrap();
    let items: Vec<Value> = (0..64)
        .map(|_| {
            json!({
                "subscriptionId": uuid::Uuid::new_v4().to_string(),
                "clientState": CLIENT_STATE, "tenantId": TENANT,
                "changeType": "updated", "resource": "communications/presences/x",
                "encryptedContent": {"data": "AA==", "dataKey": "AA==", "dataSignature": "AA==",
                    "encryptionCertificateId": "x", "encryptionCertificateThumbprint": "x"},
            })
        })
        .collect();
    let before = proxy.count("GET", "TeamsPresenceSubscriptions");
    for tokens in [
        json!([]),
        json!(["not-a-jwt"]),
        json!([entra.token("someone-else", TENANT)]),
    ] {
        let body = json!({"value": items, "validationTokens": tokens});
        let resp = tower::ServiceExt::oneshot(
            teams_presence::serve::router(state.clone()),
            axum::http::Request::post("/api/notifications")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    }
    let reads = proxy.count("GET", "TeamsPresenceSubscriptions") - before;
    assert!(
        reads <= 1,
        "{reads} subscription reads for unauthenticated batches"
    );
}

/// Issue 13, item 10: `resourceData.id` is outside the signed, encrypted content; an item
/// whose decrypted resource names nobody must not be attributed to the user it names.
#[tokio::test]
async fn webhook_takes_the_user_only_from_the_decrypted_content() {
    let app = TestApp::start().await;
    let mut item = app.item(23, "Busy", "Busy");
    item["resource"].as_object_mut().unwrap().remove("id");
    let mut batch = app.batch(&[item]);
    batch["value"][0]["resourceData"] = json!({ "id": crate::webhook::user(23) });
    assert_eq!(app.notify(&batch).await, StatusCode::ACCEPTED);
    assert!(app.published().is_empty());
    assert!(app.stored_presence(23).await.is_none());
}

/// Issue 13, item 10: the host invokes a function; the URL inside its envelope is data.
/// Dispatching by that URL let an invocation of one function run another's route.
#[tokio::test]
async fn payload_mode_dispatches_by_the_invoked_function_not_the_envelope_url() {
    let app = TestApp::start().await;
    let batch = app.batch(&[app.item(24, "Busy", "InAMeeting")]);
    let env = crate::webhook::http_envelope(
        "https://example.azurewebsites.net/api/auth/end?x=1",
        json!({}),
        &batch.to_string(),
    );
    let out = crate::webhook::invoke(&app, "notifications", env).await;
    assert_eq!(out["Outputs"]["res"]["statusCode"], "202", "{out}");
    assert_eq!(
        out["Outputs"]["message"]["userId"],
        crate::webhook::user(24).as_str()
    );
}

/// Issue 13, item 10: a batch signed with a key not (yet) in the cached JWKS, while a
/// refetch is throttled, used to get 202 and was lost; Graph must deliver it again.
#[tokio::test]
async fn webhook_asks_graph_to_retry_a_batch_signed_by_a_key_it_cannot_fetch_yet() {
    let app = TestApp::start().await;
    // Warm the cache with the current keys.
    assert_eq!(
        app.notify(&app.batch(&[app.item(25, "Busy", "Busy")]))
            .await,
        StatusCode::ACCEPTED
    );
    let mut rotated = app.batch(&[app.item(25, "Away", "Away")]);
    rotated["validationTokens"] = json!([app.entra.sign(
        &crate::fakes::entra_keys::FakeEntraKeys::claims(CLIENT_ID, TENANT),
        "rotated-kid"
    )]);
    for _ in 0..2 {
        assert_eq!(app.notify(&rotated).await, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert!(app.entra.fetches() <= 2, "refetches stay throttled");
    assert_eq!(app.published().len(), 1);
}
