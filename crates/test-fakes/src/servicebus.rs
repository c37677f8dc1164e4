//! A fake Service Bus namespace (REST): peek-lock with lock tokens and lock expiry, delivery
//! counts, redelivery after abandon, dead-lettering after the max delivery count, and the SAS
//! header checked against the key (HMAC-SHA256 over the key string's bytes).
//!
//! Out of the box every subscription name reads one shared queue ([`Broker::queue`]). With
//! [`FakeServiceBus::add_edge`] it models infra's per-edge isolation instead: a queue
//! `edge-<name>`, a topic subscription whose SQL filter on the `userId` application property
//! (the exact text infra writes: `userId IN ('a', 'b')`, `userId = 'a'`, `1=1`, `1=0`) decides
//! what it auto-forwards into that queue, and a listen-only key that belongs to the queue alone
//! (401 anywhere else, and for sends).
//!
//! Fault switches for the fault suite: sends answered 500 ([`FakeServiceBus::set_failing_sends`]),
//! sends taken but answered too late ([`FakeServiceBus::set_hanging_sends`]: the message lands,
//! the sender times out), and locks that run out before the completion arrives
//! ([`FakeServiceBus::lose_next_locks`]: 410, delivered again).

use std::collections::{BTreeMap, VecDeque};
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

/// A SAS rule: namespace-wide with every right, or one entity's listen-only rule.
#[derive(Debug, Clone)]
struct Rule {
    name: String,
    key: String,
    /// The entity the rule belongs to (listen only), or `None` for the namespace (all rights).
    entity: Option<String>,
}

/// A topic subscription's rule and where it forwards to.
#[derive(Debug, Clone)]
struct Subscription {
    filter: String,
    forward_to: String,
}

#[derive(Debug, Default)]
pub struct Broker {
    /// What unconfigured subscriptions read (every message sent while no edge is configured).
    pub queue: VecDeque<Msg>,
    /// The queues, by name.
    pub queues: BTreeMap<String, VecDeque<Msg>>,
    subscriptions: BTreeMap<String, Subscription>,
    rules: Vec<Rule>,
    pub completed: Vec<Msg>,
    pub dead_lettered: Vec<Msg>,
    pub abandoned: u32,
    pub renewed: u32,
    pub unauthorized: u32,
    /// Sends dropped by duplicate detection (same MessageId as an earlier one).
    pub duplicates: u32,
    /// While set, every send is answered 500 (the topic is unavailable).
    pub failing_sends: bool,
    /// Sends answered 500.
    pub failed_sends: u32,
    /// While set, a send is accepted (the message lands on the topic) but its answer is held
    /// this long: past the client's timeout, the sender sees a timeout, not a 201.
    pub hanging_sends: Option<Duration>,
    /// Sends whose answer was held.
    pub hung_sends: u32,
    /// The next this many completions find their lock gone (it expired while the receiver
    /// worked): answered 410 and the message is delivered again.
    pub lose_locks: u32,
    /// Completions answered 410 because of `lose_locks`.
    pub lost_locks: u32,
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
                rules: vec![Rule {
                    name: KEY_NAME.into(),
                    key: KEY.into(),
                    entity: None,
                }],
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

    /// Infra's per-edge entities for edge `name`: queue `edge-<name>`, a subscription `<name>`
    /// with `filter` forwarding into it, and a listen-only key on the queue. Returns that
    /// key's connection string (with `EntityPath`, as the portal and `az` print it).
    pub fn add_edge(&self, name: &str, filter: &str) -> String {
        let queue = format!("edge-{name}");
        let key = base64::engine::general_purpose::STANDARD.encode(format!("key-of-{queue}"));
        let mut b = self.shared.broker.lock().unwrap();
        b.queues.insert(queue.clone(), VecDeque::new());
        b.subscriptions.insert(
            name.to_owned(),
            Subscription {
                filter: filter.to_owned(),
                forward_to: queue.clone(),
            },
        );
        b.rules.push(Rule {
            name: "listen".into(),
            key: key.clone(),
            entity: Some(queue.clone()),
        });
        format!("Endpoint=sb://fake.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey={key};EntityPath={queue}")
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

    /// Makes sends fail with 500 (or work again).
    pub fn set_failing_sends(&self, failing: bool) {
        self.shared.broker.lock().unwrap().failing_sends = failing;
    }

    /// Holds the answer to every send for `hold` (the message is still accepted), or stops.
    pub fn set_hanging_sends(&self, hold: Option<Duration>) {
        self.shared.broker.lock().unwrap().hanging_sends = hold;
    }

    /// The next `n` completions find their lock expired (410, redelivered).
    pub fn lose_next_locks(&self, n: u32) {
        self.shared.broker.lock().unwrap().lose_locks = n;
    }

    /// Every message sent to the topic or enqueued, in order, with the ones still waiting.
    pub fn all_bodies(&self) -> Vec<serde_json::Value> {
        self.with(|b| {
            let mut all: Vec<&Msg> = b
                .completed
                .iter()
                .chain(&b.dead_lettered)
                .chain(&b.queue)
                .chain(b.queues.values().flatten())
                .collect();
            all.sort_by_key(|m| m.seq);
            all.dedup_by_key(|m| m.seq);
            all.iter()
                .filter_map(|m| serde_json::from_slice(&m.body).ok())
                .collect()
        })
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

/// Whether the request carries a valid SAS token of a rule allowed to do this: the token's
/// `sr` must cover the requested path, and an entity's rule only listens on its entity.
fn sas_ok(rules: &[Rule], headers: &HeaderMap, path: &[&str], send: bool) -> bool {
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
    if expiry < chrono::Utc::now().timestamp() {
        return false;
    }
    let signed = |r: &Rule| {
        let mut mac = Hmac::<Sha256>::new_from_slice(r.key.as_bytes()).unwrap();
        mac.update(format!("{sr}\n{se}").as_bytes());
        let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        percent_encoding::percent_decode_str(&sig).decode_utf8_lossy() == want
    };
    let Some(rule) = rules.iter().find(|r| r.name == skn && signed(r)) else {
        return false;
    };
    // The token is good for the resource it names and everything under it.
    let sr = percent_encoding::percent_decode_str(&sr).decode_utf8_lossy();
    let scope: Vec<&str> = sr
        .trim_start_matches("https://")
        .split('/')
        .skip(1)
        .filter(|p| !p.is_empty())
        .collect();
    let covered = scope.len() <= path.len()
        && scope
            .iter()
            .zip(path)
            .all(|(a, b)| a.eq_ignore_ascii_case(b));
    match &rule.entity {
        None => covered,
        Some(entity) => {
            covered && !send && path.first().is_some_and(|p| p.eq_ignore_ascii_case(entity))
        }
    }
}

/// Evaluates the SQL filters infra writes against a message's `userId` property. A message
/// without one matches only `1=1` (in SQL filters a missing property is unknown, not equal).
fn matches_filter(filter: &str, user: Option<&str>) -> bool {
    let f = filter.trim();
    match f {
        "1=1" => return true,
        "1=0" => return false,
        _ => {}
    }
    let Some(user) = user else { return false };
    let quoted = |s: &str| {
        s.trim()
            .strip_prefix('\'')?
            .strip_suffix('\'')
            .map(str::to_owned)
    };
    if let Some(list) = f
        .strip_prefix("userId IN (")
        .and_then(|r| r.strip_suffix(')'))
    {
        return list.split(',').filter_map(quoted).any(|u| u == user);
    }
    if let Some(one) = f.strip_prefix("userId =").and_then(quoted) {
        return one == user;
    }
    panic!("the fake does not understand the filter {filter:?}");
}

/// Which queue an entity path (`queue` or `topic/subscriptions/sub`) reads: `Some(None)` the
/// shared one, `Some(Some(name))` a named queue, `None` nothing (a subscription that
/// auto-forwards keeps nothing; an unknown queue).
fn source_of(b: &Broker, path: &[&str]) -> Option<Option<String>> {
    match path {
        [queue] => b
            .queues
            .contains_key(*queue)
            .then(|| Some((*queue).to_owned())),
        [_topic, "subscriptions", sub] if b.subscriptions.contains_key(*sub) => None,
        [_topic, "subscriptions", _] => Some(None),
        _ => None,
    }
}

fn messages<'a>(b: &'a mut Broker, source: &Option<String>) -> &'a mut VecDeque<Msg> {
    match source {
        None => &mut b.queue,
        Some(name) => b.queues.get_mut(name).expect("source_of checked it"),
    }
}

async fn handle(
    State(s): State<Shared>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parts: Vec<&str> = uri.path().split('/').filter(|p| !p.is_empty()).collect();
    let send = method == Method::POST && parts.len() == 2 && parts[1] == "messages";
    {
        let mut b = s.broker.lock().unwrap();
        if !sas_ok(&b.rules, &headers, &parts, send) {
            b.unauthorized += 1;
            return (StatusCode::UNAUTHORIZED, "bad SAS").into_response();
        }
    }
    // The entity is the path up to `/messages`.
    let at = parts
        .iter()
        .position(|p| *p == "messages")
        .unwrap_or(parts.len());
    let (entity, rest) = parts.split_at(at);
    match (method.as_str(), entity, rest) {
        ("POST", [_topic], ["messages"]) => {
            // The broker's lock is not held across the await below.
            let hold = {
                let mut b = s.broker.lock().unwrap();
                if b.failing_sends {
                    b.failed_sends += 1;
                    return (StatusCode::INTERNAL_SERVER_ERROR, "unavailable").into_response();
                }
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
                let msg = Msg {
                    seq,
                    body: body.to_vec(),
                    user_id_header: user,
                    delivery_count: 0,
                    message_id,
                    lock: None,
                };
                if b.subscriptions.is_empty() {
                    b.queue.push_back(msg);
                } else {
                    // Each subscription whose filter matches forwards a copy into its queue.
                    let targets: Vec<String> = b
                        .subscriptions
                        .values()
                        .filter(|sub| matches_filter(&sub.filter, msg.user_id_header.as_deref()))
                        .map(|sub| sub.forward_to.clone())
                        .collect();
                    for t in targets {
                        b.queues.entry(t).or_default().push_back(msg.clone());
                    }
                }
                b.hung_sends += u32::from(b.hanging_sends.is_some());
                b.hanging_sends
            };
            s.notify.notify_waiters();
            if let Some(hold) = hold {
                tokio::time::sleep(hold).await;
                return (StatusCode::INTERNAL_SERVER_ERROR, "too late").into_response();
            }
            StatusCode::CREATED.into_response()
        }
        ("POST", entity, ["messages", "head"]) => {
            let Some(source) = source_of(&s.broker.lock().unwrap(), entity) else {
                return (StatusCode::NOT_FOUND, "no such entity").into_response();
            };
            let timeout: u64 = uri
                .query()
                .and_then(|q| q.strip_prefix("timeout="))
                .and_then(|t| t.parse().ok())
                .unwrap_or(60);
            let deadline = Instant::now() + Duration::from_secs(timeout);
            loop {
                let notified = s.notify.notified();
                if let Some(resp) = lock_next(&s, &source, entity) {
                    return resp;
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return StatusCode::NO_CONTENT.into_response();
                }
            }
        }
        (m, entity, ["messages", seq, token]) => {
            let mut b = s.broker.lock().unwrap();
            let Some(source) = source_of(&b, entity) else {
                return (StatusCode::GONE, "lock lost").into_response();
            };
            let now = Instant::now();
            let max_delivery = b.max_delivery;
            let lose = m == "DELETE" && b.lose_locks > 0;
            let queue = messages(&mut b, &source);
            let Some(pos) = queue.iter().position(|x| {
                x.seq.to_string() == *seq
                    && matches!(&x.lock, Some((t, until)) if t == token && *until > now)
            }) else {
                return (StatusCode::GONE, "lock lost").into_response();
            };
            match m {
                "DELETE" if lose => {
                    // The lock ran out before the completion arrived: the message is
                    // available again and its next delivery counts.
                    queue[pos].lock = None;
                    b.lose_locks -= 1;
                    b.lost_locks += 1;
                    drop(b);
                    s.notify.notify_waiters();
                    return (StatusCode::GONE, "lock lost").into_response();
                }
                "DELETE" => {
                    let msg = queue.remove(pos).unwrap();
                    b.completed.push(msg);
                }
                "PUT" => {
                    queue[pos].lock = None;
                    let dead = (queue[pos].delivery_count >= max_delivery)
                        .then(|| queue.remove(pos).unwrap());
                    b.abandoned += 1;
                    b.dead_lettered.extend(dead);
                    drop(b);
                    s.notify.notify_waiters();
                }
                "POST" => {
                    queue[pos].lock = Some((token.to_string(), now + LOCK));
                    b.renewed += 1;
                }
                _ => return StatusCode::METHOD_NOT_ALLOWED.into_response(),
            }
            StatusCode::OK.into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn lock_next(s: &Shared, source: &Option<String>, entity: &[&str]) -> Option<Response> {
    let mut b = s.broker.lock().unwrap();
    let now = Instant::now();
    let max = b.max_delivery;
    let queue = messages(&mut b, source);
    // An expired lock counts as a failed delivery, like the real broker.
    let expired: Vec<usize> = (0..queue.len())
        .filter(|&i| {
            matches!(&queue[i].lock, Some((_, until)) if *until <= now)
                && queue[i].delivery_count >= max
        })
        .collect();
    let dead: Vec<Msg> = expired
        .into_iter()
        .rev()
        .map(|i| queue.remove(i).unwrap())
        .collect();
    let next = queue
        .iter_mut()
        .find(|m| m.lock.as_ref().is_none_or(|(_, until)| *until <= now))
        .map(|m| {
            m.delivery_count += 1;
            let token = uuid::Uuid::new_v4().to_string();
            m.lock = Some((token.clone(), now + LOCK));
            (m.clone(), token)
        });
    b.dead_lettered.extend(dead);
    let (m, token) = next?;
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
        "https://fake.servicebus.windows.net/{}/messages/{}/{token}",
        entity.join("/"),
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
