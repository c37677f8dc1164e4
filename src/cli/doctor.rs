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
    crate::clients::tls::client_builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(8))
        .build()
        .expect("TLS backend initialises")
}

async fn check_app_registration(s: &Settings) -> Verdict {
    let Some(id) = &s.app.client_id else {
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
        s.app.authority_host.as_str().trim_end_matches('/'),
        s.app.tenant
    );
    let before = Utc::now();
    match http().get(&url).send().await {
        Err(e) => (
            fail(
                format!("cannot reach {}: {}", s.app.authority_host, net_error(e)),
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
                    s.app.authority_host, s.app.tenant
                ))
            } else if status.as_u16() == 400 {
                fail(
                    format!("the authority does not know tenant {:?}", s.app.tenant),
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
        s.graph.endpoint.as_str().trim_end_matches('/')
    );
    match http().get(&url).send().await {
        // Without a token Graph answers 401: that is reachable.
        Ok(r) => Verdict::Ok(format!(
            "{} reachable (HTTP {} without a token)",
            s.graph.endpoint,
            r.status().as_u16()
        )),
        Err(e) => fail(
            format!("cannot reach {}: {}", s.graph.endpoint, net_error(e)),
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
    let ring = match &s.graph.notification_certificate_path {
        Some(p) => match crate::clients::graph::certs::KeyRing::load(p) {
            Ok(r) => r,
            Err(e) => {
                return fail(
                    format!("NOTIFICATION_CERTIFICATE_PATH: {e:#}"),
                    "point it at a PEM with an RSA certificate (2048–4096 bits) and its key",
                )
            }
        },
        None if s.key_vault.notification_certificate.is_some() => {
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
        Some(t) => expiry(
            "the notification certificate",
            t,
            Utc::now(),
            "replace it (docs/certificates.md)",
        ),
        None => Verdict::Ok("notification certificate loaded".into()),
    }
}

/// Failed once `t` has passed, a warning in the 30 days before.
fn expiry(what: &str, t: chrono::DateTime<Utc>, now: chrono::DateTime<Utc>, fix: &str) -> Verdict {
    if t < now {
        fail(format!("{what} expired on {}", t.format("%Y-%m-%d")), fix)
    } else if t < now + chrono::Duration::days(30) {
        Verdict::Warn(format!("{what} expires on {}: {fix}", t.format("%Y-%m-%d")))
    } else {
        Verdict::Ok(format!("{what} valid until {}", t.format("%Y-%m-%d")))
    }
}

/// The app registration's credential: the certificate's `notAfter`, and the secret's expiry
/// when `AZURE_CLIENT_SECRET_EXPIRES` says it (Entra ID does not tell the app).
fn check_client_credential_expiry(s: &Settings) -> Verdict {
    let now = Utc::now();
    let mut verdicts = Vec::new();
    if let Some(path) = &s.app.client_certificate_path {
        // An unreadable certificate is the app registration check's failure.
        if let Ok(Some(t)) =
            crate::clients::entra::load_certificate(path, s.app.client_assertion_alg)
                .map(|c| c.not_after)
        {
            verdicts.push(expiry(
                "the client certificate",
                t,
                now,
                "upload a new certificate to the app registration and point AZURE_CLIENT_CERTIFICATE_PATH at it (docs/certificates.md)",
            ));
        }
    }
    if let Some(t) = s.app.client_secret_expires {
        verdicts.push(expiry(
            "the client secret",
            t,
            now,
            "add a new secret to the app registration, set AZURE_CLIENT_SECRET and AZURE_CLIENT_SECRET_EXPIRES",
        ));
    }
    // The worst one speaks for both.
    let rank = |v: &Verdict| match v {
        Verdict::Fail { .. } => 0,
        Verdict::Warn(_) => 1,
        _ => 2,
    };
    verdicts.sort_by_key(rank);
    match verdicts.len() {
        0 => Verdict::Skip(
            "no client certificate, and AZURE_CLIENT_SECRET_EXPIRES is not set".into(),
        ),
        1 => verdicts.remove(0),
        _ if rank(&verdicts[0]) == 2 => Verdict::Ok(
            verdicts
                .iter()
                .filter_map(|v| match v {
                    Verdict::Ok(d) => Some(d.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        _ => verdicts.remove(0),
    }
}

fn check_public_url(s: &Settings) -> Verdict {
    match &s.graph.public_base_url {
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
    let Some(bridge) = &s.hue.bridge else {
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
    let Some(key) = &s.hue.application_key else {
        return fail(
            "HUE_APPLICATION_KEY is not set",
            "run `teams-presence hue pair` and press the bridge's link button",
        );
    };
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        let b = connect(&address, key).await?;
        b.inventory().await.map(|inv| (b.api(), inv))
    })
    .await;
    let reach =
        "check HUE_BRIDGE (the bridge's IP address) and that this machine is on the same network";
    let (api, inventory) = match read {
        Err(_) => {
            return fail(
                format!("the Hue bridge at {bridge} did not answer in time"),
                reach,
            )
        }
        Ok(Err(HueError::Unauthorized)) => {
            return fail(
                "the bridge does not know HUE_APPLICATION_KEY",
                "run `teams-presence hue pair` again",
            )
        }
        Ok(Err(HueError::Network(e))) => {
            return fail(
                format!("cannot reach the Hue bridge at {bridge}: {}", net_error(e)),
                reach,
            )
        }
        Ok(Err(e)) => {
            return fail(
                format!("the Hue bridge at {bridge}: {e}"),
                "check HUE_BRIDGE",
            )
        }
        Ok(Ok(read)) => read,
    };
    if s.hue.targets.is_empty() {
        return fail(
            "HUE_TARGETS is not set",
            "list lights with `teams-presence hue list` and set e.g. HUE_TARGETS=light:3",
        );
    }
    hue_targets_verdict(bridge, api, &inventory, &s.hue.targets)
}

/// Every target resolved on the bridge, one line each: what it is and what it can show; the
/// ones the bridge does not have are named (a failure), lamps that may not answer a warning.
fn hue_targets_verdict(
    bridge: &str,
    api: &str,
    inventory: &crate::clients::hue::Inventory,
    targets: &[crate::config::HueTarget],
) -> Verdict {
    use crate::clients::hue::inventory::describe_group;
    let mut lines = Vec::new();
    let mut missing = Vec::new();
    let mut troubled = false;
    for t in targets {
        match inventory.resolve(t) {
            Ok(r) => {
                troubled |= r.lamps.is_empty() || r.lamps.iter().any(|l| l.problem.is_some());
                lines.push(format!(
                    "{t} ({}): {}",
                    r.name,
                    describe_group(r.palette, &r.lamps)
                ));
            }
            Err(e) => missing.push(e),
        }
    }
    let lines = lines
        .iter()
        .map(|l| format!("\n      {l}"))
        .collect::<String>();
    if !missing.is_empty() {
        return fail(
            format!(
                "bridge {bridge} ({api}) accepts the key, but {}{lines}",
                missing.join("; ")
            ),
            "set HUE_TARGETS to entries `teams-presence hue list` prints",
        );
    }
    let summary = format!("bridge {bridge} ({api}) accepts the key; targets:{lines}");
    if troubled {
        Verdict::Warn(summary)
    } else {
        Verdict::Ok(summary)
    }
}

async fn check_mqtt(s: &Settings) -> Verdict {
    let Some(m) = &s.sinks.mqtt else {
        return Verdict::Skip("MQTT_URL is not set".into());
    };
    let host = m.url.host_str().unwrap_or_default();
    match crate::clients::mqtt::probe(m, Duration::from_secs(5)).await {
        Ok(()) => Verdict::Ok(format!(
            "broker {host} accepts the connection; state under {}/…",
            m.topic_prefix
        )),
        Err(e) => fail(
            format!("broker {host}: {e}"),
            "check MQTT_URL (mqtt://host:1883 or mqtts://host:8883), MQTT_USERNAME and MQTT_PASSWORD",
        ),
    }
}

async fn check_webhook(s: &Settings) -> Verdict {
    let Some(w) = &s.sinks.webhook else {
        return Verdict::Skip("WEBHOOK_URL is not set".into());
    };
    let c = crate::clients::webhook::WebhookClient::new(w.url.clone(), w.secret.clone());
    match c.reachable().await {
        Ok(status) => Verdict::Ok(format!("{} answers (HTTP {status} to HEAD)", c.host())),
        Err(e) => fail(
            format!("{}: {e}", c.host()),
            "check WEBHOOK_URL and that the receiver runs",
        ),
    }
}

async fn check_wled(s: &Settings) -> Verdict {
    let Some(u) = &s.sinks.wled else {
        return Verdict::Skip("WLED_URL is not set".into());
    };
    let c = crate::clients::wled::WledClient::new(u.clone());
    match c.info().await {
        Ok(info) => Verdict::Ok(format!("{}: {info}", c.host())),
        Err(e) => fail(
            format!("{}: {e}", c.host()),
            "check WLED_URL (the controller's http address) and that it is on the network",
        ),
    }
}

/// The USB busylights plugged in: each one named, and whether this user may open it (the
/// udev rule gives the service user and the desktop's user access).
#[cfg(feature = "busylight")]
fn check_busylights(s: &Settings) -> Verdict {
    use crate::clients::busylight::device;
    if s.sinks.busylight == crate::config::sinks::BusylightMode::Off {
        return Verdict::Skip("BUSYLIGHT is off".into());
    }
    let found = match device::list() {
        Ok(f) => f,
        Err(e) => return Verdict::Warn(format!("cannot look for USB busylights: {e}")),
    };
    if found.is_empty() {
        return Verdict::Skip(
            "none plugged in (`teams-presence busylight list` names the supported ones)".into(),
        );
    }
    let mut seen = Vec::new();
    let mut denied = Vec::new();
    for f in &found {
        match device::can_open(f) {
            Ok(()) => seen.push(f.describe()),
            Err(e) => denied.push(format!("{}: {e}", f.describe())),
        }
    }
    if denied.is_empty() {
        Verdict::Ok(seen.join("; "))
    } else {
        fail(
            format!("cannot open {}", denied.join("; ")),
            "install the udev rule 60-teams-presence-busylight.rules (the .deb does; deploy/udev/ otherwise), then unplug the light and plug it in again",
        )
    }
}

/// Without the `busylight` feature there is nothing to look for.
#[cfg(not(feature = "busylight"))]
fn check_busylights(_: &Settings) -> Verdict {
    Verdict::Skip("this build has no USB busylight support".into())
}

async fn check_service_bus(s: &Settings) -> Verdict {
    let Some(cs) = &s.service_bus.connection else {
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
        .service_bus
        .endpoint
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

/// The PBX sync's checks (only when `PBX` is set): the PBX reachable and authorised, the
/// app token carrying `Presence.ReadWrite.All`, and at least one extension mapped.
async fn check_pbx(
    s: &Settings,
    data_dir: &Path,
    default_store: StoreKind,
) -> Vec<(&'static str, Verdict)> {
    if !s.pbx.is_on() {
        return vec![("PBX", pbx_off())];
    }
    vec![
        ("PBX", check_pbx_connection(&s.pbx).await),
        ("PBX app permission", check_presence_write_role(s).await),
        (
            "PBX mapping",
            check_pbx_mapping(s, data_dir, default_store).await,
        ),
    ]
}

fn pbx_off() -> Verdict {
    Verdict::Skip("PBX is not set (the desk-phone sync is off)".into())
}

async fn check_pbx_connection(p: &crate::config::pbx::PbxSettings) -> Verdict {
    use crate::clients::pbx::threecx::{ThreeCx, ThreeCxError};
    use crate::config::pbx::PbxSettings;
    match p {
        PbxSettings::Off => pbx_off(),
        PbxSettings::ThreeCx { api: t, .. } => {
            // 3CX keeps one live token per API client, so this check's token replaces a
            // running sync's; the sync fetches a new one on its next 401, once.
            let client =
                match ThreeCx::new(
                    t.url.clone(),
                    t.client_id.clone(),
                    t.client_secret.clone(),
                    Duration::from_secs(8),
                ) {
                    Ok(c) => c,
                    Err(e) => return fail(
                        e.to_string(),
                        "set PBX_3CX_URL to the PBX's https address, e.g. https://pbx.example.com",
                    ),
                };
            if let Err(e) = client.check_connectivity().await {
                let fix = match e {
                    ThreeCxError::Unauthorized(_) => "copy the client id and the API key of the API client (3CX Admin Console → Integrations → API) into PBX_3CX_CLIENT_ID and PBX_3CX_CLIENT_SECRET; the key is shown once, so create a new one if it is lost",
                    ThreeCxError::NotLicensed(_) => "the 3CX API needs an Enterprise licence; tick \"3CX Configuration API Access\" and \"Call Control API Access\" on the API client",
                    ThreeCxError::Unreachable(_) => "check PBX_3CX_URL, the network and that the PBX is up",
                    _ => "check PBX_3CX_URL points at a 3CX V20 PBX",
                };
                return fail(format!("{}: {e}", t.url), fix);
            }
            match client.native_presence_sync().await {
                Ok(crate::clients::pbx::threecx::NativeSync::Off) => Verdict::Ok(format!(
                    "3CX at {} accepts the API client {}; its own Microsoft 365 presence sync is off",
                    t.url, t.client_id
                )),
                Ok(crate::clients::pbx::threecx::NativeSync::On) => fail(
                    "3CX's own Microsoft 365 presence sync is on: two writers would overwrite each other, so the sync refuses to start",
                    "turn it off in the 3CX Admin Console → Integrations → Microsoft 365 (untick \"Set Teams presence\"), then run doctor again",
                ),
                Err(e) => fail(
                    format!("cannot read 3CX's Microsoft 365 integration: {e}"),
                    "give the API client 3CX Configuration API Access with a role that may read the Microsoft 365 integration",
                ),
            }
        }
        PbxSettings::Http { sync, http } => {
            if sync.events_secret.is_none() {
                return fail(
                    "PBX_EVENTS_SECRET is not set: every event posted to /api/pbx/events is refused",
                    "set PBX_EVENTS_SECRET to a long random value (`openssl rand -hex 32`) and use it in the PBX's webhook (docs/pbx.md)",
                );
            }
            match crate::clients::pbx::http_out::HttpPbxConfig::from_lookup(|k| http.value(k)) {
                Err(e) => fail(
                    format!("{}: {}", e.setting, e.problem),
                    "see docs/pbx.md, \"Outbound: setting the phone's status\"",
                ),
                Ok(None) => Verdict::Warn(
                    "events are accepted on /api/pbx/events, but PBX_HTTP_SET_URL is not set: Teams never changes the phone's status".into(),
                ),
                Ok(Some(_)) => Verdict::Ok(
                    "events accepted on /api/pbx/events (PBX_EVENTS_SECRET set); status changes go to PBX_HTTP_SET_URL".into(),
                ),
            }
        }
    }
}

/// The app token for `{tenant}` must carry the application permission
/// `Presence.ReadWrite.All`, or every presence write is refused.
async fn check_presence_write_role(s: &Settings) -> Verdict {
    const ROLE: &str = "Presence.ReadWrite.All";
    let consent = "add the application permission Presence.ReadWrite.All (and User.ReadBasic.All) with `scripts/register-app.sh --app-id <id> --pbx`, then have a Privileged Role Administrator or Global Administrator grant admin consent (docs/app-registration.md)";
    let client = match crate::clients::entra::EntraClient::from_settings(s) {
        Ok(c) if c.is_confidential() => c,
        Ok(_) => {
            return fail(
                "the PBX sync writes presence with the app's own credential, and none is set",
                "set AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH",
            )
        }
        Err(e) => return fail(e.to_string(), "see the app registration check"),
    };
    if matches!(
        s.app.tenant.as_str(),
        "organizations" | "common" | "consumers"
    ) {
        return fail(
            format!(
                "AZURE_TENANT_ID is {:?}: an app token needs the tenant itself",
                s.app.tenant
            ),
            "set AZURE_TENANT_ID to your tenant id (Microsoft Entra admin center → Overview)",
        );
    }
    let token = match client
        .app_token(&s.app.tenant, "https://graph.microsoft.com/.default")
        .await
    {
        Ok(t) => t,
        Err(e) => {
            return fail(
                format!("no app token for tenant {}: {e}", s.app.tenant),
                "check AZURE_TENANT_ID and the client credential",
            )
        }
    };
    match crate::clients::entra::access_token_roles(token.access_token.expose_secret()) {
        Some(roles) if roles.iter().any(|r| r == ROLE) => {
            Verdict::Ok(format!("the app token for tenant {} carries {ROLE}", s.app.tenant))
        }
        Some(roles) if roles.is_empty() => fail(
            format!("the app token for tenant {} carries no application permission", s.app.tenant),
            consent,
        ),
        Some(roles) => fail(
            format!(
                "the app token for tenant {} carries {} but not {ROLE}",
                s.app.tenant,
                roles.join(", ")
            ),
            consent,
        ),
        None => Verdict::Warn(format!(
            "an app token for tenant {} was issued, but it is not a JWT, so its permissions cannot be read",
            s.app.tenant
        )),
    }
}

async fn check_pbx_mapping(s: &Settings, data_dir: &Path, default_store: StoreKind) -> Verdict {
    let mapped = async {
        let store = crate::store::open(s, default_store, data_dir)?;
        store.ensure_tables().await?;
        anyhow::Ok(store.list::<crate::store::PbxMappingRecord>().await?.len())
    };
    match mapped.await {
        Ok(0) => fail(
            "no extension is mapped to a Teams user",
            "`teams-presence pbx map add 101 jane@contoso.com`, or `teams-presence pbx map import FILE.csv` (header extension,user)",
        ),
        Ok(n) => Verdict::Ok(format!("{n} extension(s) mapped")),
        Err(e) => fail(format!("cannot read the mapping: {e:#}"), "see the store check"),
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
    checks.push((
        "client credential",
        check_client_credential_expiry(settings),
    ));
    checks.push(("Hue bridge", check_hue(settings).await));
    checks.push(("Service Bus", check_service_bus(settings).await));
    checks.push(("MQTT", check_mqtt(settings).await));
    checks.push(("webhook", check_webhook(settings).await));
    checks.push(("WLED", check_wled(settings).await));
    checks.push(("busylights", check_busylights(settings)));
    checks.extend(check_pbx(settings, data_dir, default_store).await);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::parse(&crate::config::Sources::from_map(map)).unwrap()
    }

    /// A self-signed RSA certificate and its key, valid for `days` from now.
    fn pem_valid_for(days: u32) -> Vec<u8> {
        use openssl::{asn1::Asn1Time, pkey::PKey, rsa::Rsa, x509::X509};
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut b = X509::builder().unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(days).unwrap())
            .unwrap();
        b.sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        let mut pem = b.build().to_pem().unwrap();
        pem.extend(key.private_key_to_pem_pkcs8().unwrap());
        pem
    }

    #[test]
    fn expiry_warns_30_days_ahead_and_fails_after() {
        let now = Utc::now();
        let d = chrono::Duration::days;
        assert!(matches!(expiry("x", now + d(31), now, "f"), Verdict::Ok(_)));
        assert!(matches!(
            expiry("x", now + d(29), now, "f"),
            Verdict::Warn(_)
        ));
        assert!(matches!(
            expiry("x", now - d(1), now, "f"),
            Verdict::Fail { .. }
        ));
    }

    #[test]
    fn client_certificate_and_secret_expiry_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (soon, later) = (dir.path().join("soon.pem"), dir.path().join("later.pem"));
        std::fs::write(&soon, pem_valid_for(10)).unwrap();
        std::fs::write(&later, pem_valid_for(365)).unwrap();
        let verdict = |pairs: &[(&str, &str)]| check_client_credential_expiry(&settings(pairs));
        let cert = "AZURE_CLIENT_CERTIFICATE_PATH";
        let secret = "AZURE_CLIENT_SECRET_EXPIRES";
        let in_days = |n: i64| (Utc::now() + chrono::Duration::days(n)).to_rfc3339();
        assert!(matches!(verdict(&[]), Verdict::Skip(_)));
        match verdict(&[(cert, soon.to_str().unwrap())]) {
            Verdict::Warn(w) => assert!(w.starts_with("the client certificate expires on"), "{w}"),
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            verdict(&[(cert, later.to_str().unwrap())]),
            Verdict::Ok(_)
        ));
        match verdict(&[(secret, &in_days(5)), (cert, later.to_str().unwrap())]) {
            Verdict::Warn(w) => assert!(w.starts_with("the client secret expires on"), "{w}"),
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            verdict(&[(secret, &in_days(-1))]),
            Verdict::Fail { .. }
        ));
        match verdict(&[(secret, &in_days(90)), (cert, later.to_str().unwrap())]) {
            Verdict::Ok(o) => assert!(o.contains("certificate") && o.contains("secret"), "{o}"),
            v => panic!("{v:?}"),
        }
    }
}
