//! The Key Vault certificates the handler needs (`KEY_VAULT_NOTIFICATION_CERTIFICATE`,
//! `KEY_VAULT_CLIENT_CERTIFICATE`), loaded behind the readiness probe and, when a load fails
//! or hangs, tried again in the background until each is there: no restart needed.
//!
//! A certificate missing at start used to stay missing until the host restarted the worker:
//! a role assignment still propagating, a vault firewall being opened, or a vault that did not
//! answer in time left notifications undecryptable (acknowledged, so lost) and the app
//! without its client credential. Now each certificate has a loader of its own: a try may take
//! [`try_timeout`], and after a failed one it waits [`retry_delay`] (1 s doubling to 2 min,
//! with jitter, so the instances of a scaled-out app do not retry in step; Key Vault's
//! throttling guidance, learn.microsoft.com/azure/key-vault/general/overview-throttling, asks
//! for exponential back-off). While one is missing, the functions that need it
//! (`host::gate::certificate_needed_by`) answer 503 with its one line and `/api/health`
//! lists it; the line names the certificate and its setting, never the vault's address.
//!
//! When a certificate arrives, the state is rebuilt with it and the router swapped
//! (`host::startup`). Each router carries what its own state holds ([`Held`]), so a request
//! that raced the swap is refused with the line rather than served without the key.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clients::entra::{CertificateCredential, ClientCredential};
use crate::clients::graph::certs::KeyRing;
use crate::clients::keyvault::{self, LoadError};
use crate::config::Settings;
use crate::host::gate::{certificate_needed_by, Certificate};

/// The first wait after a failed try; it doubles after each further one.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between tries.
pub const MAX_RETRY: Duration = Duration::from_secs(120);
/// How long the first try may take; later ones may take twice as long as the one before, up
/// to [`MAX_TRY`], so a vault (or identity endpoint) that is merely slow is not cut off for
/// good. A try reads the secret, lists its versions and reads the previous one.
pub const FIRST_TRY: Duration = Duration::from_secs(10);
/// The longest a try may take.
pub const MAX_TRY: Duration = Duration::from_secs(60);

/// How long try `try_no` (1-based) may take.
pub fn try_timeout(try_no: u32) -> Duration {
    FIRST_TRY
        .saturating_mul(1 << try_no.saturating_sub(1).min(8))
        .min(MAX_TRY)
}

/// The wait after `failed_tries` failed tries: [`FIRST_RETRY`] doubling up to [`MAX_RETRY`],
/// then scaled by 0.75 to 1.25 with `random` in `[0, 1)`.
pub fn retry_delay(failed_tries: u32, random: f64) -> Duration {
    let base = FIRST_RETRY
        .saturating_mul(1 << failed_tries.saturating_sub(1).min(16))
        .min(MAX_RETRY);
    base.mul_f64(0.75 + random.clamp(0.0, 1.0) * 0.5)
}

/// A number in `[0, 1)` for the jitter (a v4 UUID's randomness; no extra crate).
fn jitter() -> f64 {
    (uuid::Uuid::new_v4().as_u128() % 10_000) as f64 / 10_000.0
}

/// Which of the configured certificates a router's state holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    notification: bool,
    client: bool,
}

impl Held {
    /// Whether `which` is in the state.
    pub fn has(self, which: Certificate) -> bool {
        match which {
            Certificate::Notification => self.notification,
            Certificate::Client => self.client,
        }
    }

    /// The same with `which` added.
    pub fn with(mut self, which: Certificate) -> Self {
        match which {
            Certificate::Notification => self.notification = true,
            Certificate::Client => self.client = true,
        }
        self
    }
}

/// What a loader delivers, ready to go into the state.
pub enum Material {
    /// The notification certificate (with its previous version when there is one).
    Notification(KeyRing),
    /// The client certificate.
    Client(ClientCredential),
}

/// Where one certificate's loader is.
#[derive(Debug, Clone)]
enum State {
    /// Try `try_no` is running; `last` is why the one before failed.
    Trying {
        try_no: u32,
        since: Instant,
        last: Option<String>,
    },
    /// `failed_tries` tries failed, the last for `reason`; the next starts at `next`.
    Waiting {
        failed_tries: u32,
        reason: String,
        next: Instant,
    },
    /// Not retried: trying again cannot help (see `LoadError::is_permanent`).
    Failed { reason: String },
    /// In the state.
    Loaded,
}

struct Slot {
    which: Certificate,
    name: String,
    state: Mutex<State>,
}

impl Slot {
    fn state(&self) -> State {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, state: State) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// The one line of a 503 and of `/api/health` while this certificate is missing.
    fn line(&self, now: Instant) -> Option<String> {
        let what = match self.which {
            Certificate::Notification => "notification certificate",
            Certificate::Client => "client certificate",
        };
        let head = format!(
            "{what} {} ({}) is not loaded from Key Vault",
            self.name,
            self.which.setting()
        );
        Some(match self.state() {
            State::Loaded => return None,
            State::Trying {
                try_no: 1, since, ..
            } => format!(
                "{head} yet: the first try is running ({} s so far); try again shortly",
                now.saturating_duration_since(since).as_secs()
            ),
            State::Trying {
                try_no,
                last: Some(last),
                ..
            } => format!("{head}: {last}; try {try_no} is running"),
            State::Trying { try_no, .. } => format!("{head}: try {try_no} is running"),
            State::Waiting {
                failed_tries,
                reason,
                next,
            } => format!(
                "{head}: {reason}; next try in {} s ({failed_tries} failed so far)",
                next.saturating_duration_since(now).as_secs_f64().ceil() as u64
            ),
            State::Failed { reason } => format!("{head}: {reason}; not retried"),
        })
    }
}

/// The configured Key Vault certificates and where each one's loader is.
pub struct Certificates {
    slots: Vec<Slot>,
    /// `AZURE_CLIENT_SECRET` or `AZURE_CLIENT_CERTIFICATE_PATH` is set: it serves until the
    /// client certificate is there.
    other_credential: bool,
    /// Woken whenever a loader's state changes.
    changed: tokio::sync::Notify,
}

impl Certificates {
    /// No Key Vault certificates (tests, `serve`-style states).
    pub fn none() -> Arc<Self> {
        Arc::new(Self {
            slots: Vec::new(),
            other_credential: false,
            changed: tokio::sync::Notify::new(),
        })
    }

    /// The certificates `settings` name in Key Vault (none without `KEY_VAULT_URL`), each
    /// about to make its first try.
    pub fn from_settings(settings: &Settings) -> Arc<Self> {
        let mut slots = Vec::new();
        if settings.key_vault.url.is_some() {
            let named = [
                (
                    Certificate::Notification,
                    &settings.key_vault.notification_certificate,
                ),
                (Certificate::Client, &settings.key_vault.client_certificate),
            ];
            for (which, name) in named {
                if let Some(name) = name {
                    slots.push(Slot {
                        which,
                        name: name.clone(),
                        state: Mutex::new(State::Trying {
                            try_no: 1,
                            since: Instant::now(),
                            last: None,
                        }),
                    });
                }
            }
        }
        Arc::new(Self {
            slots,
            other_credential: settings.app.client_secret.is_some()
                || settings.app.client_certificate_path.is_some(),
            changed: tokio::sync::Notify::new(),
        })
    }

    /// Whether no certificate comes from Key Vault.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether `which` comes from Key Vault.
    pub fn names(&self, which: Certificate) -> bool {
        self.slots.iter().any(|s| s.which == which)
    }

    fn set(&self, slot: &Slot, state: State) {
        slot.set(state);
        self.changed.notify_waiters();
    }

    /// The line that keeps `function` from running with a state that holds `held`, if any.
    /// `handshake`: the request is Graph's validation handshake, which needs no certificate.
    pub fn blocking(&self, held: Held, function: &str, handshake: bool) -> Option<String> {
        self.slots
            .iter()
            .filter(|s| !held.has(s.which))
            .find(|s| certificate_needed_by(s.which, function, handshake, self.other_credential))
            .map(|s| {
                s.line(Instant::now()).unwrap_or_else(|| {
                    // Loaded a moment ago, after this request took the previous router.
                    format!(
                        "{} ({}) was loaded just now; try again",
                        s.name,
                        s.which.setting()
                    )
                })
            })
    }

    /// One line per certificate still missing, for `/api/health`.
    pub fn problems(&self) -> Vec<String> {
        let now = Instant::now();
        self.slots.iter().filter_map(|s| s.line(now)).collect()
    }

    fn first_try_running_for(&self, function: &str) -> bool {
        self.slots.iter().any(|s| {
            matches!(s.state(), State::Trying { try_no: 1, .. })
                && certificate_needed_by(s.which, function, false, self.other_credential)
        })
    }

    /// Waits, at most `grace`, while the first try of a certificate `function` needs is
    /// running: an invocation right after an ordinary start gets the certificate rather than
    /// a 503. A later retry is not waited for.
    pub async fn settle_first(&self, function: &str, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let woken = self.changed.notified();
            if !self.first_try_running_for(function) {
                return;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return;
            }
        }
    }

    /// Starts one loader per certificate: each tries until its certificate is loaded (or a
    /// try fails in a way no retry can mend) and hands it to `deliver`, which puts it into
    /// the state. The loaders end with the process.
    pub fn spawn_loaders(
        self: &Arc<Self>,
        settings: &Settings,
        deliver: impl Fn(Certificate, Material) + Send + Sync + 'static,
    ) {
        let Some(vault) = settings.key_vault.url.clone() else {
            return;
        };
        let from = Arc::new(Vault {
            url: vault,
            identity: settings.key_vault.managed_identity_client_id.clone(),
            alg: settings.app.client_assertion_alg,
        });
        let deliver = Arc::new(deliver);
        for i in 0..self.slots.len() {
            let (certs, from, deliver) = (self.clone(), from.clone(), deliver.clone());
            tokio::spawn(async move { certs.run_loader(i, &from, |w, m| deliver(w, m)).await });
        }
    }

    async fn run_loader(&self, i: usize, from: &Vault, deliver: impl Fn(Certificate, Material)) {
        let slot = &self.slots[i];
        let began = Instant::now();
        let mut try_no = 1;
        loop {
            let limit = try_timeout(try_no);
            let result = tokio::time::timeout(limit, load(slot.which, from, &slot.name))
                .await
                .unwrap_or_else(|_| Err(LoadError::NoAnswer(limit.as_secs()).into()));
            match result {
                Ok(material) => {
                    let id = match &material {
                        Material::Notification(ring) => ring
                            .current()
                            .map(|k| k.id().to_owned())
                            .unwrap_or_default(),
                        Material::Client(ClientCredential::Certificate(c)) => {
                            format!("x5t#S256={}", c.x5t_s256)
                        }
                        Material::Client(_) => String::new(),
                    };
                    // Into the state (and the router swapped) before the line goes away.
                    deliver(slot.which, material);
                    self.set(slot, State::Loaded);
                    tracing::info!(
                        certificate = %slot.name,
                        setting = slot.which.setting(),
                        tries = try_no,
                        after_s = began.elapsed().as_secs(),
                        id = %id,
                        "certificate loaded from Key Vault"
                    );
                    return;
                }
                Err(e) => {
                    let reason = keyvault::classify(&e);
                    // The chain names the vault by its host only (`clients::keyvault`).
                    let detail = format!("{e:#}");
                    if reason.is_permanent() {
                        tracing::error!(certificate = %slot.name, setting = slot.which.setting(), error = %detail, "cannot load the certificate from Key Vault; not retrying");
                        self.set(
                            slot,
                            State::Failed {
                                reason: reason.to_string(),
                            },
                        );
                        return;
                    }
                    let wait = retry_delay(try_no, jitter());
                    tracing::warn!(
                        certificate = %slot.name,
                        setting = slot.which.setting(),
                        tries = try_no,
                        retry_in_ms = wait.as_millis() as u64,
                        error = %detail,
                        "cannot load the certificate from Key Vault; the functions that need it answer 503 until it loads"
                    );
                    self.set(
                        slot,
                        State::Waiting {
                            failed_tries: try_no,
                            reason: reason.to_string(),
                            next: Instant::now() + wait,
                        },
                    );
                    tokio::time::sleep(wait).await;
                    try_no += 1;
                    self.set(
                        slot,
                        State::Trying {
                            try_no,
                            since: Instant::now(),
                            last: Some(reason.to_string()),
                        },
                    );
                }
            }
        }
    }
}

/// Where the loaders read from, and how the client certificate signs.
struct Vault {
    url: url::Url,
    identity: Option<String>,
    alg: crate::config::AssertionAlg,
}

/// One try: the certificate from the vault, turned into what the state holds.
async fn load(which: Certificate, from: &Vault, name: &str) -> anyhow::Result<Material> {
    let (vault, identity) = (&from.url, from.identity.as_deref());
    let unusable = |e: String| anyhow::Error::new(LoadError::Unusable(e));
    match which {
        Certificate::Notification => {
            // The current version and the previous one: subscriptions created before a
            // rotation still encrypt for the previous until maintenance recreates them.
            let (pem, previous) =
                keyvault::load_certificate_versions(vault, name, identity).await?;
            let ring = KeyRing::from_pem(&pem).map_err(|e| unusable(e.to_string()))?;
            Ok(Material::Notification(
                match previous.map(|p| KeyRing::from_pem(&p)) {
                    Some(Ok(old)) => ring.with_previous(old),
                    Some(Err(e)) => {
                        tracing::warn!(certificate = %name, error = %e, "the previous Key Vault notification certificate is unusable; keeping the current one only");
                        ring
                    }
                    None => ring,
                },
            ))
        }
        Certificate::Client => {
            let pem = keyvault::load_certificate_pem(vault, name, identity).await?;
            let c = CertificateCredential::from_pem(&pem, from.alg)
                .map_err(|e| unusable(e.to_string()))?;
            Ok(Material::Client(ClientCredential::Certificate(Box::new(c))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_get_longer_and_waits_double_from_one_second_to_two_minutes_with_jitter() {
        let secs = |d: Duration| d.as_secs_f64();
        let tries: Vec<f64> = (1..=5).map(|n| secs(try_timeout(n))).collect();
        assert_eq!(tries, [10.0, 20.0, 40.0, 60.0, 60.0]);
        assert_eq!(try_timeout(u32::MAX), MAX_TRY);

        let middle: Vec<f64> = (1..=9).map(|n| secs(retry_delay(n, 0.5))).collect();
        assert_eq!(middle, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 120.0, 120.0]);
        assert_eq!(secs(retry_delay(1, 0.0)), 0.75);
        let top = secs(retry_delay(3, 0.999_999));
        assert!(top > 4.99 && top < 5.0, "{top}");
        assert_eq!(secs(retry_delay(u32::MAX, 0.0)), 90.0);
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::parse(&crate::config::Sources::from_map(map)).unwrap()
    }

    #[test]
    fn a_missing_certificate_has_one_line_naming_it_and_its_setting_and_never_the_vault() {
        let s = settings(&[
            ("KEY_VAULT_URL", "https://kv-secret-name.vault.azure.net"),
            ("KEY_VAULT_NOTIFICATION_CERTIFICATE", "graph-notifications"),
            ("KEY_VAULT_CLIENT_CERTIFICATE", "graph-client"),
        ]);
        let certs = Certificates::from_settings(&s);
        let held = Held::default();

        let line = certs.blocking(held, "notifications", false).unwrap();
        assert!(
            line.starts_with("notification certificate graph-notifications (KEY_VAULT_NOTIFICATION_CERTIFICATE) is not loaded from Key Vault yet: the first try is running ("),
            "{line}"
        );
        assert!(
            certs.blocking(held, "notifications", true).is_none(),
            "handshake"
        );
        assert!(certs.blocking(held, "presence-get", false).is_none());

        let now = Instant::now();
        certs.set(
            &certs.slots[1],
            State::Waiting {
                failed_tries: 3,
                reason: LoadError::Refused(403).to_string(),
                next: now + Duration::from_millis(3_500),
            },
        );
        let line = certs.slots[1].line(now).unwrap();
        assert_eq!(
            line,
            "client certificate graph-client (KEY_VAULT_CLIENT_CERTIFICATE) is not loaded from Key Vault: Key Vault refused the app's identity (403): it needs the Key Vault Secrets User role on the vault (a new role assignment can take minutes to apply); next try in 4 s (3 failed so far)"
        );
        assert_eq!(certs.blocking(held, "auth-start", false).unwrap(), line);
        // The router whose state holds it lets the function through.
        assert!(certs
            .blocking(held.with(Certificate::Client), "auth-start", false)
            .is_none());

        certs.set(
            &certs.slots[0],
            State::Failed {
                reason: LoadError::NotBuilt.to_string(),
            },
        );
        certs.set(&certs.slots[1], State::Loaded);
        let problems = certs.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].ends_with("use certificate files instead; not retried"));
        for p in problems {
            assert!(!p.contains("kv-secret-name"), "{p}");
        }
    }

    #[test]
    fn no_vault_means_no_certificates_and_a_client_secret_stands_in_for_the_client_certificate() {
        let none = Certificates::from_settings(&settings(&[(
            "KEY_VAULT_CLIENT_CERTIFICATE",
            "graph-client",
        )]));
        assert!(none.is_empty());
        let with_secret = Certificates::from_settings(&settings(&[
            ("KEY_VAULT_URL", "https://kv.vault.azure.net"),
            ("KEY_VAULT_CLIENT_CERTIFICATE", "graph-client"),
            ("AZURE_CLIENT_SECRET", "s"),
        ]));
        assert!(!with_secret.is_empty());
        assert!(with_secret
            .blocking(Held::default(), "auth-start", false)
            .is_none());
        assert_eq!(with_secret.problems().len(), 1, "health still says it");
    }

    #[tokio::test]
    async fn an_invocation_waits_for_the_first_try_only_while_it_runs_and_at_most_the_grace() {
        let s = settings(&[
            ("KEY_VAULT_URL", "https://kv.vault.azure.net"),
            ("KEY_VAULT_NOTIFICATION_CERTIFICATE", "graph-notifications"),
        ]);
        let certs = Certificates::from_settings(&s);
        // Not needed by this function: no wait.
        let t = Instant::now();
        certs
            .settle_first("presence-get", Duration::from_secs(5))
            .await;
        assert!(t.elapsed() < Duration::from_secs(1));
        // Needed and still in its first try: waits for the grace.
        let t = Instant::now();
        certs
            .settle_first("notifications", Duration::from_millis(200))
            .await;
        assert!(t.elapsed() >= Duration::from_millis(200));
        // Loaded meanwhile: the wait ends then.
        let c = certs.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            c.set(&c.slots[0], State::Loaded);
        });
        let t = Instant::now();
        certs
            .settle_first("notifications", Duration::from_secs(5))
            .await;
        assert!(t.elapsed() < Duration::from_secs(4));
        assert!(certs.problems().is_empty());
    }
}
