//! `serve`'s status page (`/`) and its JSON twin (`/api/status`).
//!
//! Server-rendered HTML, readable on a phone, refreshing itself. It shows what is configured
//! and what to do next; it never shows a secret (settings appear only as "set"/"not set").
//! Under the Functions host both routes answer 404: the cloud has no status page, and user
//! presence must not be readable anonymously there.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::core::lights::{Desired, LightMap};
use crate::core::message::TopicMessage;
use crate::core::presence::Presence;
use crate::engine::applier::SinkStatus;
pub use crate::http::html::esc;
use crate::http::html::{Frame, STATUS_CSS};
use crate::http::state::{AppState, Mode};
use crate::http::status_words as words;
use crate::store::{PresenceRecord, UserRecord, UserState};

/// One thing the user still has to configure.
#[derive(Debug, Serialize)]
pub struct NextStep {
    /// The setting(s) to add.
    pub setting: &'static str,
    /// Why and how.
    pub why: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct UserView {
    user_id: String,
    upn: String,
    display_name: String,
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    availability: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    activity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_change: Option<String>,
    /// How updates arrive: change notifications (with expiry) or polling.
    updates: String,
    /// The subscription's expiry, when there is a live one.
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription_expires: Option<String>,
    /// Whether the user must sign in again.
    sign_in_required: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusView {
    version: &'static str,
    started_at: String,
    store: String,
    next_steps: Vec<NextStep>,
    users: Vec<UserView>,
    lights: crate::engine::applier::SinkStatus,
    /// The sinks beside Hue (MQTT, webhook, WLED), each with its last command and error.
    sinks: Vec<crate::engine::applier::SinkStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pbx: Option<crate::http::pbx::PbxView>,
    /// Tenant mode: how many users have a subscription, how many are polled, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<crate::engine::subscriptions::TenantCoverage>,
    recent_messages: Vec<serde_json::Value>,
}

/// What is still missing for a working setup, in the order a new user should add it.
pub fn next_steps(state: &AppState) -> Vec<NextStep> {
    let s = &state.settings;
    let mut out = Vec::new();
    if s.app.client_id.is_none() {
        out.push(NextStep {
            setting: "AZURE_CLIENT_ID",
            why: "Register an app in Microsoft Entra ID (README, \"App registration\") and put its client id in teams-presence.toml or the environment.",
        });
    }
    if s.app.client_secret.is_none() && s.app.client_certificate_path.is_none() {
        out.push(NextStep {
            setting: "AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH",
            why: "Needed for the browser sign-in (/api/auth/start). Not needed for a device code (this page's Sign in with a code, or teams-presence login) with public client flows allowed.",
        });
    }
    if s.hue.bridge.is_none() || s.hue.application_key.is_none() {
        out.push(NextStep {
            setting: "HUE_BRIDGE and HUE_APPLICATION_KEY",
            why: "Run teams-presence hue discover, then teams-presence hue pair, and press the bridge's link button.",
        });
    }
    if s.hue.targets.is_empty() {
        out.push(NextStep {
            setting: "HUE_TARGETS",
            why: "Which lights to colour, e.g. light:3 or room:<id>; teams-presence hue list shows them.",
        });
    }
    out
}

async fn gather(state: &AppState) -> StatusView {
    let users = state.store.list::<UserRecord>().await.unwrap_or_default();
    let presence = state
        .store
        .list::<PresenceRecord>()
        .await
        .unwrap_or_default();
    let subs = state
        .store
        .list::<crate::store::SubscriptionRecord>()
        .await
        .unwrap_or_default();
    let now = chrono::Utc::now();
    let tenant = {
        let people: Vec<UserRecord> = users.iter().map(|u| u.value.clone()).collect();
        let live: Vec<crate::store::SubscriptionRecord> =
            subs.iter().map(|s| s.value.clone()).collect();
        crate::engine::subscriptions::tenant_coverage(&state.settings, &people, &live, now)
    };
    let users = users
        .into_iter()
        .map(|u| {
            let u = u.value;
            let p = presence.iter().find(|p| p.value.user_id == u.user_id);
            let sub = subs
                .iter()
                .filter(|s| s.value.user_ids.contains(&u.user_id) && s.value.expires_at > now)
                .map(|s| s.value.expires_at)
                .max();
            let poll = state.settings.polling.interval.as_secs();
            UserView {
                updates: match sub {
                    Some(t) => format!(
                        "change notifications (subscription until {})",
                        t.format("%H:%M UTC")
                    ),
                    None => format!("polling every {poll} s (no change-notification subscription)"),
                },
                subscription_expires: sub.map(|t| t.to_rfc3339()),
                sign_in_required: matches!(u.state, UserState::SignInRequired { .. }),
                state: match &u.state {
                    UserState::Active => "active".into(),
                    UserState::SignInRequired { reason, .. } => {
                        format!("sign-in required: {reason}")
                    }
                },
                availability: p.map(|p| p.value.last.presence.availability.to_string()),
                activity: p.map(|p| p.value.last.presence.activity.to_string()),
                last_change: p.map(|p| p.value.last.observed_at.to_rfc3339()),
                user_id: u.user_id,
                upn: u.upn,
                display_name: u.display_name,
            }
        })
        .collect();
    StatusView {
        version: env!("CARGO_PKG_VERSION"),
        started_at: state.started_at.to_rfc3339(),
        store: state.store.describe(),
        next_steps: next_steps(state),
        lights: state
            .sink_status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default(),
        sinks: state
            .sinks
            .as_ref()
            .map(|f| f.statuses())
            .unwrap_or_default(),
        users,
        pbx: crate::http::pbx::view(state).await,
        tenant,
        recent_messages: state
            .publisher
            .recent()
            .iter()
            .map(TopicMessage::to_json)
            .collect(),
    }
}

/// `GET /api/status`.
pub async fn status_json(State(state): State<AppState>) -> Response {
    if state.mode != Mode::Serve {
        return super::ApiError::NotFound.into_response();
    }
    Json(gather(&state).await).into_response()
}

/// `GET /`.
pub async fn status_page(State(state): State<AppState>) -> Response {
    if state.mode != Mode::Serve {
        return StatusCode::NOT_FOUND.into_response();
    }
    let v = gather(&state).await;
    let now = chrono::Utc::now();
    let map = crate::engine::applier::lights_from(&state.settings).unwrap_or_default();
    let mut setup = String::new();
    if !v.next_steps.is_empty() {
        setup.push_str("<section class=\"setup\"><h2>Set up</h2><p>Add these settings to <code>teams-presence.toml</code> (next to where you run <code>serve</code>) or the environment, then restart:</p><ol>");
        for s in &v.next_steps {
            setup.push_str(&format!(
                "<li><code>{}</code>: {}</li>",
                esc(s.setting),
                esc(s.why)
            ));
        }
        setup.push_str("</ol></section>");
    }
    // Until someone signs in, setting up is the point of the page; after that, people are.
    let mut body = String::new();
    if v.users.is_empty() {
        body.push_str(&std::mem::take(&mut setup));
    }
    body.push_str("<section><h2>People</h2>");
    if v.users.is_empty() {
        // Relative links: the page also works below a path prefix (Home Assistant's ingress).
        body.push_str("<p class=\"muted\">Nobody is signed in yet. Sign in with a code below, in the browser at <a href=\"api/auth/start\">api/auth/start</a>, or run <code>teams-presence login</code>.</p>");
    }
    if state.settings.app.client_id.is_some() {
        body.push_str(&render_device_sign_in(&state, now));
    }
    for u in &v.users {
        let av = u.availability.as_deref().unwrap_or("PresenceUnknown");
        let ac = u.activity.as_deref().unwrap_or("");
        let lamp = lamp_colour(&map, av, ac, now);
        let since = u
            .last_change
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| {
                format!(
                    " · {}",
                    words::time_tag(t.with_timezone(&chrono::Utc), now, "for")
                )
            })
            .unwrap_or_default();
        body.push_str(&format!(
            "<div class=\"user\" data-user-id=\"{id}\"><span class=\"dot\" style=\"background:{color}\" title=\"the lamp\"></span><div><b>{name}</b> <span class=\"muted\">{upn}</span><br><span class=\"now\" title=\"{raw}\">{words}</span>{since}<br><small>{state} · {updates}</small>{fix}</div></div>",
            id = esc(&u.user_id),
            color = lamp,
            name = esc(if u.display_name.is_empty() { &u.user_id } else { &u.display_name }),
            upn = esc(&u.upn),
            raw = esc(&format!("{av} / {ac}")),
            words = esc(&words::presence_words(av, ac)),
            state = esc(&u.state),
            updates = esc(&u.updates),
            fix = if u.sign_in_required {
                "<br><a class=\"fix\" href=\"api/auth/start\">Sign in again</a> (or with a code below, or <code>teams-presence login</code>)"
            } else {
                ""
            },
        ));
    }
    body.push_str("</section>");
    if let Some(t) = &v.tenant {
        body.push_str(&render_tenant(t, state.settings.polling.interval.as_secs()));
    }
    body.push_str(&format!(
        "<section><h2>Lights</h2><p>{}</p>{}",
        esc(&v.lights.description),
        sink_health(&v.lights, now)
    ));
    if let (Some(cmd), Some(at)) = (&v.lights.last_command, v.lights.last_command_at) {
        body.push_str(&format!(
            "<p class=\"muted\">Last command {}: {}</p>",
            words::time_tag(at, now, "ago"),
            esc(cmd)
        ));
    }
    for sink in &v.sinks {
        body.push_str(&other_sink(sink, now));
    }
    body.push_str(
        "<details open><summary>What the lamp colours mean</summary><ul class=\"legend\">",
    );
    for (name, s) in map.showcase() {
        body.push_str(&format!(
            "<li><span class=\"dot sm\" style=\"background:{}\"></span>{} <span class=\"muted\">{}</span></li>",
            words::swatch(&s).unwrap_or_else(|| OFF.into()),
            esc(&name),
            esc(&words::looks(&s)),
        ));
    }
    body.push_str("</ul></details></section>");
    if let Some(pbx) = &v.pbx {
        body.push_str(&render_pbx(pbx));
    }
    body.push_str(&setup);
    let started = chrono::DateTime::parse_from_rfc3339(&v.started_at)
        .map(|t| {
            format!(
                "up {}",
                words::time_tag(t.with_timezone(&chrono::Utc), now, "for")
            )
        })
        .unwrap_or_default();
    let frame = Frame {
        refresh_seconds: Some(10),
        script: Some(words::SCRIPT),
        ..Frame::new("teams-presence", STATUS_CSS)
    };
    let head = format!(
        "<p class=\"muted\">{store} · version {version} · {started}</p>",
        store = esc(&v.store),
        version = v.version,
    );
    frame.render(&(head + &body)).into_response()
}

/// The swatch of an unlit lamp.
const OFF: &str = "#3a3a3a";

/// The colour the lamp shows for a presence now (grey when off or left alone).
fn lamp_colour(map: &LightMap, av: &str, ac: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    match map.for_presence(&Presence::new(av, ac), now) {
        Desired::Set(s) => words::swatch(&s).unwrap_or_else(|| OFF.into()),
        Desired::Keep => "#999".into(),
    }
}

/// One line on the sink's health: "Bridge answered 3 s ago", or what is wrong; then one line
/// per target with a problem while the others work.
fn sink_health(s: &SinkStatus, now: chrono::DateTime<chrono::Utc>) -> String {
    let targets: String = s
        .warnings
        .iter()
        .map(|w| format!("<p class=\"health warn\">{}</p>", esc(w)))
        .collect();
    let health = match (&s.last_error, s.last_answer_at) {
        (Some(e), Some(at)) => format!(
            "<p class=\"health bad\">Bridge not answering: {} (last answered {})</p>",
            esc(e),
            words::time_tag(at, now, "ago")
        ),
        (Some(e), None) => format!(
            "<p class=\"health bad\">Bridge not answering yet: {}</p>",
            esc(e)
        ),
        (None, Some(at)) => format!(
            "<p class=\"health ok\">Bridge answered {}</p>",
            words::time_tag(at, now, "ago")
        ),
        (None, None) => String::new(),
    };
    health + &targets
}

/// One sink beside Hue: what it is, whether it answers, its last command.
fn other_sink(s: &SinkStatus, now: chrono::DateTime<chrono::Utc>) -> String {
    let health = match (&s.last_error, s.last_answer_at) {
        (Some(e), _) => format!("<span class=\"health bad\">failing: {}</span>", esc(e)),
        (None, Some(at)) => format!(
            "<span class=\"health ok\">answered {}</span>",
            words::time_tag(at, now, "ago")
        ),
        (None, None) => "<span class=\"muted\">nothing sent yet</span>".into(),
    };
    let last = match (&s.last_command, s.last_command_at) {
        (Some(c), Some(at)) => format!(
            "<br><small class=\"muted\">Last command {}: {}</small>",
            words::time_tag(at, now, "ago"),
            esc(c)
        ),
        _ => String::new(),
    };
    format!(
        "<p class=\"sink\">{} · {health}{last}</p>",
        esc(&s.description)
    )
}

/// The status page's "Whole tenant" section: subscribed and polled users, and why.
fn render_tenant(t: &crate::engine::subscriptions::TenantCoverage, poll_s: u64) -> String {
    let mut out = format!(
        "<section class=\"tenant\"><h2>Whole tenant</h2><p>{} users followed: {} by change notifications ({} subscription(s), {} sync account(s)), <b>{} polled every {poll_s} s</b>.</p>",
        t.users, t.subscribed, t.subscriptions, t.sync_accounts, t.polled
    );
    if !t.reasons.is_empty() {
        out.push_str("<ul>");
        for r in &t.reasons {
            out.push_str(&format!("<li>{}</li>", esc(r)));
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>");
    out
}

/// The status page's "Phone system" section.
fn render_pbx(v: &crate::http::pbx::PbxView) -> String {
    let mut out = format!(
        "<section class=\"pbx\"><h2>Phone system</h2><p>{} {}</p>",
        if v.connected {
            "Connected."
        } else {
            "Not connected:"
        },
        esc(&v.detail)
    );
    if v.extensions.is_empty() {
        out.push_str("<p class=\"muted\">No extension is mapped yet: <code>teams-presence pbx map add 101 someone@example.com</code>.</p>");
    }
    for r in &v.extensions {
        let when = |w: &Option<(String, chrono::DateTime<chrono::Utc>)>| {
            w.as_ref()
                .map(|(what, at)| format!("{} at {}", what, at.format("%H:%M:%S UTC")))
                .unwrap_or_else(|| "none yet".into())
        };
        out.push_str(&format!(
            "<div class=\"ext\" data-extension=\"{ext}\"><b>{ext}</b> <span class=\"muted\">{user}</span><br>line {line} · phone status {profile} · Teams {teams}<br><small>to Teams: {tt} · to the phone: {tp}</small>{err}</div>",
            ext = esc(&r.extension),
            user = esc(&r.user_id),
            line = esc(r.line.as_deref().unwrap_or("unknown")),
            profile = esc(r.profile.as_deref().unwrap_or("unknown")),
            teams = esc(r.teams.as_deref().unwrap_or("unknown")),
            tt = esc(&when(&r.last_to_teams)),
            tp = esc(&when(&r.last_to_pbx)),
            err = r
                .last_error
                .as_deref()
                .map(|e| format!("<br><span class=\"error\">Problem: {}</span>", esc(e)))
                .unwrap_or_default(),
        ));
    }
    out.push_str("</section>");
    out
}

/// The status page's sign-in block: the button, or the code to enter, or how the last one
/// ended (`crate::http::device` starts it). Only rendered for people the page's guard let in.
fn render_device_sign_in(state: &AppState, now: chrono::DateTime<chrono::Utc>) -> String {
    use crate::engine::device_code::Flow;
    let button = format!(
        "<form method=\"post\" action=\"api/auth/device\" class=\"signin\"><input type=\"hidden\" name=\"form_token\" value=\"{}\"><button type=\"submit\">Sign in with a code</button> <span class=\"muted\">Microsoft shows a page where you enter the code this page then shows.</span></form>",
        esc(state.page_sign_in.form_token())
    );
    match state.page_sign_in.current() {
        Some(Flow::Starting) => "<p class=\"signin\">Asking Microsoft for a code…</p>".into(),
        Some(Flow::Waiting {
            user_code,
            verification_uri,
            expires_at,
        }) if expires_at > now => format!(
            "<p class=\"signin code\">Open <a href=\"{uri}\" target=\"_blank\" rel=\"noopener noreferrer\">{uri}</a> and enter the code <code id=\"device-code\">{code}</code> (valid until {until} UTC). This page shows who signed in once you are done.</p>",
            uri = esc(&verification_uri),
            code = esc(&user_code),
            until = expires_at.format("%H:%M"),
        ),
        Some(Flow::Waiting { .. }) => format!(
            "<p class=\"signin health bad\">The code expired before anyone entered it.</p>{button}"
        ),
        Some(Flow::SignedIn { who, .. }) => format!(
            "<p class=\"signin health ok\">Signed in as {}.</p>{button}",
            esc(&who)
        ),
        Some(Flow::Failed { reason, .. }) => format!(
            "<p class=\"signin health bad\">The sign-in did not finish: {}</p>{button}",
            esc(&reason)
        ),
        None => button,
    }
}
