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
                return Ok(LightState::off());
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
