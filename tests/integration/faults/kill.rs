//! `kill -9` of the real binaries during a burst of changes: `serve` (polling the fake Graph
//! every second, publishing to the fake Service Bus with `PUBLISH_MODE=rest`) and
//! `subscribe` (reading that topic, driving the fake Hue bridge, healing from `serve`'s
//! presence API at start). The kill points are random, from a seed printed at the start
//! (`FAULTS_SEED=<n>` replays one).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::{colour, colour_of, read_state, Applied};
use crate::fakes::entra::FakeEntra;
use crate::fakes::graph::FakeGraph;
use crate::fakes::hue::{Api, FakeHue, KEY as HUE_KEY};
use crate::fakes::servicebus::FakeServiceBus;
use crate::support;

/// The user `teams-presence login` signs in with the fake Entra's device code.
const OID: &str = "device-user-oid";
/// Four states with four different colours; consecutive changes never repeat a colour.
const STATES: [(&str, &str); 4] = [
    ("Available", "Available"),
    ("Busy", "InACall"),
    ("Away", "Away"),
    ("DoNotDisturb", "DoNotDisturb"),
];
const KILL_POINTS: usize = 20;

/// splitmix64: a seeded, dependency-free random sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

/// One of the two binaries, restartable, with its output kept per run for a failing test.
struct Proc {
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    name: &'static str,
    runs: usize,
    child: Option<Child>,
    port: Option<u16>,
}

impl Proc {
    fn start(&mut self) {
        self.runs += 1;
        let log = self.cwd.join(format!("{}-{}.log", self.name, self.runs));
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let child = support::command(&args, &self.env, &self.cwd)
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        if let Some(port) = self.port {
            assert!(
                support::wait_for_port(
                    format!("127.0.0.1:{port}").parse().unwrap(),
                    Duration::from_secs(30)
                ),
                "{} did not listen again: {}",
                self.name,
                self.last_log()
            );
        }
    }

    /// SIGKILL, then reaped.
    fn kill_9(&mut self) {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    fn last_log(&self) -> String {
        let log = self.cwd.join(format!("{}-{}.log", self.name, self.runs));
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn login(env: &[(String, String)], cwd: &Path) {
    let (env, cwd) = (env.to_vec(), cwd.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        support::command(&["login", "--data-dir", "data"], &env, &cwd)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_serve_and_subscribe_at_20_random_points_of_a_burst_loses_nothing_and_never_goes_back(
) {
    let seed = std::env::var("FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("kill -9 faults: FAULTS_SEED={seed}");
    let started = Instant::now();
    let mut rng = Rng(seed);

    let (entra, graph, hue) = (
        FakeEntra::start().await,
        FakeGraph::start().await,
        FakeHue::start(Api::V1).await,
    );
    let sb = FakeServiceBus::start(10).await;
    let dir = tempfile::tempdir().unwrap();
    let (cloud_dir, edge_dir) = (dir.path().join("cloud"), dir.path().join("edge"));
    std::fs::create_dir_all(&cloud_dir).unwrap();
    std::fs::create_dir_all(&edge_dir).unwrap();
    let port = support::free_port();
    let cs = sb.connection_string();
    let api = format!("http://127.0.0.1:{port}");
    let serve_env = env(&[
        ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
        ("AZURE_AUTHORITY_HOST", &entra.url),
        ("GRAPH_ENDPOINT", &graph.url),
        ("POLL_INTERVAL", "1"),
        ("PUBLISH_MODE", "rest"),
        ("ServiceBusConnection", &cs),
        ("SERVICEBUS_ENDPOINT", &sb.url),
        ("PRESENCE_API_TOKEN", "edge-key"),
    ]);
    let edge_env = env(&[
        ("ServiceBusConnection", &cs),
        ("SERVICEBUS_ENDPOINT", &sb.url),
        ("PRESENCE_SUBSCRIPTION", "pi"),
        ("HUE_BRIDGE", &hue.url),
        ("HUE_APPLICATION_KEY", HUE_KEY),
        ("HUE_TARGETS", "light:1"),
        ("WATCH_USERS", OID),
        ("PRESENCE_API_URL", &api),
        ("PRESENCE_API_KEY", "edge-key"),
    ]);
    login(&serve_env, &cloud_dir).await;
    let mut serve = Proc {
        args: [
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            "data",
        ]
        .map(String::from)
        .to_vec(),
        env: serve_env,
        cwd: cloud_dir,
        name: "serve",
        runs: 0,
        child: None,
        port: Some(port),
    };
    let mut subscribe = Proc {
        args: ["subscribe", "--data-dir", "data"]
            .map(String::from)
            .to_vec(),
        env: edge_env,
        cwd: edge_dir.clone(),
        name: "subscribe",
        runs: 0,
        child: None,
        port: None,
    };
    let applied = Applied::default();
    let sampler = applied.sample(edge_dir.join("data/edge-state.json"));

    let mut k = 0;
    graph.set(OID, STATES[0].0, STATES[0].1);
    tokio::task::block_in_place(|| {
        serve.start();
        subscribe.start();
    });
    converge(&hue, "green", "start", &serve, &subscribe).await;

    let mut subscribe_restarts: Vec<Instant> = Vec::new();
    let mut round_times = Vec::new();
    for point in 0..KILL_POINTS {
        let round = Instant::now();
        // Three changes 150-700 ms apart; the kill somewhere in the burst or just after.
        let gaps: Vec<Duration> = (0..3).map(|_| rng.millis(150, 700)).collect();
        let total: Duration = gaps.iter().sum();
        let kill_at = rng.millis(0, total.as_millis() as u64 + 500);
        let victim = if point % 2 == 0 { "serve" } else { "subscribe" };
        let mut killed = false;
        let mut elapsed = Duration::ZERO;
        for gap in &gaps {
            if !killed && kill_at <= elapsed + *gap {
                tokio::time::sleep(kill_at.saturating_sub(elapsed)).await;
                elapsed = kill_at;
                tokio::task::block_in_place(|| {
                    kill_and_restart(victim, &mut serve, &mut subscribe, &mut subscribe_restarts)
                });
                killed = true;
            }
            tokio::time::sleep((elapsed + *gap).saturating_sub(elapsed)).await;
            elapsed += *gap;
            k += 1;
            let (availability, activity) = STATES[k % STATES.len()];
            graph.set(OID, availability, activity);
        }
        if !killed {
            tokio::time::sleep(kill_at.saturating_sub(elapsed)).await;
            tokio::task::block_in_place(|| {
                kill_and_restart(victim, &mut serve, &mut subscribe, &mut subscribe_restarts)
            });
        }
        let (availability, activity) = STATES[k % STATES.len()];
        converge(
            &hue,
            colour_of(availability, activity),
            &format!("kill point {point} ({victim} at {kill_at:?})"),
            &serve,
            &subscribe,
        )
        .await;
        round_times.push(round.elapsed());
    }
    // Settle: nothing more arrives after the last state.
    tokio::time::sleep(Duration::from_secs(3)).await;
    sampler.abort();
    let commands = shown(&hue);
    let published = sb.all_bodies();
    let final_state = read_state(&edge_dir.join("data/edge-state.json"));
    drop(subscribe);
    drop(serve);

    // 1. The edge's applied sequence only ever went up, across every restart.
    applied.assert_strictly_increasing(OID);
    // 2. Nothing lost: the edge ends on the newest change published.
    let mut by_sequence: Vec<(String, &'static str)> = published
        .iter()
        .filter(|m| m["type"] == "presence.changed")
        .map(|m| {
            (
                m["sequence"].as_str().unwrap().to_owned(),
                colour_of(
                    m["availability"].as_str().unwrap(),
                    m["activity"].as_str().unwrap(),
                ),
            )
        })
        .collect();
    by_sequence.sort();
    by_sequence.dedup();
    assert_eq!(
        final_state.get(OID),
        by_sequence.last().map(|(s, _)| s),
        "the edge ends on the newest change"
    );
    // 3. The lamp's commands follow the published changes in order: each command is a
    //    change at or after the previous command's. The same command twice in a row only
    //    across a `subscribe` restart (killed after the bridge took it, before its state
    //    file recorded it: at-least-once, never older).
    let mut at = 0;
    let mut repeats = 0;
    for (i, (c, when)) in commands.iter().enumerate() {
        let repeat = i > 0 && commands[i - 1].0 == *c;
        if repeat {
            let prev = commands[i - 1].1;
            assert!(
                subscribe_restarts.iter().any(|r| *r > prev && *r < *when),
                "command {i} ({c}) repeated without a restart between"
            );
            repeats += 1;
            continue;
        }
        let found = (at..by_sequence.len()).find(|&j| by_sequence[j].1 == *c);
        let Some(j) = found else {
            panic!(
                "command {i} ({c}) is not a later change: commands {:?}",
                commands.iter().map(|c| c.0).collect::<Vec<_>>()
            );
        };
        at = j + 1;
    }
    let slowest = round_times.iter().max().unwrap();
    let mean = round_times.iter().sum::<Duration>() / round_times.len() as u32;
    eprintln!(
        "kill -9 faults (seed {seed}): {KILL_POINTS} kill points ({} serve, {} subscribe), {k} changes, \
         {} published, {} lamp commands ({repeats} repeated across a restart); converged after each, \
         mean round {mean:?}, slowest {slowest:?}; {:?} in all",
        KILL_POINTS - subscribe_restarts.len(),
        subscribe_restarts.len(),
        by_sequence.len(),
        commands.len(),
        started.elapsed()
    );
}

fn kill_and_restart(
    victim: &str,
    serve: &mut Proc,
    subscribe: &mut Proc,
    subscribe_restarts: &mut Vec<Instant>,
) {
    match victim {
        "serve" => {
            serve.kill_9();
            serve.start();
        }
        _ => {
            subscribe.kill_9();
            subscribe_restarts.push(Instant::now());
            subscribe.start();
        }
    }
}

/// The lamp's commands: colour and when.
fn shown(hue: &FakeHue) -> Vec<(&'static str, Instant)> {
    hue.puts()
        .iter()
        .filter(|p| p.path.contains("/lights/1/"))
        .map(|p| (colour(&p.body), p.at.into_std()))
        .collect()
}

/// Waits (45 s at most: a change stored by a killed `serve` goes out with the next re-send,
/// every 15 s) until the lamp's last command shows `want`.
async fn converge(hue: &FakeHue, want: &str, what: &str, serve: &Proc, subscribe: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(45);
    while shown(hue).last().map(|s| s.0) != Some(want) {
        assert!(
            Instant::now() < deadline,
            "{what}: the lamp did not show {want}: {:?}\n--- serve:\n{}\n--- subscribe:\n{}",
            shown(hue).iter().map(|s| s.0).collect::<Vec<_>>(),
            serve.last_log(),
            subscribe.last_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
