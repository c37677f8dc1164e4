//! `teams-presence doctor`: checks each configured dependency and says what is wrong and how
//! to fix it. Exit code non-zero when any check fails (warnings do not fail).
//!
//! Nothing it prints is secret: settings appear as "set", keys and tokens never.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use secrecy::ExposeSecret;

use crate::config::{Settings, StoreKind};

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Fine.
    Ok(String),
    /// Works, but worth knowing (does not fail the run).
    Warn(String),
    /// Broken: what is wrong, and how to fix it.
    Fail {
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// Not configured, not needed.
    Skip(String),
}

fn fail(problem: impl Into<String>, fix: impl Into<String>) -> Verdict {
    Verdict::Fail {
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// A network error with its causes (`error sending request: ...: dns error: ...`), without
/// the URL (already named by the caller).
fn net_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(8))
        .build()
        .expect("TLS backend initialises")
}

async fn check_app_registration(s: &Settings) -> Verdict {
    let Some(id) = &s.client_id else {
        return fail(
            "AZURE_CLIENT_ID is not set",
            "register an app (docs/app-registration.md) and set AZURE_CLIENT_ID to its Application (client) ID",
        );
    };
    if uuid::Uuid::parse_str(id).is_err() {
        return fail(
            format!("AZURE_CLIENT_ID {id:?} is not a GUID"),
            "copy the Application (client) ID from the app registration's overview page",
        );
    }
    match crate::clients::entra::EntraClient::from_settings(s) {
        Err(e) => fail(e.to_string(), "point AZURE_CLIENT_CERTIFICATE_PATH at a PEM file with the certificate and its private key"),
        Ok(c) if c.is_confidential() => Verdict::Ok(format!("client {id}, with a client credential")),
        Ok(_) => Verdict::Warn(format!(
            "client {id} has no secret or certificate: only `teams-presence login` (device code) can sign in; set AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH for the browser sign-in"
        )),
    }
}

/// Checks the authority (and the clock against its `Date` header).
async fn check_authority(s: &Settings) -> (Verdict, Verdict) {
    let url = format!(
        "{}/{}/v2.0/.well-known/openid-configuration",
        s.authority_host.as_str().trim_end_matches('/'),
        s.tenant
    );
    let before = Utc::now();
    match http().get(&url).send().await {
        Err(e) => (
            fail(
                format!("cannot reach {}: {}", s.authority_host, net_error(e)),
                "check the network, a proxy, or AZURE_AUTHORITY_HOST",
            ),
            Verdict::Skip("not checked (authority unreachable)".into()),
        ),
        Ok(r) => {
            let skew = r
                .headers()
                .get("date")
                .and_then(|d| d.to_str().ok())
                .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
                .map(|d| (d.with_timezone(&Utc) - before).num_seconds());
            let clock = match skew {
                Some(sk) if sk.abs() > 300 => fail(
                    format!("the clock is {sk} s off the identity platform's"),
                    "enable time sync (e.g. `timedatectl set-ntp true`): tokens are rejected when clocks differ by minutes",
                ),
                Some(sk) => Verdict::Ok(format!("clock within {} s of the identity platform", sk.abs())),
                None => Verdict::Skip("the authority sent no Date header".into()),
            };
            let status = r.status();
            let authority = if status.is_success() {
                Verdict::Ok(format!(
                    "{} answers for tenant {}",
                    s.authority_host, s.tenant
                ))
            } else if status.as_u16() == 400 {
                fail(
                    format!("the authority does not know tenant {:?}", s.tenant),
                    "set AZURE_TENANT_ID to your tenant id, `organizations` or `common`",
                )
            } else {
                fail(
                    format!("the authority answered HTTP {status}"),
                    "try again later, or check AZURE_AUTHORITY_HOST",
                )
            };
            (authority, clock)
        }
    }
}

async fn check_graph(s: &Settings) -> Verdict {
    let url = format!(
        "{}/v1.0/me/presence",
        s.graph_endpoint.as_str().trim_end_matches('/')
    );
    match http().get(&url).send().await {
        // Without a token Graph answers 401: that is reachable.
        Ok(r) => Verdict::Ok(format!(
            "{} reachable (HTTP {} without a token)",
            s.graph_endpoint,
            r.status().as_u16()
        )),
        Err(e) => fail(
            format!("cannot reach {}: {}", s.graph_endpoint, net_error(e)),
            "check the network, a proxy, or GRAPH_ENDPOINT",
        ),
    }
}

async fn check_store(s: &Settings, data_dir: &Path, default: StoreKind) -> (Verdict, Verdict) {
    let store = match crate::store::open(s, default, data_dir) {
        Ok(st) => st,
        Err(e) => {
            return (
                fail(format!("{e:#}"), "fix the store settings above"),
                Verdict::Skip("no store".into()),
            )
        }
    };
    if let Err(e) = store.ensure_tables().await {
        return (
            fail(
                format!("{}: {e}", store.describe()),
                "check the connection string or that Azurite/the account is reachable",
            ),
            Verdict::Skip("no store".into()),
        );
    }
    let key = format!("doctor-{}", uuid::Uuid::new_v4());
    let probe = serde_json::json!({"probe": true});
    let rw = async {
        store
            .insert_entity(crate::store::Table::Meta, &key, "probe", &probe)
            .await?;
        store
            .get_entity(crate::store::Table::Meta, &key, "probe")
            .await?;
        store
            .delete_entity(crate::store::Table::Meta, &key, "probe", None)
            .await
    };
    let verdict = match rw.await {
        Ok(()) => Verdict::Ok(format!("{} (read and write work)", store.describe())),
        Err(e) => fail(
            format!("{}: {e}", store.describe()),
            "check permissions on the data directory or the storage account",
        ),
    };
    let users = match store.list::<crate::store::UserRecord>().await {
        Ok(u) if u.is_empty() => Verdict::Warn(
            "nobody is signed in: run `teams-presence login`, or open /api/auth/start".into(),
        ),
        Ok(u) => {
            let stuck: Vec<String> = u
                .iter()
                .filter(|u| {
                    matches!(
                        u.value.state,
                        crate::store::UserState::SignInRequired { .. }
                    )
                })
                .map(|u| {
                    if u.value.upn.is_empty() {
                        u.value.user_id.clone()
                    } else {
                        u.value.upn.clone()
                    }
                })
                .collect();
            if stuck.is_empty() {
                Verdict::Ok(format!("{} user(s) signed in", u.len()))
            } else {
                fail(
                    format!("sign-in required for {}", stuck.join(", ")),
                    "sign in again at /api/auth/start or with `teams-presence login`",
                )
            }
        }
        Err(e) => fail(format!("cannot list users: {e}"), "see the store check"),
    };
    (verdict, users)
}

fn check_certificate(s: &Settings, data_dir: &Path) -> Verdict {
    let ring = match &s.notification_certificate_path {
        Some(p) => match crate::clients::graph::certs::KeyRing::load(p) {
            Ok(r) => r,
            Err(e) => {
                return fail(
                    format!("NOTIFICATION_CERTIFICATE_PATH: {e:#}"),
                    "point it at a PEM with an RSA certificate (2048–4096 bits) and its key",
                )
            }
        },
        None if s.key_vault_notification_certificate.is_some() => {
            return Verdict::Skip("loaded from Key Vault by the handler".into())
        }
        None => {
            let generated = data_dir.join(crate::clients::graph::certs::SERVE_CERT_FILE);
            if !generated.exists() {
                return Verdict::Warn(
                    "no notification certificate yet: `serve` generates one on first start".into(),
                );
            }
            match crate::clients::graph::certs::KeyRing::load(&generated) {
                Ok(r) => r,
                Err(e) => {
                    return fail(
                        format!("{}: {e:#}", generated.display()),
                        "delete the file; `serve` generates a new one",
                    )
                }
            }
        }
    };
    match ring.current().and_then(|k| k.not_after()) {
        Some(t) if t < Utc::now() => fail(
            "the notification certificate has expired",
            "replace it (docs/certificates.md)",
        ),
        Some(t) if t < Utc::now() + chrono::Duration::days(30) => Verdict::Warn(format!(
            "the notification certificate expires on {}",
            t.format("%Y-%m-%d")
        )),
        Some(t) => Verdict::Ok(format!(
            "notification certificate valid until {}",
            t.format("%Y-%m-%d")
        )),
        None => Verdict::Ok("notification certificate loaded".into()),
    }
}

fn check_public_url(s: &Settings) -> Verdict {
    match &s.public_base_url {
        None => Verdict::Warn("PUBLIC_BASE_URL is not set: presence is polled (set an https URL, e.g. a tunnel, for change notifications)".into()),
        Some(u) if u.scheme() != "https" => Verdict::Warn(format!("PUBLIC_BASE_URL {u} is not https: Graph will not deliver change notifications there; presence is polled")),
        Some(u) => Verdict::Ok(format!("change notifications delivered to {u}api/notifications")),
    }
}

/// The bridge through the same client the lights use ([`crate::clients::hue::connect`]):
/// HTTPS verified against the Hue CA when the bridge speaks it, never a downgrade to plain
/// HTTP (which would send the application key in clear).
async fn check_hue(s: &Settings) -> Verdict {
    use crate::clients::hue::{connect, Address, HueError};
    let Some(bridge) = &s.hue_bridge else {
        return Verdict::Skip(
            "HUE_BRIDGE is not set (`teams-presence hue discover` finds it)".into(),
        );
    };
    let Some(address) = Address::parse(bridge) else {
        return fail(
            format!("HUE_BRIDGE {bridge:?} is not an address"),
            "set HUE_BRIDGE to the bridge's IP address",
        );
    };
    let Some(key) = &s.hue_application_key else {
        return fail(
            "HUE_APPLICATION_KEY is not set",
            "run `teams-presence hue pair` and press the bridge's link button",
        );
    };
    let listed = tokio::time::timeout(Duration::from_secs(30), async {
        let b = connect(&address, key).await?;
        b.list().await.map(|_| b.api())
    })
    .await;
    let reach =
        "check HUE_BRIDGE (the bridge's IP address) and that this machine is on the same network";
    match listed {
        Err(_) => fail(
            format!("the Hue bridge at {bridge} did not answer in time"),
            reach,
        ),
        Ok(Err(HueError::Unauthorized)) => fail(
            "the bridge does not know HUE_APPLICATION_KEY",
            "run `teams-presence hue pair` again",
        ),
        Ok(Err(HueError::Network(e))) => fail(
            format!("cannot reach the Hue bridge at {bridge}: {}", net_error(e)),
            reach,
        ),
        Ok(Err(e)) => fail(
            format!("the Hue bridge at {bridge}: {e}"),
            "check HUE_BRIDGE",
        ),
        Ok(Ok(_)) if s.hue_targets.is_empty() => fail(
            "HUE_TARGETS is not set",
            "list lights with `teams-presence hue list` and set e.g. HUE_TARGETS=light:3",
        ),
        Ok(Ok(api)) => Verdict::Ok(format!(
            "bridge {bridge} ({api}) accepts the key; targets {}",
            s.hue_targets
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

async fn check_service_bus(s: &Settings) -> Verdict {
    let Some(cs) = &s.service_bus_connection else {
        return Verdict::Skip(
            "ServiceBusConnection is not set (only edges and the cloud need it)".into(),
        );
    };
    // The same parser `subscribe` and the REST publisher use.
    let conn = match crate::clients::servicebus::ConnectionString::parse(cs.expose_secret()) {
        Ok(c) => c,
        Err(e) => {
            return fail(
                e.to_string().trim_start_matches("setting ").to_owned(),
                "copy the whole connection string of a Shared access policy",
            )
        }
    };
    let endpoint = s
        .servicebus_endpoint
        .as_ref()
        .map(|u| u.to_string())
        .unwrap_or_else(|| format!("https://{}/", conn.host));
    match http().get(&endpoint).send().await {
        Ok(_) => Verdict::Ok(format!("Service Bus namespace {endpoint} reachable")),
        Err(e) => fail(
            format!("cannot reach {endpoint}: {}", net_error(e)),
            "check the network (outbound HTTPS 443) or the namespace name",
        ),
    }
}

/// Runs every check, prints one line each, returns whether all passed.
pub async fn run(
    settings: &Settings,
    data_dir: &Path,
    default_store: StoreKind,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<bool> {
    let mut checks: Vec<(&str, Verdict)> =
        vec![("app registration", check_app_registration(settings).await)];
    let (authority, clock) = check_authority(settings).await;
    checks.push(("sign-in authority", authority));
    checks.push(("clock", clock));
    checks.push(("Microsoft Graph", check_graph(settings).await));
    let (store, users) = check_store(settings, data_dir, default_store).await;
    checks.push(("store", store));
    checks.push(("users", users));
    checks.push(("public URL", check_public_url(settings)));
    checks.push((
        "notification certificate",
        check_certificate(settings, data_dir),
    ));
    checks.push(("Hue bridge", check_hue(settings).await));
    checks.push(("Service Bus", check_service_bus(settings).await));
    let mut ok = true;
    for (name, v) in checks {
        match v {
            Verdict::Ok(d) => writeln!(out, "ok    {name}: {d}")?,
            Verdict::Warn(d) => writeln!(out, "warn  {name}: {d}")?,
            Verdict::Skip(d) => writeln!(out, "skip  {name}: {d}")?,
            Verdict::Fail { problem, fix } => {
                ok = false;
                writeln!(out, "FAIL  {name}: {problem}\n      fix: {fix}")?;
            }
        }
    }
    writeln!(
        out,
        "{}",
        if ok {
            "All checks passed."
        } else {
            "Some checks failed: see the fixes above."
        }
    )?;
    Ok(ok)
}
