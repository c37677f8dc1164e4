//! The fault suite (issue 14): each fault ends with the right lamp state, nothing lost and
//! nothing commanded twice. The lamp is always a real edge (`edge::run`, or the `subscribe`
//! binary) reading the fake Service Bus and driving a fake Hue bridge; the checks are on the
//! bridge's commands and on the edge's applied sequence (sampled from its state file).
//!
//! - `outages`: Azurite stopped for 20 s, Service Bus answering 500 and timing out for 30 s,
//!   the Hue bridge off the network for 60 s, a lost peek-lock.
//! - `graph`: Graph's 429 with `Retry-After` and a 5xx storm; a revoked refresh token.
//! - `kill`: `kill -9` of `serve` and of `subscribe` at seeded random points of a burst.

mod graph;
mod kill;
mod outages;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, TimeZone, Utc};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use teams_presence::clients::hue::{Address, HueSink};
use teams_presence::clients::servicebus::{self, ConnectionString};
use teams_presence::config::HueTarget;
use teams_presence::core::lights::LightMap;
use teams_presence::edge::{self, Options};
use teams_presence::engine::applier::Applier;
use teams_presence::http::state::{AppState, Mode};
use teams_presence::store::Store;

use crate::fakes::hue::{Api, FakeHue, KEY as HUE_KEY};
use crate::fakes::outage::Outage;
use crate::fakes::servicebus::FakeServiceBus;
use crate::support::{self, World};

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// The colours of the default light map on light 1 (CLIP v1), by the xy the bridge gets.
pub const COLOURS: [(&str, [f64; 2]); 6] = [
    ("green", [0.1724, 0.7468]),
    ("red", [0.7006, 0.2993]),
    ("orange", [0.6187, 0.3687]),
    ("yellow", [0.5143, 0.4572]),
    ("purple", [0.2181, 0.0778]),
    ("blue", [0.1369, 0.066]),
];

/// The colour a light command shows (`off` when it turns the light off).
pub fn colour(body: &Value) -> &'static str {
    if body["on"] == false {
        return "off";
    }
    let xy = [
        body["xy"][0].as_f64().unwrap_or(-1.0),
        body["xy"][1].as_f64().unwrap_or(-1.0),
    ];
    COLOURS
        .iter()
        .find(|(_, c)| (c[0] - xy[0]).abs() < 0.002 && (c[1] - xy[1]).abs() < 0.002)
        .map_or("unknown", |(n, _)| n)
}

/// The colour the default map gives a presence.
pub fn colour_of(availability: &str, activity: &str) -> &'static str {
    match (availability, activity) {
        (_, "InACall" | "InAConferenceCall" | "Presenting") => "red",
        (_, "InAMeeting") | ("Busy", _) => "orange",
        ("Available", _) => "green",
        ("Away" | "BeRightBack", _) => "yellow",
        ("DoNotDisturb", _) => "purple",
        _ => "off",
    }
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

/// Polls `pred` every 50 ms for up to `secs`, failing with `what` and `state()`.
pub async fn eventually<S: std::fmt::Debug>(
    secs: u64,
    what: &str,
    mut pred: impl FnMut() -> bool,
    state: impl Fn() -> S,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !pred() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}: {:?}",
            state()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The applied sequence per user, read from an edge's state file as it changes.
#[derive(Clone, Default)]
pub struct Applied(Arc<Mutex<Vec<(String, String)>>>);

impl Applied {
    /// Samples `state_file` every 5 ms until the returned task is aborted.
    pub fn sample(&self, state_file: PathBuf) -> tokio::task::JoinHandle<()> {
        let seen = self.0.clone();
        tokio::spawn(async move {
            let mut last: BTreeMap<String, String> = BTreeMap::new();
            loop {
                for (user, seq) in read_state(&state_file) {
                    if last.get(&user) != Some(&seq) {
                        last.insert(user.clone(), seq.clone());
                        seen.lock().unwrap().push((user, seq));
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    }

    /// Every applied sequence seen for `user`, in order.
    pub fn of(&self, user: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(u, _)| u == user)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// The edge never went backwards or applied a sequence twice: strictly increasing.
    pub fn assert_strictly_increasing(&self, user: &str) {
        let seqs = self.of(user);
        for w in seqs.windows(2) {
            assert!(w[0] < w[1], "applied out of order for {user}: {seqs:?}");
        }
    }
}

/// The users and sequences in an edge state file (empty when absent or half written).
pub fn read_state(path: &Path) -> BTreeMap<String, String> {
    let Ok(bytes) = std::fs::read(path) else {
        return BTreeMap::new();
    };
    let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
        return BTreeMap::new();
    };
    v["users"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(u, m)| Some((u.clone(), m["sequence"].as_str()?.to_owned())))
        .collect()
}

/// The lamp: a fake Hue bridge (behind a proxy that can take it off the network), the fake
/// Service Bus the cloud publishes to, and an edge (`edge::run`) between them with a state
/// file whose applied sequence is sampled.
pub struct Lamp {
    pub sb: FakeServiceBus,
    pub hue: FakeHue,
    pub bridge: Outage,
    pub applied: Applied,
    sampler: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Applier>>,
    _dir: tempfile::TempDir,
}

impl Lamp {
    pub async fn start() -> Self {
        support::init_logging();
        // Infra's maxDeliveryCount.
        let sb = FakeServiceBus::start(10).await;
        let hue = FakeHue::start(Api::V1).await;
        let bridge = Outage::start(&hue.url).await;
        let dir = tempfile::tempdir().unwrap();
        let state_file = dir.path().join("edge-state.json");
        let sink = HueSink::connect(
            &Address::parse(&bridge.url).unwrap(),
            &secrecy::SecretString::from(HUE_KEY),
            &[HueTarget::Light("1".into())],
        )
        .await
        .unwrap();
        let mut applier = Applier::new(LightMap::default(), sink, vec![], Some(state_file.clone()));
        let client = servicebus::Client::new(
            ConnectionString::parse(&sb.connection_string()).unwrap(),
            Some(sb.url.parse().unwrap()),
            "presence",
        )
        .unwrap()
        .subscription("pi");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let opts = Options {
                wait: Duration::from_secs(1),
                ..Options::default()
            };
            edge::run(&client, &mut applier, &opts, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
            applier
        });
        let applied = Applied::default();
        let sampler = applied.sample(state_file.clone());
        Self {
            sb,
            hue,
            bridge,
            applied,
            sampler,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// The colours light 1 was given, in order.
    pub fn shown(&self) -> Vec<&'static str> {
        self.hue
            .puts()
            .iter()
            .filter(|p| p.path.contains("/lights/1/"))
            .map(|p| colour(&p.body))
            .collect()
    }

    /// Waits until the last command shows `want`.
    pub async fn wait_for(&self, secs: u64, want: &str) {
        eventually(
            secs,
            &format!("the lamp to show {want}"),
            || self.shown().last() == Some(&want),
            || self.shown(),
        )
        .await;
    }

    /// Stops the edge (finishing its batch) and the sampler.
    pub async fn stop(mut self) -> Applied {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(20), self.task.take().unwrap())
            .await
            .expect("the edge stops")
            .unwrap();
        // One last look at the state file.
        tokio::time::sleep(Duration::from_millis(30)).await;
        self.sampler.abort();
        self.applied.clone()
    }
}

/// No command repeats the one before it: the bridge never got the same change twice.
pub fn assert_no_repeats(shown: &[&str]) {
    for w in shown.windows(2) {
        assert_ne!(w[0], w[1], "a command repeated: {shown:?}");
    }
}

/// The cloud side: the Functions handler's state over a store, with fake Graph and Entra,
/// publishing straight to the lamp's Service Bus (`PUBLISH_MODE=rest`), on a manual clock.
pub struct Cloud {
    /// The fakes and settings around the handler.
    pub world: World,
    pub app: AppState,
}

impl Cloud {
    pub async fn start(lamp: &Lamp, store: Store, extra: &[(&str, &str)]) -> Self {
        let world = World::builder()
            .store(store)
            .publish_rest_to(&lamp.sb)
            .settings(extra)
            .start()
            .await;
        let app = world.handler_at(t0());
        Self { world, app }
    }

    /// One `presence-refresh` invocation at `now`, as the host sends it.
    pub async fn tick(&self, now: DateTime<Utc>) -> (StatusCode, Value) {
        self.app.clock.set(now);
        support::presence_refresh(&self.app).await
    }

    /// Graph calls so far.
    pub fn graph_calls(&self) -> usize {
        self.world.graph.state.lock().unwrap().calls.len()
    }
}

/// `GET /api/status` as a loopback peer would ask `serve` over the same store (under the
/// Functions host the status page does not exist; what it shows is the store's).
pub async fn status(app: &AppState) -> Value {
    let app = AppState::new(support::settings(&[]), app.store.clone(), Mode::Serve);
    let mut req = Request::get("/api/status").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo::<std::net::SocketAddr>(
            "127.0.0.1:9".parse().unwrap(),
        ));
    let resp = teams_presence::serve::router(app)
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap()
}
