//! One test world: the fakes a test needs, a store, the settings that point at them, and
//! the actions tests take in it (sign people in, build the handler or `serve`'s state, run a
//! `presence-refresh`, map a PBX extension, serve the app on a socket of its own, run the
//! real binary).
//!
//! Built with `World::builder()`, asking only for what the test uses, then `start()`:
//!
//! ```ignore
//! let w = World::builder().service_bus_rest().start().await;
//! let app = w.handler_at(t0());
//! w.sign_in(&app, "alice").await;
//! w.graph.set("alice", "Busy", "InACall");
//! let (status, body) = w.presence_refresh(&app).await;
//! ```
//!
//! Settings are read when an app is built (`app`, `handler_at`), so a test may change one
//! with `set` after the fakes have started and their URLs are known. Every world has the
//! fake Entra ID and Graph and a SQLite store in a temporary directory that lives as long as
//! the world.

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use teams_presence::clients::graph::client::GraphClient;
use teams_presence::config::{PublishMode, Settings};
use teams_presence::engine::context::Clock;
use teams_presence::http::state::{AppState, Mode};
use teams_presence::store::{sqlite::SqliteStore, PbxMappingRecord, Store};

use crate::fakes::entra::FakeEntra;
use crate::fakes::graph::{FakeGraph, Subscriptions};
use crate::fakes::graph_presence::PresenceWrites;
use crate::fakes::pbx_receiver::FakePbxReceiver;
use crate::fakes::servicebus::FakeServiceBus;
use crate::fakes::threecx::{self, FakeThreeCx};
use crate::support;

/// The tenant a world signs people into unless the test names another.
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// Which fake Graph a world runs: they differ in what they enforce and record.
#[derive(Clone, Copy, PartialEq, Eq)]
enum GraphKind {
    /// Presence reads, batches and throttling.
    Plain,
    /// Plus presence writes (sessions, aggregation, the record of aggregate changes).
    PresenceWrites,
    /// Plus subscriptions, their rules and their validation handshake.
    Subscriptions,
}

/// What a world is to hold, set before anything starts.
pub struct Builder {
    graph: GraphKind,
    app_token: Option<(String, String)>,
    service_bus_rest: bool,
    pbx_receiver: bool,
    threecx: bool,
    public_socket: bool,
    store: Option<Store>,
    tenant: String,
    pairs: Vec<(String, String)>,
}

impl Builder {
    /// The fake Graph that also takes presence writes (`World::writes`).
    pub fn presence_writes(mut self) -> Self {
        self.graph = GraphKind::PresenceWrites;
        self
    }

    /// The fake Graph that also manages subscriptions (`World::subscriptions`).
    pub fn subscriptions(mut self) -> Self {
        self.graph = GraphKind::Subscriptions;
        self
    }

    /// A loopback socket for the app, bound now so that `PUBLIC_BASE_URL` can name it
    /// (Graph's validation handshake calls it); `World::serve_public` serves on it.
    pub fn public_socket(mut self) -> Self {
        self.public_socket = true;
        self
    }

    /// An app-only token the presence-writes Graph accepts for `app_id`.
    pub fn app_token(mut self, token: &str, app_id: &str) -> Self {
        self.app_token = Some((token.to_owned(), app_id.to_owned()));
        self
    }

    /// A fake Service Bus topic (10 deliveries before dead-lettering) that changes are
    /// published to over REST (`PUBLISH_MODE=rest`), not through the output binding.
    pub fn service_bus_rest(mut self) -> Self {
        self.service_bus_rest = true;
        self
    }

    /// Publishing over REST (`PUBLISH_MODE=rest`) to a Service Bus topic the test started
    /// itself (an edge's), rather than one of the world's own.
    pub fn publish_rest_to(self, bus: &FakeServiceBus) -> Self {
        let pairs = rest_publishing(bus);
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.settings(&pairs)
    }

    /// This store instead of a SQLite file of the world's own (Azurite, or a store behind a
    /// fault proxy).
    pub fn store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// A loopback receiver standing in for a hosted PBX's HTTP API (`World::receiver`).
    pub fn pbx_receiver(mut self) -> Self {
        self.pbx_receiver = true;
        self
    }

    /// A fake 3CX V20 (XAPI, Call Control socket) as the world's PBX (`PBX=3cx` and its
    /// URL and client credentials), `World::threecx`.
    pub fn threecx(mut self) -> Self {
        self.threecx = true;
        self
    }

    /// The tenant people sign into (and `AZURE_TENANT_ID`).
    pub fn tenant(mut self, tenant: &str) -> Self {
        self.tenant = tenant.to_owned();
        self
    }

    /// Settings on top of the cloud ones (a later value for the same name wins).
    pub fn settings(mut self, pairs: &[(&str, &str)]) -> Self {
        self.pairs
            .extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// Starts the fakes and opens the store.
    pub async fn start(self) -> World {
        support::init_logging();
        let entra = FakeEntra::start().await;
        let (graph, writes, subscriptions) = match self.graph {
            GraphKind::Plain => (FakeGraph::start().await, None, None),
            GraphKind::PresenceWrites => {
                let (g, w) = FakeGraph::start_with_presence_writes().await;
                (g, Some(w), None)
            }
            GraphKind::Subscriptions => {
                let (g, s) = FakeGraph::start_with_subscriptions().await;
                (g, None, Some(s))
            }
        };
        if let Some((token, app_id)) = &self.app_token {
            writes
                .as_ref()
                .expect("an app token is for the presence-writes Graph")
                .register_app_token(token, app_id);
        }
        let dir = tempfile::tempdir().unwrap();
        let store = match self.store {
            Some(store) => store,
            None => Store::Sqlite(SqliteStore::open(&dir.path().join("world.sqlite3")).unwrap()),
        };
        // The app registration, the fakes' URLs, a token key, and the cadence these tests
        // assume, stated rather than inherited from a default.
        let mut pairs: Vec<(String, String)> =
            support::cloud_pairs(&self.tenant, &entra.url, &graph.url)
                .iter()
                .chain(&[("POLL_INTERVAL", "30")])
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let service_bus = if self.service_bus_rest {
            let sb = FakeServiceBus::start(10).await;
            pairs.extend(
                rest_publishing(&sb)
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v)),
            );
            Some(sb)
        } else {
            None
        };
        let receiver = if self.pbx_receiver {
            Some(FakePbxReceiver::start().await)
        } else {
            None
        };
        let threecx = if self.threecx {
            let pbx = FakeThreeCx::start().await;
            pairs.extend(
                [
                    ("PBX", "3cx"),
                    ("PBX_3CX_URL", pbx.url.as_str()),
                    ("PBX_3CX_CLIENT_ID", threecx::CLIENT_ID),
                    ("PBX_3CX_CLIENT_SECRET", threecx::SECRET),
                ]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
            );
            Some(pbx)
        } else {
            None
        };
        let public = if self.public_socket {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            pairs.push(("PUBLIC_BASE_URL".to_owned(), base.clone()));
            Some((Mutex::new(Some(listener)), base))
        } else {
            None
        };
        pairs.extend(self.pairs);
        let graph_client = GraphClient::new(
            &url::Url::parse(&graph.url).unwrap(),
            StdDuration::from_secs(5),
        );
        World {
            tenant: self.tenant,
            entra,
            graph,
            graph_client,
            writes,
            subscriptions,
            service_bus,
            public,
            receiver,
            threecx,
            store,
            pairs,
            dir,
        }
    }
}

/// The fakes, the store and the settings of one test.
pub struct World {
    /// The tenant people sign into.
    pub tenant: String,
    /// The fake Entra ID (sign-in, refresh tokens, signing keys).
    pub entra: FakeEntra,
    /// The fake Graph.
    pub graph: FakeGraph,
    graph_client: GraphClient,
    writes: Option<PresenceWrites>,
    subscriptions: Option<Arc<Mutex<Subscriptions>>>,
    service_bus: Option<FakeServiceBus>,
    /// The app's own socket (until served) and its base URL.
    public: Option<(Mutex<Option<tokio::net::TcpListener>>, String)>,
    receiver: Option<FakePbxReceiver>,
    threecx: Option<FakeThreeCx>,
    /// The store every app of this world shares (a restart keeps only the store).
    pub store: Store,
    pairs: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl World {
    /// A world with the fake Entra ID, the plain fake Graph and SQLite, until asked for more.
    pub fn builder() -> Builder {
        Builder {
            graph: GraphKind::Plain,
            app_token: None,
            service_bus_rest: false,
            pbx_receiver: false,
            threecx: false,
            public_socket: false,
            store: None,
            tenant: TENANT.to_owned(),
            pairs: Vec::new(),
        }
    }

    /// The presence-writes side of the fake Graph.
    pub fn writes(&self) -> &PresenceWrites {
        self.writes
            .as_ref()
            .expect("this world's Graph takes no presence writes: build it with .presence_writes()")
    }

    /// The subscriptions the fake Graph holds.
    pub fn subscriptions(&self) -> &Arc<Mutex<Subscriptions>> {
        self.subscriptions
            .as_ref()
            .expect("this world's Graph has no subscriptions: build it with .subscriptions()")
    }

    /// The base URL of the app's own socket (`PUBLIC_BASE_URL` unless a setting replaced it).
    pub fn base(&self) -> &str {
        &self.public_socket().1
    }

    /// Serves `router` on the app's own socket, from now until the test ends.
    pub fn serve_public(&self, router: axum::Router) {
        let listener = self
            .public_socket()
            .0
            .lock()
            .unwrap()
            .take()
            .expect("the public socket is served once");
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    }

    fn public_socket(&self) -> &(Mutex<Option<tokio::net::TcpListener>>, String) {
        self.public
            .as_ref()
            .expect("this world has no socket of its own: build it with .public_socket()")
    }

    /// The fake Service Bus topic.
    pub fn service_bus(&self) -> &FakeServiceBus {
        self.service_bus
            .as_ref()
            .expect("this world has no Service Bus: build it with .service_bus_rest()")
    }

    /// The fake PBX's HTTP receiver.
    pub fn receiver(&self) -> &FakePbxReceiver {
        self.receiver
            .as_ref()
            .expect("this world has no PBX receiver: build it with .pbx_receiver()")
    }

    /// The fake 3CX.
    pub fn threecx(&self) -> &FakeThreeCx {
        self.threecx
            .as_ref()
            .expect("this world has no 3CX: build it with .threecx()")
    }

    /// Our Graph client pointed at the fake Graph.
    pub fn graph_client(&self) -> &GraphClient {
        &self.graph_client
    }

    /// Sets (or replaces) one setting for the apps built from now on.
    pub fn set(&mut self, name: &str, value: &str) {
        self.pairs.push((name.to_owned(), value.to_owned()));
    }

    /// The world's settings as the app reads them.
    pub fn settings(&self) -> Settings {
        let pairs: Vec<(&str, &str)> = self
            .pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        support::settings(&pairs)
    }

    /// A fresh app in `mode` over the world's store, on the real clock.
    pub fn app(&self, mode: Mode) -> AppState {
        AppState::new(self.settings(), self.store.clone(), mode)
    }

    /// The state the handler binary builds at its start (`host::startup::build_state`:
    /// the store and publisher the settings name, Key Vault and certificates included).
    pub async fn host_state(&self) -> AppState {
        teams_presence::host::startup::build_state(
            self.settings(),
            &teams_presence::host::startup::Startup::default(),
        )
        .await
        .unwrap()
    }

    /// The world's temporary directory (files a setting names go here).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The real binary with the world's settings as its whole environment (nothing
    /// inherited), in the world's directory, as a user would run it.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        support::command(args, &self.pairs, self.dir.path())
    }

    /// A fresh handler process over the world's store (a restart keeps only the store), on
    /// a manual clock at `now`, publishing straight to Service Bus when `PUBLISH_MODE=rest`.
    pub fn handler_at(&self, now: DateTime<Utc>) -> AppState {
        let settings = self.settings();
        let rest = settings.service_bus.publish_mode == PublishMode::Rest;
        let mut app = AppState::new(settings, self.store.clone(), Mode::Handler);
        app.ctx.clock = Clock::manual(now);
        if rest {
            app = app.with_direct_publishing().unwrap();
        }
        app
    }

    /// Signs `oid` in as auth-end would, with a refresh token the fake Entra ID knows.
    pub async fn sign_in(&self, app: &AppState, oid: &str) {
        support::sign_in_directly(app, &self.entra, oid, &self.tenant).await;
    }

    /// One `presence-refresh` invocation as the host sends it.
    pub async fn presence_refresh(&self, app: &AppState) -> (axum::http::StatusCode, Value) {
        support::presence_refresh(app).await
    }

    /// Maps a PBX extension to a Teams user, as `pbx map add` stores it.
    pub async fn map_extension(&self, extension: &str, user_id: &str, user: &str) {
        self.store.ensure_tables().await.unwrap();
        self.store
            .upsert(&PbxMappingRecord {
                extension: extension.into(),
                user_id: user_id.into(),
                user: user.into(),
                created_at: Utc::now(),
            })
            .await
            .unwrap();
    }
}

/// The settings that publish over REST to `bus`.
fn rest_publishing(bus: &FakeServiceBus) -> [(&'static str, String); 3] {
    [
        ("PUBLISH_MODE", "rest".to_owned()),
        ("ServiceBusConnection", bus.connection_string()),
        ("SERVICEBUS_ENDPOINT", bus.url.clone()),
    ]
}
