//! Helpers shared by the integration tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};
use teams_presence::config::{Settings, Sources};

mod world;
pub use world::{World, TENANT};

/// Tracing output only with `TEST_LOG=1`.
pub fn init_logging() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if std::env::var("TEST_LOG").is_ok_and(|v| v == "1") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter("debug,hyper=info,reqwest=info,h2=info")
                .with_test_writer()
                .try_init();
        }
    });
}

/// Settings from pairs, never from the process environment.
/// The settings a cloud-role test starts from: an app registration with a secret in
/// `tenant`, the fake Entra ID and Graph at their URLs, and a token encryption key.
pub fn cloud_pairs<'a>(tenant: &'a str, entra: &'a str, graph: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
        ("AZURE_CLIENT_SECRET", "test-secret"),
        ("AZURE_TENANT_ID", tenant),
        ("AZURE_AUTHORITY_HOST", entra),
        ("GRAPH_ENDPOINT", graph),
        (
            "TOKEN_ENCRYPTION_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ),
    ]
}

pub fn settings(pairs: &[(&str, &str)]) -> Settings {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::parse(&Sources::from_map(map)).expect("test settings parse")
}

/// Builds a payload-mode invocation body exactly the way the Functions host does:
/// string and scalar metadata values JSON-encoded a second time, header values as arrays,
/// `Query` as an object whose values are plain strings.
pub fn host_http_invocation(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Value {
    let parsed = url::Url::parse(url).unwrap();
    let query: serde_json::Map<String, Value> = parsed
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), json!(v)))
        .collect();
    let mut hdrs = serde_json::Map::new();
    for (k, v) in headers {
        hdrs.insert((*k).to_owned(), json!([v]));
    }
    let double = |v: &str| Value::String(serde_json::to_string(v).unwrap());
    let mut req = json!({
        "Url": url,
        "Method": method,
        "Query": query.clone(),
        "Headers": hdrs.clone(),
        "Params": {},
        "Identities": [],
    });
    if !body.is_empty() {
        req["Body"] = json!(body);
    }
    let meta_query: serde_json::Map<String, Value> = query
        .iter()
        .map(|(k, v)| (k.clone(), double(v.as_str().unwrap())))
        .collect();
    json!({
        "Data": { "req": req },
        "Metadata": {
            "Query": meta_query,
            "Headers": hdrs,
            "sys": { "MethodName": double("fn"), "UtcNow": double("2026-11-23T01:00:00Z"), "RandGuid": double("6d0f0c1e-0000-0000-0000-000000000000") }
        }
    })
}

// The fakes start on ports of their own with the same two helpers.
pub use test_fakes::net::{free_port, wait_for_port};

/// One Azurite table server for the whole test binary, on a free port, in memory. A small
/// shell guard kills it when this test process exits.
pub struct Azurite {
    /// The connection string for it.
    pub connection_string: String,
    _child: Child,
}

/// Where the test command installs Azurite (`npm ci --prefix tests/azurite`).
fn azurite_bin() -> PathBuf {
    if let Ok(p) = std::env::var("AZURITE_TABLE_BIN") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/azurite/node_modules/.bin/azurite-table")
}

/// Starts Azurite once; panics with instructions when it is not installed.
pub fn azurite() -> &'static Azurite {
    static AZ: OnceLock<Azurite> = OnceLock::new();
    AZ.get_or_init(start_azurite)
}

/// Starts an Azurite of its own (for a test that must see only its own tables), in memory,
/// stopped when the returned value is dropped or this test process exits.
pub fn start_azurite() -> Azurite {
    let bin = azurite_bin();
    assert!(
        bin.exists(),
        "Azurite is not installed at {}: run `scripts/test.sh` (or `npm ci --prefix tests/azurite`)",
        bin.display()
    );
    let port = free_port();
    let me = std::process::id();
    let script = format!(
        "trap 'kill $child 2>/dev/null' EXIT; trap 'exit' TERM; \"$0\" --tableHost 127.0.0.1 --tablePort {port} --inMemoryPersistence --silent --skipApiVersionCheck --disableTelemetry --loose & child=$!; \
         while kill -0 {me} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.5; done"
    );
    let child = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg(&bin)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start Azurite");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        wait_for_port(addr, Duration::from_secs(30)),
        "Azurite did not start on {addr}"
    );
    Azurite {
        connection_string: format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        ),
        _child: child,
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        // SIGTERM to the shell guard: its exit trap stops Azurite with it.
        let _ = Command::new("kill")
            .args(["-TERM", &self._child.id().to_string()])
            .status();
        let _ = self._child.wait();
    }
}

/// Path of the built binary.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_teams-presence")
}

/// Stores a signed-in user directly (as auth-end would) with a seed refresh token that the
/// fake Entra knows, so background work can refresh it.
pub async fn sign_in_directly(
    app: &teams_presence::http::state::AppState,
    entra: &crate::fakes::entra::FakeEntra,
    oid: &str,
    tenant: &str,
) {
    let rt = format!("rt-seed-{oid}");
    entra.state.lock().unwrap().refresh_tokens.insert(
        rt.clone(),
        crate::fakes::entra::Person {
            oid: oid.into(),
            tid: tenant.into(),
            upn: format!("{oid}@contoso.example"),
            name: oid.into(),
        },
    );
    let tokens: teams_presence::clients::entra::TokenResponse = serde_json::from_value(
        json!({"access_token": "unused", "expires_in": 0, "refresh_token": rt}),
    )
    .unwrap();
    let id = teams_presence::clients::entra::Identity {
        user_id: oid.into(),
        tenant_id: tenant.into(),
        upn: format!("{oid}@contoso.example"),
        display_name: oid.into(),
    };
    app.tokens
        .store_sign_in(&id, &tokens, chrono::Utc::now())
        .await
        .unwrap();
}

/// The real binary with exactly `env` (nothing inherited) in `cwd`, as a user would run it.
pub fn command(args: &[&str], env: &[(String, String)], cwd: &std::path::Path) -> Command {
    let mut c = Command::new(binary());
    c.args(args).env_clear().current_dir(cwd);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// One `presence-refresh` invocation as the host sends it.
pub async fn presence_refresh(
    app: &teams_presence::http::state::AppState,
) -> (axum::http::StatusCode, Value) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let body = json!({"Data": {"timer": {"Schedule": {"AdjustForDST": true}, "IsPastDue": false}}, "Metadata": {}});
    let resp = teams_presence::host::handler::router(app.clone())
        .oneshot(
            axum::http::Request::post("/presence-refresh")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let v = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes())
        .unwrap_or(Value::Null);
    (status, v)
}
