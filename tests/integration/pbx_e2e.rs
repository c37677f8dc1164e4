//! PBX ↔ Teams sync end to end, as an admin runs it: `teams-presence pbx map add`, then
//! `teams-presence serve` with `PBX=3cx`, against the fake 3CX V20 (Call Control WebSocket,
//! XAPI), the fake Graph that learns presence writes (sessions, aggregation, our own writes
//! coming back in its reads) and the fake Entra ID. The real binary, production code paths.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, World};

const USER: &str = "6b1f4f7e-7d3b-4b8e-9a61-2f5c0d1e3a10";
const TENANT: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const CLIENT: &str = "11111111-2222-3333-4444-555555555555";

struct Serve(Child, u16);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_serve(w: &World) -> Serve {
    let port = support::free_port();
    let log = std::fs::File::create(w.dir().join("serve.log")).unwrap();
    let child = w
        .command(&[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            "data",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    assert!(support::wait_for_port(
        format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(20)
    ));
    Serve(child, port)
}

async fn wait_until(
    what: &str,
    timeout: Duration,
    cwd: &std::path::Path,
    mut ok: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    while !ok() {
        if start.elapsed() > timeout {
            let log = std::fs::read_to_string(cwd.join("serve.log")).unwrap_or_default();
            panic!("{what}: not within {timeout:?}\n--- serve log ---\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_cx_calls_make_teams_busy_and_teams_calls_put_the_phone_on_away_without_fighting_the_person(
) {
    let w = World::builder()
        .presence_writes()
        .threecx()
        .tenant(TENANT)
        .settings(&[
            ("AZURE_CLIENT_ID", CLIENT),
            ("AZURE_CLIENT_SECRET", "app-secret"),
            ("POLL_INTERVAL", "1"),
            ("PBX_STABLE_SECONDS", "1"),
            ("PBX_HOLD_SECONDS", "2"),
            ("PBX_PROFILE_POLL_SECONDS", "1"),
            ("RUST_LOG", "info"),
        ])
        .start()
        .await;
    let (teams, pbx, cwd) = (w.writes(), w.threecx(), w.dir());
    teams.set_client_session(USER, Some(("Available", "Available")));

    // The admin maps extension 101 to the Teams user (an object id: no lookup needed).
    let out = w
        .command(&["pbx", "map", "add", "101", USER, "--data-dir", "data"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = w
        .command(&["pbx", "map", "list", "--data-dir", "data"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(USER));

    let serve = start_serve(&w);
    // Connected: the Call Control socket is up once the first token was fetched and the
    // profiles have been read.
    wait_until("3CX connected", Duration::from_secs(10), cwd, || {
        pbx.token_requests() > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // 1. A call on the desk phone: Teams shows Busy / In a call within 2 s.
    let call = pbx.start_call("101", "0441234567");
    let took = wait_until(
        "Teams Busy/InACall from a 3CX call",
        Duration::from_secs(5),
        cwd,
        || {
            teams.app_sessions(USER) == [CLIENT]
                && teams.aggregate(USER) == ("Busy".into(), "InACall".into())
        },
    )
    .await;
    assert!(
        took < Duration::from_secs(2),
        "Teams followed the PBX call after {took:?}"
    );
    assert_eq!(teams.aggregate(USER), ("Busy".into(), "InACall".into()));
    // Our own Busy comes back through Graph reads: it must not reach the phone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        pbx.patches().is_empty(),
        "our echo reached the PBX: {:?}",
        pbx.patches()
    );

    // 2. Hang-up: cleared after the hold-down (2 s), not before.
    let hung_up = Instant::now();
    pbx.hang_up("101", call);
    wait_until(
        "session cleared after hang-up",
        Duration::from_secs(8),
        cwd,
        || teams.app_sessions(USER).is_empty(),
    )
    .await;
    assert!(
        hung_up.elapsed() >= Duration::from_millis(1900),
        "cleared before the hold-down: {:?}",
        hung_up.elapsed()
    );
    assert_eq!(
        teams.aggregate(USER),
        ("Available".into(), "Available".into())
    );

    // Let a poll see the cleared state (a Teams call that starts in the very same second as
    // our session ends is indistinguishable from our own Busy arriving late).
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 3. A Teams call: the extension goes Away (it was Available), then back.
    teams.set_client_session(USER, Some(("Busy", "InACall")));
    wait_until(
        "3CX Away during a Teams call",
        Duration::from_secs(10),
        cwd,
        || pbx.user("101").profile == "Away",
    )
    .await;
    teams.set_client_session(USER, Some(("Available", "Available")));
    wait_until(
        "3CX back to Available",
        Duration::from_secs(15),
        cwd,
        || pbx.user("101").profile == "Available",
    )
    .await;
    let patches = pbx.patches().len();
    assert_eq!(patches, 2, "one write each way: {:?}", pbx.patches());

    // 4. Issue 28, item 11, on the timeline: right after our Available landed (before
    // a profile poll could show it), the person sets Away on the phone while Teams is
    // Available; 15 s later a Teams call, which ends. Their Away must stay: it was once
    // taken for ours (the sync still believed its own Available), set "again" during the
    // call and PATCHed back to Available about 6 s after it.
    pbx.set_profile_by_hand("101", "Away");
    tokio::time::sleep(Duration::from_secs(15)).await;
    teams.set_client_session(USER, Some(("Busy", "InACall")));
    tokio::time::sleep(Duration::from_secs(5)).await;
    teams.set_client_session(USER, Some(("Available", "Available")));
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        pbx.patches().len(),
        patches,
        "the person's own Away was overridden: {:?}",
        pbx.patches()
    );
    assert_eq!(pbx.user("101").profile, "Away");

    // The status page's JSON shows the extension (loopback).
    let status: serde_json::Value =
        reqwest::get(format!("http://127.0.0.1:{}/api/status", serve.1))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(
        status["pbx"]["extensions"][0]["extension"], "101",
        "{status}"
    );
    drop(serve);
}
