//! Issue 28, items 1–4: the Hue sink, the edge and the `hue` commands against fake bridges
//! loaded with a real bridge's layout (`tests/fixtures/hue/v2_resources.json`: 8 lights, 3 of
//! them colour temperature only, one unreachable, rooms and zones numbered through `id_v1`).

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{json, Value};
use teams_presence::clients::hue::{self, Address, HueSink};
use teams_presence::clients::servicebus::{self, ConnectionString};
use teams_presence::config::HueTarget;
use teams_presence::core::lights::LightMap;
use teams_presence::edge::{self, Options};
use teams_presence::engine::applier::Applier;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::fakes::hue::{Api, FakeHue, Layout, KEY as HUE_KEY};
use crate::fakes::servicebus::FakeServiceBus;

/// Light 3 (`/lights/112`): a colour lamp that answers.
const GOOD: &str = "24d60506-22e8-f564-cff5-c7b702b62504";
/// Light 4 (`/lights/120`): a colour lamp on a device with `connectivity_issue`.
const UNREACHABLE: &str = "1a49f893-e2fc-908a-9046-fa7629f1e770";
/// Light 5 (`/lights/40`): a colour lamp, told to fail in one test.
const OTHER: &str = "7049a389-288d-f789-b338-87fd2172a1fa";
/// Light 2 (`/lights/72`): colour temperature only, 153–454 mirek.
const WHITE: &str = "f427202e-d8cd-cb0e-479f-72955a2d7cbe";

fn presence(user: &str, seq: u32, availability: &str, activity: &str) -> Value {
    json!({
        "type": "presence.changed", "version": 1, "userId": user, "tenantId": "t",
        "availability": availability, "activity": activity, "source": "notification",
        "observedAt": format!("2026-11-22T10:{:02}:{:02}.000Z", seq / 60 % 60, seq % 60),
        "sequence": format!("{seq:020}-000000"),
    })
}

async fn sink(fake: &FakeHue, targets: &[HueTarget]) -> Result<HueSink, hue::HueError> {
    let address = Address::parse(&fake.url).unwrap();
    HueSink::connect(&address, &SecretString::from(HUE_KEY), targets).await
}

fn client(sb: &FakeServiceBus) -> servicebus::Client {
    let conn = ConnectionString::parse(&sb.connection_string()).unwrap();
    servicebus::Client::new(conn, Some(sb.url.parse().unwrap()), "presence")
        .unwrap()
        .subscription("pi")
}

/// The subscribe loop in the background.
struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Applier>,
}

impl Running {
    fn start(sb: &FakeServiceBus, mut applier: Applier) -> Self {
        let client = client(sb);
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let opts = Options {
                wait: Duration::from_secs(1),
                ..Options::default()
            };
            edge::run(&client, &mut applier, &opts, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
            applier
        });
        Self { stop, task }
    }

    async fn stop(self) -> Applier {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the loop stops on shutdown")
            .unwrap()
    }
}

/// The x of the colour a v2 PUT body carries.
fn x(p: &crate::fakes::hue::Put) -> Value {
    p.body["color"]["xy"]["x"].clone()
}

/// The default map's x for Busy (orange), Available (green), Away (yellow).
const BUSY_X: f64 = 0.6187;
const AVAILABLE_X: f64 = 0.1724;
const AWAY_X: f64 = 0.5143;

/// Waits (on tokio's clock) until `pred` holds, at most `limit`; returns how long it took.
async fn within(limit: Duration, what: &str, pred: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !pred() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

/// Sends Busy → Available → Away 6 s apart; after each, checks that `shown` shows it within
/// 2 s (tokio's clock).
async fn three_states_six_seconds_apart(sb: &FakeServiceBus, fake: &FakeHue, shown: &str) {
    for (seq, (av, ac, want)) in [
        ("Busy", "Busy", BUSY_X),
        ("Available", "Available", AVAILABLE_X),
        ("Away", "Away", AWAY_X),
    ]
    .into_iter()
    .enumerate()
    {
        let sent = Instant::now();
        sb.enqueue(presence("u1", seq as u32 + 1, av, ac));
        let took = within(
            Duration::from_secs(2),
            &format!("{av} on the lamp that answers"),
            || fake.puts_to(shown).last().map(x) == Some(json!(want)),
        )
        .await;
        println!("{av}: on the lamp that answers {took:?} after it was sent");
        tokio::time::sleep_until(sent + Duration::from_secs(6)).await;
    }
}

/// After the first PUT of the newest state to `path`, nothing else reached that lamp.
fn ends_on_away_and_never_goes_back(fake: &FakeHue, path: &str) {
    let puts = fake.puts_to(path);
    let first_away = puts
        .iter()
        .position(|p| x(p) == json!(AWAY_X))
        .unwrap_or_else(|| panic!("{path} never showed Away: {puts:?}"));
    for later in &puts[first_away..] {
        assert_eq!(
            x(later),
            json!(AWAY_X),
            "{path} went back to an older state after Away: {puts:?}"
        );
    }
}

/// Item 1, the issue's own sequence: one reachable and one unreachable light (the bridge
/// applies commands to it and answers 207 with "may not have effect"), Busy → Available →
/// Away 6 s apart. Each state reaches the good lamp at once, both end on Away, nothing is
/// abandoned or dead-lettered, and no older state comes back. On paused time: the two
/// minutes it watches for a late redelivery take no real time.
#[tokio::test(start_paused = true)]
async fn a_207_for_an_unplugged_bulb_is_success_and_both_lamps_end_on_the_newest_state() {
    let sb = FakeServiceBus::start(10).await;
    let fake = FakeHue::start_with(Api::V2, Layout::real_bridge()).await;
    let targets = [
        HueTarget::Light("112".into()),
        HueTarget::Light("120".into()),
    ];
    let applier = Applier::new(
        LightMap::default(),
        sink(&fake, &targets).await.unwrap(),
        vec![],
        None,
    );
    let running = Running::start(&sb, applier);
    let (good, unreachable) = (format!("/light/{GOOD}"), format!("/light/{UNREACHABLE}"));
    three_states_six_seconds_apart(&sb, &fake, &good).await;
    within(
        Duration::from_secs(2),
        "Away on the unreachable lamp",
        || fake.puts_to(&unreachable).last().map(x) == Some(json!(AWAY_X)),
    )
    .await;
    // Two minutes more: time for any redelivery of an older message to do harm.
    tokio::time::sleep(Duration::from_secs(120)).await;
    running.stop().await;
    ends_on_away_and_never_goes_back(&fake, &good);
    ends_on_away_and_never_goes_back(&fake, &unreachable);
    let (completed, abandoned, dead) =
        sb.with(|b| (b.completed.len(), b.abandoned, b.dead_lettered.len()));
    assert_eq!(
        (completed, abandoned, dead),
        (3, 0, 0),
        "completed, abandoned, dead-lettered"
    );
    assert!(
        fake.answers()
            .iter()
            .any(|(p, s)| *p == unreachable && *s == 207),
        "the bridge answered 207 for the unplugged bulb: {:?}",
        fake.answers()
    );
}

/// Item 1: a target the bridge refuses (HTTP 500 for that light alone) never holds back the
/// other one, the messages are completed, and when it takes commands again it gets the
/// newest state, never an older one.
#[tokio::test(start_paused = true)]
async fn a_refusing_target_never_holds_back_the_other_and_catches_up_with_the_newest_state() {
    let sb = FakeServiceBus::start(10).await;
    let fake = FakeHue::start_with(Api::V2, Layout::real_bridge()).await;
    let targets = [
        HueTarget::Light("112".into()),
        HueTarget::Light("40".into()),
    ];
    let applier = Applier::new(
        LightMap::default(),
        sink(&fake, &targets).await.unwrap(),
        vec![],
        None,
    );
    let (good, refusing) = (format!("/light/{GOOD}"), format!("/light/{OTHER}"));
    fake.refuse(&refusing, Some(500));
    let running = Running::start(&sb, applier);
    three_states_six_seconds_apart(&sb, &fake, &good).await;
    assert!(fake.puts_to(&refusing).is_empty());
    fake.refuse(&refusing, None);
    let took = within(
        Duration::from_secs(60),
        "the refusing lamp catching up",
        || fake.puts_to(&refusing).last().map(x) == Some(json!(AWAY_X)),
    )
    .await;
    println!("the refusing lamp showed Away {took:?} after it took commands again");
    tokio::time::sleep(Duration::from_secs(120)).await;
    running.stop().await;
    ends_on_away_and_never_goes_back(&fake, &good);
    let caught_up = fake.puts_to(&refusing);
    assert!(
        caught_up.iter().all(|p| x(p) == json!(AWAY_X)),
        "only the newest state once it answers: {caught_up:?}"
    );
    let (completed, abandoned, dead) =
        sb.with(|b| (b.completed.len(), b.abandoned, b.dead_lettered.len()));
    assert_eq!(
        (completed, abandoned, dead),
        (3, 0, 0),
        "completed, abandoned, dead-lettered"
    );
}

/// Item 2: Light 2 is colour temperature only (153–454 mirek). Every state reaches it as a
/// white it can show, each at its own brightness, on v2 and on v1 (the same lamp on a v1
/// bridge answers error 6 "parameter, xy, not available" to colour).
#[tokio::test]
async fn a_white_ambiance_lamp_gets_colour_temperature_and_a_brightness_per_state() {
    let states = LightMap::default().showcase();
    for api in [Api::V2, Api::V1] {
        let fake = FakeHue::start_with(api, Layout::real_bridge()).await;
        let mut sink = sink(&fake, &[HueTarget::Light("72".into())]).await.unwrap();
        for (name, state) in &states {
            sink.apply(state)
                .await
                .unwrap_or_else(|e| panic!("{api:?} {name}: {e}"));
        }
        let path = match api {
            Api::V2 => format!("/light/{WHITE}"),
            Api::V1 => "/lights/72/state".into(),
        };
        let puts = fake.puts_to(&path);
        // (state, mirek, brightness in percent); `None`: off.
        let want: &[(&str, Option<(u64, f64)>)] = &[
            ("Available", Some((153, 50.0))),
            ("Busy (calendar)", Some((454, 70.0))),
            ("In a meeting", Some((454, 70.0))),
            ("In a call", Some((454, 100.0))),
            ("Presenting", Some((454, 100.0))),
            ("Do not disturb", Some((153, 85.0))),
            ("Away", Some((419, 25.0))),
            ("Be right back", Some((419, 25.0))),
            ("Offline", None),
            ("Sign-in required", Some((153, 40.0))),
        ];
        // Repeats of the state already showing are not sent again.
        let mut sent: Vec<&(&str, Option<(u64, f64)>)> = Vec::new();
        for w in want {
            if sent.last().map(|l| l.1) != Some(w.1) {
                sent.push(w);
            }
        }
        assert_eq!(puts.len(), sent.len(), "{api:?}: {puts:?}");
        for (p, (name, w)) in puts.iter().zip(sent.iter().map(|w| (w.0, w.1))) {
            let b = &p.body;
            assert!(
                b.get("color").is_none() && b.get("xy").is_none(),
                "{api:?} {name}: {b}"
            );
            match (api, w) {
                (Api::V2, Some((mirek, bri))) => {
                    assert_eq!(b["color_temperature"]["mirek"], json!(mirek), "{name}: {b}");
                    assert_eq!(b["dimming"]["brightness"], json!(bri), "{name}: {b}");
                }
                (Api::V1, Some((mirek, bri))) => {
                    assert_eq!(b["ct"], json!(mirek), "{name}: {b}");
                    assert_eq!(b["bri"], json!(hue::v1::bri(bri)), "{name}: {b}");
                }
                (Api::V2, None) => assert_eq!(b["on"], json!({"on": false}), "{name}"),
                (Api::V1, None) => assert_eq!(b["on"], json!(false), "{name}"),
            }
        }
    }
}

/// Item 3: `room:N`, `zone:N` and `group:N` are v1 numbers; on a v2 bridge they map through
/// the rooms' and zones' `id_v1` ("/groups/N") to their grouped_light, as lights do.
#[tokio::test]
async fn room_zone_and_group_numbers_map_through_id_v1_on_a_v2_bridge() {
    let fake = FakeHue::start_with(Api::V2, Layout::real_bridge()).await;
    let targets = [
        HueTarget::Room("115".into()),
        HueTarget::Zone("128".into()),
        HueTarget::Group("0".into()),
    ];
    let mut sink = sink(&fake, &targets).await.unwrap();
    let off = teams_presence::core::lights::LightState::off();
    // group:0 holds the unplugged bulb: a 207, applied.
    sink.apply(&off).await.unwrap();
    let paths: Vec<String> = fake.puts().into_iter().map(|p| p.path).collect();
    assert_eq!(
        paths,
        [
            "/grouped_light/e7587e55-8538-65d5-0fcf-e9e9905bd016",
            "/grouped_light/77e33b2e-b8d5-53a4-200c-45ce3eb3dbd6",
            "/grouped_light/c3793415-1f6a-b694-2b5f-12ec5f37d265",
        ]
    );
}

/// Item 3: a target that is not on the bridge, or a room without a grouped_light, is named
/// when the sink starts.
#[tokio::test]
async fn a_target_that_does_not_exist_is_named() {
    let fake = FakeHue::start_with(Api::V2, Layout::real_bridge()).await;
    for (target, words) in [
        (HueTarget::Room("7".into()), "room:7"),
        (HueTarget::Light("999".into()), "light:999"),
        (HueTarget::Room("104".into()), "room:104"),
    ] {
        let e = sink(&fake, &[HueTarget::Light("112".into()), target])
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(words), "{e}");
    }
}

/// Item 4: the bridge's own words stay in the error.
#[tokio::test]
async fn the_bridges_error_text_is_kept() {
    let fake = FakeHue::start_with(Api::V2, Layout::real_bridge()).await;
    let mut sink = sink(&fake, &[HueTarget::Light("112".into())])
        .await
        .unwrap();
    fake.refuse(&format!("/light/{GOOD}"), Some(400));
    let e = sink
        .apply(&teams_presence::core::lights::LightState::off())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the bridge answered HTTP 400: refused by the test"),
        "{e}"
    );
}

/// Guard for the fixture itself: the facts the tests above lean on.
#[test]
fn the_real_bridge_layout_has_the_published_facts() {
    let v: Value = serde_json::from_str(include_str!("../fixtures/hue/v2_resources.json")).unwrap();
    let data = v["data"].as_array().unwrap();
    let lights: Vec<&Value> = data.iter().filter(|r| r["type"] == "light").collect();
    assert_eq!(lights.len(), 8);
    assert_eq!(
        lights.iter().filter(|l| l.get("color").is_none()).count(),
        3,
        "three colour-temperature-only lights"
    );
    assert!(data
        .iter()
        .any(|r| r["type"] == "zigbee_connectivity" && r["status"] == "connectivity_issue"));
    assert!(v["_source"].as_str().unwrap().contains("aiohue"));
}

/// Runs the binary with only the Hue settings (and dead Azure endpoints, so those checks
/// fail fast); its stdout.
async fn run_binary(args: &[&str], fake: &FakeHue, targets: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(crate::support::binary())
        .args(args)
        .env_clear()
        .env("HUE_BRIDGE", &fake.url)
        .env("HUE_APPLICATION_KEY", HUE_KEY)
        .env("HUE_TARGETS", targets)
        .env("AZURE_AUTHORITY_HOST", "http://127.0.0.1:9")
        .env("GRAPH_ENDPOINT", "http://127.0.0.1:9")
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("$ teams-presence {}\n{stdout}", args.join(" "));
    (out.status.code(), stdout)
}

/// Items 2 and 3: `hue list` on the real bridge's layout prints targets as HUE_TARGETS takes
/// them (v1 numbers), says what each lamp can show (three are white ambiance, one may not
/// answer), names a zone's lights, and marks rooms and zones without a grouped_light.
#[tokio::test]
async fn hue_list_says_what_each_target_can_show_and_marks_the_unusable_ones() {
    let fake = FakeHue::start_with(Api::V2, Layout::real_bridge()).await;
    let (code, out) = run_binary(&["hue", "list"], &fake, "").await;
    assert_eq!(code, Some(0), "{out}");
    let row = |target: &str| -> String {
        out.lines()
            .find(|l| l.split('\t').next() == Some(target))
            .unwrap_or_else(|| panic!("no {target} in\n{out}"))
            .to_owned()
    };
    assert!(row("light:72")
        .starts_with("light:72\tLight 2\twhite ambiance (2200–6540 K): cannot show colour"));
    assert!(row("light:63").contains("white ambiance (2020–6330 K)"));
    assert!(row("light:112").starts_with("light:112\tLight 3\tcolour"));
    assert!(row("light:120").contains(
        "connectivity_issue: the bridge takes commands for it, but they may not have effect"
    ));
    assert!(row("room:115")
        .starts_with("room:115\tRoom 8\troom, no lights: commands to it change nothing"));
    assert!(row("group:0").starts_with("group:0\tAll lights\tgroup, 8 lights"));
    assert!(row("# room:104").contains(
        "not a target: the bridge lists no grouped_light for this room, 4 lights (Light 3, Light 8, Light 7, Light 2)"
    ));
    assert!(row("# zone:105").contains("2 lights (Light 7, Light 2)"));
    // Working targets first, the marked ones after them.
    let first_marked = out.lines().position(|l| l.starts_with("# ")).unwrap();
    assert!(
        out.lines().skip(first_marked).all(|l| l.starts_with("# ")),
        "{out}"
    );
}

/// Items 2 and 3: `doctor` resolves every target on the real bridge's layout, says what each
/// can show (a white-ambiance lamp, a room by its number), warns about the unplugged bulb,
/// and names the targets the bridge does not have.
#[tokio::test]
async fn doctor_resolves_every_hue_target_and_names_the_missing_one() {
    let fake = FakeHue::start_with(Api::V2, Layout::real_bridge()).await;
    let (_, out) = run_binary(
        &["doctor", "--data-dir", "d"],
        &fake,
        "light:72,room:115,light:112,group:0",
    )
    .await;
    let hue: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.contains("Hue bridge"))
        .take(5)
        .collect();
    assert!(
        hue[0].starts_with("warn  Hue bridge: bridge http://127.0.0.1:"),
        "{out}"
    );
    assert!(hue[0].ends_with("(v2) accepts the key; targets:"), "{out}");
    assert!(
        hue[1].contains("light:72 (Light 2): white ambiance (2200–6540 K): cannot show colour"),
        "{out}"
    );
    assert!(
        hue[2].contains("room:115 (Room 8): no lights in it"),
        "{out}"
    );
    assert!(hue[3].contains("light:112 (Light 3): colour"), "{out}");
    assert!(
        hue[4].contains("group:0 (All lights): colour")
            && hue[4].contains("Light 4 (connectivity_issue)"),
        "{out}"
    );

    let (code, out) = run_binary(
        &["doctor", "--data-dir", "d"],
        &fake,
        "light:72,room:7,zone:105",
    )
    .await;
    assert_eq!(code, Some(1));
    let line = out.lines().find(|l| l.contains("Hue bridge")).unwrap();
    assert!(
        line.starts_with("FAIL  Hue bridge: bridge http://127.0.0.1:"),
        "{out}"
    );
    assert!(
        line.contains("room:7: no such room on this bridge (rooms: 92, 110, 103,"),
        "{out}"
    );
    assert!(
        line.contains("zone:105 (Zone 8): the bridge lists no grouped_light for this zone"),
        "{out}"
    );
    assert!(
        out.contains("fix: set HUE_TARGETS to entries `teams-presence hue list` prints"),
        "{out}"
    );
    assert!(!out.contains(HUE_KEY), "{out}");
}

/// Item 4: on a v1-only bridge a wrong key passes the public `/config` but not an
/// authorised call: `hue list` exits non-zero with the pairing hint.
#[tokio::test]
async fn a_wrong_key_on_a_v1_bridge_exits_with_the_pairing_hint() {
    let fake = FakeHue::start_with(Api::V1, Layout::real_bridge()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(crate::support::binary())
        .args(["hue", "list"])
        .env_clear()
        .env("HUE_BRIDGE", &fake.url)
        .env("HUE_APPLICATION_KEY", "a-key-the-bridge-never-issued")
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("$ teams-presence hue list (wrong key, v1 bridge)\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("run `teams-presence hue pair`"), "{stderr}");
    assert!(
        !stderr.contains("a-key-the-bridge-never-issued"),
        "{stderr}"
    );
}

/// Item 1: the bridge's warning for an unplugged bulb is kept per target (for the status page
/// and `hue test`) and goes once the lamp answers again.
#[tokio::test]
async fn a_207_is_a_warning_for_its_target_until_the_lamp_answers_again() {
    let fake = FakeHue::start_with(Api::V2, Layout::real_bridge()).await;
    let mut sink = sink(
        &fake,
        &[
            HueTarget::Light("112".into()),
            HueTarget::Light("120".into()),
        ],
    )
    .await
    .unwrap();
    let states = LightMap::default().showcase();
    sink.apply(&states[0].1).await.unwrap();
    assert_eq!(
        sink.problems(),
        ["light:120 (Light 4): device (light) has communication issues, command (.on.on) may not have effect"]
    );
    assert!(!sink.pending(), "applied: nothing to retry");
    // Light 4's device (Device 6) is back.
    fake.set_connectivity("51428b4a-5805-c25a-081e-f922bb76eb4f", "connected");
    sink.apply(&states[1].1).await.unwrap();
    assert!(sink.problems().is_empty(), "{:?}", sink.problems());
}

/// Item 1 in `serve`: a target that refuses its state does not hold back the others; the
/// status says which target it is (and which lamp the bridge warns about), and it gets the
/// newest state once it takes commands again.
#[tokio::test]
async fn serve_shows_a_refusing_target_in_its_status_and_retries_it_with_the_newest_state() {
    use teams_presence::core::message::TopicMessage;
    use teams_presence::http::state::{AppState, Mode};
    use teams_presence::store::{sqlite::SqliteStore, Store};

    let fake = FakeHue::start_with(Api::V2, Layout::real_bridge()).await;
    let refusing = format!("/light/{OTHER}");
    fake.refuse(&refusing, Some(500));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(SqliteStore::open(&dir.path().join("s.sqlite3")).unwrap());
    store.ensure_tables().await.unwrap();
    let app = AppState::new(
        crate::support::settings(&[
            ("HUE_BRIDGE", &fake.url),
            ("HUE_APPLICATION_KEY", HUE_KEY),
            ("HUE_TARGETS", "light:112,light:120,light:40"),
        ]),
        store,
        Mode::Serve,
    );
    let sinks = teams_presence::serve::sinks::spawn(&app);
    for (seq, (av, ac)) in [("Busy", "Busy"), ("Away", "Away")].into_iter().enumerate() {
        let body = presence("u1", seq as u32 + 1, av, ac).to_string();
        app.publisher
            .publish(None, vec![TopicMessage::parse(body.as_bytes()).unwrap()])
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let good = format!("/light/{GOOD}");
    let warnings = || app.sink_status.lock().unwrap().warnings.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fake.puts_to(&good).last().map(x) != Some(json!(AWAY_X)) || warnings().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?} {:?}",
            fake.puts(),
            warnings()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let w = warnings();
    assert!(
        w[0].starts_with("light:120 (Light 4): device (light) has communication issues"),
        "{w:?}"
    );
    assert!(
        w[1].starts_with("light:40 (Light 5): not taking commands (the bridge answered HTTP 500: refused by the test)"),
        "{w:?}"
    );
    assert!(app.sink_status.lock().unwrap().last_error.is_none());
    fake.refuse(&refusing, None);
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while fake.puts_to(&refusing).is_empty() || warnings().len() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?} {:?}",
            fake.puts(),
            warnings()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let caught_up = fake.puts_to(&refusing);
    assert_eq!(caught_up.len(), 1);
    assert_eq!(
        x(&caught_up[0]),
        json!(AWAY_X),
        "the newest state, not Busy"
    );
    sinks.abort();
}
