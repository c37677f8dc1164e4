//! Tables of cases for presence → light state, the `[lights]` table and colour maths.

use super::*;
use chrono::TimeZone;

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn state(d: Desired) -> LightState {
    match d {
        Desired::Set(s) => s,
        Desired::Keep => panic!("keep"),
    }
}

#[test]
fn hex_to_xy_table() {
    // Expected values computed independently (Python, same formulas as Hue's guide).
    let cases = [
        ("#ff0000", 0.7006, 0.2993),
        ("#00ff00", 0.1724, 0.7468),
        ("#0000ff", 0.1355, 0.0399),
        ("#ffffff", 0.3227, 0.3290),
        ("808080", 0.3227, 0.3290),  // grey has white's chromaticity
        ("#000000", 0.3127, 0.3290), // black: D65
        ("#FFC800", 0.5143, 0.4572),
    ];
    for (hex, x, y) in cases {
        let xy = hex_to_xy(hex).unwrap();
        assert!((xy.x - x).abs() < 0.0006, "{hex}: x {} vs {x}", xy.x);
        assert!((xy.y - y).abs() < 0.0006, "{hex}: y {} vs {y}", xy.y);
    }
    for bad in ["", "#fff", "#gg0000", "ff00000", "red"] {
        assert_eq!(hex_to_xy(bad), None, "{bad}");
    }
}

#[test]
fn default_map_distinguishes_calls_from_busy_calendars() {
    let m = LightMap::default();
    let now = at(2026, 11, 23, 10, 0);
    let red = hex_to_xy("#ff0000");
    let cases: &[(&str, &str, Option<Option<Xy>>)] = &[
        ("Busy", "InACall", Some(red)),
        ("Busy", "InAConferenceCall", Some(red)),
        ("DoNotDisturb", "Presenting", Some(red)),
        ("Busy", "InAMeeting", Some(hex_to_xy("#ff7a00"))),
        ("Busy", "Busy", Some(hex_to_xy("#ff7a00"))),
        ("Available", "Available", Some(hex_to_xy("#00ff00"))),
        ("AvailableIdle", "Inactive", Some(hex_to_xy("#00ff00"))),
        ("Away", "Away", Some(hex_to_xy("#ffc800"))),
        ("BeRightBack", "BeRightBack", Some(hex_to_xy("#ffc800"))),
        ("DoNotDisturb", "Focusing", Some(hex_to_xy("#8000ff"))),
        ("Offline", "OffWork", None),
        ("Available", "OffWork", None),
        ("PresenceUnknown", "PresenceUnknown", None),
        ("SomethingNew", "Whatever", None),
    ];
    for (av, ac, want) in cases {
        let s = state(m.for_presence(&Presence::new(av, ac), now));
        match want {
            Some(xy) => {
                assert!(s.on, "{av}/{ac}");
                assert_eq!(s.xy, *xy, "{av}/{ac}");
            }
            None => assert_eq!(s, LightState::off(), "{av}/{ac}"),
        }
    }
    assert_ne!(
        m.for_presence(&Presence::new("Busy", "InACall"), now),
        m.for_presence(&Presence::new("Busy", "InAMeeting"), now)
    );
    let signin = state(m.for_signin_required(now));
    assert_eq!(signin.effect, Effect::Breathe);
    assert_eq!(signin.xy, hex_to_xy("#0040ff"));
}

#[test]
fn toml_overrides_states() {
    let t: toml::Table = r##"
        transition_ms = 250
        busy = "#102030"
        In_A_Call = { xy = [0.6, 0.3], brightness = 55, effect = "breathe" }
        available = { off = true }
        signin_required = { color = "#ffffff", brightness = 10, transition_ms = 0 }
    "##
    .parse()
    .unwrap();
    let m = LightMap::from_toml(Some(&t)).unwrap();
    let now = at(2026, 11, 23, 10, 0);
    let call = state(m.for_presence(&Presence::new("Busy", "InACall"), now));
    assert_eq!(call.xy, Some(Xy::new(0.6, 0.3)));
    assert_eq!(call.brightness, Some(55.0));
    assert_eq!(call.effect, Effect::Breathe);
    assert_eq!(call.transition_ms, Some(250));
    let busy = state(m.for_presence(&Presence::new("Busy", "Busy"), now));
    assert_eq!(busy.xy, hex_to_xy("#102030"));
    // The built-in activity override still wins over a user availability entry.
    let meeting = state(m.for_presence(&Presence::new("Busy", "InAMeeting"), now));
    assert_eq!(meeting.xy, hex_to_xy("#ff7a00"));
    assert!(!state(m.for_presence(&Presence::new("Available", "Available"), now)).on);
    let signin = state(m.for_signin_required(now));
    assert_eq!(
        (signin.brightness, signin.transition_ms),
        (Some(10.0), Some(0))
    );
}

#[test]
fn bad_toml_names_the_key() {
    let cases = [
        ("busy = \"#12345\"", "lights.busy"),
        ("busy = { xy = [1.5, 0.2] }", "lights.busy.xy"),
        ("busy = { brightness = 0 }", "lights.busy.brightness"),
        ("busy = { effect = \"disco\" }", "lights.busy.effect"),
        ("busy = { colour = 3 }", "lights.busy.colour"),
        ("busy = { hue = 3 }", "lights.busy.hue"),
        ("busy = 7", "lights.busy"),
        ("transition_ms = -1", "lights.transition_ms"),
        (
            "working_hours = { start = \"8\", end = \"17:00\" }",
            "lights.working_hours.start",
        ),
        (
            "working_hours = { start = \"08:00\", end = \"17:00\", days = \"mon-xyz\" }",
            "lights.working_hours.days",
        ),
        (
            "working_hours = { start = \"08:00\", end = \"17:00\", utc_offset = \"CET\" }",
            "lights.working_hours.utc_offset",
        ),
    ];
    for (text, setting) in cases {
        let t: toml::Table = text.parse().unwrap();
        let e = LightMap::from_toml(Some(&t)).unwrap_err();
        assert_eq!(e.setting, setting, "{text}: {e}");
    }
}

#[test]
fn working_hours_table() {
    let t: toml::Table = r##"
        [working_hours]
        days = "mon-fri"
        start = "08:00"
        end = "18:00"
        utc_offset = "+01:00"
        outside = "off"
    "##
    .parse()
    .unwrap();
    let mut m = LightMap::from_toml(Some(&t)).unwrap();
    let busy = Presence::new("Busy", "InACall");
    // 2026-11-23 is a Monday.
    let cases = [
        (at(2026, 11, 23, 6, 59), false),  // 07:59 local
        (at(2026, 11, 23, 7, 0), true),    // 08:00 local
        (at(2026, 11, 23, 16, 59), true),  // 17:59 local
        (at(2026, 11, 23, 17, 0), false),  // 18:00 local
        (at(2026, 11, 28, 10, 0), false),  // Saturday
        (at(2026, 11, 22, 23, 30), false), // Monday 00:30 local, before 08:00
        (at(2026, 11, 27, 16, 30), true),  // Friday 17:30 local
    ];
    for (now, inside) in cases {
        let s = state(m.for_presence(&busy, now));
        assert_eq!(s.on, inside, "at {now}");
    }
    m.working_hours.as_mut().unwrap().outside = Outside::Keep;
    assert_eq!(
        m.for_presence(&busy, at(2026, 11, 28, 10, 0)),
        Desired::Keep
    );
    m.working_hours.as_mut().unwrap().outside =
        Outside::State(parse_state("x", &toml::Value::String("#0000ff".into())).unwrap());
    assert_eq!(
        state(m.for_presence(&busy, at(2026, 11, 28, 10, 0))).xy,
        hex_to_xy("#0000ff")
    );
}

#[test]
fn overnight_working_hours_belong_to_the_start_day() {
    let wh = WorkingHours {
        days: vec![Weekday::Fri],
        start: NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
        end: NaiveTime::from_hms_opt(6, 0, 0).unwrap(),
        offset: FixedOffset::east_opt(0).unwrap(),
        outside: Outside::Off,
    };
    assert!(wh.contains(at(2026, 11, 27, 23, 0))); // Fri 23:00
    assert!(wh.contains(at(2026, 11, 28, 5, 0))); // Sat 05:00, Friday's night
    assert!(!wh.contains(at(2026, 11, 28, 23, 0))); // Sat 23:00
    assert!(!wh.contains(at(2026, 11, 27, 5, 0))); // Fri 05:00, Thursday's night
}

#[test]
fn showcase_lists_every_state_and_signin() {
    let s = LightMap::default().showcase();
    assert_eq!(s.len(), SHOWCASE.len() + 1);
    assert_eq!(s.last().unwrap().1.effect, Effect::Breathe);
}

/// Issue 28, item 4: `off = true` with its own fade; the table-wide fade still applies to an
/// off state without one.
#[test]
fn an_off_entry_honours_its_transition() {
    let t: toml::Table = toml::from_str(
        "transition_ms = 400\noffline = { off = true, transition_ms = 2000 }\noffwork = { off = true }",
    )
    .unwrap();
    let m = LightMap::from_toml(Some(&t)).unwrap();
    let now = at(2026, 11, 23, 10, 0);
    let off = state(m.for_presence(&Presence::new("Offline", "Offline"), now));
    assert!(!off.on);
    assert_eq!(off.transition_ms, Some(2000));
    let off_work = state(m.for_presence(&Presence::new("Available", "OffWork"), now));
    assert_eq!(off_work.transition_ms, Some(400));
    let bad: toml::Table = toml::from_str("offline = { off = true, transition_ms = -1 }").unwrap();
    let e = LightMap::from_toml(Some(&bad)).unwrap_err();
    assert_eq!(e.setting, "lights.offline.transition_ms");
}
