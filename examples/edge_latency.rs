//! The cloud path's added latency, from the start of a change-notification invocation to the
//! first Hue command (docs/performance.md, issue "the lamp changes the moment a message
//! arrives"):
//!
//! 1. the `notifications` function invoked the way the Functions host does (payload mode,
//!    through `host::handler::router`): validation token, decryption, store, the
//!    `message` output binding;
//! 2. that message put on a (loopback, fake) Service Bus topic, as the host's output binding
//!    does: the broker's own delivery is not ours to measure and is near zero here;
//! 3. the real `subscribe` loop (`edge::run`) long-polling the subscription;
//! 4. a (loopback, fake) Hue bridge recording when the light command arrives.
//!
//! ```text
//! cargo run --example edge_latency -- [CHANGES]     # default 50
//! ```
//!
//! Changes are 300 ms apart (a person's presence does not change faster, and the bridge's
//! 10 commands/s for lights is never what is measured).

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use base64::Engine;
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::SecretString;
use serde_json::{json, Value};
use teams_presence::clients::graph::notification::client_state_sha256_hex;
use teams_presence::clients::graph::testing;
use teams_presence::clients::hue::{Address, HueSink};
use teams_presence::clients::servicebus::{self, BrokerProperties, ConnectionString};
use teams_presence::config::{HueTarget, Settings, Sources};
use teams_presence::core::lights::LightMap;
use teams_presence::engine::applier::Applier;
use tokio::time::Instant;
use tower::ServiceExt;

use test_fakes::hue;
use test_fakes::servicebus as servicebus_fake;

const CLIENT_ID: &str = "c0ffee00-0000-4000-8000-000000000001";
const TENANT: &str = "7e7e7e7e-0000-4000-8000-000000000002";
const SUB: &str = "5b5b5b5b-0000-4000-8000-000000000003";
const USER: &str = "00000000-0000-4000-8000-000000000001";

/// A signing-key endpoint and the key to mint validation tokens with.
async fn fake_entra() -> (String, EncodingKey) {
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    let b64 = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwks = json!({"keys": [{"kty": "RSA", "use": "sig", "kid": "k",
        "n": b64.encode(rsa.n().to_vec()), "e": b64.encode(rsa.e().to_vec())}]})
    .to_string();
    let app = axum::Router::new().route(
        "/common/discovery/v2.0/keys",
        axum::routing::get(move || std::future::ready(jwks.clone())),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let key = EncodingKey::from_rsa_der(&rsa.private_key_to_der().unwrap());
    (format!("http://{addr}"), key)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let changes: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir()?;
    let (authority, signing) = fake_entra().await;
    let settings = Settings::parse(&Sources::from_map(
        [
            ("AZURE_CLIENT_ID", CLIENT_ID.to_owned()),
            ("AZURE_AUTHORITY_HOST", authority),
            // Set, so serve's state does not generate (and print) an admin token.
            ("PRESENCE_API_TOKEN", "unused".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
    ))?;
    let state = teams_presence::serve::build_state(settings, dir.path()).await?;
    let now = chrono::Utc::now();
    state
        .store
        .insert(&teams_presence::store::SubscriptionRecord {
            subscription_id: SUB.into(),
            user_ids: vec![USER.into()],
            tenant_id: TENANT.into(),
            owner_user_id: USER.into(),
            resource: String::new(),
            client_state_sha256: client_state_sha256_hex("state"),
            expires_at: now + chrono::Duration::minutes(60),
            created_at: now,
            certificate_id: String::new(),
        })
        .await?;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k".into());
    let t = now.timestamp();
    let token = jsonwebtoken::encode(
        &header,
        &json!({"aud": CLIENT_ID, "iss": format!("https://sts.windows.net/{TENANT}/"),
                "nbf": t - 60, "exp": t + 3600, "appid": "0bf30f3b-4a52-48df-9a82-234910c4a086"}),
        &signing,
    )?;
    let key = state.notification_keys.current().expect("a key");
    let handler = teams_presence::host::handler::router(state.clone());

    // The topic, the bridge and the real subscribe loop.
    let sb = servicebus_fake::FakeServiceBus::start(10).await;
    let bridge = hue::FakeHue::start(hue::Api::V2).await;
    let sink = HueSink::connect(
        &Address::parse(&bridge.url).unwrap(),
        &SecretString::from(hue::KEY),
        &[HueTarget::Light("1".into())],
    )
    .await?;
    let client = || {
        servicebus::Client::new(
            ConnectionString::parse(&sb.connection_string()).unwrap(),
            Some(sb.url.parse().unwrap()),
            "presence",
        )
        .unwrap()
    };
    let (sender, receiver) = (client(), client());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let edge = tokio::spawn(async move {
        let mut applier = Applier::new(LightMap::default(), sink, vec![], None);
        let opts = teams_presence::edge::Options::default();
        teams_presence::edge::run(&receiver, &mut applier, &opts, async {
            let _ = stop_rx.await;
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await; // the first long poll is waiting

    let mut total = Vec::new();
    let mut invocation = Vec::new();
    for i in 0..changes {
        let (av, ac) = if i % 2 == 0 {
            ("Busy", "InACall")
        } else {
            ("Available", "Available")
        };
        let content = testing::seal(
            key,
            key.id(),
            testing::presence_json(USER, av, ac).to_string().as_bytes(),
        );
        let batch = json!({
            "value": [testing::notification_json(SUB, "state", TENANT, USER, &content)],
            "validationTokens": [token],
        });
        let envelope = json!({
            "Data": {"req": {
                "Url": "https://example.azurewebsites.net/api/notifications", "Method": "POST",
                "Query": {}, "Headers": {"Content-Type": ["application/json"]},
                "Params": {}, "Body": batch.to_string(),
            }},
            "Metadata": {"sys": {"MethodName": "notifications", "UtcNow": "2026-11-22T10:00:00Z"}},
        });
        let before = bridge.puts().len();
        let start = Instant::now();
        let resp = handler
            .clone()
            .oneshot(
                Request::post("/notifications")
                    .header("content-type", "application/json")
                    .body(Body::from(envelope.to_string()))?,
            )
            .await?;
        let out: Value = serde_json::from_slice(&resp.into_body().collect().await?.to_bytes())?;
        let invoked = start.elapsed();
        let message = &out["Outputs"]["message"];
        anyhow::ensure!(message.is_object(), "no message output: {out}");
        // What the host's Service Bus output binding does with it.
        sender
            .send(
                message.to_string().as_bytes(),
                &BrokerProperties::default(),
                &Default::default(),
            )
            .await?;
        let put = loop {
            if let Some(p) = bridge.puts().get(before) {
                break p.at;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        total.push(put.duration_since(start));
        invocation.push(invoked);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let _ = stop_tx.send(());
    edge.await??;
    anyhow::ensure!(bridge.rejected() == 0, "the bridge said 429");
    total.sort();
    invocation.sort();
    println!(
        "{changes} changes; invocation start → first Hue command: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms (of which the invocation itself p50 {:.1} ms)",
        percentile(&total, 0.5).as_secs_f64() * 1e3,
        percentile(&total, 0.9).as_secs_f64() * 1e3,
        total.last().unwrap().as_secs_f64() * 1e3,
        percentile(&invocation, 0.5).as_secs_f64() * 1e3,
    );
    Ok(())
}
