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

/// Issue 28, item 2: the white nearest each default colour, within the lamp's own range
/// (values checked independently in Python with the same locus approximation).
#[test]
fn the_nearest_white_of_each_default_colour() {
    let xy = |h: &str| hex_to_xy(h).unwrap();
    for (hex, full, lamp) in [
        ("#ff0000", 500, 454), // in a call: warmest
        ("#ff7a00", 500, 454), // busy: warmest
        ("#ffc800", 419, 419), // away: warm
        ("#00ff00", 153, 153), // available: coolest
        ("#8000ff", 153, 153), // do not disturb: coolest
        ("#0040ff", 153, 153), // sign-in required: coolest
        ("#ffffff", 167, 167), // white: a cool white
    ] {
        assert_eq!(nearest_white(xy(hex), 153, 500), full, "{hex}");
        assert_eq!(nearest_white(xy(hex), 153, 454), lamp, "{hex}");
    }
    // A lamp reporting a range wider than the API's is kept within 153–500.
    assert_eq!(
        Palette::white(50, 1000),
        Palette::White {
            coolest: 153,
            warmest: 500
        }
    );
}

#[test]
fn each_colour_family_has_its_own_brightness_and_pale_colours_keep_theirs() {
    let f = |h: &str| family_brightness(hex_to_rgb(h).unwrap());
    assert_eq!(f("#ff0000"), Some(100.0));
    assert_eq!(f("#ff7a00"), Some(70.0));
    assert_eq!(f("#ffc800"), Some(25.0));
    assert_eq!(f("#00ff00"), Some(50.0));
    assert_eq!(f("#0040ff"), Some(40.0));
    assert_eq!(f("#8000ff"), Some(85.0));
    assert_eq!(f("#ff0020"), Some(100.0), "a red past 345 degrees");
    assert_eq!(f("#ffffff"), None);
    assert_eq!(f("#e0d0d0"), None, "pale");
    assert_eq!(f("#000000"), None);
}

/// Issue 28, item 2: what each kind of lamp is sent for one state.
#[test]
fn a_state_is_reduced_to_what_the_lamp_can_show() {
    let mut busy = LightState::colour("#ff7a00", 80.0);
    busy.transition_ms = Some(400);
    let colour = busy.for_lamp(Palette::Colour);
    assert_eq!((colour.xy, colour.mirek), (busy.xy, None));
    assert_eq!(colour.brightness, Some(80.0));
    let white = busy.for_lamp(Palette::white(153, 454));
    assert_eq!((white.xy, white.mirek), (None, Some(454)));
    assert_eq!(white.brightness, Some(70.0));
    assert_eq!(white.transition_ms, Some(400));
    let dim = busy.for_lamp(Palette::Dimmable);
    assert_eq!(
        (dim.xy, dim.mirek, dim.brightness),
        (None, None, Some(70.0))
    );
    let onoff = busy.for_lamp(Palette::OnOff);
    assert_eq!(
        (
            onoff.on,
            onoff.xy,
            onoff.mirek,
            onoff.brightness,
            onoff.transition_ms
        ),
        (true, None, None, None, None)
    );
    let mut off = LightState::off();
    off.transition_ms = Some(2000);
    for p in [Palette::Colour, Palette::white(153, 500), Palette::Dimmable] {
        let o = off.for_lamp(p);
        assert!(!o.on && o.xy.is_none() && o.mirek.is_none() && o.brightness.is_none());
        assert_eq!(o.transition_ms, Some(2000), "{p:?}");
    }
    // A state without a colour keeps its brightness everywhere.
    let mut plain = LightState::off();
    plain.on = true;
    plain.brightness = Some(30.0);
    assert_eq!(plain.for_lamp(Palette::white(153, 500)).mirek, None);
    assert_eq!(plain.for_lamp(Palette::Dimmable).brightness, Some(30.0));
}

/// Issue 28, item 2: on a lamp without colour the default states that differ in colour still
/// differ (in white, brightness or effect), except those that share a colour family.
#[test]
fn default_states_stay_distinct_on_lamps_without_colour() {
    let shown = LightMap::default().showcase();
    for palette in [Palette::white(153, 454), Palette::Dimmable] {
        for (i, (a, sa)) in shown.iter().enumerate() {
            for (b, sb) in &shown[i + 1..] {
                let (la, lb) = (sa.for_lamp(palette), sb.for_lamp(palette));
                let same_family =
                    sa.on && sb.on && family_brightness(sa.rgb()) == family_brightness(sb.rgb());
                if sa.for_lamp(Palette::Colour) != sb.for_lamp(Palette::Colour) && !same_family {
                    assert_ne!(la, lb, "{palette:?}: {a} and {b} look the same");
                }
            }
        }
    }
}
