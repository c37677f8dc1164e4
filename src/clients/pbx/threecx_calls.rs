//! 3CX V20 Call Control: per-extension line states from `GET /callcontrol` and the
//! `/callcontrol/ws` WebSocket, turned into [`PbxEvent`]s.
//!
//! How 3CX reports calls (its call-control samples are the reference):
//! * `GET /callcontrol` lists the *monitored* DNs with their participants (call legs);
//!   nothing else ever appears, on REST or the socket.
//! * The socket sends `{"sequence":n,"event":{"event_type":k,"entity":"/callcontrol/{dn}/participants/{id}",...}}`
//!   with `event_type` 0 Upsert (GET the entity path for the new object), 1 Remove (the
//!   leg ended), 2 DTMF and 3 prompt-playback-finished (both ignored here).
//! * Participant `status` is `Dialing`, `Ringing` or `Connected` in 3CX's samples; how
//!   hold looks is not published, so any other status counts as in a call.
//! * 3CX's own types (`server/src/types.ts` of 3cx/call-control-examples) make a DN's `dn`
//!   and a participant's `id` optional and nullable. Such an entry cannot be followed (no
//!   extension to map, no entity path to match a Remove to), so it is skipped; one of them
//!   never fails the whole snapshot, which would loop the socket on reconnects.
//! * Nothing tells a client that a connection went half-open (a NAT or firewall dropping
//!   the flow, a PBX restarting without a close): 3CX's sample pings every 5 s. So do we,
//!   and a socket that has shown no sign of life (no frame, no pong) for
//!   [`Heartbeat::timeout`] counts as lost: we reconnect and resync with a snapshot.
//!
//! The task keeps a participant map per DN and emits [`PbxEvent::Line`] only when a DN's
//! derived [`LineState`] changes. After every (re)connect it emits a
//! [`PbxEvent::Snapshot`] which consumers diff; they never replay writes because of it.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

pub use super::threecx::Heartbeat;
use super::threecx::{ThreeCx, ThreeCxError};
use crate::core::backoff::Backoff;
use crate::core::pbx::model::{Extension, ExtensionSnapshot, LineState, PbxEvent};

/// First reconnect delay; doubles per failure up to [`BACKOFF_CAP`].
const BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest reconnect delay (the step jitter draws from).
const BACKOFF_CAP: Duration = Duration::from_secs(30);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One monitored DN as `GET /callcontrol` returns it (devices are not needed here). 3CX's
/// `DNInfo` has every field optional and nullable.
#[derive(Debug, Clone, Deserialize)]
pub struct DnInfo {
    /// The DN (extension number); `None` when 3CX sent none.
    #[serde(default)]
    pub dn: Option<String>,
    /// Its call legs; empty when idle. Entries that are not participants are dropped.
    #[serde(default, deserialize_with = "lenient_list")]
    pub participants: Vec<Participant>,
}

/// One call leg on a DN (the fields this adapter reads). 3CX's `CallParticipant` has `id`
/// optional and `status` nullable.
#[derive(Debug, Clone, Deserialize)]
pub struct Participant {
    /// The participant id, the last segment of its entity path; `None` when 3CX sent none.
    #[serde(default)]
    pub id: Option<i64>,
    /// `Dialing`, `Ringing`, `Connected`, or something not yet seen.
    #[serde(default)]
    pub status: Option<String>,
}

/// A JSON list read element by element: `null` is empty, and an element that does not
/// read as `T` is left out instead of failing the whole list.
fn lenient_list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let raw = Option::<Vec<serde_json::Value>>::deserialize(d)?.unwrap_or_default();
    Ok(raw
        .into_iter()
        .filter_map(|v| match serde_json::from_value(v) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::debug!(error = %e, "skipping an unreadable 3CX call-control entry");
                None
            }
        })
        .collect())
}

/// Reads a `GET /callcontrol` body: a list of DNs, each read on its own (see
/// `lenient_list`). Only a body that is not a list at all is an error.
pub fn parse_call_control(body: &[u8]) -> Result<Vec<DnInfo>, ThreeCxError> {
    #[derive(Deserialize)]
    #[serde(transparent)]
    struct List(#[serde(deserialize_with = "lenient_list")] Vec<DnInfo>);
    serde_json::from_slice::<List>(body)
        .map(|l| l.0)
        .map_err(|e| ThreeCxError::Protocol(format!("callcontrol: {e}")))
}

#[derive(Deserialize)]
struct Frame {
    event: FrameEvent,
}

#[derive(Deserialize)]
struct FrameEvent {
    event_type: u8,
    entity: String,
}

/// The line state of a DN from its participants' statuses: any connected (or unknown) leg
/// is a call, else dialing, else ringing, else idle.
pub fn line_state<'a>(statuses: impl IntoIterator<Item = Option<&'a str>>) -> LineState {
    let mut best = LineState::Idle;
    for status in statuses {
        let this = match status.map(str::trim) {
            Some(s) if s.eq_ignore_ascii_case("Dialing") => LineState::Dialing,
            Some(s) if s.eq_ignore_ascii_case("Ringing") => LineState::Ringing,
            // "Connected", and anything 3CX may add (hold?): still on the phone.
            _ => LineState::InCall,
        };
        if rank(this) > rank(best) {
            best = this;
        }
    }
    best
}

fn rank(s: LineState) -> u8 {
    match s {
        LineState::InCall => 3,
        LineState::Dialing => 2,
        LineState::Ringing => 1,
        _ => 0,
    }
}

/// `/callcontrol/{dn}/participants/{id}` → `(dn, id)`; `None` for other entities.
pub fn participant_entity(entity: &str) -> Option<(&str, &str)> {
    let mut parts = entity.trim_matches('/').split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("callcontrol"), Some(dn), Some("participants"), Some(id), None)
            if !dn.is_empty() && !id.is_empty() =>
        {
            Some((dn, id))
        }
        _ => None,
    }
}

/// Participants per DN and the line state last reported for each.
#[derive(Debug, Default)]
struct Lines {
    legs: BTreeMap<String, BTreeMap<String, Option<String>>>,
    reported: BTreeMap<String, LineState>,
}

impl Lines {
    /// Replaces everything with a fresh `GET /callcontrol`. A DN without a number and a
    /// participant without an id are skipped (3CX's types allow both): neither can be
    /// followed by the socket's entity paths.
    fn reset(&mut self, dns: &[DnInfo]) -> Vec<ExtensionSnapshot> {
        self.legs.clear();
        self.reported.clear();
        for d in dns {
            let Some(dn) = d.dn.as_deref().map(str::trim).filter(|dn| !dn.is_empty()) else {
                tracing::debug!("skipping a 3CX DN without a number");
                continue;
            };
            let legs = d
                .participants
                .iter()
                .filter_map(|p| Some((p.id?.to_string(), p.status.clone())))
                .collect();
            self.legs.insert(dn.to_owned(), legs);
            self.derive(dn);
        }
        self.reported
            .iter()
            .map(|(dn, line)| ExtensionSnapshot {
                extension: Extension(dn.clone()),
                line: *line,
                profile: None,
            })
            .collect()
    }

    fn upsert(&mut self, dn: &str, id: &str, status: Option<String>) -> Option<LineState> {
        self.legs
            .entry(dn.to_owned())
            .or_default()
            .insert(id.to_owned(), status);
        self.derive(dn)
    }

    fn remove(&mut self, dn: &str, id: &str) -> Option<LineState> {
        self.legs.get_mut(dn)?.remove(id);
        self.derive(dn)
    }

    /// Recomputes `dn`'s state; `Some` only when it differs from what was reported.
    fn derive(&mut self, dn: &str) -> Option<LineState> {
        let now = line_state(
            self.legs
                .get(dn)
                .into_iter()
                .flat_map(|m| m.values().map(Option::as_deref)),
        );
        let before = self.reported.insert(dn.to_owned(), now);
        (before != Some(now)).then_some(now)
    }
}

enum Exit {
    /// Shutdown or nobody listening: stop the task.
    Stop,
    /// The connection is gone; reconnect.
    Lost(String),
}

impl ThreeCx {
    /// `GET /callcontrol`: the monitored DNs and their call legs (entries 3CX left without
    /// a DN or a participant id are skipped, see [`parse_call_control`]).
    pub async fn call_control(&self) -> Result<Vec<DnInfo>, ThreeCxError> {
        let url = self.url("callcontrol")?;
        let resp = self
            .send("callcontrol", |h| h.get(url.clone()), &[])
            .await?;
        let body = resp
            .bytes()
            .await
            .map_err(|e| super::threecx::network("callcontrol", e))?;
        parse_call_control(&body)
    }

    /// Follows call state until `shutdown` is cancelled or
    /// `events` is closed: connects the socket, emits `Health{connected:true}` and a
    /// `Snapshot`, then a `Line` per change of a DN's line state. It pings the socket every
    /// [`Heartbeat::every`]; a socket silent for [`Heartbeat::timeout`] (half-open) counts as
    /// lost. When the connection is lost it emits `Health{connected:false}` and reconnects
    /// with exponential backoff (1 s doubling to 30 s, with jitter: [`Backoff`]), each time followed by a
    /// fresh `Snapshot`.
    pub async fn run_call_events(
        &self,
        events: mpsc::Sender<PbxEvent>,
        shutdown: CancellationToken,
    ) {
        let mut lines = Lines::default();
        let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_CAP);
        let mut connected: Option<bool> = None;
        loop {
            let session = async {
                // Socket first, then the snapshot: nothing can change unseen in between.
                let ws = self.connect_socket().await?;
                let dns = self.call_control().await?;
                Ok::<_, ThreeCxError>((ws, dns))
            };
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = events.closed() => return,
                r = session => r,
            };
            let why = match result {
                Ok((ws, dns)) => {
                    backoff.reset();
                    connected = Some(true);
                    tracing::info!(dns = dns.len(), "3CX call control connected");
                    let snapshot = PbxEvent::Snapshot {
                        extensions: lines.reset(&dns),
                        at: Utc::now(),
                    };
                    let up = PbxEvent::Health {
                        connected: true,
                        detail: "3CX call control connected".into(),
                    };
                    if events.send(up).await.is_err() || events.send(snapshot).await.is_err() {
                        return;
                    }
                    match self.pump(ws, &mut lines, &events, &shutdown).await {
                        Exit::Stop => return,
                        Exit::Lost(why) => why,
                    }
                }
                Err(e) => e.to_string(),
            };
            if connected != Some(false) {
                // Logged once per outage, not per retry.
                tracing::warn!(reason = %why, "3CX call control disconnected; reconnecting");
                connected = Some(false);
                let down = PbxEvent::Health {
                    connected: false,
                    detail: format!("3CX call control disconnected: {why}"),
                };
                if events.send(down).await.is_err() {
                    return;
                }
            } else {
                tracing::debug!(reason = %why, "3CX call control reconnect failed");
            }
            let delay = backoff.next_delay();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = events.closed() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn pump(
        &self,
        mut ws: Socket,
        lines: &mut Lines,
        events: &mpsc::Sender<PbxEvent>,
        shutdown: &CancellationToken,
    ) -> Exit {
        let beat = self.heartbeat();
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + beat.every, beat.every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Any frame at all (data, ping, pong) is a sign of life; silence past the timeout is a
        // half-open connection that would otherwise go unnoticed for ever.
        let mut alive_at = tokio::time::Instant::now();
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = ws.close(None).await;
                    return Exit::Stop;
                }
                _ = events.closed() => return Exit::Stop,
                _ = ping.tick() => {
                    let sent = ws.send(Message::Ping(Vec::<u8>::new().into()));
                    match tokio::time::timeout(beat.timeout, sent).await {
                        Ok(Ok(())) => continue,
                        Ok(Err(e)) => return Exit::Lost(format!("socket error: {e}")),
                        Err(_) => {
                            return Exit::Lost("3CX stopped taking our pings (half-open connection)".into())
                        }
                    }
                }
                _ = tokio::time::sleep_until(alive_at + beat.timeout) => {
                    return Exit::Lost(format!(
                        "no answer from 3CX for {} s (half-open connection)",
                        beat.timeout.as_secs_f32()
                    ));
                }
                m = ws.next() => m,
            };
            alive_at = tokio::time::Instant::now();
            let text = match msg {
                None | Some(Ok(Message::Close(_))) => {
                    return Exit::Lost("3CX closed the socket".into())
                }
                Some(Err(e)) => return Exit::Lost(format!("socket error: {e}")),
                Some(Ok(Message::Text(t))) => t,
                // Pongs only prove life; pings are answered by tungstenite on the next read.
                Some(Ok(_)) => continue,
            };
            let frame: Frame = match serde_json::from_str(text.as_str()) {
                Ok(f) => f,
                Err(e) => {
                    tracing::debug!(error = %e, "ignoring an unreadable 3CX frame");
                    continue;
                }
            };
            match self.apply(&frame.event, lines).await {
                Ok(Some(event)) => {
                    if events.send(event).await.is_err() {
                        return Exit::Stop;
                    }
                }
                Ok(None) => {}
                // The state is unknown now: resync through a reconnect and a snapshot.
                Err(e) => return Exit::Lost(e.to_string()),
            }
        }
    }

    /// Applies one socket event; `Some` when a DN's line state changed.
    async fn apply(
        &self,
        event: &FrameEvent,
        lines: &mut Lines,
    ) -> Result<Option<PbxEvent>, ThreeCxError> {
        let Some((dn, id)) = participant_entity(&event.entity) else {
            return Ok(None);
        };
        let changed = match event.event_type {
            0 => match self.participant(&event.entity).await? {
                Some(p) => lines.upsert(dn, id, p.status),
                // Gone before we asked: the leg has ended.
                None => lines.remove(dn, id),
            },
            1 => lines.remove(dn, id),
            _ => None,
        };
        Ok(changed.map(|state| PbxEvent::Line {
            extension: Extension(dn.to_owned()),
            state,
            at: Utc::now(),
        }))
    }

    /// GETs an entity path from an Upsert; `None` on 404.
    async fn participant(&self, entity: &str) -> Result<Option<Participant>, ThreeCxError> {
        let url = self.url(entity)?;
        let resp = self
            .send(
                "callcontrol participant",
                |h| h.get(url.clone()),
                &[StatusCode::NOT_FOUND],
            )
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        resp.json()
            .await
            .map(Some)
            .map_err(|e| ThreeCxError::Protocol(format!("callcontrol participant: {e}")))
    }

    /// Opens `/callcontrol/ws` with the shared token; a 401 on the upgrade replaces the
    /// token once and tries once more.
    async fn connect_socket(&self) -> Result<Socket, ThreeCxError> {
        let mut url = self.url("callcontrol/ws")?;
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme)
            .map_err(|()| ThreeCxError::Protocol("cannot make a WebSocket URL".into()))?;
        let token = self.bearer().await?;
        match self.handshake(&url, &token).await {
            Err(Handshake::Unauthorized) => {
                let token = self.replace_stale(&token).await?;
                self.handshake(&url, &token)
                    .await
                    .map_err(Handshake::into_error)
            }
            other => other.map_err(Handshake::into_error),
        }
    }

    async fn handshake(&self, url: &url::Url, token: &SecretString) -> Result<Socket, Handshake> {
        let mut req = url
            .as_str()
            .into_client_request()
            .map_err(|e| Handshake::Other(ThreeCxError::Protocol(e.to_string())))?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
            .map_err(|_| {
                Handshake::Other(ThreeCxError::Protocol("token is not a header".into()))
            })?;
        auth.set_sensitive(true);
        req.headers_mut().insert(header::AUTHORIZATION, auth);
        let connect = tokio_tungstenite::connect_async(req);
        match tokio::time::timeout(self.timeout(), connect).await {
            Err(_) => Err(Handshake::Other(ThreeCxError::Unreachable(
                "call control socket: timed out".into(),
            ))),
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(tungstenite::Error::Http(resp))) => match resp.status().as_u16() {
                401 => Err(Handshake::Unauthorized),
                403 => Err(Handshake::Other(ThreeCxError::NotLicensed(
                    "call control socket".into(),
                ))),
                s => Err(Handshake::Other(ThreeCxError::Unreachable(format!(
                    "call control socket: HTTP {s}"
                )))),
            },
            Ok(Err(e)) => Err(Handshake::Other(ThreeCxError::Unreachable(format!(
                "call control socket: {e}"
            )))),
        }
    }
}

enum Handshake {
    Unauthorized,
    Other(ThreeCxError),
}

impl Handshake {
    fn into_error(self) -> ThreeCxError {
        match self {
            Handshake::Unauthorized => {
                ThreeCxError::Unauthorized("call control socket: a fresh token was refused".into())
            }
            Handshake::Other(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_state_prefers_call_over_dialing_over_ringing() {
        let cases: &[(&[Option<&str>], LineState)] = &[
            (&[], LineState::Idle),
            (&[Some("Ringing")], LineState::Ringing),
            (&[Some("Dialing")], LineState::Dialing),
            (&[Some("Ringing"), Some("Dialing")], LineState::Dialing),
            (&[Some("Ringing"), Some("Connected")], LineState::InCall),
            (&[Some("SomethingNew")], LineState::InCall),
            (&[None], LineState::InCall),
        ];
        for (statuses, want) in cases {
            assert_eq!(line_state(statuses.iter().copied()), *want, "{statuses:?}");
        }
    }

    #[test]
    fn entities_other_than_participants_are_ignored() {
        assert_eq!(
            participant_entity("/callcontrol/101/participants/7"),
            Some(("101", "7"))
        );
        assert_eq!(participant_entity("/callcontrol/101/devices/x"), None);
        assert_eq!(participant_entity("/callcontrol/101"), None);
    }

    #[test]
    fn lines_report_only_changes() {
        let mut l = Lines::default();
        let snap = l.reset(&[DnInfo {
            dn: Some("101".into()),
            participants: vec![],
        }]);
        assert_eq!(snap[0].line, LineState::Idle);
        assert_eq!(
            l.upsert("101", "1", Some("Dialing".into())),
            Some(LineState::Dialing)
        );
        assert_eq!(l.upsert("101", "1", Some("Dialing".into())), None);
        assert_eq!(
            l.upsert("101", "1", Some("Connected".into())),
            Some(LineState::InCall)
        );
        assert_eq!(l.upsert("101", "2", Some("Ringing".into())), None);
        assert_eq!(l.remove("101", "1"), Some(LineState::Ringing));
        assert_eq!(l.remove("101", "2"), Some(LineState::Idle));
        assert_eq!(l.remove("101", "9"), None);
    }

    /// Issue 28, item 8. The shapes come from 3cx/call-control-examples `server/src/types.ts`:
    /// `DNInfo { dn?: string | null; participants?: CallParticipant[] | null }` and
    /// `CallParticipant { id?: number; status?: string | null; ... }`.
    #[test]
    fn a_snapshot_with_nullable_dns_and_participant_ids_keeps_everything_else() {
        let body = serde_json::json!([
            {"dn": "101", "type": "Wextension", "devices": null, "participants": [
                {"id": 7, "status": "Connected", "dn": "101", "callid": 1007, "legid": 1},
                {"status": "Connected", "dn": "101"},
                {"id": null, "status": null},
                "not a participant"
            ]},
            {"dn": null, "type": null, "devices": null, "participants": null},
            {"type": "Wqueue", "participants": []},
            {"dn": "102", "participants": null},
            42
        ]);
        let dns = parse_call_control(body.to_string().as_bytes()).unwrap();
        let mut l = Lines::default();
        let snap: Vec<(String, LineState)> = l
            .reset(&dns)
            .into_iter()
            .map(|e| (e.extension.0, e.line))
            .collect();
        assert_eq!(
            snap,
            [
                ("101".to_owned(), LineState::InCall),
                ("102".to_owned(), LineState::Idle)
            ]
        );
        // The leg with an id is followed: its Remove brings 101 back to idle.
        assert_eq!(l.remove("101", "7"), Some(LineState::Idle));
        assert!(parse_call_control(b"{\"error\":\"x\"}").is_err());
    }
}
