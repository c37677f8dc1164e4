//! The command line: parse, load settings, call into the library, turn failures into one
//! line and an exit code (2 for configuration, 1 for everything else). No panics reach the
//! user and no error prints a secret.

pub mod busylight;
pub mod doctor;
pub mod hue;
pub mod logging;
pub mod login;
pub mod pbx;
pub mod users;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{ConfigError, Settings, Sources, StoreKind};

/// Microsoft Teams presence on your lights: Azure Functions custom handler, edge subscriber
/// and standalone server in one binary.
#[derive(Debug, Parser)]
#[command(name = "teams-presence", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// TOML file with settings (the environment wins over it).
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct DataDirArg {
    /// Where the SQLite store and generated keys live.
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".teams-presence",
        global = true
    )]
    data_dir: PathBuf,
}

/// `pbx` subcommands.
#[derive(Debug, Subcommand)]
enum PbxCommand {
    /// Run the sync next to a PBX: Teams changes from PRESENCE_QUEUE or PRESENCE_SUBSCRIPTION,
    /// Graph written with the app credential.
    Run {
        /// Also accept `POST /api/pbx/events` (generic adapter) on this address.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// The extension ↔ Teams user mapping.
    Map {
        #[command(subcommand)]
        command: PbxMapCommand,
    },
}

/// `pbx map` subcommands.
#[derive(Debug, Subcommand)]
enum PbxMapCommand {
    /// Map an extension (or number) to a Teams user: an object id, a UPN or an e-mail.
    Add {
        /// The extension as the PBX spells it.
        ext: String,
        /// Object id, UPN or e-mail address (looked up once through Graph).
        user: String,
    },
    /// Remove an extension's mapping.
    Remove {
        /// The extension.
        ext: String,
    },
    /// List the mapping with what the sync last saw.
    List,
    /// Import a CSV with a header row naming the columns `extension` and `user`.
    Import {
        /// The CSV file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Azure Functions custom handler (started by host.json).
    Handler,
    /// Standalone all-in-one server on the embedded SQLite store.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7071")]
        listen: SocketAddr,
        #[command(flatten)]
        data: DataDirArg,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Edge subscriber: Service Bus topic subscription to Hue lights.
    Subscribe {
        #[command(flatten)]
        config: ConfigArg,
        /// Where the last applied sequence per user is kept (edge-state.json).
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Exit 0 while the local `subscribe` loop is alive (its heartbeat file is fresh), 1 with
    /// the reason otherwise: for Docker's HEALTHCHECK or a systemd timer.
    Healthcheck {
        /// Oldest heartbeat still counted as alive, in seconds. The idle loop beats every
        /// 30 s; after a network failure it may wait up to 75 s before the next receive.
        #[arg(long, value_name = "SECONDS", default_value_t = 120)]
        max_age: u64,
        #[command(flatten)]
        data: DataDirArg,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Device-code sign-in for `serve` on a headless machine.
    Login {
        #[command(flatten)]
        data: DataDirArg,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// USB busylights (Luxafor, Kuando, Embrava): list them, or show test colours.
    Busylight {
        #[command(subcommand)]
        command: BusylightCommand,
    },
    /// Philips Hue bridge tools.
    Hue {
        #[command(subcommand)]
        command: HueCommand,
    },
    /// List signed-in users, or remove one.
    Users {
        #[command(subcommand)]
        command: Option<UsersCommand>,
        #[command(flatten)]
        data: DataDirArg,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Check configuration and reachability of every configured dependency.
    Doctor {
        #[command(flatten)]
        data: DataDirArg,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// PBX ↔ Teams presence sync: the extension mapping, and the sync as its own process.
    Pbx {
        #[command(subcommand)]
        command: PbxCommand,
        #[command(flatten)]
        data: DataDirArg,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Assemble a deployable Functions folder (host.json, function folders, this binary).
    Package {
        /// Which functions.
        #[arg(value_enum)]
        set: SetArg,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Executable to ship (default: this one).
        #[arg(long)]
        binary: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SetArg {
    Cloud,
    Edge,
}

#[derive(Debug, Subcommand)]
enum HueCommand {
    /// Create an application key (press the bridge's link button first).
    Pair,
    /// Find bridges on the LAN.
    Discover,
    /// List lights, rooms and zones.
    List,
    /// Show every configured presence colour on the targets in turn.
    Test,
}

#[derive(Debug, Subcommand)]
enum BusylightCommand {
    /// List the supported lights plugged in.
    List,
    /// Show red, yellow, green and off on every light in turn.
    Test,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// List users (the default).
    List,
    /// Remove a user and everything kept for them.
    Remove {
        /// The user's object id.
        id: String,
    },
}

/// A failure, split by exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A setting is wrong or missing (exit 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `doctor` found problems (exit 1; the problems were printed).
    #[error("doctor found problems")]
    ChecksFailed,
    /// `healthcheck`: the loop is not alive (exit 1, also for a configuration problem:
    /// Docker reserves exit code 2).
    #[error("unhealthy: {0}")]
    Unhealthy(String),
    /// Anything else (exit 1).
    #[error("{0:#}")]
    Other(anyhow::Error),
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<ConfigError>() {
            Ok(c) => CliError::Config(c),
            Err(e) => CliError::Other(e),
        }
    }
}

fn load(config: Option<&Path>) -> Result<Settings, ConfigError> {
    let (path, explicit) = match config {
        Some(p) => (p.to_owned(), true),
        None => (PathBuf::from("teams-presence.toml"), false),
    };
    let settings = Settings::parse(&Sources::from_env_and_file(Some(&path), explicit)?)?;
    // Only the handler can run with a setting App Service left unresolved.
    settings.refuse_unresolved_references()?;
    Ok(settings)
}

/// `HEALTHCHECK_FILE`, else `heartbeat` in the data directory (next to `edge-state.json`).
fn heartbeat_file(settings: &Settings, data_dir: &Path) -> PathBuf {
    settings
        .edge
        .healthcheck_file
        .clone()
        .unwrap_or_else(|| data_dir.join("heartbeat"))
}

fn load_env_only() -> Result<Settings, ConfigError> {
    Settings::parse(&Sources::from_env_and_file(None, false)?)
}

fn init_tracing(default: &str) -> Result<(), ConfigError> {
    logging::init(default, false)
}

/// Entry point used by `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `subscribe` waits on one long poll and one bridge at a time: one thread does it, and on
    // a Pi each worker thread would cost its stack and its allocator arena (docs/performance.md,
    // the edge footprint). The servers keep a worker per core.
    let mut builder = match cli.command {
        Command::Subscribe { .. } | Command::Healthcheck { .. } => {
            tokio::runtime::Builder::new_current_thread()
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, always: a nested error may carry line breaks.
            let line = e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("error: {line}");
            match e {
                CliError::Config(_) => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}

/// The process's one stop: begun by SIGTERM or Ctrl-C, watched by the long-running roles
/// only (a one-shot command keeps Ctrl-C's default). Each role stops taking work, finishes
/// what is under way and drains within
/// [`crate::engine::shutdown::DRAIN_BOUND`]).
fn stop_on_signal() -> crate::engine::shutdown::Stop {
    let stop = crate::engine::shutdown::Stop::new();
    let begun = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        begun.begin(crate::engine::shutdown::DRAIN_BOUND);
    });
    stop
}

/// Resolves when `stop` begins (what the roles' `shutdown` futures are).
fn stopped(stop: &crate::engine::shutdown::Stop) -> impl std::future::Future<Output = ()> {
    stop.token().clone().cancelled_owned()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Handler => {
            logging::init("info", true)?;
            // The HTTP clients are built on first use; their TLS context (the CA bundle's
            // parse) is made beside the start, not before the readiness probe is answered.
            crate::clients::tls::warm_up();
            let settings = load_env_only()?;
            let port = settings.require_custom_handler_port()?;
            // Bind first, build the state behind the readiness probe (host::startup).
            let stop = stop_on_signal();
            crate::host::startup::serve(settings, port, stopped(&stop)).await?;
            Ok(())
        }
        Command::Serve {
            listen,
            data,
            config,
        } => {
            init_tracing("info")?;
            let settings = load(config.config.as_deref())?;
            let state = crate::serve::build_state(settings, &data.data_dir).await?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
            let stop = stop_on_signal();
            crate::serve::run(listener, state, stopped(&stop)).await?;
            Ok(())
        }
        Command::Subscribe { config, data } => {
            init_tracing("info")?;
            let settings = load(config.config.as_deref())?;
            let (client, mut options) = crate::edge::client_from(&settings)?;
            options.heartbeat = Some(heartbeat_file(&settings, &data.data_dir));
            let state_file = data.data_dir.join("edge-state.json");
            let stop = stop_on_signal();
            let Some(mut applier) =
                crate::edge::wait_for_bridge(&settings, Some(state_file), stopped(&stop)).await?
            else {
                return Ok(());
            };
            // MQTT, webhook, WLED: started once the applier stands (not on every bridge retry).
            let lights = crate::engine::applier::lights_from(&settings)?;
            applier = applier.with_fanout(crate::engine::sinks::Fanout::from_settings(
                &settings, lights,
            ));
            crate::edge::run(&client, &mut applier, &options, stopped(&stop)).await?;
            // The batch under way was applied and settled; the other sinks deliver theirs.
            if let Some(f) = applier.fanout() {
                let dropped = f
                    .drain(stop.begin(crate::engine::shutdown::DRAIN_BOUND))
                    .await;
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
        Command::Healthcheck {
            max_age,
            data,
            config,
        } => {
            let settings =
                load(config.config.as_deref()).map_err(|e| CliError::Unhealthy(e.to_string()))?;
            let path = heartbeat_file(&settings, &data.data_dir);
            let last =
                crate::files::last_beat(&path).map_err(|e| CliError::Unhealthy(e.to_string()))?;
            let age = (chrono::Utc::now() - last).num_seconds().max(0);
            if age > i64::try_from(max_age).unwrap_or(i64::MAX) {
                return Err(CliError::Unhealthy(format!(
                    "the last heartbeat in {} is {age} s old (more than {max_age} s): the loop is stuck or stopped",
                    path.display()
                )));
            }
            println!("ok: heartbeat {age} s ago");
            Ok(())
        }
        Command::Login { data, config } => {
            init_tracing("warn")?;
            let settings = load(config.config.as_deref())?;
            settings.require_client_id()?;
            let mut out = std::io::stdout();
            crate::cli::login::run(
                settings,
                &data.data_dir,
                &mut out,
                std::time::Duration::from_secs(3600),
            )
            .await?;
            Ok(())
        }
        Command::Busylight { command } => {
            init_tracing("warn")?;
            match command {
                BusylightCommand::List => crate::cli::busylight::list()?,
                BusylightCommand::Test => crate::cli::busylight::test().await?,
            }
            Ok(())
        }
        Command::Hue { command } => {
            init_tracing("warn")?;
            let settings = load(None)?;
            match command {
                HueCommand::Pair => crate::cli::hue::pair(&settings).await?,
                HueCommand::Discover => crate::cli::hue::discover().await?,
                HueCommand::List => crate::cli::hue::list(&settings).await?,
                HueCommand::Test => crate::cli::hue::test(&settings).await?,
            }
            Ok(())
        }
        Command::Users {
            command,
            data,
            config,
        } => {
            init_tracing("warn")?;
            let settings = load(config.config.as_deref())?;
            let store = crate::store::open(&settings, StoreKind::Sqlite, &data.data_dir)?;
            store.ensure_tables().await.map_err(anyhow::Error::from)?;
            match command.unwrap_or(UsersCommand::List) {
                UsersCommand::List => crate::cli::users::print_list(&store, &settings).await?,
                UsersCommand::Remove { id } => {
                    crate::cli::users::remove(&store, &settings, &id).await?
                }
            }
            Ok(())
        }
        Command::Doctor { data, config } => {
            init_tracing("error")?;
            let settings = load(config.config.as_deref())?;
            let mut out = std::io::stdout();
            let ok =
                crate::cli::doctor::run(&settings, &data.data_dir, StoreKind::Sqlite, &mut out)
                    .await?;
            if ok {
                Ok(())
            } else {
                Err(CliError::ChecksFailed)
            }
        }
        Command::Pbx {
            command,
            data,
            config,
        } => {
            let settings = load(config.config.as_deref())?;
            match command {
                PbxCommand::Run { listen } => {
                    init_tracing("info")?;
                    let heartbeat = heartbeat_file(&settings, &data.data_dir);
                    let stop = stop_on_signal();
                    crate::cli::pbx::run(
                        settings,
                        &data.data_dir,
                        listen,
                        heartbeat,
                        stopped(&stop),
                    )
                    .await?;
                }
                PbxCommand::Map { command } => {
                    init_tracing("warn")?;
                    let store = crate::cli::pbx::open_store(&settings, &data.data_dir).await?;
                    let mut out = std::io::stdout();
                    match command {
                        PbxMapCommand::List => crate::cli::pbx::map_list(&store, &mut out).await?,
                        PbxMapCommand::Remove { ext } => {
                            crate::cli::pbx::map_remove(&store, &ext, &mut out).await?
                        }
                        PbxMapCommand::Add { ext, user } => {
                            let ctx = crate::engine::context::Context::new(settings, store);
                            crate::cli::pbx::map_add(&ctx, &ext, &user, &mut out).await?
                        }
                        PbxMapCommand::Import { file } => {
                            let ctx = crate::engine::context::Context::new(settings, store);
                            crate::cli::pbx::map_import(&ctx, &file, &mut out).await?
                        }
                    }
                }
            }
            Ok(())
        }
        Command::Package { set, out, binary } => {
            let binary = match binary {
                Some(b) => b,
                None => std::env::current_exe()
                    .map_err(|e| anyhow::anyhow!("cannot find this executable: {e}"))?,
            };
            let set = match set {
                SetArg::Cloud => crate::host::functions::FunctionSet::Cloud,
                SetArg::Edge => crate::host::functions::FunctionSet::Edge,
            };
            for p in crate::host::functions::package(set, &out, &binary)? {
                println!("{}", p.display());
            }
            Ok(())
        }
    }
}
