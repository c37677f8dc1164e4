//! The status page in a real headless browser (Debian's `chromium`, installed by the test
//! command): what a person sees, not just the HTML string.

use chrono::Utc;
use teams_presence::core::presence::{Observation, Presence, Source};
use teams_presence::http::state::{AppState, Mode};
use teams_presence::store::{sqlite::SqliteStore, Store};

use crate::fakes::entra::FakeEntra;
use crate::support;

fn chromium() -> String {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&path).exists(),
        "headless Chromium not found at {path}: run `scripts/test.sh` (it installs Debian's chromium) or set CHROMIUM"
    );
    path
}

/// Runs headless Chromium with the flags this machine needs (no sandbox as root, no
/// background networking) and returns its stdout.
fn headless(args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn the_status_page_shows_the_user_and_their_presence_in_a_browser() {
    let entra = FakeEntra::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(SqliteStore::open(&dir.path().join("s.sqlite3")).unwrap());
    let app = AppState::new(
        support::settings(&[
            ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
            ("AZURE_AUTHORITY_HOST", &entra.url),
            (
                "TOKEN_ENCRYPTION_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ),
            ("HUE_BRIDGE", "192.168.1.20"),
            ("HUE_APPLICATION_KEY", "hue-key-not-to-be-shown"),
            ("HUE_TARGETS", "light:1"),
        ]),
        store,
        Mode::Serve,
    );
    support::sign_in_directly(&app, &entra, "ada", "tenant-1").await;
    let obs = Observation {
        user_id: "ada".into(),
        tenant_id: "tenant-1".into(),
        presence: Presence::new("Busy", "InACall"),
        source: Source::Notification,
        observed_at: Utc::now() - chrono::Duration::minutes(12),
        graph_sequence: None,
        item_digest: None,
    };
    teams_presence::engine::pipeline::record(&app.store, &obs)
        .await
        .unwrap();
    // The lights as the sink would have left them: the bridge answered 3 s ago.
    teams_presence::engine::applier::set_status(&app.sink_status, |s| {
        s.description = "Hue bridge 192.168.1.20 (v2)".into();
        s.last_command = Some("ada: on, colour xy(0.701, 0.299), 100% brightness".into());
        s.last_command_at = Some(Utc::now() - chrono::Duration::seconds(3));
        s.last_answer_at = s.last_command_at;
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let router = teams_presence::serve::router(app)
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let shot = dir.path().join("status.png");
    let (dom, shot_arg) = (url.clone(), format!("--screenshot={}", shot.display()));
    let dom = tokio::task::spawn_blocking(move || headless(&["--dump-dom", &dom]))
        .await
        .unwrap();
    // The rendered DOM has the person, their presence and the lamp-coloured dot.
    assert!(dom.contains("data-user-id=\"ada\""), "{dom}");
    // In words, for how long (the script redid it in the browser), the raw value on hover.
    assert!(dom.contains(">In a call</span>"), "{dom}");
    assert!(dom.contains("title=\"Busy / InACall\""), "{dom}");
    assert!(dom.contains("data-rel=\"for\""), "{dom}");
    assert!(dom.contains(">for 12 min</time>"), "{dom}");
    // The dot is the lamp's own colour: red for a call. The legend lists every colour.
    assert!(dom.contains("background:#ff0000"), "a call is red: {dom}");
    assert!(dom.contains("What the lamp colours mean"), "{dom}");
    assert!(dom.contains("Sign-in required"), "{dom}");
    // The sink's health in one line.
    assert!(dom.contains("Bridge answered <time"), "{dom}");
    assert!(dom.contains(" s ago</time>"), "{dom}");
    assert!(dom.contains("polling every 30 s"), "{dom}");
    // Settings still missing are listed, and no secret shows.
    assert!(dom.contains("AZURE_CLIENT_SECRET"), "{dom}");
    assert!(!dom.contains("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"));
    assert!(!dom.contains("hue-key-not-to-be-shown"));
    // A phone-sized screenshot renders.
    tokio::task::spawn_blocking(move || headless(&["--window-size=390,844", &shot_arg, &url]))
        .await
        .unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.len() > 5_000 && png.starts_with(b"\x89PNG"),
        "screenshot of {} bytes",
        png.len()
    );
    // `STATUS_PAGE_SCREENSHOT=path` keeps the picture (docs/status-page.png was made so).
    if let Ok(keep) = std::env::var("STATUS_PAGE_SCREENSHOT") {
        std::fs::write(keep, &png).unwrap();
    }
}

/// Issue 13: the status shows everyone's presence, so from another machine it answers 401
/// without a credential, and nothing personal is in the answer.
#[tokio::test]
async fn the_status_refuses_a_remote_peer_without_a_credential_and_shows_nothing_personal() {
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::{header, Request, StatusCode};
    use tower::ServiceExt;

    let entra = FakeEntra::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(SqliteStore::open(&dir.path().join("s.sqlite3")).unwrap());
    let mut app = AppState::new(
        support::settings(&[
            ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
            ("AZURE_AUTHORITY_HOST", &entra.url),
            (
                "TOKEN_ENCRYPTION_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ),
        ]),
        store,
        Mode::Serve,
    );
    app.admin_token = Some(secrecy::SecretString::from("admin-token-1234"));
    support::sign_in_directly(&app, &entra, "ada", "tenant-1").await;
    let obs = Observation {
        user_id: "ada".into(),
        tenant_id: "tenant-1".into(),
        presence: Presence::new("Busy", "InACall"),
        source: Source::Notification,
        observed_at: Utc::now(),
        graph_sequence: None,
        item_digest: None,
    };
    teams_presence::engine::pipeline::record(&app.store, &obs)
        .await
        .unwrap();
    let router = teams_presence::serve::router(app);
    let call = |path: &str, peer: &str, auth: Option<&str>| {
        let mut req = Request::get(path);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let mut req = req.body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo::<std::net::SocketAddr>(peer.parse().unwrap()));
        let router = router.clone();
        async move {
            let resp = router.oneshot(req).await.unwrap();
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, headers, String::from_utf8_lossy(&body).into_owned())
        }
    };
    for path in ["/", "/api/status"] {
        for peer in ["192.168.1.50:5000", "[2001:db8::7]:443"] {
            let (status, _, body) = call(path, peer, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} from {peer}");
            for personal in ["ada", "contoso", "Busy", "InACall", "call"] {
                assert!(!body.contains(personal), "{path}: {personal} in {body}");
            }
            let (status, _, _) = call(path, peer, Some("Bearer wrong")).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        // Loopback, or the admin token from elsewhere: served.
        let (status, _, body) = call(path, "127.0.0.1:40000", None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(body.contains("ada@contoso.example"), "{body}");
        let (status, _, _) = call(path, "192.168.1.50:5000", Some("Bearer admin-token-1234")).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    // ?token= once: a redirect without the token, and a cookie the phone keeps.
    let (status, headers, _) = call("/?token=admin-token-1234", "192.168.1.50:5000", None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // Relative (issue 30): the page may sit below a path prefix (Home Assistant's ingress).
    assert_eq!(headers[header::LOCATION], "./");
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.starts_with("presence_token=admin-token-1234;")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    // The webhook routes stay open to the world (Graph must reach them).
    let (status, _, _) = call("/api/health", "192.168.1.50:5000", None).await;
    assert_eq!(status, StatusCode::OK);
}

/// A request to `serve`'s router from `peer`, as the connection info `serve` attaches.
async fn call_from(
    router: &axum::Router,
    req: axum::http::Request<axum::body::Body>,
    peer: &str,
) -> (axum::http::StatusCode, axum::http::HeaderMap, String) {
    use tower::ServiceExt;
    let mut req = req;
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo::<std::net::SocketAddr>(
            peer.parse().unwrap(),
        ));
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// `serve` as the Home Assistant add-on runs it: INGRESS_PROXY is the Supervisor's address,
/// Graph is unreachable (loopback port 9), Entra ID is the fake.
async fn add_on_app(entra: &FakeEntra, dir: &std::path::Path) -> AppState {
    let store = Store::Sqlite(SqliteStore::open(&dir.join("s.sqlite3")).unwrap());
    store.ensure_tables().await.unwrap();
    let mut app = AppState::new(
        support::settings(&[
            ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
            ("AZURE_AUTHORITY_HOST", &entra.url),
            ("GRAPH_ENDPOINT", "http://127.0.0.1:9/"),
            ("INGRESS_PROXY", "172.30.32.2"),
            (
                "TOKEN_ENCRYPTION_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ),
        ]),
        store,
        Mode::Serve,
    );
    app.admin_token = Some(secrecy::SecretString::from("admin-token-1234"));
    app
}

/// Issue 30: behind Home Assistant's ingress the page answers the Supervisor's proxy without a
/// token (Home Assistant signed the person in), nobody else on the add-on network, whatever
/// headers they send; and every link is relative, so it works below the ingress path.
#[tokio::test]
async fn the_page_answers_the_ingress_proxy_only_and_links_relatively() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};

    let entra = FakeEntra::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = add_on_app(&entra, dir.path()).await;
    support::sign_in_directly(&app, &entra, "ada", "tenant-1").await;
    let router = teams_presence::serve::router(app);

    for path in ["/", "/api/status"] {
        let get = || Request::get(path).body(Body::empty()).unwrap();
        let (status, _, body) = call_from(&router, get(), "172.30.32.2:41234").await;
        assert_eq!(status, StatusCode::OK, "{path} from the ingress proxy");
        assert!(body.contains("ada@contoso.example"), "{body}");
        // Another add-on (or anything else on the network) dressed up as the proxy.
        for peer in [
            "172.30.33.7:5000",
            "172.30.32.1:5000",
            "[::ffff:172.30.33.7]:5000",
        ] {
            let forged = Request::get(path)
                .header("x-forwarded-for", "172.30.32.2")
                .header("x-remote-user-id", "0123456789abcdef0123456789abcdef")
                .header("x-remote-user-name", "admin")
                .body(Body::empty())
                .unwrap();
            let (status, _, body) = call_from(&router, forged, peer).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} from {peer}");
            assert!(!body.contains("ada"), "{body}");
        }
    }
    let (_, _, page) = call_from(
        &router,
        Request::get("/").body(Body::empty()).unwrap(),
        "172.30.32.2:41234",
    )
    .await;
    for absolute in ["href=\"/", "action=\"/", "src=\"/"] {
        assert!(!page.contains(absolute), "{absolute} in {page}");
    }
    assert!(page.contains("action=\"api/auth/device\""), "{page}");
}

/// Issue 30: "Sign in with a code" on the page runs the device-code flow: the page shows the
/// code and Microsoft's address, then who signed in; the user is stored. The button's POST is
/// guarded like the page and carries the page's form token.
#[tokio::test]
async fn signing_in_with_a_code_from_the_page_shows_the_code_then_who_signed_in() {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};

    let entra = FakeEntra::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = add_on_app(&entra, dir.path()).await;
    let store = app.store.clone();
    let router = teams_presence::serve::router(app);
    let page = || Request::get("/").body(Body::empty()).unwrap();
    let post = |token: &str| {
        Request::post("/api/auth/device")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("form_token={token}")))
            .unwrap()
    };

    let (_, _, html) = call_from(&router, page(), "172.30.32.2:41234").await;
    assert!(html.contains("Sign in with a code"), "{html}");
    let token = html
        .split("name=\"form_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries a form token")
        .to_owned();

    // Not through the guard: another peer without a credential.
    let (status, _, _) = call_from(&router, post(&token), "172.30.33.7:5000").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Through the guard, but not from the page (a cross-site form cannot know the token).
    let (status, _, _) = call_from(&router, post("forged"), "127.0.0.1:5000").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, _, html) = call_from(&router, page(), "127.0.0.1:5000").await;
    assert!(
        !html.contains("ABCD-1234"),
        "a refused POST started nothing"
    );

    let (status, headers, _) = call_from(&router, post(&token), "172.30.32.2:41234").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "../../");
    let (_, _, html) = call_from(&router, page(), "172.30.32.2:41234").await;
    assert!(
        html.contains("ABCD-1234") && html.contains("https://microsoft.com/devicelogin"),
        "{html}"
    );
    // A second press while the code is valid shows the same code, starts nothing new.
    let (status, _, _) = call_from(&router, post(&token), "172.30.32.2:41234").await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // The fake answers pending, slow down, then the tokens (about 8 s of polling).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, _, html) = call_from(&router, page(), "172.30.32.2:41234").await;
        if html.contains("Signed in as Pi Owner") {
            assert!(!html.contains("ABCD-1234"), "the used code is gone");
            break;
        }
        assert!(
            !html.contains("did not finish"),
            "the sign-in failed: {html}"
        );
        assert!(std::time::Instant::now() < deadline, "no sign-in: {html}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let users = store
        .list::<teams_presence::store::UserRecord>()
        .await
        .unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].value.user_id, "device-user-oid");
}
