//! Presence to light state: pure code, no I/O, `now` is always an argument.
//!
//! The default map goes by availability, with activity overrides so that being *in a call*
//! or *presenting* (red) is not the same as a busy calendar (orange). Every state can be
//! changed in the `[lights]` table of the TOML file; keys are matched case-insensitively and
//! ignoring `_`/`-`, against the activity first and then the availability:
//!
//! ```toml
//! [lights]
//! transition_ms = 400                        # default fade for every state
//! busy = "#ff4000"                           # shorthand: a colour
//! inacall = { color = "#ff0000", brightness = 100 }
//! presenting = { xy = [0.70, 0.30], effect = "breathe" }
//! offline = { off = true }
//! signin_required = { color = "#0040ff", brightness = 40, effect = "breathe" }
//!
//! [lights.working_hours]
//! days = ["mon", "tue", "wed", "thu", "fri"]  # or "mon-fri"
//! start = "08:00"
//! end = "18:00"
//! utc_offset = "+01:00"
//! outside = "off"                            # or "keep", or a colour
//! ```
//!
//! Colours are converted to CIE xy with the sRGB gamma and the Wide gamut (D65) matrix from
//! Hue's developer guide; the bridge clamps xy to each lamp's own gamut.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, FixedOffset, NaiveTime, Utc, Weekday};

use crate::core::presence::{Activity, Availability, Presence};

/// A `[lights]` entry that cannot be used; the settings turn it into their own one-line
/// error (the core does not depend on them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting {setting}: {problem}")]
pub struct LightsError {
    /// The entry, e.g. `lights.busy.color`.
    pub setting: String,
    /// What is wrong and what is expected.
    pub problem: String,
}

/// A CIE 1931 chromaticity, rounded to 4 decimals (what the bridge keeps).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Xy {
    /// x in 0..=1
    pub x: f64,
    /// y in 0..=1
    pub y: f64,
}

impl Xy {
    fn new(x: f64, y: f64) -> Self {
        let r = |v: f64| (v.clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0;
        Self { x: r(x), y: r(y) }
    }
}

/// A one-shot effect shown when the state is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// None.
    None,
    /// Breathe (v1 `alert: lselect`, 15 s; v2 `alert: breathe`).
    Breathe,
}

/// The mirek range CLIP v2 accepts (6536 K to 2000 K); v1 `ct` has the same.
pub const MIREK_RANGE: (u16, u16) = (153, 500);

/// What a lamp (or the lamps of a room together) can show, as the bridge describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Palette {
    /// Colours (CIE xy) and brightness.
    Colour,
    /// Whites from `coolest` to `warmest` (mirek) and brightness: Hue's "white ambiance".
    White {
        /// Lowest mirek (the coolest white).
        coolest: u16,
        /// Highest mirek (the warmest white).
        warmest: u16,
    },
    /// Brightness only.
    Dimmable,
    /// On and off only.
    OnOff,
}

impl Palette {
    /// A white-ambiance palette from a lamp's own mirek range, kept within what the API
    /// accepts (some lamps report 50–1000).
    pub fn white(min: u16, max: u16) -> Self {
        let (lo, hi) = MIREK_RANGE;
        let coolest = min.clamp(lo, hi);
        let warmest = max.clamp(coolest, hi);
        Palette::White { coolest, warmest }
    }

    /// How much it can show: colour > white > brightness > on/off (a room is as good as its
    /// best lamp for what the bridge accepts).
    pub fn rank(self) -> u8 {
        match self {
            Palette::Colour => 3,
            Palette::White { .. } => 2,
            Palette::Dimmable => 1,
            Palette::OnOff => 0,
        }
    }
}

/// What one lamp is sent: a [`LightState`] reduced to what its [`Palette`] can show.
#[derive(Debug, Clone, PartialEq)]
pub struct LampState {
    /// On or off. When off, only the fade is sent with it.
    pub on: bool,
    /// Colour, for lamps that show colour.
    pub xy: Option<Xy>,
    /// Colour temperature in mirek, for white-ambiance lamps.
    pub mirek: Option<u16>,
    /// Brightness in percent (1..=100).
    pub brightness: Option<f64>,
    /// Effect.
    pub effect: Effect,
    /// Fade time in milliseconds.
    pub transition_ms: Option<u32>,
}

/// What a target should look like.
#[derive(Debug, Clone, PartialEq)]
pub struct LightState {
    /// On or off. When off, the other fields are not sent.
    pub on: bool,
    /// Colour.
    pub xy: Option<Xy>,
    /// The same colour as configured in sRGB (`#rrggbb`), for sinks that take RGB (MQTT,
    /// WLED, busylights); `None` when it was given as xy ([`LightState::rgb`] converts).
    pub rgb: Option<[u8; 3]>,
    /// Brightness in percent (1..=100).
    pub brightness: Option<f64>,
    /// Effect.
    pub effect: Effect,
    /// Fade time in milliseconds.
    pub transition_ms: Option<u32>,
}

impl LightState {
    /// Lights off.
    pub fn off() -> Self {
        Self {
            on: false,
            xy: None,
            rgb: None,
            brightness: None,
            effect: Effect::None,
            transition_ms: None,
        }
    }

    fn colour(hex: &str, brightness: f64) -> Self {
        Self {
            on: true,
            xy: Some(hex_to_xy(hex).expect("built-in colours are valid")),
            rgb: hex_to_rgb(hex),
            brightness: Some(brightness),
            effect: Effect::None,
            transition_ms: None,
        }
    }

    /// The colour in sRGB at full value: as configured, else back from xy; black when off.
    /// Brightness is separate ([`LightState::brightness`]).
    pub fn rgb(&self) -> [u8; 3] {
        if !self.on {
            return [0, 0, 0];
        }
        self.rgb
            .or_else(|| self.xy.map(xy_to_rgb))
            .unwrap_or([255, 255, 255])
    }

    /// [`LightState::rgb`] as `#rrggbb`.
    pub fn hex(&self) -> String {
        let [r, g, b] = self.rgb();
        format!("#{r:02x}{g:02x}{b:02x}")
    }

    /// What a lamp with `palette` is sent for this state (pure).
    pub fn for_lamp(&self, palette: Palette) -> LampState {
        let mut out = LampState {
            on: self.on,
            xy: None,
            mirek: None,
            brightness: None,
            effect: Effect::None,
            transition_ms: self.transition_ms,
        };
        if !self.on {
            return out;
        }
        out.effect = self.effect;
        match palette {
            Palette::Colour => {
                out.xy = self.xy;
                out.brightness = self.brightness;
            }
            Palette::White { coolest, warmest } => {
                out.mirek = self.xy.map(|xy| nearest_white(xy, coolest, warmest));
                out.brightness = self.brightness_without_colour();
            }
            Palette::Dimmable => out.brightness = self.brightness_without_colour(),
            // Nothing to fade: some on/off lamps refuse a transition.
            Palette::OnOff => out.transition_ms = None,
        }
        out
    }

    /// The brightness on a lamp that cannot show this state's colour: its colour family's
    /// own level ([`family_brightness`]), or the configured brightness for a white or pale
    /// colour (or none).
    fn brightness_without_colour(&self) -> Option<f64> {
        if self.xy.is_none() {
            return self.brightness;
        }
        family_brightness(self.rgb()).or(self.brightness)
    }

    fn breathing(mut self) -> Self {
        self.effect = Effect::Breathe;
        self
    }
}

/// The outcome for one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Desired {
    /// Show this.
    Set(LightState),
    /// Leave the lights as they are (outside working hours with `outside = "keep"`).
    Keep,
}

/// What to do outside working hours.
#[derive(Debug, Clone, PartialEq)]
pub enum Outside {
    /// Lights off.
    Off,
    /// Leave them alone.
    Keep,
    /// A fixed state.
    State(LightState),
}

/// Working hours in a fixed UTC offset.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkingHours {
    /// Days on which the hours apply.
    pub days: Vec<Weekday>,
    /// Local start time (inclusive).
    pub start: NaiveTime,
    /// Local end time (exclusive); before `start` means the span crosses midnight.
    pub end: NaiveTime,
    /// The local offset.
    pub offset: FixedOffset,
    /// Behaviour outside.
    pub outside: Outside,
}

impl WorkingHours {
    /// Whether `now` is inside working hours.
    pub fn contains(&self, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&self.offset);
        let t = local.time();
        if self.start <= self.end {
            self.days.contains(&local.weekday()) && t >= self.start && t < self.end
        } else if t >= self.start {
            // Overnight span: the evening part belongs to the day it starts on.
            self.days.contains(&local.weekday())
        } else {
            t < self.end && self.days.contains(&local.weekday().pred())
        }
    }
}

/// The whole configuration: defaults merged with the `[lights]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct LightMap {
    /// User entries, by normalised key (activity or availability name).
    entries: HashMap<String, LightState>,
    /// `user.signin_required`.
    pub signin_required: LightState,
    /// Working hours, if configured.
    pub working_hours: Option<WorkingHours>,
    /// Fade for every state without its own.
    pub transition_ms: Option<u32>,
}

fn norm(key: &str) -> String {
    key.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The built-in state for an activity that overrides availability.
fn default_for_activity(a: &Activity) -> Option<LightState> {
    Some(match a {
        Activity::InACall | Activity::InAConferenceCall | Activity::Presenting => {
            LightState::colour("#ff0000", 100.0)
        }
        Activity::InAMeeting => LightState::colour("#ff7a00", 80.0),
        Activity::OffWork | Activity::OutOfOffice => LightState::off(),
        _ => return None,
    })
}

/// The built-in state for an availability.
fn default_for_availability(a: &Availability) -> LightState {
    match a {
        Availability::Available | Availability::AvailableIdle => {
            LightState::colour("#00ff00", 70.0)
        }
        Availability::Busy | Availability::BusyIdle => LightState::colour("#ff7a00", 80.0),
        Availability::Away | Availability::BeRightBack => LightState::colour("#ffc800", 50.0),
        Availability::DoNotDisturb => LightState::colour("#8000ff", 80.0),
        Availability::Offline | Availability::PresenceUnknown | Availability::Other(_) => {
            LightState::off()
        }
    }
}

/// The names shown by `hue test`, in order, with a presence that selects each.
pub const SHOWCASE: &[(&str, &str, &str)] = &[
    ("Available", "Available", "Available"),
    ("Busy (calendar)", "Busy", "Busy"),
    ("In a meeting", "Busy", "InAMeeting"),
    ("In a call", "Busy", "InACall"),
    ("Presenting", "DoNotDisturb", "Presenting"),
    ("Do not disturb", "DoNotDisturb", "DoNotDisturb"),
    ("Away", "Away", "Away"),
    ("Be right back", "BeRightBack", "BeRightBack"),
    ("Offline", "Offline", "Offline"),
];

impl Default for LightMap {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            signin_required: LightState::colour("#0040ff", 40.0).breathing(),
            working_hours: None,
            transition_ms: None,
        }
    }
}

impl LightMap {
    /// The state for a presence at `now`.
    pub fn for_presence(&self, p: &Presence, now: DateTime<Utc>) -> Desired {
        let state = self
            .entries
            .get(&norm(p.activity.as_str()))
            .cloned()
            .or_else(|| default_for_activity(&p.activity))
            .or_else(|| self.entries.get(&norm(p.availability.as_str())).cloned())
            .unwrap_or_else(|| default_for_availability(&p.availability));
        self.finish(state, now)
    }

    /// The state for `user.signin_required` at `now`.
    pub fn for_signin_required(&self, now: DateTime<Utc>) -> Desired {
        self.finish(self.signin_required.clone(), now)
    }

    fn finish(&self, mut state: LightState, now: DateTime<Utc>) -> Desired {
        if let Some(wh) = &self.working_hours {
            if !wh.contains(now) {
                state = match &wh.outside {
                    Outside::Off => LightState::off(),
                    Outside::Keep => return Desired::Keep,
                    Outside::State(s) => s.clone(),
                };
            }
        }
        if state.transition_ms.is_none() {
            state.transition_ms = self.transition_ms;
        }
        Desired::Set(state)
    }

    /// Every state `hue test` shows, with its name (working hours ignored).
    pub fn showcase(&self) -> Vec<(String, LightState)> {
        let mut out: Vec<(String, LightState)> = SHOWCASE
            .iter()
            .map(|(name, av, ac)| {
                let p = Presence::new(av, ac);
                let state = self
                    .entries
                    .get(&norm(p.activity.as_str()))
                    .cloned()
                    .or_else(|| default_for_activity(&p.activity))
                    .or_else(|| self.entries.get(&norm(p.availability.as_str())).cloned())
                    .unwrap_or_else(|| default_for_availability(&p.availability));
                (name.to_string(), state)
            })
            .collect();
        out.push(("Sign-in required".into(), self.signin_required.clone()));
        for (_, s) in &mut out {
            s.transition_ms = s.transition_ms.or(self.transition_ms);
        }
        out
    }

    /// Builds the map from the `[lights]` table (absent: the defaults).
    pub fn from_toml(table: Option<&toml::Table>) -> Result<Self, LightsError> {
        let mut map = LightMap::default();
        let Some(table) = table else {
            return Ok(map);
        };
        for (key, value) in table {
            let setting = format!("lights.{key}");
            match norm(key).as_str() {
                "transitionms" => map.transition_ms = Some(parse_ms(&setting, value)?),
                "workinghours" => map.working_hours = Some(parse_hours(&setting, value)?),
                "signinrequired" => map.signin_required = parse_state(&setting, value)?,
                k => {
                    map.entries
                        .insert(k.to_owned(), parse_state(&setting, value)?);
                }
            }
        }
        Ok(map)
    }
}

fn bad(setting: &str, expected: &str) -> LightsError {
    LightsError {
        setting: setting.to_owned(),
        problem: format!("is not valid; expected {expected}"),
    }
}

fn parse_ms(setting: &str, v: &toml::Value) -> Result<u32, LightsError> {
    v.as_integer()
        .and_then(|i| u32::try_from(i).ok())
        .filter(|ms| *ms <= 600_000)
        .ok_or_else(|| bad(setting, "milliseconds from 0 to 600000"))
}

const STATE_EXPECTED: &str = "a colour \"#rrggbb\" or a table with color/xy, brightness, effect, transition_ms or off = true";

/// Parses one state: `"#rrggbb"`, `"off"`, or a table.
pub fn parse_state(setting: &str, v: &toml::Value) -> Result<LightState, LightsError> {
    match v {
        toml::Value::String(s) if s.trim().eq_ignore_ascii_case("off") => Ok(LightState::off()),
        toml::Value::String(s) => {
            let xy = hex_to_xy(s).ok_or_else(|| bad(setting, STATE_EXPECTED))?;
            Ok(LightState {
                on: true,
                xy: Some(xy),
                rgb: hex_to_rgb(s),
                brightness: Some(100.0),
                effect: Effect::None,
                transition_ms: None,
            })
        }
        toml::Value::Table(t) => {
            if t.get("off").and_then(toml::Value::as_bool) == Some(true) {
                // Off still fades: only the transition goes with it.
                let mut off = LightState::off();
                if let Some(v) = t
                    .iter()
                    .find(|(k, _)| norm(k) == "transitionms")
                    .map(|(_, v)| v)
                {
                    off.transition_ms = Some(parse_ms(&format!("{setting}.transition_ms"), v)?);
                }
                return Ok(off);
            }
            let mut state = LightState {
                on: true,
                xy: None,
                rgb: None,
                brightness: Some(100.0),
                effect: Effect::None,
                transition_ms: None,
            };
            for (k, v) in t {
                let field = format!("{setting}.{k}");
                match norm(k).as_str() {
                    "off" => {
                        v.as_bool().ok_or_else(|| bad(&field, "true or false"))?;
                    }
                    "color" | "colour" => {
                        let s = v.as_str().ok_or_else(|| bad(&field, "\"#rrggbb\""))?;
                        state.xy = Some(hex_to_xy(s).ok_or_else(|| bad(&field, "\"#rrggbb\""))?);
                        state.rgb = hex_to_rgb(s);
                    }
                    "xy" => {
                        let a = v.as_array().filter(|a| a.len() == 2);
                        let num = |x: &toml::Value| {
                            x.as_float()
                                .or_else(|| x.as_integer().map(|i| i as f64))
                                .filter(|f| (0.0..=1.0).contains(f))
                        };
                        let (x, y) = a
                            .and_then(|a| Some((num(&a[0])?, num(&a[1])?)))
                            .ok_or_else(|| bad(&field, "[x, y] with both from 0 to 1"))?;
                        state.xy = Some(Xy::new(x, y));
                        state.rgb = None;
                    }
                    "brightness" | "bri" => {
                        let b = v
                            .as_float()
                            .or_else(|| v.as_integer().map(|i| i as f64))
                            .filter(|b| (1.0..=100.0).contains(b))
                            .ok_or_else(|| bad(&field, "a percentage from 1 to 100"))?;
                        state.brightness = Some(b);
                    }
                    "effect" | "alert" => {
                        state.effect = match v.as_str().map(norm).as_deref() {
                            Some("breathe") | Some("lselect") => Effect::Breathe,
                            Some("none") => Effect::None,
                            _ => return Err(bad(&field, "\"breathe\" or \"none\"")),
                        }
                    }
                    "transitionms" => state.transition_ms = Some(parse_ms(&field, v)?),
                    _ => {
                        return Err(bad(
                            &field,
                            "one of color, xy, brightness, effect, transition_ms, off",
                        ))
                    }
                }
            }
            Ok(state)
        }
        _ => Err(bad(setting, STATE_EXPECTED)),
    }
}

fn parse_hours(setting: &str, v: &toml::Value) -> Result<WorkingHours, LightsError> {
    let t = v.as_table().ok_or_else(|| {
        bad(
            setting,
            "a table with days, start, end, utc_offset, outside",
        )
    })?;
    let time = |k: &str| -> Result<NaiveTime, LightsError> {
        let field = format!("{setting}.{k}");
        let s = t
            .get(k)
            .and_then(toml::Value::as_str)
            .ok_or_else(|| bad(&field, "a local time such as \"08:30\""))?;
        NaiveTime::parse_from_str(s.trim(), "%H:%M")
            .map_err(|_| bad(&field, "a local time such as \"08:30\""))
    };
    let days = match t.get("days") {
        None => vec![
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
        ],
        Some(v) => parse_days(v).ok_or_else(|| {
            bad(
                &format!("{setting}.days"),
                "a list of days such as [\"mon\", \"tue\"] or a range \"mon-fri\"",
            )
        })?,
    };
    let offset = match t.get("utc_offset") {
        None => FixedOffset::east_opt(0).expect("0 is valid"),
        Some(v) => v.as_str().and_then(parse_offset).ok_or_else(|| {
            bad(
                &format!("{setting}.utc_offset"),
                "an offset such as \"+01:00\"",
            )
        })?,
    };
    let outside = match t.get("outside") {
        None => Outside::Off,
        Some(toml::Value::String(s)) if norm(s) == "off" => Outside::Off,
        Some(toml::Value::String(s)) if norm(s) == "keep" => Outside::Keep,
        Some(v) => Outside::State(parse_state(&format!("{setting}.outside"), v)?),
    };
    Ok(WorkingHours {
        days,
        start: time("start")?,
        end: time("end")?,
        offset,
        outside,
    })
}

fn parse_weekday(s: &str) -> Option<Weekday> {
    let s = s.trim().to_ascii_lowercase();
    let days = [
        ("mon", Weekday::Mon),
        ("tue", Weekday::Tue),
        ("wed", Weekday::Wed),
        ("thu", Weekday::Thu),
        ("fri", Weekday::Fri),
        ("sat", Weekday::Sat),
        ("sun", Weekday::Sun),
    ];
    days.iter()
        .find(|(p, _)| s.len() >= 3 && s.starts_with(p))
        .map(|(_, d)| *d)
}

fn parse_days(v: &toml::Value) -> Option<Vec<Weekday>> {
    match v {
        toml::Value::String(s) => {
            let (a, b) = s.split_once('-')?;
            let (mut d, end) = (parse_weekday(a)?, parse_weekday(b)?);
            let mut out = vec![d];
            while d != end {
                d = d.succ();
                out.push(d);
            }
            Some(out)
        }
        toml::Value::Array(a) => a.iter().map(|d| parse_weekday(d.as_str()?)).collect(),
        _ => None,
    }
}

fn parse_offset(s: &str) -> Option<FixedOffset> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("z") || s.eq_ignore_ascii_case("utc") {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if !(0..=14).contains(&h) || !(0..60).contains(&m) {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// The brightness (percent) a lamp without colour shows for a colour, by its family on the
/// colour wheel, so that states which look alike in white still differ: red 100, orange 70,
/// yellow 25, green 50, blue 40, purple 85. `None` for white and pale colours (saturation
/// under 25 %), which keep their configured brightness.
pub fn family_brightness(rgb: [u8; 3]) -> Option<f64> {
    let [r, g, b] = rgb.map(f64::from);
    let (max, min) = (r.max(g).max(b), r.min(g).min(b));
    if max <= 0.0 || (max - min) / max < 0.25 {
        return None;
    }
    let d = max - min;
    let hue = if max == r {
        60.0 * ((g - b) / d).rem_euclid(6.0)
    } else if max == g {
        60.0 * ((b - r) / d + 2.0)
    } else {
        60.0 * ((r - g) / d + 4.0)
    };
    Some(match hue {
        h if !(15.0..345.0).contains(&h) => 100.0, // red
        h if h < 45.0 => 70.0,                     // orange
        h if h < 75.0 => 25.0,                     // yellow
        h if h < 165.0 => 50.0,                    // green
        h if h < 255.0 => 40.0,                    // cyan and blue
        _ => 85.0,                                 // purple and magenta
    })
}

/// The Planckian locus at `kelvin` (1667 K to 25000 K) in CIE 1931 xy: the cubic
/// approximation by Kim et al. (2002), as given on Wikipedia's "Planckian locus" page.
fn planckian_xy(kelvin: f64) -> (f64, f64) {
    let t = kelvin.clamp(1667.0, 25_000.0);
    let (t2, t3) = (t * t, t * t * t);
    let x = if t <= 4000.0 {
        -0.266_123_9e9 / t3 - 0.234_358_9e6 / t2 + 0.877_695_6e3 / t + 0.179_910
    } else {
        -3.025_846_9e9 / t3 + 2.107_037_9e6 / t2 + 0.222_634_7e3 / t + 0.240_390
    };
    let (x2, x3) = (x * x, x * x * x);
    let y = if t <= 2222.0 {
        -1.106_381_4 * x3 - 1.348_110_20 * x2 + 2.185_558_32 * x - 0.202_196_83
    } else if t <= 4000.0 {
        -0.954_947_6 * x3 - 1.374_185_93 * x2 + 2.091_370_15 * x - 0.167_488_67
    } else {
        3.081_758_0 * x3 - 5.873_386_70 * x2 + 3.751_129_97 * x - 0.370_014_83
    };
    (x, y)
}

/// CIE 1931 xy to CIE 1960 UCS uv, where distances to the locus are compared.
fn uv(x: f64, y: f64) -> (f64, f64) {
    let d = -2.0 * x + 12.0 * y + 3.0;
    (4.0 * x / d, 6.0 * y / d)
}

/// The white (mirek, from `coolest` to `warmest`) nearest a colour: the point of the
/// Planckian locus closest to it in CIE 1960 UCS. Red and orange give the warmest white,
/// yellow a warm one, green, blue and purple the coolest.
pub fn nearest_white(xy: Xy, coolest: u16, warmest: u16) -> u16 {
    let (u0, v0) = uv(xy.x, xy.y);
    let (lo, hi) = (coolest.min(warmest), coolest.max(warmest));
    (lo..=hi)
        .map(|m| {
            let (x, y) = planckian_xy(1e6 / f64::from(m));
            let (u, v) = uv(x, y);
            (m, (u - u0).powi(2) + (v - v0).powi(2))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(lo, |(m, _)| m)
}

/// `#rrggbb` (or `rrggbb`) to its three bytes.
pub fn hex_to_rgb(hex: &str) -> Option<[u8; 3]> {
    let h = hex.trim().trim_start_matches('#');
    if h.len() != 6 || !h.is_ascii() {
        return None;
    }
    let c = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).ok();
    Some([c(0)?, c(2)?, c(4)?])
}

/// CIE xy back to sRGB at full value (Wide gamut D65, the inverse of [`hex_to_xy`]), the
/// brightest channel at 255.
pub fn xy_to_rgb(xy: Xy) -> [u8; 3] {
    let (x, y) = (xy.x, xy.y.max(1e-6));
    let (cx, cy, cz) = (x / y, 1.0, (1.0 - x - y) / y);
    let r = cx * 1.656_492 - cy * 0.354_851 - cz * 0.255_038;
    let g = -cx * 0.707_196 + cy * 1.655_397 + cz * 0.036_152;
    let b = cx * 0.051_713 - cy * 0.121_364 + cz * 1.011_530;
    let max = r.max(g).max(b).max(1e-6);
    let gamma = |c: f64| {
        let c = (c / max).clamp(0.0, 1.0);
        let v = if c <= 0.003_130_8 {
            12.92 * c
        } else {
            1.055 * c.powf(1.0 / 2.4) - 0.055
        };
        (v * 255.0).round() as u8
    };
    [gamma(r), gamma(g), gamma(b)]
}

/// `#rrggbb` (or `rrggbb`) to CIE xy: sRGB gamma expansion, then the Wide gamut D65 matrix.
/// Black has no chromaticity and maps to the D65 white point.
pub fn hex_to_xy(hex: &str) -> Option<Xy> {
    let h = hex.trim().trim_start_matches('#');
    if h.len() != 6 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let channel = |i: usize| {
        u8::from_str_radix(&h[i..i + 2], 16)
            .ok()
            .map(|v| v as f64 / 255.0)
    };
    let gamma = |c: f64| {
        if c > 0.04045 {
            ((c + 0.055) / 1.055).powf(2.4)
        } else {
            c / 12.92
        }
    };
    let (r, g, b) = (gamma(channel(0)?), gamma(channel(2)?), gamma(channel(4)?));
    let x = r * 0.664_511 + g * 0.154_324 + b * 0.162_028;
    let y = r * 0.283_881 + g * 0.668_433 + b * 0.047_685;
    let z = r * 0.000_088 + g * 0.072_310 + b * 0.986_039;
    let sum = x + y + z;
    if sum <= f64::EPSILON {
        return Some(Xy::new(0.3127, 0.3290));
    }
    Some(Xy::new(x / sum, y / sum))
}

#[cfg(test)]
#[path = "lights_tests.rs"]
mod tests;
