//! A fake Service Bus namespace (REST): peek-lock with lock tokens and lock expiry, delivery
//! counts, redelivery after abandon, dead-lettering after the max delivery count, and the SAS
//! header checked against the key (HMAC-SHA256 over the key string's bytes).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio::time::Instant;

pub const KEY_NAME: &str = "edge-listen";
pub const KEY: &str = "ZmFrZS1rZXk9PQ==";
const LOCK: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Msg {
    pub seq: i64,
    pub body: Vec<u8>,
    pub user_id_header: Option<String>,
    pub delivery_count: u32,
    /// `BrokerProperties.MessageId` as sent.
    pub message_id: Option<String>,
    lock: Option<(String, Instant)>,
}

#[derive(Debug, Default)]
pub struct Broker {
    pub queue: VecDeque<Msg>,
    pub completed: Vec<Msg>,
    pub dead_lettered: Vec<Msg>,
    pub abandoned: u32,
    pub renewed: u32,
    pub unauthorized: u32,
    /// Sends dropped by duplicate detection (same MessageId as an earlier one).
    pub duplicates: u32,
    seen_ids: std::collections::HashSet<String>,
    next_seq: i64,
    max_delivery: u32,
}

#[derive(Clone)]
struct Shared {
    broker: Arc<Mutex<Broker>>,
    notify: Arc<Notify>,
}

pub struct FakeServiceBus {
    pub url: String,
    shared: Shared,
}

impl FakeServiceBus {
    pub async fn start(max_delivery: u32) -> Self {
        let shared = Shared {
            broker: Arc::new(Mutex::new(Broker {
                max_delivery,
                next_seq: 1,
                ..Default::default()
            })),
            notify: Arc::new(Notify::new()),
        };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, shared }
    }

    pub fn connection_string(&self) -> String {
        format!("Endpoint=sb://fake.servicebus.windows.net/;SharedAccessKeyName={KEY_NAME};SharedAccessKey={KEY}")
    }

    pub fn enqueue(&self, body: serde_json::Value) {
        let mut b = self.shared.broker.lock().unwrap();
        let seq = b.next_seq;
        b.next_seq += 1;
        b.queue.push_back(Msg {
            seq,
            body: body.to_string().into_bytes(),
            user_id_header: None,
            delivery_count: 0,
            message_id: None,
            lock: None,
        });
        drop(b);
        self.shared.notify.notify_waiters();
    }

    pub fn with<T>(&self, f: impl FnOnce(&Broker) -> T) -> T {
        f(&self.shared.broker.lock().unwrap())
    }

    /// Polls `pred` every 20 ms for up to `secs` seconds.
    pub async fn wait_for(&self, secs: u64, what: &str, pred: impl Fn(&Broker) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while !self.with(&pred) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.with(|b| (
                    b.queue.len(),
                    b.completed.len(),
                    b.abandoned,
                    b.dead_lettered.len()
                ))
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn sas_ok(headers: &HeaderMap) -> bool {
    let Some(h) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(rest) = h.strip_prefix("SharedAccessSignature ") else {
        return false;
    };
    let field = |k: &str| {
        rest.split('&')
            .find_map(|p| p.strip_prefix(&format!("{k}=")))
            .map(str::to_owned)
    };
    let (Some(sr), Some(sig), Some(se), Some(skn)) =
        (field("sr"), field("sig"), field("se"), field("skn"))
    else {
        return false;
    };
    let expiry: i64 = se.parse().unwrap_or(0);
    if skn != KEY_NAME || expiry < chrono::Utc::now().timestamp() {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(format!("{sr}\n{se}").as_bytes());
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    percent_encoding::percent_decode_str(&sig).decode_utf8_lossy() == want
}

async fn handle(
    State(s): State<Shared>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !sas_ok(&headers) {
        s.broker.lock().unwrap().unauthorized += 1;
        return (StatusCode::UNAUTHORIZED, "bad SAS").into_response();
    }
    let parts: Vec<&str> = uri.path().split('/').filter(|p| !p.is_empty()).collect();
    match (method.as_str(), parts.as_slice()) {
        ("POST", [_topic, "messages"]) => {
            let mut b = s.broker.lock().unwrap();
            let seq = b.next_seq;
            b.next_seq += 1;
            let user = headers
                .get("userid")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim_matches('"').to_owned());
            let message_id = headers
                .get("brokerproperties")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
                .and_then(|v| v["MessageId"].as_str().map(str::to_owned));
            // Duplicate detection (the topic has it on): a repeated MessageId is accepted
            // and dropped.
            if let Some(id) = &message_id {
                if !b.seen_ids.insert(id.clone()) {
                    b.duplicates += 1;
                    return StatusCode::CREATED.into_response();
                }
            }
            b.queue.push_back(Msg {
                seq,
                body: body.to_vec(),
                user_id_header: user,
                delivery_count: 0,
                message_id,
                lock: None,
            });
            drop(b);
            s.notify.notify_waiters();
            StatusCode::CREATED.into_response()
        }
        ("POST", [topic, "subscriptions", sub, "messages", "head"]) => {
            let timeout: u64 = uri
                .query()
                .and_then(|q| q.strip_prefix("timeout="))
                .and_then(|t| t.parse().ok())
                .unwrap_or(60);
            let deadline = Instant::now() + Duration::from_secs(timeout);
            loop {
                let notified = s.notify.notified();
                if let Some(resp) = lock_next(&s, topic, sub) {
                    return resp;
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return StatusCode::NO_CONTENT.into_response();
                }
            }
        }
        (m, [_topic, "subscriptions", _sub, "messages", seq, token]) => {
            let mut b = s.broker.lock().unwrap();
            let now = Instant::now();
            let Some(pos) = b.queue.iter().position(|x| {
                x.seq.to_string() == *seq
                    && matches!(&x.lock, Some((t, until)) if t == token && *until > now)
            }) else {
                return (StatusCode::GONE, "lock lost").into_response();
            };
            match m {
                "DELETE" => {
                    let msg = b.queue.remove(pos).unwrap();
                    b.completed.push(msg);
                }
                "PUT" => {
                    b.abandoned += 1;
                    b.queue[pos].lock = None;
                    if b.queue[pos].delivery_count >= b.max_delivery {
                        let msg = b.queue.remove(pos).unwrap();
                        b.dead_lettered.push(msg);
                    }
                    drop(b);
                    s.notify.notify_waiters();
                }
                "POST" => {
                    b.renewed += 1;
                    b.queue[pos].lock = Some((token.to_string(), now + LOCK));
                }
                _ => return StatusCode::METHOD_NOT_ALLOWED.into_response(),
            }
            StatusCode::OK.into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn lock_next(s: &Shared, topic: &str, sub: &str) -> Option<Response> {
    let mut b = s.broker.lock().unwrap();
    let now = Instant::now();
    let max = b.max_delivery;
    // An expired lock counts as a failed delivery, like the real broker.
    let expired: Vec<usize> = (0..b.queue.len())
        .filter(|&i| {
            matches!(&b.queue[i].lock, Some((_, until)) if *until <= now)
                && b.queue[i].delivery_count >= max
        })
        .collect();
    for i in expired.into_iter().rev() {
        let msg = b.queue.remove(i).unwrap();
        b.dead_lettered.push(msg);
    }
    let m = b
        .queue
        .iter_mut()
        .find(|m| m.lock.as_ref().is_none_or(|(_, until)| *until <= now))?;
    m.delivery_count += 1;
    let token = uuid::Uuid::new_v4().to_string();
    m.lock = Some((token.clone(), now + LOCK));
    let locked_until = chrono::Utc::now() + chrono::Duration::seconds(30);
    let props = serde_json::json!({
        "DeliveryCount": m.delivery_count,
        "LockToken": token,
        "LockedUntilUtc": locked_until.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        "MessageId": format!("msg-{}", m.seq),
        "SequenceNumber": m.seq,
    });
    // The real broker answers with its own host: the client must rebase it.
    let location = format!(
        "https://fake.servicebus.windows.net/{topic}/subscriptions/{sub}/messages/{}/{token}",
        m.seq
    );
    let mut resp = (StatusCode::CREATED, m.body.clone()).into_response();
    let h = resp.headers_mut();
    h.insert("BrokerProperties", props.to_string().parse().unwrap());
    h.insert("Location", location.parse().unwrap());
    if let Some(u) = &m.user_id_header {
        h.insert("userId", format!("\"{u}\"").parse().unwrap());
    }
    Some(resp)
}
