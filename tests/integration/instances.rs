//! Two instances of the cloud part, as Flex Consumption runs them: the real binary started
//! twice as `teams-presence handler` (what the Functions host starts), both on one Table
//! Storage (the test binary's Azurite), each driven the way the host drives it (forwarded
//! HTTP for `auth-start` and `pbx-events`, payload-mode invocations for `notifications`).
//! Every guard anyone can reach must hold across the two (issue 32): the sign-in start
//! limit, the PBX replay guard and the memory of notification items.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use teams_presence::clients::graph::certs::generate_self_signed;
use teams_presence::clients::graph::notification::client_state_sha256_hex;
use teams_presence::clients::graph::testing;
use teams_presence::store::table::TableStore;
use teams_presence::store::{PresenceRecord, Store, SubscriptionRecord};

use crate::fakes::entra_keys::FakeEntraKeys;
use crate::support;

const CLIENT_ID: &str = "c0ffee00-0000-4000-8000-0000000000c1";
const TENANT: &str = "7e7e7e7e-0000-4000-8000-0000000000c2";
const CLIENT_STATE: &str = "two-instances-client-state";
const PBX_SECRET: &str = "two-instances-pbx-secret-0123456789";

/// One `teams-presence handler` process; killed when dropped.
struct Instance {
    child: Child,
    base: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the handler with `env` (plus the port and the shared Azurite) and waits for its
/// readiness probe. `TEST_LOG=1` shows its log.
async fn instance(env: &[(&str, String)]) -> Instance {
    let port = support::free_port();
    let mut cmd = Command::new(support::binary());
    cmd.arg("handler")
        .env_clear()
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("STORE", "table")
        .env(
            "TABLES_CONNECTION_STRING",
            &support::azurite().connection_string,
        )
        .env("RUST_LOG", "info")
        .current_dir(tempfile::tempdir().unwrap().keep())
        .stdin(Stdio::null());
    let log = std::env::var("TEST_LOG").is_ok_and(|v| v == "1");
    if !log {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("start the handler");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(&base).send().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the handler did not answer its probe"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Instance { child, base }
}

/// Two instances with the same settings.
async fn two(env: &[(&str, String)]) -> (Instance, Instance) {
    (instance(env).await, instance(env).await)
}

fn table_store() -> Store {
    Store::Table(
        TableStore::from_connection_string(&support::azurite().connection_string.clone().into())
            .unwrap(),
    )
}

/// 200 anonymous sign-in starts from one client, alternating between the two instances,
/// eight at a time: one client's limit (10 at once, then one every 6 s), not one per
/// instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_sign_in_starts_from_one_client_over_two_instances_are_limited_as_one() {
    let env = [
        ("AZURE_CLIENT_ID", CLIENT_ID.to_owned()),
        ("AZURE_CLIENT_SECRET", "two-instances-secret".to_owned()),
        ("AZURE_TENANT_ID", TENANT.to_owned()),
        ("AZURE_AUTHORITY_HOST", "http://127.0.0.1:9".to_owned()),
        ("PUBLIC_BASE_URL", "https://presence.example".to_owned()),
        (
            "TOKEN_ENCRYPTION_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_owned(),
        ),
    ];
    let (a, b) = two(&env).await;
    // A documentation address no other test uses (RFC 3849), fresh each run.
    let client = format!("2001:db8::{:x}", rand_u16());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let started = Instant::now();
    let mut codes = Vec::new();
    for round in 0..25 {
        let calls = (0..8).map(|i| {
            let base = if (round * 8 + i) % 2 == 0 {
                &a.base
            } else {
                &b.base
            };
            http.get(format!("{base}/api/auth/start"))
                .header("x-forwarded-for", &client)
                .send()
        });
        for r in futures_util::future::join_all(calls).await {
            codes.push(r.unwrap().status().as_u16());
        }
    }
    let elapsed = started.elapsed();
    let allowed = codes.iter().filter(|c| **c == 302).count();
    let limited = codes.iter().filter(|c| **c == 429).count();
    eprintln!(
        "sign-in starts over two instances: {allowed} allowed (302), {limited} limited (429) of {} in {elapsed:?}",
        codes.len()
    );
    assert_eq!(allowed + limited, 200, "only 302 and 429: {codes:?}");
    // The burst of 10, plus the one every 6 s that came back while the test ran.
    let refilled = (elapsed.as_secs() / 6) as usize;
    assert!(
        (10..=10 + refilled).contains(&allowed),
        "{allowed} starts allowed: one client's limit is 10 (+{refilled} refilled), on both instances together"
    );
}

fn rand_u16() -> u16 {
    uuid::Uuid::new_v4().as_u128() as u16
}

/// A signed PBX event accepted by one instance and replayed to the other: 401 there, as on
/// the instance that accepted it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_pbx_event_replayed_to_the_other_instance_is_refused() {
    let env = [
        ("AZURE_CLIENT_ID", CLIENT_ID.to_owned()),
        ("AZURE_CLIENT_SECRET", "two-instances-secret".to_owned()),
        ("AZURE_TENANT_ID", TENANT.to_owned()),
        ("AZURE_AUTHORITY_HOST", "http://127.0.0.1:9".to_owned()),
        ("GRAPH_ENDPOINT", "http://127.0.0.1:9".to_owned()),
        ("PBX", "http".to_owned()),
        ("PBX_EVENTS_SECRET", PBX_SECRET.to_owned()),
        (
            "PBX_HTTP_SET_URL",
            "http://127.0.0.1:9/{extension}/{status}".to_owned(),
        ),
    ];
    let (a, b) = two(&env).await;
    let http = reqwest::Client::new();
    let now = chrono::Utc::now();
    // An extension no mapping names, unique to this run: the body is accepted or refused,
    // nothing else happens.
    let body = json!({"extension": format!("x{}", rand_u16()), "state": "in_call", "timestamp": now.to_rfc3339()})
        .to_string();
    let t = now.timestamp();
    let signature = format!(
        "t={t},v1={}",
        teams_presence::clients::pbx::events::sign(&PBX_SECRET.into(), t, body.as_bytes())
    );
    let post = |base: &str| {
        http.post(format!("{base}/api/pbx/events"))
            .header("content-type", "application/json")
            .header("x-signature", &signature)
            .body(body.clone())
            .send()
    };
    assert_eq!(post(&a.base).await.unwrap().status(), 202, "first delivery");
    assert_eq!(
        post(&b.base).await.unwrap().status(),
        401,
        "replayed to the other instance"
    );
    assert_eq!(
        post(&a.base).await.unwrap().status(),
        401,
        "replayed to the same one"
    );
}

/// What the notification tests share: a notification certificate, the signing-key endpoint
/// validation tokens are checked against, a subscription for one fresh user in Azurite.
struct Notifications {
    key: teams_presence::clients::graph::certs::NotificationKey,
    keys: FakeEntraKeys,
    subscription: String,
    user: String,
    env: Vec<(&'static str, String)>,
    _dir: tempfile::TempDir,
}

impl Notifications {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = generate_self_signed("two instances").unwrap();
        let pem = dir.path().join("notification.pem");
        std::fs::write(&pem, testing::key_pem(&key)).unwrap();
        let keys = FakeEntraKeys::start().await;
        let (subscription, user) = (
            uuid::Uuid::new_v4().to_string(),
            uuid::Uuid::new_v4().to_string(),
        );
        let store = table_store();
        store.ensure_tables().await.unwrap();
        let now = chrono::Utc::now();
        store
            .insert(&SubscriptionRecord {
                subscription_id: subscription.clone(),
                user_ids: vec![user.clone()],
                tenant_id: TENANT.into(),
                owner_user_id: user.clone(),
                resource: format!("/communications/presences/{user}"),
                client_state_sha256: client_state_sha256_hex(CLIENT_STATE),
                expires_at: now + chrono::Duration::minutes(55),
                created_at: now,
                certificate_id: String::new(),
            })
            .await
            .unwrap();
        let env = vec![
            ("AZURE_CLIENT_ID", CLIENT_ID.to_owned()),
            ("AZURE_AUTHORITY_HOST", keys.base_url.clone()),
            ("NOTIFICATION_CERTIFICATE_PATH", pem.display().to_string()),
        ];
        Self {
            key,
            keys,
            subscription,
            user,
            env,
            _dir: dir,
        }
    }

    /// The `notifications` invocation the host makes for one item carrying this presence
    /// (freshly encrypted: every call is a new item, as Graph sends it).
    fn item(&self, availability: &str) -> String {
        let payload = testing::presence_json(&self.user, availability, availability).to_string();
        let content = testing::seal(&self.key, self.key.id(), payload.as_bytes());
        let item = testing::notification_json(
            &self.subscription,
            CLIENT_STATE,
            TENANT,
            &self.user,
            &content,
        );
        let batch =
            json!({"value": [item], "validationTokens": [self.keys.token(CLIENT_ID, TENANT)]});
        support::host_http_invocation(
            "POST",
            "https://presence.example/api/notifications",
            &[("Content-Type", "application/json")],
            &batch.to_string(),
        )
        .to_string()
    }

    async fn stored(&self) -> PresenceRecord {
        table_store()
            .get::<PresenceRecord>(&self.user, "presence")
            .await
            .unwrap()
            .expect("a stored presence")
            .value
    }
}

/// Delivers one invocation to an instance; returns the availabilities it published (its
/// `message` output binding).
async fn deliver(instance: &Instance, invocation: &str) -> Vec<String> {
    let out: Value = reqwest::Client::new()
        .post(format!("{}/notifications", instance.base))
        .header("content-type", "application/json")
        .body(invocation.to_owned())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(out["Outputs"]["res"]["statusCode"], "202", "{out}");
    let msgs = match &out["Outputs"]["message"] {
        Value::Array(a) => a.clone(),
        Value::Null => Vec::new(),
        one => vec![one.clone()],
    };
    msgs.iter()
        .map(|m| m["availability"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The same valid body to instance A and then to B publishes nothing the second time, also
/// for an item without a sequence number that changed nothing where it first arrived: its
/// replay after a newer state must not republish the older one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_replayed_to_the_other_instance_publishes_nothing() {
    let n = Notifications::start().await;
    let (a, b) = two(&n.env).await;
    let busy = n.item("Busy");
    assert_eq!(deliver(&a, &busy).await, ["Busy"]);
    assert!(deliver(&b, &busy).await.is_empty(), "the same body again");
    // Graph sends the state the user already has (a new item, no sequence number).
    let busy_again = n.item("Busy");
    assert!(deliver(&a, &busy_again).await.is_empty(), "nothing new");
    let away = n.item("Away");
    assert_eq!(deliver(&b, &away).await, ["Away"]);
    // That item replayed to the other instance, after the newer state.
    assert!(
        deliver(&b, &busy_again).await.is_empty(),
        "a replayed item republished an older state"
    );
    assert_eq!(n.stored().await.last.presence.availability.as_str(), "Away");
}

/// The same body delivered to both instances at the same moment publishes exactly once,
/// round after round; and an item that changed nothing, delivered to both at once and again
/// to both after a newer state, publishes nothing either time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_delivered_to_both_instances_at_once_publishes_exactly_once() {
    let n = Notifications::start().await;
    let (a, b) = two(&n.env).await;
    let both = |body: String| {
        let (a, b) = (&a, &b);
        async move {
            let (x, y) = tokio::join!(deliver(a, &body), deliver(b, &body));
            x.into_iter().chain(y).collect::<Vec<String>>()
        }
    };
    for (round, state) in ["Busy", "Away", "Available", "Busy", "Away", "Available"]
        .into_iter()
        .enumerate()
    {
        assert_eq!(both(n.item(state)).await, [state], "round {round}");
    }
    let nothing_new = n.item("Available");
    assert!(both(nothing_new.clone()).await.is_empty());
    assert_eq!(both(n.item("Busy")).await, ["Busy"]);
    assert!(
        both(nothing_new).await.is_empty(),
        "a replayed item republished an older state"
    );
    assert_eq!(n.stored().await.last.presence.availability.as_str(), "Busy");
}
