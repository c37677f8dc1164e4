//! `teams-presence pbx ...`: the extension ↔ Teams user mapping, and `pbx run`, the PBX
//! sync as its own process next to a PBX (Teams changes from the topic, like `subscribe`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;
use chrono::Utc;

use crate::clients::servicebus::ReceivedMessage;
use crate::config::{ConfigError, Settings, StoreKind};
use crate::core::message::TopicMessage;
use crate::edge::Settle;
use crate::engine::context::Context;
use crate::engine::pbx::{Freshness, TeamsPresence};
use crate::engine::shutdown::{Stop, DRAIN_BOUND};
use crate::store::{PbxLinkRecord, PbxMappingRecord, Store};
use tokio_util::task::TaskTracker;

/// True for an Entra object id (a GUID), which needs no lookup.
fn is_object_id(s: &str) -> bool {
    uuid::Uuid::parse_str(s.trim()).is_ok()
}

/// Resolves a UPN or e-mail to an object id through Graph (app token, `User.ReadBasic.All`).
async fn resolve(ctx: &Context, user: &str) -> anyhow::Result<String> {
    if is_object_id(user) {
        return Ok(user.trim().to_ascii_lowercase());
    }
    let token = ctx.tokens.app_token(&ctx.settings.app.tenant).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot look up {user}: no app token ({e}); give an object id, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and a client credential with User.ReadBasic.All"
        )
    })?;
    ctx.graph
        .resolve_user(&token, user.trim())
        .await
        .with_context(|| format!("cannot find {user} in Microsoft Entra ID"))
}

fn valid_extension(ext: &str) -> Result<String, ConfigError> {
    let e = ext.trim();
    if e.is_empty()
        || e.len() > 32
        || !e
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-_.*#".contains(c))
    {
        return Err(ConfigError {
            setting: "EXT".into(),
            problem: format!(
                "{ext:?} is not an extension or number (letters, digits, + - _ . * #, up to 32)"
            ),
        });
    }
    Ok(e.to_owned())
}

/// `pbx map add EXT USER`.
pub async fn map_add(
    ctx: &Context,
    ext: &str,
    user: &str,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let extension = valid_extension(ext)?;
    let user_id = resolve(ctx, user).await?;
    let rec = PbxMappingRecord {
        extension: extension.clone(),
        user_id: user_id.clone(),
        user: user.trim().to_owned(),
        created_at: Utc::now(),
    };
    ctx.store.upsert(&rec).await?;
    writeln!(out, "{extension} → {user} ({user_id})")?;
    Ok(())
}

/// `pbx map remove EXT`.
pub async fn map_remove(store: &Store, ext: &str, out: &mut impl Write) -> anyhow::Result<()> {
    let extension = valid_extension(ext)?;
    match store.get::<PbxMappingRecord>("pbx", &extension).await? {
        None => anyhow::bail!("extension {extension} is not mapped"),
        Some(_) => {
            store
                .delete::<PbxMappingRecord>("pbx", &extension, None)
                .await?;
            let _ = store.delete::<PbxLinkRecord>("pbx", &extension, None).await;
            writeln!(out, "removed {extension}")?;
            Ok(())
        }
    }
}

/// `pbx map list`: the mapping with what the sync last saw and wrote.
pub async fn map_list(store: &Store, out: &mut impl Write) -> anyhow::Result<()> {
    let mut maps: Vec<PbxMappingRecord> = store
        .list::<PbxMappingRecord>()
        .await?
        .into_iter()
        .map(|v| v.value)
        .collect();
    maps.sort_by(|a, b| a.extension.cmp(&b.extension));
    if maps.is_empty() {
        writeln!(
            out,
            "no extensions mapped; add one with `teams-presence pbx map add EXT USER`"
        )?;
        return Ok(());
    }
    let links: Vec<PbxLinkRecord> = store
        .list::<PbxLinkRecord>()
        .await?
        .into_iter()
        .map(|v| v.value)
        .collect();
    writeln!(
        out,
        "{:<10} {:<36} {:<30} {:<10} {:<16} TEAMS",
        "EXTENSION", "USER ID", "USER", "LINE", "PBX STATUS"
    )?;
    for m in maps {
        let link = links.iter().find(|l| l.extension == m.extension);
        let field = |f: fn(&PbxLinkRecord) -> Option<String>| {
            link.and_then(f).unwrap_or_else(|| "-".into())
        };
        writeln!(
            out,
            "{:<10} {:<36} {:<30} {:<10} {:<16} {}",
            m.extension,
            m.user_id,
            m.user,
            field(|l| l.line.clone()),
            field(|l| l.profile.clone()),
            field(|l| l.teams.clone()),
        )?;
    }
    Ok(())
}

/// `pbx map import FILE.csv`: a header row with the columns `extension` and `user` (any
/// order, other columns ignored). Every row is checked and resolved first; nothing is
/// stored unless all rows are good.
pub async fn map_import(ctx: &Context, file: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let rows = parse_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let mut records = Vec::with_capacity(rows.len());
    for (line, ext, user) in rows {
        let extension = valid_extension(&ext)
            .map_err(|e| anyhow::anyhow!("{}:{line}: {}", file.display(), e.problem))?;
        let user_id = resolve(ctx, &user)
            .await
            .with_context(|| format!("{}:{line}", file.display()))?;
        records.push(PbxMappingRecord {
            extension,
            user_id,
            user,
            created_at: Utc::now(),
        });
    }
    for r in &records {
        ctx.store.upsert(r).await?;
    }
    writeln!(out, "imported {} mapping(s)", records.len())?;
    Ok(())
}

/// The rows of a mapping CSV: `(line number, extension, user)`.
pub fn parse_csv(text: &str) -> Result<Vec<(usize, String, String)>, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines
        .next()
        .ok_or("the file is empty; expected a header row with extension,user")?;
    let sep = if header.contains(';') && !header.contains(',') {
        ';'
    } else {
        ','
    };
    let cols: Vec<String> = split(header, sep)
        .iter()
        .map(|c| c.trim().trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    let find = |name: &str| cols.iter().position(|c| c == name);
    let (Some(e), Some(u)) = (find("extension"), find("user")) else {
        return Err(format!(
            "the header row must name the columns extension and user (found: {})",
            cols.join(", ")
        ));
    };
    let mut rows = Vec::new();
    for (i, l) in lines {
        let cells = split(l, sep);
        let get = |k: usize| {
            cells
                .get(k)
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
        };
        match (get(e), get(u)) {
            (Some(ext), Some(user)) => rows.push((i + 1, ext, user)),
            _ => {
                return Err(format!(
                    "line {}: needs both an extension and a user",
                    i + 1
                ))
            }
        }
    }
    Ok(rows)
}

/// Splits one CSV line, honouring double quotes.
fn split(line: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                if let Some(s) = out.last_mut() {
                    s.push('"');
                }
            }
            '"' => quoted = !quoted,
            c if c == sep && !quoted => out.push(String::new()),
            c => {
                if let Some(s) = out.last_mut() {
                    s.push(c)
                }
            }
        }
    }
    out
}

/// Opens the store the `pbx` commands use (SQLite under the data directory unless
/// `STORE=table`), with its tables.
pub async fn open_store(settings: &Settings, data_dir: &Path) -> anyhow::Result<Store> {
    let store = crate::store::open(settings, StoreKind::Sqlite, data_dir)?;
    store.ensure_tables().await?;
    Ok(store)
}

/// `pbx run`: the sync next to a PBX. Teams changes come from `PRESENCE_QUEUE` or
/// `PRESENCE_SUBSCRIPTION` (as for `subscribe`); with `--listen`, the generic adapter's
/// `POST /api/pbx/events` is served too.
pub async fn run(
    settings: Settings,
    data_dir: &Path,
    listen: Option<SocketAddr>,
    heartbeat: std::path::PathBuf,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    settings.require_pbx()?;
    settings.require_client_id()?;
    let (bus, options) = crate::edge::client_from(&settings)?;
    // The same heartbeat as `subscribe`, so `teams-presence healthcheck` works for this loop.
    let heartbeat = Some(heartbeat);
    let store = open_store(&settings, data_dir).await?;
    let state = crate::http::state::AppState::new(settings, store, crate::http::state::Mode::Serve)
        .with_pbx()?;
    let sync = state.pbx.clone().expect("PBX is set");
    // The other sinks (MQTT, webhook, WLED) see the same Teams changes.
    let fanout = crate::engine::sinks::Fanout::from_settings(
        &state.settings,
        crate::engine::applier::lights_from(&state.settings)?,
    );
    // One stop for the sync, the events route and the reconcile; the receive loop stops
    // first (its batch under way is finished), then they do within the bound.
    let stop = Stop::new();
    let tasks = TaskTracker::new();
    let (tx, teams) = tokio::sync::mpsc::unbounded_channel();
    tasks.spawn(crate::engine::pbx::run(
        sync,
        teams,
        state.settings.polling.interval,
        stop.token().clone(),
    ));
    if let Some(addr) = listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        tracing::info!(%addr, "PBX events accepted on /api/pbx/events");
        let router = crate::http::pbx::routes()
            .with_state(state.clone())
            .layer(crate::http::trace::layer());
        let stopped = stop.token().clone().cancelled_owned();
        tasks.spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await;
        });
    }
    // Heal like `subscribe`: the mapped users' current presence from the cloud at start and
    // every RECONCILE_INTERVAL, so a missed message cannot leave a phone on the wrong status.
    if let Some(r) = crate::edge::Reconcile::from_settings(&state.settings) {
        let (sync, tx) = (state.pbx.clone().expect("PBX is set"), tx.clone());
        let stopped = stop.token().clone();
        tasks.spawn(async move {
            let mut every = tokio::time::interval(r.every);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = stopped.cancelled() => return,
                }
                for user in sync.mapped_users().await {
                    match r.api.current(&user).await {
                        Ok(Some(body)) => {
                            if let Ok(TopicMessage::PresenceChanged(c)) = TopicMessage::parse(&body)
                            {
                                // What the cloud stored may be older than a message in flight:
                                // not a fresh read.
                                let t = TeamsPresence {
                                    user_id: c.user_id,
                                    presence: c.presence,
                                    freshness: Freshness::MayBeLate,
                                };
                                if tx.send(t).is_err() {
                                    return;
                                }
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(user_id = %user, error = %e, "cannot read the current presence")
                        }
                    }
                }
            }
        });
    }
    tracing::info!(
        from = bus.source().unwrap_or_default(),
        "PBX sync takes Teams changes from Service Bus"
    );
    // The edge's receive loop (transient/permanent split, jittered back-off, lock renewal,
    // the heartbeat), with the sync as its handler.
    let options = crate::edge::Options {
        heartbeat,
        ..options
    };
    let mut handler = TeamsChanges { fanout, tx };
    crate::edge::run_with(&bus, &options, &mut handler, shutdown).await?;
    let deadline = stop.begin(DRAIN_BOUND);
    crate::engine::shutdown::wait(&tasks, deadline, "the PBX sync").await;
    if let Some(f) = &handler.fanout {
        let dropped = f.drain(deadline).await;
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "stopping with changes the sinks did not take in time"
            );
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// `pbx run`'s [`crate::edge::Handler`]: every Teams change goes to the sync (and the other
/// sinks); nothing is held or refused, so every message is completed.
struct TeamsChanges {
    fanout: Option<crate::engine::sinks::Fanout>,
    tx: tokio::sync::mpsc::UnboundedSender<TeamsPresence>,
}

impl crate::edge::Handler for TeamsChanges {
    type Due = std::convert::Infallible;

    fn due(&mut self) -> impl std::future::Future<Output = Self::Due> + Send {
        std::future::pending()
    }

    async fn idle(&mut self, due: Self::Due) {
        match due {}
    }

    async fn handle(&mut self, batch: &[ReceivedMessage]) -> Vec<Settle> {
        for m in batch {
            let parsed = TopicMessage::parse(&m.body);
            if let (Some(f), Ok(msg)) = (&self.fanout, &parsed) {
                f.offer(msg);
            }
            if let Ok(TopicMessage::PresenceChanged(c)) = parsed {
                let _ = self.tx.send(TeamsPresence {
                    freshness: Freshness::of(c.source),
                    user_id: c.user_id,
                    presence: c.presence,
                });
            }
        }
        vec![Settle::Complete; batch.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_with_header_quotes_and_other_columns() {
        let csv = "\u{feff}Name,User,Extension\n\"Doe, Jane\",jane@contoso.com,101\n\nBob,bob@contoso.com,102\n";
        assert_eq!(
            parse_csv(csv).unwrap(),
            vec![
                (2, "101".into(), "jane@contoso.com".into()),
                (4, "102".into(), "bob@contoso.com".into())
            ]
        );
        assert!(parse_csv("").unwrap_err().contains("empty"));
        assert!(parse_csv("ext,user\n1,a")
            .unwrap_err()
            .contains("extension and user"));
        assert!(parse_csv("extension;user\n101;")
            .unwrap_err()
            .contains("line 2"));
    }

    #[test]
    fn extensions_are_checked() {
        assert!(valid_extension(" 101 ").is_ok());
        assert!(valid_extension("+41 44").is_err());
        assert!(valid_extension("").is_err());
        assert!(is_object_id("0f9a1c2e-3b4d-4e5f-8a9b-1c2d3e4f5a6b"));
        assert!(!is_object_id("jane@contoso.com"));
    }
}
