//! Round trips per presence change in the cloud path (issue 32): Table operations (a
//! counting proxy in front of an Azurite of this test's own), Service Bus sends (a counting
//! proxy in front of the Service Bus REST fake) and Graph calls (one in front of the fake
//! Graph), for a change notification, a poll, a PBX event and a sign-in, each beside the
//! floor it should cost. The handler is built and served as the Functions host runs it
//! (`host::startup::build_state`, `PUBLISH_MODE=rest`, `STORE=table`) and driven over HTTP.
//!
//! ```text
//! cargo test --test integration round_trips -- --nocapture     # prints the table
//! ```
//!
//! In Azure each of these is a network round trip of a few milliseconds, and each Table
//! operation, Service Bus operation and Graph call is what the bill and the throttling count
//! (docs/deploy.md, "What it costs").

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use teams_presence::clients::graph::certs::generate_self_signed;
use teams_presence::clients::graph::notification::client_state_sha256_hex;
use teams_presence::clients::graph::testing;
use teams_presence::engine::context::Clock;
use teams_presence::http::state::AppState;
use teams_presence::store::{PbxMappingRecord, SubscriptionRecord};

use crate::fakes::entra::Person;
use crate::fakes::table_proxy::{upstream_of, TableProxy};
use crate::support::{self, World};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const CLIENT_STATE: &str = "round-trips-client-state";
const PBX_SECRET: &str = "round-trips-pbx-secret-0123456789";

/// What one step cost.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Cost {
    /// Table point reads (`GET` of one entity).
    reads: i64,
    /// Table query pages (`GET` of `Table()`: a scan or a filtered query).
    queries: i64,
    /// Table inserts and replaces (`POST`, `PUT`, `MERGE`).
    writes: i64,
    /// Table deletes.
    deletes: i64,
    /// Service Bus sends.
    sends: i64,
    /// Graph calls.
    graph: i64,
}

impl Cost {
    fn table(self) -> i64 {
        self.reads + self.queries + self.writes + self.deletes
    }

    fn minus(self, o: Cost) -> Cost {
        Cost {
            reads: self.reads - o.reads,
            queries: self.queries - o.queries,
            writes: self.writes - o.writes,
            deletes: self.deletes - o.deletes,
            sends: self.sends - o.sends,
            graph: self.graph - o.graph,
        }
    }
}

/// The three counting proxies.
struct Counters {
    table: TableProxy,
    bus: TableProxy,
    graph: TableProxy,
}

impl Counters {
    fn now(&self) -> Cost {
        let mut c = Cost::default();
        for (method, path) in self.table.requests() {
            match method.as_str() {
                "GET" if path.contains("(PartitionKey=") => c.reads += 1,
                "GET" => c.queries += 1,
                "DELETE" => c.deletes += 1,
                _ => c.writes += 1,
            }
        }
        c.sends = self
            .bus
            .requests()
            .iter()
            .filter(|(m, p)| {
                m == "POST" && p.split('?').next().unwrap_or("").ends_with("/messages")
            })
            .count() as i64;
        c.graph = self.graph.requests().len() as i64;
        c
    }
}

/// A handler as the host runs it, on the world's socket (Graph's validation handshake must
/// reach it), over an Azurite of its own, with every outside service behind a counting
/// proxy: the world's Graph, its Service Bus and the Table service.
struct Measured {
    w: World,
    app: AppState,
    counters: Counters,
    key: teams_presence::clients::graph::certs::NotificationKey,
    _azurite: support::Azurite,
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

/// `w` (built with `.public_socket().service_bus_rest()`) measured: the proxies in front of
/// its services, the handler built by the host's own start path on a manual clock, served.
async fn measured(mut w: World) -> Measured {
    let azurite = support::start_azurite();
    let table = TableProxy::start(upstream_of(&azurite.connection_string)).await;
    let bus = TableProxy::start(w.service_bus().url.trim_start_matches("http://").to_owned()).await;
    let graph = TableProxy::start(w.graph.url.trim_start_matches("http://").to_owned()).await;
    let key = generate_self_signed("round trips").unwrap();
    let pem = w.dir().join("notification.pem");
    std::fs::write(&pem, testing::key_pem(&key)).unwrap();
    w.set("GRAPH_ENDPOINT", &graph.base());
    w.set("STORE", "table");
    w.set(
        "TABLES_CONNECTION_STRING",
        &table.connection_string(&azurite.connection_string),
    );
    w.set("SERVICEBUS_ENDPOINT", &bus.base());
    w.set("NOTIFICATION_CERTIFICATE_PATH", &pem.display().to_string());
    let mut app = w.host_state().await;
    app.ctx.clock = Clock::manual(t0());
    w.serve_public(teams_presence::host::handler::router(app.clone()));
    Measured {
        w,
        app,
        counters: Counters { table, bus, graph },
        key,
        _azurite: azurite,
    }
}

impl Measured {
    /// What `f` cost.
    async fn cost<F: std::future::Future<Output = ()>>(&self, f: F) -> Cost {
        // Work started before (the background upkeep at start, a confirmer's window) ends.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = self.counters.now();
        f.await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.counters.now().minus(before)
    }

    /// A `notifications` invocation (payload mode, as the host sends it) with one item per
    /// `(user, availability)`, under `subscription`.
    async fn notify(&self, subscription: &str, items: &[(String, &str)]) {
        let items: Vec<_> = items
            .iter()
            .map(|(user, av)| {
                let payload = testing::presence_json(user, av, av).to_string();
                let content = testing::seal(&self.key, self.key.id(), payload.as_bytes());
                testing::notification_json(subscription, CLIENT_STATE, TENANT, user, &content)
            })
            .collect();
        let batch = json!({"value": items, "validationTokens": [self.w.entra.validation_token(CLIENT_ID, TENANT)]});
        let inv = support::host_http_invocation(
            "POST",
            "https://presence.example/api/notifications",
            &[("Content-Type", "application/json")],
            &batch.to_string(),
        );
        let out: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/notifications", self.w.base()))
            .json(&inv)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(out["Outputs"]["res"]["statusCode"], "202", "{out}");
    }

    /// A subscription record for `users`, as the upkeep stores it.
    async fn subscribe(&self, users: &[String]) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let now = Utc::now();
        self.app
            .store
            .insert(&SubscriptionRecord {
                subscription_id: id.clone(),
                user_ids: users.to_vec(),
                tenant_id: TENANT.into(),
                owner_user_id: users[0].clone(),
                resource: "/communications/presences".into(),
                client_state_sha256: client_state_sha256_hex(CLIENT_STATE),
                expires_at: now + chrono::Duration::minutes(55),
                created_at: now,
                certificate_id: String::new(),
            })
            .await
            .unwrap();
        id
    }

    async fn presence_refresh(&self) {
        let (status, v) = support::presence_refresh(&self.app).await;
        assert!(status.is_success(), "{v}");
    }
}

fn user(n: usize) -> String {
    format!("0000000a-0000-4000-8000-{n:012}")
}

/// A row of the table: what was measured and what the floor is.
struct Row {
    what: &'static str,
    changes: usize,
    cost: Cost,
    floor: &'static str,
}

fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| per change | Table ops (reads / query pages / writes / deletes) | Service Bus sends | Graph calls | floor |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for r in rows {
        let n = r.changes.max(1) as f64;
        let c = r.cost;
        let _ = writeln!(
            out,
            "| {} | {:.2} ({:.2} / {:.2} / {:.2} / {:.2}) | {:.2} | {:.2} | {} |",
            r.what,
            c.table() as f64 / n,
            c.reads as f64 / n,
            c.queries as f64 / n,
            c.writes as f64 / n,
            c.deletes as f64 / n,
            c.sends as f64 / n,
            c.graph as f64 / n,
            r.floor
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_per_change_for_each_kind_of_change() {
    let mut rows = Vec::new();

    // --- Change notifications and polls: one world over the plain Graph fake. -------------
    let w = measured(
        World::builder()
            .public_socket()
            .service_bus_rest()
            .start()
            .await,
    )
    .await;
    let one = vec![user(1)];
    let sub = w.subscribe(&one).await;
    w.notify(&sub, &[(user(1), "Available")]).await;
    let cost = w.cost(w.notify(&sub, &[(user(1), "Busy")])).await;
    rows.push(Row {
        what: "change notification, one per request",
        changes: 1,
        cost,
        floor: "Table 3 (the subscription's read, the change's conditional write with its pending mark, the write that clears the mark once Service Bus took it), 1 send, 0 Graph",
    });
    let ten: Vec<String> = (10..20).map(user).collect();
    let sub10 = w.subscribe(&ten).await;
    let first: Vec<(String, &str)> = ten.iter().map(|u| (u.clone(), "Available")).collect();
    w.notify(&sub10, &first).await;
    let busy: Vec<(String, &str)> = ten.iter().map(|u| (u.clone(), "Busy")).collect();
    let cost = w.cost(w.notify(&sub10, &busy)).await;
    rows.push(Row {
        what: "change notification, ten per request",
        changes: 10,
        cost,
        floor: "Table 2.1 (the subscription's read shared by the batch), 1 send, 0 Graph",
    });

    // A poll: a signed-in user without a subscription, due every POLL_INTERVAL (30 s).
    let polled = "0000000b-0000-4000-8000-000000000001";
    w.w.sign_in(&w.app, polled).await;
    w.w.graph.set(polled, "Available", "Available");
    w.presence_refresh().await;
    w.w.graph.set(polled, "Busy", "InACall");
    w.app.clock.set(t0() + chrono::Duration::seconds(30));
    let with_change = w.cost(w.presence_refresh()).await;
    w.app.clock.set(t0() + chrono::Duration::seconds(60));
    let without = w.cost(w.presence_refresh()).await;
    rows.push(Row {
        what: "poll (personal mode): a tick with one change",
        changes: 1,
        cost: with_change,
        floor: "the tick's own cost (below, without the user's read: the change's write decides on what this process wrote) + Table 2 (the change's conditional write, the clearing write), 1 send",
    });
    rows.push(Row {
        what: "poll: a tick with no change (per tick, not per change)",
        changes: 1,
        cost: without,
        floor: "Table: the users, subscriptions and presence scans (1 page each per 1,000 rows) and, in personal mode, the polled user's read; Graph 1 per due user (tenant mode: 1 per 650 users)",
    });
    drop(w);

    // --- A sign-in: the Graph fake with subscriptions and its validation handshake. --------
    let w = measured(
        World::builder()
            .subscriptions()
            .public_socket()
            .service_bus_rest()
            .start()
            .await,
    )
    .await;
    let person = Person {
        oid: "0000000c-0000-4000-8000-000000000001".into(),
        tid: TENANT.into(),
        upn: "ada@contoso.example".into(),
        name: "Ada".into(),
    };
    w.w.graph.set(&person.oid, "Available", "Available");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cost = w
        .cost(async {
            let r = http
                .get(format!("{}/api/auth/start", w.w.base()))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 302);
            let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
            let q: std::collections::HashMap<String, String> =
                location.query_pairs().into_owned().collect();
            let code = w.w.entra.issue_code(
                &person,
                &q["code_challenge"],
                &q["redirect_uri"],
                Some(&q["nonce"]),
            );
            let r = http
                .post(format!("{}/api/auth/end", w.w.base()))
                .form(&[("code", code.as_str()), ("state", q["state"].as_str())])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        })
        .await;
    rows.push(Row {
        what: "sign-in (start and end; the subscription and the first state)",
        changes: 1,
        cost,
        floor: "Table: start 1 + the limit's rows, end 2 (the pending row's read and delete) + 2 (the user's read and write) + 1 (the subscription) + 2 (the first state and its clearing); 1 send; Graph 2 (the subscription, the first read)",
    });
    drop(w);

    // --- A PBX event: the generic adapter, one mapped extension. ---------------------------
    let w = measured(
        World::builder()
            .presence_writes()
            .public_socket()
            .service_bus_rest()
            .settings(&[
                ("PBX", "http"),
                ("PBX_EVENTS_SECRET", PBX_SECRET),
                (
                    "PBX_HTTP_SET_URL",
                    "http://127.0.0.1:9/{extension}/{status}",
                ),
                ("PBX_STABLE_SECONDS", "1"),
            ])
            .start()
            .await,
    )
    .await;
    let pbx_user = "0000000d-0000-4000-8000-000000000001";
    w.w.writes()
        .set_client_session(pbx_user, Some(("Available", "Available")));
    w.app
        .store
        .upsert(&PbxMappingRecord {
            extension: "101".into(),
            user_id: pbx_user.into(),
            user: "jane@contoso.example".into(),
            created_at: Utc::now(),
        })
        .await
        .unwrap();
    let event = |state: &str| {
        let now = Utc::now();
        let body =
            json!({"extension": "101", "state": state, "timestamp": now.to_rfc3339()}).to_string();
        let t = now.timestamp();
        let sig = format!(
            "t={t},v1={}",
            teams_presence::clients::pbx::events::sign(&PBX_SECRET.into(), t, body.as_bytes())
        );
        let base = w.w.base().to_owned();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{base}/api/pbx/events"))
                .header("content-type", "application/json")
                .header("x-signature", sig)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
        }
    };
    let cost = w.cost(event("in_call")).await;
    assert_eq!(
        w.w.writes().aggregate(pbx_user),
        ("Busy".into(), "InACall".into()),
        "the call reached Teams"
    );
    rows.push(Row {
        what: "PBX event (a call starts: Teams is set Busy/InACall)",
        changes: 1,
        cost,
        floor: "Table 1 (the replay guard's insert) + the link's read and write; 0 sends (the change comes back as a notification); Graph 1 (the presence write)",
    });
    drop(w);

    let printed = table(&rows);
    println!(
        "\nRound trips per presence change (Table on Azurite, PUBLISH_MODE=rest):\n\n{printed}"
    );
}
