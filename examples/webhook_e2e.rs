//! The webhook end to end against its floor: notifications per CPU-second of the real binary
//! pinned to one core, beside `openssl speed rsa2048` private-key operations per second on
//! that same core, in the same run (docs/performance.md).
//!
//! ```text
//! scripts/webhook-e2e.sh                      # builds, then runs this on core 1
//! taskset -c 1 target/release/examples/webhook_e2e target/release/teams-presence [NOTIFICATIONS]
//! WEBHOOK_E2E_ONLY=handler/1 scripts/webhook-e2e.sh     # one path and shape (to profile it;
//!                                                       # paths: handler, serve, floor)
//! ```
//!
//! For each path (`handler`: payload-mode `notifications` invocations the way the Functions
//! host makes them, `STORE=sqlite`; `serve`: `POST /api/notifications`) and each shape
//! (batches of 10, one notification per request) it starts the binary under
//! `taskset -a -c 0`, seeds its SQLite store with one subscription, seals every body before
//! the clock starts, sends them over a few keep-alive connections and divides the
//! notifications by the CPU time the server process used (user + system, all threads, from
//! `/proc/PID/stat`). Every notification is a real change, so each one is checked,
//! decrypted (one RSA-2048 private-key operation: the floor), stored and published. This
//! process (load, the signing-key endpoint) belongs on the other core.
//!
//! A third path, `http floor`, is this program itself started as a server
//! (`--floor-server PORT CERT`) the same way: an axum server on a multi-thread runtime, like
//! `serve`, that answers each `serve` body with 202 after unwrapping each notification's
//! `dataKey` with the same RSA call, and does nothing else. It is the floor of any webhook
//! that takes one HTTP request per batch over loopback: what is left between it and
//! `serve` is ours.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, Header};
use serde_json::{json, Value};
use teams_presence::clients::graph::certs::{generate_self_signed, NotificationKey};
use teams_presence::clients::graph::testing;
use teams_presence::config::{Settings, Sources, StoreKind};

mod common;
use common::{fake_entra, user, CLIENT_ID, SUB, TENANT};
const USERS: usize = 1000;
/// Requests in flight: enough to keep the server's core busy while one is parsed.
const IN_FLIGHT: usize = 4;
/// Core 0 runs the server and openssl; this process runs on the other one.
const SERVER_CORE: &str = "0";

/// `openssl speed -seconds 5 rsa2048` on the server's core: private-key operations (sign/s).
fn openssl_rsa2048_sign_per_s() -> anyhow::Result<f64> {
    let out = Command::new("taskset")
        .args([
            "-c",
            SERVER_CORE,
            "openssl",
            "speed",
            "-seconds",
            "5",
            "rsa2048",
        ])
        .stderr(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "rsa 2048 bits 0.000353s 0.000010s   2832.0  98000.0": sign/s is the fifth number.
    text.lines()
        .find(|l| l.trim_start().starts_with("rsa 2048 bits"))
        .and_then(|l| l.split_whitespace().nth(5))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no rsa 2048 line in openssl speed's output:\n{text}"))
}

/// Resident memory of a process in MB (`VmRSS` of `/proc/PID/status`, kB / 1,000).
fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1000.0)
}

/// User + system CPU seconds of a process, all its threads.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // CLK_TCK is 100 on Linux.
    (ticks(14) + ticks(15)) / 100.0
}

#[derive(Clone, Copy, PartialEq)]
enum Path_ {
    Handler,
    Serve,
    /// The HTTP exchange and the RSA operation alone (`--floor-server`).
    Floor,
}

impl Path_ {
    fn name(self) -> &'static str {
        match self {
            Path_::Handler => "handler (payload mode)",
            Path_::Serve => "serve",
            Path_::Floor => "http floor",
        }
    }

    /// The name `WEBHOOK_E2E_ONLY` uses.
    fn short(self) -> &'static str {
        match self {
            Path_::Handler => "handler",
            Path_::Serve => "serve",
            Path_::Floor => "floor",
        }
    }
}

/// `--floor-server PORT CERT`: answers `POST /api/notifications` with 202 once it has
/// unwrapped every `dataKey` in the body with the notification key, `GET /` with 200.
fn floor_server(port: &str, cert: &Path) -> anyhow::Result<()> {
    use axum::routing::{get, post};
    use base64::Engine as _;
    let ring = Arc::new(teams_presence::clients::graph::certs::KeyRing::load(cert)?);
    anyhow::ensure!(ring.current().is_some(), "no key in {}", cert.display());
    let notifications = post(move |body: axum::body::Bytes| async move {
        let key = ring.current().expect("checked at start");
        let body = std::str::from_utf8(&body).unwrap_or("");
        let mut unwrapped = 0;
        for part in body.split(r#""dataKey":""#).skip(1) {
            let wrapped = part.split('"').next().unwrap_or("");
            let wrapped = base64::engine::general_purpose::STANDARD
                .decode(wrapped)
                .unwrap_or_default();
            unwrapped += usize::from(key.unwrap_oaep_sha1(&wrapped).is_ok());
        }
        if unwrapped > 0 {
            axum::http::StatusCode::ACCEPTED
        } else {
            axum::http::StatusCode::BAD_REQUEST
        }
    });
    let app = axum::Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/api/notifications", notifications);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
            let stop = async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("SIGTERM handler");
                term.recv().await;
            };
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await?;
            Ok(())
        })
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    /// SIGTERM first, the way a user stops it, so a profiler the binary runs under
    /// (`valgrind`, a wrapper script as BIN) can write its output; SIGKILL after 30 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Seeds the store (the floor has none), starts the server on the server core, waits until
/// it answers.
async fn start(
    bin: &Path,
    path: Path_,
    dir: &Path,
    cert: &Path,
    authority: &str,
) -> anyhow::Result<Server> {
    let data_dir = match path {
        Path_::Handler => dir.join(".teams-presence"),
        Path_::Serve | Path_::Floor => dir.join("data"),
    };
    if path != Path_::Floor {
        seed(&data_dir).await?;
    }
    let port = free_port();
    let mut cmd = Command::new("taskset");
    cmd.args(["-a", "-c", SERVER_CORE]);
    match path {
        Path_::Floor => cmd.arg(std::env::current_exe()?),
        _ => cmd.arg(bin),
    };
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AZURE_CLIENT_ID", CLIENT_ID)
        .env("AZURE_AUTHORITY_HOST", authority)
        .env("NOTIFICATION_CERTIFICATE_PATH", cert)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // The server logs at its default level unless RUST_LOG says otherwise (to compare).
    if let Ok(filter) = std::env::var("RUST_LOG") {
        cmd.env("RUST_LOG", filter);
    }
    let url = match path {
        Path_::Handler => {
            cmd.arg("handler")
                .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
                .env("STORE", "sqlite");
            format!("http://127.0.0.1:{port}/notifications")
        }
        Path_::Serve => {
            cmd.args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(&data_dir);
            format!("http://127.0.0.1:{port}/api/notifications")
        }
        Path_::Floor => {
            cmd.arg("--floor-server").arg(port.to_string()).arg(cert);
            format!("http://127.0.0.1:{port}/api/notifications")
        }
    };
    let server = Server {
        child: cmd.spawn()?,
        url,
    };
    let probe = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while probe
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .is_err()
    {
        anyhow::ensure!(Instant::now() < deadline, "{} did not start", path.name());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(server)
}

/// The SQLite store with the one subscription every notification names.
async fn seed(data_dir: &Path) -> anyhow::Result<()> {
    let store = teams_presence::store::open(
        &Settings::parse(&Sources::from_map(Default::default()))?,
        StoreKind::Sqlite,
        data_dir,
    )?;
    store.insert(&common::subscription(USERS)).await?;
    Ok(())
}

/// The payload-mode invocation the Functions host makes for an HTTP request.
fn host_invocation(body: &str) -> String {
    let double = |v: &str| Value::String(serde_json::to_string(v).unwrap());
    let headers = json!({"Content-Type": ["application/json"]});
    json!({
        "Data": { "req": {
            "Url": "https://presence.example/api/notifications",
            "Method": "POST",
            "Query": {},
            "Headers": headers,
            "Params": {},
            "Identities": [],
            "Body": body,
        }},
        "Metadata": {
            "Query": {},
            "Headers": headers,
            "sys": { "MethodName": double("notifications"), "UtcNow": double("2026-11-23T01:00:00Z"),
                     "RandGuid": double("6d0f0c1e-0000-0000-0000-000000000000") }
        }
    })
    .to_string()
}

/// Sealed request bodies: `count` notifications in requests of `per_request`, each a change
/// (user `i % USERS`, alternating presence every round over the users).
fn bodies(
    key: &NotificationKey,
    token: &str,
    path: Path_,
    first: usize,
    count: usize,
    per_request: usize,
) -> Vec<String> {
    (first..first + count)
        .collect::<Vec<_>>()
        .chunks(per_request)
        .map(|chunk| {
            let items: Vec<Value> = chunk
                .iter()
                .map(|&i| {
                    let (u, round) = (i % USERS, i / USERS);
                    let (av, ac) = if round % 2 == 0 {
                        ("Busy", "InACall")
                    } else {
                        ("Available", "Available")
                    };
                    let payload = testing::presence_json(&user(u), av, ac).to_string();
                    let content = testing::seal(key, key.id(), payload.as_bytes());
                    testing::notification_json(SUB, "load-state", TENANT, &user(u), &content)
                })
                .collect();
            let batch = json!({"value": items, "validationTokens": [token]}).to_string();
            match path {
                Path_::Handler => host_invocation(&batch),
                Path_::Serve | Path_::Floor => batch,
            }
        })
        .collect()
}

/// Sends every body, `IN_FLIGHT` at a time; returns (requests not accepted, messages seen).
async fn send_all(url: &str, path: Path_, bodies: Vec<String>) -> (usize, usize) {
    let client = reqwest::Client::new();
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (client, bodies, next, url) =
            (client.clone(), bodies.clone(), next.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let (mut failed, mut messages) = (0, 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let resp = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let ok = match resp {
                    Ok(r) if path != Path_::Handler => r.status() == 202,
                    Ok(r) if r.status() == 200 => {
                        let text = r.text().await.unwrap_or_default();
                        messages += text.matches("presence.changed").count();
                        text.contains(r#""statusCode":"202""#)
                    }
                    _ => false,
                };
                failed += usize::from(!ok);
            }
            (failed, messages)
        }));
    }
    let (mut failed, mut messages) = (0, 0);
    for t in tasks {
        let (f, m) = t.await.unwrap();
        failed += f;
        messages += m;
    }
    (failed, messages)
}

struct Row {
    path: Path_,
    per_request: usize,
    notifications: usize,
    cpu: f64,
    wall: f64,
    failed: usize,
    messages: usize,
    rss: f64,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, port, cert] = &args[..] {
        if flag == "--floor-server" {
            return floor_server(port, Path::new(cert));
        }
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(load(args))
}

async fn load(args: Vec<String>) -> anyhow::Result<()> {
    let bin = PathBuf::from(
        args.first()
            .cloned()
            .unwrap_or_else(|| "target/release/teams-presence".into()),
    );
    let count: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    anyhow::ensure!(bin.exists(), "no binary at {}", bin.display());
    // The server starts in a directory of its own: a relative path would be looked up there.
    let bin = std::fs::canonicalize(&bin)?;

    let work = tempfile::tempdir()?;
    let key = generate_self_signed("webhook-e2e")?;
    let cert = work.path().join("notification.pem");
    std::fs::write(&cert, testing::key_pem(&key))?;
    let (authority, signing) = fake_entra().await;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k".into());
    let t = chrono::Utc::now().timestamp();
    let token = jsonwebtoken::encode(
        &header,
        &json!({"aud": CLIENT_ID, "iss": format!("https://sts.windows.net/{TENANT}/"),
                "nbf": t - 60, "exp": t + 3600, "appid": "0bf30f3b-4a52-48df-9a82-234910c4a086"}),
        &signing,
    )?;

    eprintln!("openssl speed -seconds 5 rsa2048 on core {SERVER_CORE}...");
    let before = openssl_rsa2048_sign_per_s()?;
    let mut rows = Vec::new();
    // `WEBHOOK_E2E_ONLY=serve/1` (path/shape) runs one of the four, e.g. under a profiler.
    let only = std::env::var("WEBHOOK_E2E_ONLY").ok();
    let wanted = |path: Path_, per_request: usize| {
        only.as_deref()
            .is_none_or(|o| o == format!("{}/{per_request}", path.short()))
    };
    for path in [Path_::Handler, Path_::Serve, Path_::Floor] {
        if !wanted(path, 10) && !wanted(path, 1) {
            continue;
        }
        let dir = tempfile::tempdir()?;
        let server = start(&bin, path, dir.path(), &cert, &authority).await?;
        let mut first = 0;
        for per_request in [10, 1] {
            if !wanted(path, per_request) {
                continue;
            }
            // A warm-up (connections, signing keys, the store's pages), not measured.
            let warm = bodies(&key, &token, path, first, 200, per_request);
            first += 200;
            let (failed, _) = send_all(&server.url, path, warm).await;
            anyhow::ensure!(failed == 0, "{} refused the warm-up", path.name());
            eprintln!(
                "{} x{per_request}: sealing {count} notifications...",
                path.name()
            );
            let load = bodies(&key, &token, path, first, count, per_request);
            first += count;
            let (cpu0, t0) = (cpu_seconds(server.child.id()), Instant::now());
            let (failed, messages) = send_all(&server.url, path, load).await;
            let (cpu, wall) = (
                cpu_seconds(server.child.id()) - cpu0,
                t0.elapsed().as_secs_f64(),
            );
            rows.push(Row {
                path,
                per_request,
                notifications: count,
                cpu,
                wall,
                failed,
                messages,
                rss: rss_mb(server.child.id()),
            });
        }
    }
    let after = openssl_rsa2048_sign_per_s()?;
    let floor = (before + after) / 2.0;

    println!(
        "openssl speed -seconds 5 rsa2048, core {SERVER_CORE}: {floor:.0} sign/s (before {before:.0}, after {after:.0})"
    );
    println!(
        "| path | per request | notifications | server CPU s | per CPU-second | wall /s | ratio to openssl | failed requests | messages out | server RSS MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let rate = r.notifications as f64 / r.cpu;
        let messages = match r.path {
            Path_::Handler => r.messages.to_string(),
            Path_::Serve => "in-process".into(),
            Path_::Floor => "none".into(),
        };
        println!(
            "| {} | {} | {} | {:.2} | {:.0} | {:.0} | **{:.2}** | {} | {} | {:.1} |",
            r.path.name(),
            r.per_request,
            r.notifications,
            r.cpu,
            rate,
            r.notifications as f64 / r.wall,
            rate / floor,
            r.failed,
            messages,
            r.rss
        );
    }
    Ok(())
}
