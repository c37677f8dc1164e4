//! What the sinks beside Hue talk to: a **real** mosquitto broker (Debian's, started per test
//! on a free loopback port with a throw-away config) with a subscriber that keeps the last
//! payload per topic; a webhook receiver that checks `X-Signature` the way a real receiver
//! would (401 on a bad one) and can be told to answer 500 first; a WLED controller fake
//! that records every `/json/state` body.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Json;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};

use crate::net;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A mosquitto process on 127.0.0.1:`port`, without persistence: a restart forgets every
/// retained message, so whatever is there afterwards was published again.
pub struct Mosquitto {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Mosquitto {
    pub fn start() -> Self {
        assert!(
            std::path::Path::new(MOSQUITTO).exists(),
            "{MOSQUITTO} is missing: apt-get install mosquitto (scripts/test.sh does)"
        );
        let mut m = Self {
            port: net::free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        m.run();
        m
    }

    fn run(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\n",
                self.port
            ),
        )
        .unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(child);
        assert!(
            net::wait_for_port(
                format!("127.0.0.1:{}", self.port).parse().unwrap(),
                Duration::from_secs(10)
            ),
            "mosquitto listens"
        );
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the broker (retained messages gone) and starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A subscriber to `#`: the last payload of every topic, retained ones included.
pub struct Subscriber {
    seen: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscriber {
    pub async fn connect(port: u16) -> Self {
        let id = format!("test-sub-{}", uuid::Uuid::new_v4().simple());
        let (client, mut eventloop) = AsyncClient::new(MqttOptions::new(id, "127.0.0.1", port), 64);
        client.subscribe("#", QoS::AtLeastOnce).await.unwrap();
        let seen: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let s = seen.clone();
        let task = tokio::spawn(async move {
            let _keep = client;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        s.lock()
                            .unwrap()
                            .insert(p.topic.clone(), p.payload.to_vec());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        Self { seen, task }
    }

    pub fn get(&self, topic: &str) -> Option<Vec<u8>> {
        self.seen.lock().unwrap().get(topic).cloned()
    }

    /// Waits until `topic` carries a payload for which `pred` holds; returns it.
    pub async fn wait_for(&self, topic: &str, secs: u64, pred: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(p) = self.get(topic).filter(|p| pred(p)) {
                return p;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{topic}: {:?}",
                self.get(topic)
                    .map(|p| String::from_utf8_lossy(&p).into_owned())
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn json(&self, topic: &str, secs: u64) -> Value {
        serde_json::from_slice(&self.wait_for(topic, secs, |_| true).await).unwrap()
    }
}

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub signature: Option<String>,
    pub body: Vec<u8>,
    pub verified: bool,
    pub answered: u16,
}

#[derive(Default)]
struct Hook {
    deliveries: Vec<Delivery>,
    /// Statuses to answer (once each) before answering normally.
    script: Vec<u16>,
}

/// The webhook receiver: checks the signature with the shared secret, answers 401 on a bad
/// one, and otherwise the next scripted status (200 once the script is used up).
pub struct FakeWebhook {
    pub url: String,
    hook: Arc<Mutex<Hook>>,
}

impl FakeWebhook {
    pub async fn start(secret: &str) -> Self {
        let hook: Arc<Mutex<Hook>> = Arc::default();
        let secret_owned = secret.to_owned();
        let state = (hook.clone(), secret_owned);
        let app = axum::Router::new()
            .route("/hook", post(receive))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, hook }
    }

    pub fn script(&self, statuses: &[u16]) {
        self.hook.lock().unwrap().script = statuses.to_vec();
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.hook.lock().unwrap().deliveries.clone()
    }

    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<Delivery> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while self.deliveries().len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                self.deliveries()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.deliveries()
    }
}

async fn receive(
    State((hook, secret)): State<(Arc<Mutex<Hook>>, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let signature = headers
        .get("x-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let now = chrono::Utc::now().timestamp();
    let verified = signature.as_deref().is_some_and(|s| {
        teams_presence::clients::webhook::verify(secret.as_bytes(), s, &body, now, 300)
    });
    let mut h = hook.lock().unwrap();
    let answered = if !verified {
        401
    } else if h.script.is_empty() {
        200
    } else {
        h.script.remove(0)
    };
    h.deliveries.push(Delivery {
        signature,
        body: body.to_vec(),
        verified,
        answered,
    });
    StatusCode::from_u16(answered).unwrap()
}

/// A WLED controller: records `/json/state` bodies, answers `/json/info`.
pub struct FakeWled {
    pub url: String,
    states: Arc<Mutex<Vec<Value>>>,
}

impl FakeWled {
    pub async fn start() -> Self {
        let states: Arc<Mutex<Vec<Value>>> = Arc::default();
        let app = axum::Router::new()
            .route(
                "/json/state",
                post(
                    |State(s): State<Arc<Mutex<Vec<Value>>>>, Json(v): Json<Value>| async move {
                        s.lock().unwrap().push(v);
                        Json(json!({"success": true}))
                    },
                ),
            )
            .route(
                "/json/info",
                get(|| async { Json(json!({"name": "Desk", "ver": "0.14.4"})) }),
            )
            .with_state(states.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, states }
    }

    pub fn states(&self) -> Vec<Value> {
        self.states.lock().unwrap().clone()
    }

    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while self.states().len() < n {
            assert!(std::time::Instant::now() < deadline, "{:?}", self.states());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.states()
    }
}
