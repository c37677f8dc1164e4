//! Philips Hue: the sink that shows presence on lights, and the `hue` commands' plumbing.
//!
//! [`Bridge`] is a closed enum of the two local APIs, chosen automatically by [`connect`]:
//! CLIP v2 when `GET /clip/v2/resource/bridge` answers, otherwise v1. [`HueSink`] adds what
//! every command needs: target resolution from the bridge's [`inventory`] (v1 numbers through
//! `id_v1` on v2, a room or zone to its `grouped_light`), what each target can show (a
//! white-ambiance lamp gets whites, see [`crate::core::lights::Palette`]), the bridge's rate
//! limits (≤10 light commands/s, ≤1 group command/s, as token buckets on tokio's clock so tests
//! run them on paused time), back-off on 429/503, and skipping commands that would not change
//! anything.
//!
//! Each target is on its own: the sink remembers what each one shows. A 207 (v2: applied,
//! "device (light) has communication issues, command (.on.on) may not have effect") or a v1
//! answer that applied all but some attributes is success with a warning, logged once per
//! target and kept for the status page. A target that refuses a state keeps it as its
//! newest wanted state, tried again by [`HueSink::retry`] (the others are not held back); a
//! newer state replaces it. Only when no target takes a state is it an error, and then
//! nothing is kept for a retry: the caller still holds the message.
//!
//! How `HUE_BRIDGE` is read:
//! * a bare address (`192.168.1.20`, `hue.lan`): the real thing. The bridge id is read from
//!   the unauthenticated `/api/0/config` (no key is sent on that request), then v2 is tried
//!   over HTTPS trusting only the embedded Hue root CAs (`hue-root-cas.pem`: "root-bridge",
//!   valid to 2038, and "Hue Root CA 01", valid to 2050) with the bridge id as the TLS server
//!   name (`reqwest`'s `resolve`), as Hue's "Using HTTPS" page prescribes. A bridge that
//!   answers HTTPS but whose certificate does not verify is an error ([`HueError::Untrusted`]):
//!   falling back to v1 over plain HTTP would put the application key on the wire. Only a
//!   bridge without HTTPS at all (v1-only firmware) is used over HTTP, with a warning, and
//!   not one the edge remembers as v2 ([`connect_v2_only`]: then port 80 is never touched).
//! * a URL (`http://127.0.0.1:8080`): used as the base for both probes, over that scheme.
//!   This is how tests reach the fake bridges: v2 over plain HTTP against a fake is the
//!   simplest honest test of the v2 wire format; the TLS part is covered by a unit test of
//!   the CA bundle and by the real bridge.

pub mod discover;
pub mod inventory;
pub mod v1;
pub mod v2;

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::header::HeaderMap;
use secrecy::SecretString;
use serde_json::{json, Value};
use tokio::time::Instant;
use url::Url;

use crate::config::HueTarget;
use crate::core::backoff::Backoff;
use crate::core::lights::{LampState, LightState};

pub use inventory::{Endpoint, Inventory, Resolved};

/// The Hue root CAs (PEM). SHA-256 fingerprints F0:BD:8E:65:… (root-bridge) and
/// D8:B8:94:48:… (Hue Root CA 01), checked in a test.
pub const ROOT_CAS_PEM: &[u8] = include_bytes!("hue-root-cas.pem");

/// What can go wrong talking to a bridge; the sink and the CLI branch on these.
#[derive(Debug, thiserror::Error)]
pub enum HueError {
    /// The application key is wrong (v1 error 1, v2 401/403).
    #[error("the bridge refused HUE_APPLICATION_KEY; run `teams-presence hue pair` to create one")]
    Unauthorized,
    /// Pairing before the link button was pressed (v1 error 101).
    #[error("the link button was not pressed")]
    LinkButtonNotPressed,
    /// 429 (or 503 on older firmware): too many commands.
    #[error("the bridge is rate limiting ({status})")]
    RateLimited {
        /// 429 or 503.
        status: u16,
        /// `Retry-After`, when sent.
        retry_after: Option<Duration>,
    },
    /// The bridge rejected the command.
    #[error("the bridge answered: {0}")]
    Bridge(String),
    /// An unexpected status, with what the bridge said (its `errors` descriptions, or the
    /// start of its body).
    #[error("the bridge answered HTTP {status}{}", if said.is_empty() { String::new() } else { format!(": {said}") })]
    Status {
        /// The HTTP status.
        status: u16,
        /// The bridge's own words.
        said: String,
    },
    /// A `HUE_TARGETS` entry the bridge does not have (or cannot command).
    #[error("HUE_TARGETS entry {0}")]
    Target(String),
    /// The answer is not what the API promises.
    #[error("unexpected answer from the bridge: {0}")]
    Protocol(String),
    /// The bridge cannot be reached.
    #[error("cannot reach the bridge: {0}")]
    Network(#[source] reqwest::Error),
    /// The bridge speaks (or spoke) HTTPS but verified CLIP v2 fails now: not falling back to
    /// plain HTTP, which would put the application key on the wire.
    #[error("no verified HTTPS to bridge {0} (a certificate not from the Hue CA, or HTTPS unreachable on a bridge that spoke it before); refusing to fall back to plain HTTP")]
    Untrusted(String),
}

impl HueError {
    /// Wraps a reqwest error, dropping its URL (v1 URLs contain the application key).
    pub fn network(e: reqwest::Error) -> Self {
        HueError::Network(e.without_url())
    }

    fn from_status(status: u16, headers: &HeaderMap, said: &str) -> Self {
        match status {
            401 | 403 => HueError::Unauthorized,
            429 | 503 => HueError::RateLimited {
                status,
                retry_after: headers
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs),
            },
            s => HueError::Status {
                status: s,
                // Bounded: an error line, not a page.
                said: said.chars().take(200).collect(),
            },
        }
    }

    /// Whether it will likely pass by itself (the bridge away, rebooting or rate limiting),
    /// as opposed to a command or a setting the bridge refuses.
    pub fn is_passing(&self) -> bool {
        match self {
            HueError::Network(_) | HueError::RateLimited { .. } => true,
            HueError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// The two local APIs.
#[derive(Debug)]
pub enum Bridge {
    /// CLIP v1.
    V1(v1::Client),
    /// CLIP v2.
    V2(v2::Client),
}

impl Bridge {
    /// `v1` or `v2`, for logs.
    pub fn api(&self) -> &'static str {
        match self {
            Bridge::V1(_) => "v1",
            Bridge::V2(_) => "v2",
        }
    }

    /// Lamps, rooms, zones and groups, and what each can show.
    pub async fn inventory(&self) -> Result<Inventory, HueError> {
        match self {
            Bridge::V1(c) => c.inventory().await,
            Bridge::V2(c) => c.inventory().await,
        }
    }

    /// Every target resolved against the bridge's inventory; the first one it does not have
    /// is named in the error.
    pub async fn resolve(&self, targets: &[HueTarget]) -> Result<Vec<Resolved>, HueError> {
        let inventory = self.inventory().await?;
        targets
            .iter()
            .map(|t| inventory.resolve(t).map_err(HueError::Target))
            .collect()
    }

    async fn put(&self, endpoint: &Endpoint, state: &LampState) -> Result<Vec<String>, HueError> {
        match (self, endpoint) {
            (Bridge::V1(c), Endpoint::Light(id)) => c.put_light(id, state).await,
            (Bridge::V1(c), Endpoint::Group(id)) => c.put_group(id, state).await,
            (Bridge::V2(c), Endpoint::Light(id)) => c.put_light(id, state).await,
            (Bridge::V2(c), Endpoint::Group(id)) => c.put_grouped_light(id, state).await,
        }
    }
}

/// How a bridge address is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A host or IP: the real bridge (HTTPS for v2, HTTP for v1).
    Host(String),
    /// An explicit base URL (tests, proxies): both APIs under it.
    Url(Url),
}

impl Address {
    /// Parses `HUE_BRIDGE`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.starts_with("http://") || s.starts_with("https://") {
            let mut u = Url::parse(s).ok()?;
            u.host_str()?;
            if !u.path().ends_with('/') {
                let p = format!("{}/", u.path());
                u.set_path(&p);
            }
            return Some(Address::Url(u));
        }
        if s.is_empty() || s.contains(['/', ' ', '@']) {
            return None;
        }
        Some(Address::Host(s.to_owned()))
    }

    /// Parses `HUE_BRIDGE`'s value; the error names the setting.
    pub fn parse_setting(s: &str) -> Result<Self, crate::config::ConfigError> {
        Self::parse(s).ok_or_else(|| {
            crate::config::ConfigError::invalid(
                "HUE_BRIDGE",
                None,
                "a host name, an IP address or an http(s) URL",
            )
        })
    }
}

fn plain_client() -> reqwest::Client {
    crate::clients::tls::client_builder()
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

/// A client that trusts only the Hue root CAs and sends `bridge_id` as the server name to
/// `addr`.
pub fn verified_client(bridge_id: &str, addr: SocketAddr) -> Result<reqwest::Client, HueError> {
    let roots = reqwest::Certificate::from_pem_bundle(ROOT_CAS_PEM)
        .map_err(|e| HueError::Protocol(format!("embedded Hue root CAs: {e}")))?;
    reqwest::Client::builder()
        .tls_certs_only(roots)
        .resolve(bridge_id, addr)
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(HueError::network)
}

/// A bridge's id as its unauthenticated config gave it.
struct BridgeId {
    /// `bridgeid`, lowercase: the name its certificate carries.
    id: String,
    /// Read over HTTPS: the bridge speaks TLS.
    over_https: bool,
}

/// Reads the bridge id from the unauthenticated config (no key sent). Certificates are not
/// checked on this one request because the id is what we need to check them: the id is then
/// verified by the real connection, whose certificate must carry it and chain to the Hue CA.
/// Returns the id and how it came (over HTTPS: the bridge speaks TLS, and plain HTTP is
/// never used with it).
async fn bridge_id(host: &str, ports: HostPorts, https_only: bool) -> Option<BridgeId> {
    let insecure = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .ok()?;
    for (url, https) in [
        (format!("https://{host}:{}/api/0/config", ports.https), true),
        (format!("http://{host}:{}/api/0/config", ports.http), false),
    ] {
        if https_only && !https {
            break;
        }
        if let Ok(resp) = insecure.get(&url).send().await {
            if let Ok(v) = resp.json::<Value>().await {
                if let Some(id) = v["bridgeid"].as_str() {
                    return Some(BridgeId {
                        id: id.to_ascii_lowercase(),
                        over_https: https,
                    });
                }
            }
        }
    }
    None
}

async fn socket_addr(host: &str, port: u16) -> Option<SocketAddr> {
    tokio::net::lookup_host((host, port)).await.ok()?.next()
}

/// The ports of a bridge given as a bare host: 443 and 80 on a real one (tests use others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPorts {
    /// CLIP v2 and the bridge's HTTPS.
    pub https: u16,
    /// CLIP v1 over plain HTTP.
    pub http: u16,
}

impl Default for HostPorts {
    fn default() -> Self {
        Self {
            https: 443,
            http: 80,
        }
    }
}

/// Finds which API the bridge speaks and checks the key.
pub async fn connect(address: &Address, key: &SecretString) -> Result<Bridge, HueError> {
    connect_on(address, key, HostPorts::default()).await
}

/// [`connect`] with the ports of a bare-host address given.
pub async fn connect_on(
    address: &Address,
    key: &SecretString,
    ports: HostPorts,
) -> Result<Bridge, HueError> {
    connect_inner(address, key, ports, false).await
}

/// [`connect_on`] for a bridge known to speak CLIP v2 over HTTPS (the edge remembers it):
/// anything short of a verified v2 connection is an error, and nothing at all goes over
/// plain HTTP, so blocking port 443 cannot force a downgrade.
pub async fn connect_v2_only(
    address: &Address,
    key: &SecretString,
    ports: HostPorts,
) -> Result<Bridge, HueError> {
    connect_inner(address, key, ports, true).await
}

async fn connect_inner(
    address: &Address,
    key: &SecretString,
    ports: HostPorts,
    v2_only: bool,
) -> Result<Bridge, HueError> {
    // Set when the bridge speaks HTTPS: then v1 over plain HTTP is never tried.
    let mut tls_bridge: Option<String> = None;
    let (v2, v1_base) = match address {
        Address::Url(base) => (
            Some(v2::Client::new(plain_client(), base.clone(), key.clone())),
            base.clone(),
        ),
        Address::Host(host) => {
            let v1_base = Url::parse(&format!("http://{host}:{}/", ports.http))
                .map_err(|_| HueError::Protocol("HUE_BRIDGE is not a host name".into()))?;
            let v2 = match (
                bridge_id(host, ports, v2_only).await,
                socket_addr(host, ports.https).await,
            ) {
                (Some(BridgeId { id, over_https }), Some(addr)) => {
                    if over_https {
                        tls_bridge = Some(id.clone());
                    }
                    let base = Url::parse(&format!("https://{id}:{}/", ports.https))
                        .map_err(|_| HueError::Protocol("bridge id is not a host name".into()))?;
                    Some(v2::Client::new(
                        verified_client(&id, addr)?,
                        base,
                        key.clone(),
                    ))
                }
                _ => None,
            };
            (v2, v1_base)
        }
    };
    if let Some(v2) = v2 {
        match v2.get("bridge").await {
            Ok(_) => return Ok(Bridge::V2(v2)),
            Err(HueError::Unauthorized) => return Err(HueError::Unauthorized),
            Err(HueError::Network(e)) if matches!(address, Address::Host(_)) => {
                if let Some(id) = tls_bridge {
                    // It answered HTTPS a moment ago: a certificate that does not verify is
                    // someone else answering, or a bridge we must not talk to in clear.
                    tracing::error!(error = %e, "CLIP v2 over HTTPS failed on a bridge that speaks HTTPS; not falling back to HTTP");
                    return Err(HueError::Untrusted(id));
                }
                tracing::warn!(error = %e, "no HTTPS on the bridge (v1-only firmware?); using v1 over HTTP");
            }
            Err(e) => tracing::debug!(error = %e, "no CLIP v2; trying v1"),
        }
    }
    if let (true, Address::Host(host)) = (v2_only, address) {
        tracing::error!(
            "the bridge spoke CLIP v2 over HTTPS before and does not now; not using plain HTTP"
        );
        return Err(HueError::Untrusted(host.clone()));
    }
    let v1 = v1::Client::new(plain_client(), v1_base, key.clone());
    v1.check().await?;
    Ok(Bridge::V1(v1))
}

/// A token bucket on tokio's clock (so `tokio::time::pause` drives it in tests).
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(capacity: f64, per_second: f64) -> Self {
        Self {
            capacity,
            per_second,
            tokens: capacity,
            last: Instant::now(),
        }
    }

    /// Waits until a token is available and takes it.
    pub async fn acquire(&mut self) {
        loop {
            let now = Instant::now();
            let elapsed = now.duration_since(self.last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
            self.last = now;
            if self.tokens >= 1.0 - 1e-9 {
                self.tokens -= 1.0;
                return;
            }
            let wait = (1.0 - self.tokens) / self.per_second;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

/// How long an identical state is assumed to still be showing: after that it is sent again,
/// in case someone changed the lights by hand.
const REMEMBER: Duration = Duration::from_secs(15 * 60);
/// Attempts per command when the bridge says it is overloaded.
const ATTEMPTS: u32 = 4;
/// The wait before the next attempt when the bridge names none (no `Retry-After`); doubles
/// per attempt, with jitter.
const BUSY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between attempts, also for a bridge's own `Retry-After`.
const BUSY_CAP: Duration = Duration::from_secs(10);

/// One configured target and what the sink knows of it.
#[derive(Debug)]
struct Target {
    resolved: Resolved,
    /// What it last took, and when.
    shown: Option<(LampState, Instant)>,
    /// The newest state it has not taken (it refused it while others took it).
    wanted: Option<LampState>,
    /// The bridge's last warning for it (a 207), logged once.
    warning: Option<String>,
    /// Its last failure, logged once.
    failure: Option<String>,
}

impl Target {
    fn label(&self) -> String {
        format!("{} ({})", self.resolved.target, self.resolved.name)
    }
}

/// The Hue sink: one bridge, the configured targets, limits and memory.
#[derive(Debug)]
pub struct HueSink {
    bridge: Bridge,
    targets: Vec<Target>,
    lights: TokenBucket,
    groups: TokenBucket,
}

impl HueSink {
    /// Connects and resolves every target.
    pub async fn connect(
        address: &Address,
        key: &SecretString,
        targets: &[HueTarget],
    ) -> Result<Self, HueError> {
        let bridge = connect(address, key).await?;
        Self::with_bridge(bridge, targets).await
    }

    /// Resolves targets on an already connected bridge.
    pub async fn with_bridge(bridge: Bridge, targets: &[HueTarget]) -> Result<Self, HueError> {
        let resolved = bridge.resolve(targets).await?;
        for r in &resolved {
            tracing::info!(target = %r.target, name = %r.name, shows = %inventory::describe_group(r.palette, &r.lamps), "Hue target");
        }
        tracing::info!(
            api = bridge.api(),
            targets = resolved.len(),
            "Hue bridge connected"
        );
        Ok(Self {
            bridge,
            targets: resolved
                .into_iter()
                .map(|resolved| Target {
                    resolved,
                    shown: None,
                    wanted: None,
                    warning: None,
                    failure: None,
                })
                .collect(),
            // Capacity 1: commands are spaced evenly, so no 1-second window ever holds more
            // than the rate (a larger bucket would allow bursts of capacity + rate).
            lights: TokenBucket::new(1.0, 10.0),
            groups: TokenBucket::new(1.0, 1.0),
        })
    }

    /// The bridge.
    pub fn bridge(&self) -> &Bridge {
        &self.bridge
    }

    /// Shows `state` on every target, each as it can show it. `Ok` when at least one target
    /// shows it now (the others keep it to retry, see [`HueSink::retry`]); the error of the
    /// most likely passing failure when none does (then nothing is kept for a retry).
    pub async fn apply(&mut self, state: &LightState) -> Result<(), HueError> {
        let mut taken = false;
        let mut errors: Vec<HueError> = Vec::new();
        for i in 0..self.targets.len() {
            let lamp = state.for_lamp(self.targets[i].resolved.palette);
            if let Some((last, at)) = &self.targets[i].shown {
                if *last == lamp && at.elapsed() < REMEMBER {
                    tracing::debug!(target = %self.targets[i].resolved.target, "unchanged; skipped");
                    self.targets[i].wanted = None;
                    taken = true;
                    continue;
                }
            }
            match self.send_to(i, lamp).await {
                Ok(()) => taken = true,
                Err(e) => errors.push(e),
            }
        }
        if taken || errors.is_empty() {
            return Ok(());
        }
        // Nobody took it: the caller keeps the message and tries again itself.
        for t in &mut self.targets {
            t.wanted = None;
        }
        let i = errors.iter().position(HueError::is_passing).unwrap_or(0);
        Err(errors.swap_remove(i))
    }

    /// Whether a target still waits for a state it refused.
    pub fn pending(&self) -> bool {
        self.targets.iter().any(|t| t.wanted.is_some())
    }

    /// Sends every target its newest refused state again. Whether all have taken theirs.
    pub async fn retry(&mut self) -> bool {
        for i in 0..self.targets.len() {
            if let Some(lamp) = self.targets[i].wanted.clone() {
                let _ = self.send_to(i, lamp).await;
            }
        }
        !self.pending()
    }

    /// What is wrong with the targets now, one line each, for the status page: the bridge's
    /// warnings (a lamp that does not answer) and targets that refuse their state.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in &self.targets {
            if let Some(w) = &t.warning {
                out.push(format!("{}: {w}", t.label()));
            }
            if let (Some(f), Some(_)) = (&t.failure, &t.wanted) {
                out.push(format!(
                    "{}: not taking commands ({f}); trying again",
                    t.label()
                ));
            }
        }
        out
    }

    /// Sends one target its state; records what it shows, or what it still wants.
    async fn send_to(&mut self, i: usize, lamp: LampState) -> Result<(), HueError> {
        let endpoint = self.targets[i].resolved.endpoint.clone();
        let result = self.send(&endpoint, &lamp).await;
        let t = &mut self.targets[i];
        match result {
            Ok(warnings) => {
                let warning = (!warnings.is_empty()).then(|| warnings.join("; "));
                if warning != t.warning {
                    match &warning {
                        Some(w) => {
                            tracing::warn!(target = %t.resolved.target, name = %t.resolved.name, warning = %w, "the bridge took the command with a warning (shown once per target)")
                        }
                        None => {
                            tracing::info!(target = %t.resolved.target, "the bridge takes commands for this target without warnings again")
                        }
                    }
                    t.warning = warning;
                }
                if t.failure.take().is_some() {
                    tracing::info!(target = %t.resolved.target, "the target takes commands again");
                }
                t.shown = Some((lamp, Instant::now()));
                t.wanted = None;
                Ok(())
            }
            Err(e) => {
                let said = e.to_string();
                if t.failure.as_deref() != Some(said.as_str()) {
                    tracing::warn!(target = %t.resolved.target, name = %t.resolved.name, error = %said, "Hue command failed");
                    t.failure = Some(said);
                } else {
                    tracing::debug!(target = %t.resolved.target, error = %said, "Hue command failed again");
                }
                t.shown = None;
                t.wanted = Some(lamp);
                Err(e)
            }
        }
    }

    async fn send(
        &mut self,
        endpoint: &Endpoint,
        state: &LampState,
    ) -> Result<Vec<String>, HueError> {
        let mut backoff = Backoff::new(BUSY_FIRST, BUSY_CAP);
        let mut attempt = 1;
        loop {
            match endpoint {
                Endpoint::Light(_) => self.lights.acquire().await,
                Endpoint::Group(_) => self.groups.acquire().await,
            }
            match self.bridge.put(endpoint, state).await {
                Err(HueError::RateLimited {
                    status,
                    retry_after,
                }) if attempt < ATTEMPTS => {
                    let step = backoff.next_delay();
                    let wait = retry_after.unwrap_or(step).min(BUSY_CAP);
                    tracing::debug!(status, ?wait, "bridge busy; backing off");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// Pairing: `POST /api {"devicetype": ...}`; `Ok(None)` while the link button is not pressed.
pub async fn pair_once(
    http: &reqwest::Client,
    base: &Url,
    devicetype: &str,
) -> Result<Option<SecretString>, HueError> {
    let url = base
        .join("api")
        .map_err(|_| HueError::Protocol("cannot build the pairing URL".into()))?;
    let resp = http
        .post(url)
        .json(&json!({ "devicetype": devicetype }))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(HueError::network)?;
    if !resp.status().is_success() {
        return Err(HueError::from_status(
            resp.status().as_u16(),
            resp.headers(),
            "",
        ));
    }
    let v: Value = resp.json().await.map_err(HueError::network)?;
    if let Some(user) = v
        .as_array()
        .and_then(|a| a.iter().find_map(|x| x["success"]["username"].as_str()))
    {
        return Ok(Some(SecretString::from(user.to_owned())));
    }
    match v1::first_error(&v) {
        Some(HueError::LinkButtonNotPressed) => Ok(None),
        Some(e) => Err(e),
        None => Err(HueError::Protocol(
            "pairing answer has neither success nor error".into(),
        )),
    }
}

/// The client and base URL pairing should use for an address: HTTPS with the verified
/// client when the bridge id can be learned (the key comes back in the answer), else HTTP.
pub async fn pairing_endpoint(address: &Address) -> Result<(reqwest::Client, Url), HueError> {
    match address {
        Address::Url(u) => Ok((plain_client(), u.clone())),
        Address::Host(host) => {
            if let (Some(BridgeId { id, .. }), Some(addr)) = (
                bridge_id(host, HostPorts::default(), false).await,
                socket_addr(host, 443).await,
            ) {
                if let Ok(base) = Url::parse(&format!("https://{id}/")) {
                    return Ok((verified_client(&id, addr)?, base));
                }
            }
            let base = Url::parse(&format!("http://{host}/"))
                .map_err(|_| HueError::Protocol("HUE_BRIDGE is not a host name".into()))?;
            Ok((plain_client(), base))
        }
    }
}

/// `teams-presence#<host>`, the instance part cut to 19 characters.
pub fn devicetype(hostname: &str) -> String {
    let host: String = hostname
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(19)
        .collect();
    let host = if host.is_empty() { "edge".into() } else { host };
    format!("teams-presence#{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            Address::parse("192.168.1.20"),
            Some(Address::Host("192.168.1.20".into()))
        );
        assert_eq!(
            Address::parse(" http://127.0.0.1:8080 "),
            Some(Address::Url(Url::parse("http://127.0.0.1:8080/").unwrap()))
        );
        for bad in ["", "a b", "http://", "x/y"] {
            assert_eq!(Address::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn devicetype_is_bounded() {
        assert_eq!(devicetype("pi"), "teams-presence#pi");
        assert_eq!(
            devicetype("a-very-long-hostname-indeed.local"),
            "teams-presence#a-very-long-hostnam"
        );
        assert_eq!(devicetype(" \n"), "teams-presence#edge");
    }

    #[test]
    fn embedded_root_cas_are_the_published_ones() {
        let certs = openssl::x509::X509::stack_from_pem(ROOT_CAS_PEM).unwrap();
        let prints: Vec<String> = certs
            .iter()
            .map(|c| {
                c.digest(openssl::hash::MessageDigest::sha256())
                    .unwrap()
                    .iter()
                    .map(|b| format!("{b:02X}"))
                    .collect()
            })
            .collect();
        assert_eq!(
            prints,
            [
                "F0BD8E6509E82F774D63BC009D5388C969FE3DCF7D6D541D6351B72B898D8ACF",
                "D8B89448B2AF8E1676185AC07219EE9DCBC8F01C122A026A2A4B7B5CFE0328B8"
            ]
        );
        assert!(verified_client("001788fffe000000", "127.0.0.1:443".parse().unwrap()).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn token_bucket_spaces_commands() {
        let mut b = TokenBucket::new(1.0, 10.0);
        let start = Instant::now();
        for _ in 0..11 {
            b.acquire().await;
        }
        // The first is immediate, then one every 100 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
    }
}
