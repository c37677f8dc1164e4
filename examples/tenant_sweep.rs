//! A 100,000-user tenant (issue 32): the real `teams-presence handler` in tenant mode, with
//! Table Storage on Azurite behind a counting proxy and a Graph fake that answers every call
//! 50 ms after it arrived and throttles presence as Graph documents it (1,500 requests per
//! 30 s per app per tenant, on the wall clock; `429` with `Retry-After` beyond). Graph's
//! limit: <https://learn.microsoft.com/graph/throttling-limits#cloud-communication-service-limits>
//! (source: microsoftgraph/microsoft-graph-docs-contrib, includes/throttling-cloud-communication.md).
//!
//! ```text
//! scripts/tenant-sweep.sh                                  # builds, then runs this
//! target/release/examples/tenant_sweep [BIN] [USERS] [SYNC_ACCOUNTS] [CHANGED]
//! ```
//!
//! Defaults: the release binary beside this example, 100,000 users, 20 sync accounts (each
//! owning one subscription of 650 users: 13,000 users subscribed, the rest polled), 1,000
//! users whose presence changed before the sweep. The store holds every user's presence
//! already (the steady state; seeding it is not measured). Then three `presence-refresh`
//! invocations as the Functions host sends them: at 0 s (the handler's first tick: everyone
//! is due, the full sweep), at 15 s (nobody due) and at 30 s (the polled users due again).
//! For each: its time, Graph calls, users read, changes, the Table round trips by kind, and
//! the handler's memory; at the end the fake's count of 429s and the most calls it accepted
//! in one 30 s window, and the tenant block of `GET /api/status` (`serve`'s route, over the
//! same store), which says how many users are subscribed and how many polled.

use test_fakes::entra;
use test_fakes::graph;
use test_fakes::table_proxy;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use teams_presence::config::{Settings, Sources};
use teams_presence::core::presence::{LastKnown, Presence, Source};
use teams_presence::http::state::{AppState, Mode};
use teams_presence::store::table::TableStore;
use teams_presence::store::{PresenceRecord, Store, SubscriptionRecord};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const TOKEN_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// User `n`'s object id: a GUID that looks random (Entra's do, and Table Storage's key
/// ranges depend on it), the same in every run.
fn user(n: usize) -> String {
    let mixed = (n as u128 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
    uuid::Builder::from_random_bytes(mixed.to_le_bytes())
        .into_uuid()
        .to_string()
}

fn sync_account(n: usize) -> String {
    format!("5c000000-0000-4000-8000-{n:012}")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process stopped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// Azurite's table service, in memory, on a free port (the test command installs it).
fn azurite() -> anyhow::Result<(Proc, String)> {
    let bin = std::env::var("AZURITE_TABLE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/azurite/node_modules/.bin/azurite-table")
        });
    anyhow::ensure!(
        bin.exists(),
        "Azurite is not installed at {}: npm ci --prefix tests/azurite",
        bin.display()
    );
    let port = free_port();
    let me = std::process::id();
    let script = format!(
        "trap 'kill $child 2>/dev/null' EXIT; trap 'exit' TERM; \"$0\" --tableHost 127.0.0.1 --tablePort {port} --inMemoryPersistence --silent --skipApiVersionCheck --disableTelemetry --loose & child=$!; \
         while kill -0 {me} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.5; done"
    );
    let child = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg(&bin)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "Azurite did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((
        Proc(child),
        format!("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_KEY};TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"),
    ))
}

/// `VmRSS` and `VmHWM` (peak) of a process, in MB (kB / 1,000).
fn memory_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1000.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Table round trips by kind since `from` (an index into the proxy's log).
fn table_ops(proxy: &table_proxy::TableProxy, from: usize) -> (usize, String) {
    let log = proxy.requests();
    let (mut reads, mut pages, mut writes, mut deletes) = (0, 0, 0, 0);
    for (method, path) in &log[from..] {
        match method.as_str() {
            "GET" if path.contains("(PartitionKey=") => reads += 1,
            "GET" => pages += 1,
            "DELETE" => deletes += 1,
            _ => writes += 1,
        }
    }
    (
        log.len() - from,
        format!("{reads} reads, {pages} query pages, {writes} writes, {deletes} deletes"),
    )
}

fn settings(pairs: &[(&str, String)]) -> anyhow::Result<Settings> {
    Ok(Settings::parse(&Sources::from_map(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    ))?)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let bin = args.get(1).map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("own path");
        exe.parent()
            .and_then(Path::parent)
            .map(|d| d.join("teams-presence"))
            .expect("target dir")
    });
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(default);
    let (users, sync, changed) = (arg(2, 100_000), arg(3, 20), arg(4, 1_000));
    anyhow::ensure!(
        bin.exists(),
        "no binary at {} (build it: cargo build --release)",
        bin.display()
    );
    // The handler runs in a directory of its own.
    let bin = bin.canonicalize()?;
    println!(
        "tenant sweep: {users} users, {sync} sync accounts, {changed} changed; handler {}",
        bin.display()
    );

    let dir = tempfile::tempdir()?;
    let (_azurite, azurite_cs) = azurite()?;
    let upstream = azurite_cs
        .split(';')
        .find_map(|kv| kv.strip_prefix("TableEndpoint=http://"))
        .and_then(|e| e.split('/').next())
        .unwrap()
        .to_owned();
    let proxy = table_proxy::TableProxy::start(upstream).await;
    let entra = entra::FakeEntra::start().await;
    let (graph, _subs) = graph::FakeGraph::start_with_subscriptions().await;
    {
        let mut g = graph.state.lock().unwrap();
        g.latency = Duration::from_millis(50);
        for i in 0..users {
            g.presence
                .insert(user(i), ("Available".into(), "Available".into()));
        }
        let mut rl = graph::RateLimit::graph(chrono::Utc::now());
        rl.wall_clock = true;
        g.rate_limit = Some(rl);
    }
    let ids: Vec<String> = (0..users).map(user).collect();
    let users_file = dir.path().join("tenant-users.txt");
    std::fs::write(&users_file, ids.join("\n"))?;
    let key = teams_presence::clients::graph::certs::generate_self_signed("tenant sweep")?;
    let pem = dir.path().join("notification.pem");
    std::fs::write(&pem, teams_presence::clients::graph::testing::key_pem(&key))?;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let accounts: Vec<String> = (0..sync).map(sync_account).collect();
    let env: Vec<(&str, String)> = vec![
        ("AZURE_CLIENT_ID", CLIENT_ID.into()),
        ("AZURE_CLIENT_SECRET", "sweep-secret".into()),
        ("AZURE_TENANT_ID", TENANT.into()),
        ("AZURE_AUTHORITY_HOST", entra.url.clone()),
        ("GRAPH_ENDPOINT", graph.url.clone()),
        ("TOKEN_ENCRYPTION_KEY", TOKEN_KEY.into()),
        ("TENANT_USERS_FILE", users_file.display().to_string()),
        ("TENANT_SYNC_USERS", accounts.join(",")),
        ("PUBLIC_BASE_URL", base.clone()),
        ("NOTIFICATION_CERTIFICATE_PATH", pem.display().to_string()),
        ("POLL_INTERVAL", "30".into()),
        ("STORE", "table".into()),
    ];

    // The steady state, not measured: the sync accounts signed in, every user's presence
    // stored (straight to Azurite, past the proxy).
    let direct = Store::Table(TableStore::from_connection_string(
        &azurite_cs.clone().into(),
    )?);
    direct.ensure_tables().await?;
    let seeding = AppState::new(settings(&env)?, direct.clone(), Mode::Handler);
    for a in &accounts {
        let rt = format!("rt-seed-{a}");
        entra.state.lock().unwrap().refresh_tokens.insert(
            rt.clone(),
            entra::Person {
                oid: a.clone(),
                tid: TENANT.into(),
                upn: format!("{a}@contoso.example"),
                name: a.clone(),
            },
        );
        let tokens: teams_presence::clients::entra::TokenResponse = serde_json::from_value(
            json!({"access_token": "unused", "expires_in": 0, "refresh_token": rt}),
        )?;
        let id = teams_presence::clients::entra::Identity {
            user_id: a.clone(),
            tenant_id: TENANT.into(),
            upn: format!("{a}@contoso.example"),
            display_name: a.clone(),
        };
        seeding
            .tokens
            .store_sign_in(&id, &tokens, chrono::Utc::now())
            .await?;
    }
    let seeded = Instant::now();
    let observed = chrono::Utc::now() - chrono::Duration::hours(1);
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for id in ids.iter().cloned() {
        let (store, sem) = (direct.clone(), sem.clone());
        tasks.spawn(async move {
            let _p = sem.acquire_owned().await;
            store
                .insert(&PresenceRecord {
                    user_id: id,
                    tenant_id: TENANT.into(),
                    last: LastKnown {
                        presence: Presence::new("Available", "Available"),
                        sequence: teams_presence::core::presence::next_sequence(None, observed),
                        observed_at: observed,
                        graph_sequence: None,
                        source: Source::Poll,
                        applied_items: Vec::new(),
                    },
                    pending_publish: None,
                })
                .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    println!(
        "seeded {users} presence rows in {:.1} s (not measured)",
        seeded.elapsed().as_secs_f64()
    );

    // The handler, as the host starts it.
    let log = std::env::temp_dir().join(format!("tenant-sweep-handler-{}.log", std::process::id()));
    let mut cmd = Command::new(&bin);
    cmd.arg("handler")
        .env_clear()
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env(
            "TABLES_CONNECTION_STRING",
            proxy.connection_string(&azurite_cs),
        )
        .env("RUST_LOG", "warn")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let handler = Proc(cmd.spawn()?);
    let pid = handler.0.id();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(&base).send().await.is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the handler did not start; see {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its start-up upkeep subscribes each sync account's 650 users.
    let upkeep = Instant::now();
    loop {
        let n = direct.list::<SubscriptionRecord>().await?.len();
        if n >= sync.min(users.div_ceil(650)) {
            break;
        }
        anyhow::ensure!(
            upkeep.elapsed() < Duration::from_secs(180),
            "{n} of {sync} subscriptions after 180 s; see {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "start-up upkeep: {sync} subscriptions in {:.1} s",
        upkeep.elapsed().as_secs_f64()
    );
    {
        let mut g = graph.state.lock().unwrap();
        for i in 0..changed {
            let n = i * (users / changed.max(1));
            g.presence
                .insert(user(n), ("Busy".into(), "InACall".into()));
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let timer = json!({"Data": {"timer": {"Schedule": {"AdjustForDST": true}, "IsPastDue": false}}, "Metadata": {}}).to_string();
    let (rss, peak) = memory_mb(pid);
    println!("handler memory before the first tick: RSS {rss:.1} MB, peak {peak:.1} MB");
    // The ticks: the first at once (the handler's first: everyone due), the next 30 s after
    // it started or once the store is quiet again (the polled users due again: a sweep with
    // nothing changed), the last 15 s after that (nobody due).
    let mut next = Instant::now();
    for (gap, what) in [
        (
            30u64,
            "first tick: everyone due, the changed users among them (the full sweep)",
        ),
        (
            15,
            "the polled users due again, nothing changed (a steady sweep)",
        ),
        (0, "15 s later: nobody due"),
    ] {
        tokio::time::sleep(next.saturating_duration_since(Instant::now())).await;
        let from = proxy.requests().len();
        let started = Instant::now();
        let out: Value = http
            .post(format!("{base}/presence-refresh"))
            .header("content-type", "application/json")
            .body(timer.clone())
            .send()
            .await?
            .json()
            .await?;
        let took = started.elapsed();
        let messages = match &out["Outputs"]["message"] {
            Value::Array(a) => a.len(),
            Value::Null => 0,
            _ => 1,
        };
        // The marks handed to the binding are cleared just after the answer (the
        // confirmer): wait until the store has been quiet for a second.
        let mut seen = proxy.requests().len();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = proxy.requests().len();
            if now == seen {
                break;
            }
            seen = now;
        }
        let settled = started.elapsed();
        let (total, kinds) = table_ops(&proxy, from);
        let (rss, peak) = memory_mb(pid);
        let line = out["Logs"][0].as_str().unwrap_or("").to_owned();
        println!("\n{what}\n  {line}\n  invocation {:.2} s (store quiet again after {:.2} s); {messages} messages in the output binding\n  Table: {total} round trips ({kinds})\n  handler memory: RSS {rss:.1} MB, peak {peak:.1} MB", took.as_secs_f64(), settled.as_secs_f64());
        next = (started + Duration::from_secs(gap)).max(Instant::now());
    }
    let (provoked, peak_window, total_calls) = {
        let g = graph.state.lock().unwrap();
        let rl = g.rate_limit.as_ref().unwrap();
        (rl.provoked, rl.peak, rl.total)
    };
    println!("\nGraph: {total_calls} presence calls accepted, {provoked} answered 429, at most {peak_window} in one 30 s window (the limit is 1,500)");

    // `GET /api/status` (serve's route) over the same store: the tenant block.
    let status_state = AppState::new(settings(&env)?, direct.clone(), Mode::Serve);
    let mut req = axum::http::Request::get("/api/status").body(axum::body::Body::empty())?;
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo::<std::net::SocketAddr>(
            "127.0.0.1:9".parse()?,
        ));
    let resp = tower::ServiceExt::oneshot(teams_presence::serve::router(status_state), req).await?;
    let body = axum::body::to_bytes(resp.into_body(), 1 << 26).await?;
    let status: Value = serde_json::from_slice(&body)?;
    println!(
        "\nGET /api/status, tenant: {}",
        serde_json::to_string_pretty(&status["tenant"])?
    );
    drop(handler);
    Ok(())
}
