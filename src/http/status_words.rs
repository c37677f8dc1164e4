//! The status page in people's words: presence as a phrase ("In a call"), times as
//! "for 12 min" / "3 s ago" (rendered on the server so the page reads well without
//! JavaScript; a tiny inline script redoes them in the browser's own clock and time zone),
//! and lamp colours back from CIE xy to a swatch. Pure functions, tested with tables.

use chrono::{DateTime, Utc};

use crate::core::lights::{Effect, LightState};

/// `InACall` → `In a call`, `DoNotDisturb` → `Do not disturb`: Graph's PascalCase split
/// into words. The activity when it says more than the availability.
pub fn presence_words(availability: &str, activity: &str) -> String {
    let pick = if activity.is_empty()
        || activity.eq_ignore_ascii_case("PresenceUnknown")
        || activity.eq_ignore_ascii_case(availability)
    {
        availability
    } else {
        activity
    };
    if pick.eq_ignore_ascii_case("PresenceUnknown") || pick.is_empty() {
        return "Unknown".into();
    }
    let mut out = String::new();
    for (i, c) in pick.chars().enumerate() {
        if i > 0 && c.is_uppercase() {
            out.push(' ');
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A duration for people: `12 s`, `12 min`, `3 h 5 min`, `2 d`.
pub fn span(secs: i64) -> String {
    let s = secs.max(0);
    if s < 60 {
        return format!("{s} s");
    }
    let m = (s + 30) / 60;
    if m < 60 {
        return format!("{m} min");
    }
    let (h, m) = (s / 3600, (s % 3600) / 60);
    if h < 24 {
        return if m == 0 {
            format!("{h} h")
        } else {
            format!("{h} h {m} min")
        };
    }
    format!("{} d", h / 24)
}

/// `<time>` with the exact instant in `datetime` and the UTC time in the tooltip;
/// `rel` is `for` ("for 12 min") or `ago` ("3 s ago").
pub fn time_tag(at: DateTime<Utc>, now: DateTime<Utc>, rel: &str) -> String {
    let d = span((now - at).num_seconds());
    let text = if rel == "for" {
        format!("for {d}")
    } else {
        format!("{d} ago")
    };
    format!(
        "<time datetime=\"{}\" data-rel=\"{rel}\" title=\"{}\">{text}</time>",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        at.format("%Y-%m-%d %H:%M:%S UTC"),
    )
}

/// Redoes every `<time data-rel>` in the browser: its clock, its time zone in the tooltip.
pub const SCRIPT: &str = r#"(function(){function f(s){s=Math.max(0,Math.floor(s));if(s<60)return s+" s";var m=Math.floor((s+30)/60);if(m<60)return m+" min";var h=Math.floor(s/3600);m=Math.floor(s%3600/60);if(h<24)return h+" h"+(m?" "+m+" min":"");return Math.floor(h/24)+" d"}document.querySelectorAll("time[data-rel]").forEach(function(t){var d=new Date(t.getAttribute("datetime"));if(isNaN(d))return;var s=(Date.now()-d)/1000;t.textContent=t.dataset.rel=="for"?"for "+f(s):f(s)+" ago";t.title=d.toLocaleString()+" ("+t.title+")"})})();"#;

/// The swatch of a light state: `#rrggbb` from CIE xy (Wide gamut D65, the inverse of
/// `core::lights::hex_to_xy`), or `None` when the lamp is off or has no colour.
pub fn swatch(state: &LightState) -> Option<String> {
    state.xy.filter(|_| state.on)?;
    Some(state.hex())
}

/// What a lamp state looks like in words: `70 %`, `breathing`, `off`.
pub fn looks(state: &LightState) -> String {
    if !state.on {
        return "off".into();
    }
    let mut parts = Vec::new();
    if let Some(b) = state.brightness {
        parts.push(format!("{b:.0} %"));
    }
    if state.effect == Effect::Breathe {
        parts.push("breathing".into());
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::lights::hex_to_xy;
    use chrono::TimeZone;

    fn lamp(hex: &str, brightness: f64, effect: Effect) -> LightState {
        LightState {
            on: true,
            xy: hex_to_xy(hex),
            rgb: None,
            brightness: Some(brightness),
            effect,
            transition_ms: None,
        }
    }

    #[test]
    fn presence_reads_as_words() {
        let cases = [
            ("Busy", "InACall", "In a call"),
            ("Busy", "InAConferenceCall", "In a conference call"),
            ("Busy", "InAMeeting", "In a meeting"),
            ("Busy", "Busy", "Busy"),
            ("DoNotDisturb", "Presenting", "Presenting"),
            ("DoNotDisturb", "DoNotDisturb", "Do not disturb"),
            ("Available", "Available", "Available"),
            ("BeRightBack", "BeRightBack", "Be right back"),
            ("Offline", "OffWork", "Off work"),
            ("Away", "PresenceUnknown", "Away"),
            ("PresenceUnknown", "PresenceUnknown", "Unknown"),
            ("Available", "", "Available"),
            ("Focusing", "Focusing", "Focusing"),
        ];
        for (av, ac, want) in cases {
            assert_eq!(presence_words(av, ac), want, "{av}/{ac}");
        }
    }

    #[test]
    fn durations_read_as_people_say_them() {
        let cases = [
            (-5, "0 s"),
            (3, "3 s"),
            (59, "59 s"),
            (60, "1 min"),
            (12 * 60 + 10, "12 min"),
            (3600, "1 h"),
            (3600 + 5 * 60, "1 h 5 min"),
            (50 * 3600, "2 d"),
        ];
        for (secs, want) in cases {
            assert_eq!(span(secs), want, "{secs}");
        }
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 2, 24, 0).unwrap();
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 2, 12, 0).unwrap();
        assert_eq!(
            time_tag(at, now, "for"),
            "<time datetime=\"2026-11-23T02:12:00Z\" data-rel=\"for\" title=\"2026-11-23 02:12:00 UTC\">for 12 min</time>"
        );
        assert!(time_tag(at, now, "ago").ends_with(">12 min ago</time>"));
    }

    #[test]
    fn lamp_colours_come_back_as_swatches() {
        let cases = [
            ("#ff0000", "#ff0000"),
            ("#00ff00", "#00ff00"),
            ("#0040ff", "#0040ff"),
            ("#ff7a00", "#ff7a00"),
        ];
        for (hex, want) in cases {
            let s = lamp(hex, 80.0, Effect::None);
            let got = swatch(&s).unwrap();
            let close = (0..3).all(|i| {
                let a = u8::from_str_radix(&got[1 + 2 * i..3 + 2 * i], 16).unwrap() as i32;
                let b = u8::from_str_radix(&want[1 + 2 * i..3 + 2 * i], 16).unwrap() as i32;
                (a - b).abs() <= 6
            });
            assert!(close, "{hex}: {got}");
        }
        assert_eq!(swatch(&LightState::off()), None);
        assert_eq!(looks(&LightState::off()), "off");
        assert_eq!(
            looks(&lamp("#0040ff", 40.0, Effect::Breathe)),
            "40 %, breathing"
        );
    }
}
