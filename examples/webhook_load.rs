//! Drives `serve`'s webhook over loopback at a steady rate and reports latency percentiles
//! (docs/performance.md).
//!
//! ```text
//! cargo run --release --example webhook_load -- [RATE_PER_SECOND] [SECONDS] [USERS]
//! ```
//!
//! Defaults: 200 notifications/s for 20 s over 1000 users. Each request carries one
//! notification that is a real change (presences alternate per user), so every request goes
//! the whole way: JWKS-cached token check, RSA unwrap, HMAC, AES, SQLite read and
//! conditional write, publish. Requests are sent open-loop (each at its scheduled time,
//! whether or not earlier ones have finished), so a slow response cannot hide the latency
//! of the ones queued behind it.
//!
//! The server runs on its own Tokio runtime (threads named `serve-worker`), the load
//! generator on the main one, so the report can split the process's CPU time by thread:
//! what `serve` used and what the generator used. It also reports the process's RSS after
//! the first 10 s and at the end (the sealed bodies are made before either sample).

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, Header};
use serde_json::json;
use teams_presence::clients::graph::testing;
use teams_presence::config::{Settings, Sources};

mod common;
use common::{fake_entra, user, CLIENT_ID, SUB, TENANT};

/// The process's resident set size in KiB (Linux; 0 elsewhere).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) of this process's threads, split into those whose name
/// starts with `serve-` and all others (Linux; zeros elsewhere). Assumes 100 ticks/s.
fn cpu_split() -> (f64, f64) {
    let (mut serve, mut other) = (0u64, 0u64);
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for task in dir.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
                + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
            if comm.starts_with("serve-") {
                serve += ticks;
            } else {
                other += ticks;
            }
        }
    }
    (serve as f64 / 100.0, other as f64 / 100.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (rate, seconds, users) = (arg(0, 200), arg(1, 20), arg(2, 1000));

    let dir = tempfile::tempdir()?;
    let (authority, signing) = fake_entra().await;
    let settings = Settings::parse(&Sources::from_map(
        [
            ("AZURE_CLIENT_ID", CLIENT_ID.to_owned()),
            ("AZURE_AUTHORITY_HOST", authority),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
    ))?;
    // No NOTIFICATION_CERTIFICATE_PATH: serve generates its certificate, as in production.
    let state = teams_presence::serve::build_state(settings, dir.path()).await?;
    state.store.insert(&common::subscription(users)).await?;
    let mut rx = state.publisher.subscribe();
    let published = tokio::spawn(async move {
        let mut n = 0usize;
        while rx.recv().await.is_some() {
            n += 1;
        }
        n
    });

    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k".into());
    let t = chrono::Utc::now().timestamp();
    let token = jsonwebtoken::encode(
        &header,
        &json!({"aud": CLIENT_ID, "iss": format!("https://sts.windows.net/{TENANT}/"),
                "nbf": t - 60, "exp": t + 3600, "appid": "0bf30f3b-4a52-48df-9a82-234910c4a086"}),
        &signing,
    )?;

    let total = rate * seconds;
    eprintln!("sealing {total} notifications...");
    let key = state.notification_keys.current().expect("serve has a key");
    let bodies: Vec<String> = (0..total)
        .map(|i| {
            let u = i % users;
            let round = i / users;
            let (av, ac) = if round % 2 == 0 {
                ("Busy", "InACall")
            } else {
                ("Available", "Available")
            };
            let content = testing::seal(
                key,
                key.id(),
                testing::presence_json(&user(u), av, ac)
                    .to_string()
                    .as_bytes(),
            );
            json!({
                "value": [testing::notification_json(SUB, "load-state", TENANT, &user(u), &content)],
                "validationTokens": [token],
            })
            .to_string()
        })
        .collect();

    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let url = format!("http://{}/api/notifications", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_state = state.clone();
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("serve-worker")
        .enable_all()
        .build()?;
    let server = server_rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        teams_presence::serve::run(listener, server_state, async {
            let _ = stop_rx.await;
        })
        .await
    });
    let (serve_cpu_before, gen_cpu_before) = cpu_split();

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    eprintln!("sending {rate}/s for {seconds} s to {url}");
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tasks = Vec::with_capacity(total);
    let mut rss_10s = None;
    for (i, body) in bodies.into_iter().enumerate() {
        let at = start + interval * i as u32;
        tokio::time::sleep_until(at.into()).await;
        if rss_10s.is_none() && start.elapsed() >= Duration::from_secs(10) {
            rss_10s = Some(rss_kib());
        }
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let status = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            (sent.elapsed(), status)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut failures = 0usize;
    let mut non_2xx = 0usize;
    for t in tasks {
        let (lat, status) = t.await?;
        if status != 202 {
            failures += 1;
        }
        if !(200..300).contains(&status) {
            non_2xx += 1;
        }
        latencies.push(lat);
    }
    let elapsed = start.elapsed();
    let rss_end = rss_kib();
    let (serve_cpu, gen_cpu) = cpu_split();
    latencies.sort();
    let _ = stop_tx.send(());
    server.await??;
    server_rt.shutdown_background();
    drop(state);
    let published = published.await?;

    println!(
        "requests={total} (1 notification each) offered={rate}/s achieved={:.1}/s non_2xx={non_2xx} non_202={failures} published={published}",
        total as f64 / elapsed.as_secs_f64()
    );
    let (serve_s, gen_s) = (serve_cpu - serve_cpu_before, gen_cpu - gen_cpu_before);
    let wall = elapsed.as_secs_f64();
    println!(
        "rss after 10 s={} KiB, at the end={} KiB; cpu during the run: serve {serve_s:.1} s ({:.0}% of one core), load generator {gen_s:.1} s ({:.0}% of one core)",
        rss_10s.unwrap_or(0),
        rss_end,
        serve_s / wall * 100.0,
        gen_s / wall * 100.0,
    );
    println!(
        "latency p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.90).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    Ok(())
}
