//! The settings of the sinks beside Hue: `MQTT_*`, `WEBHOOK_*`, `WLED_URL`, `BUSYLIGHT`.
//!
//! Each is read from the environment, then the file's top level, then its `[sinks]` table
//! (same names, any case), so a config file can keep them together:
//!
//! ```toml
//! [sinks]
//! MQTT_URL = "mqtts://broker.lan:8883"
//! WLED_URL = "http://wled-desk.lan"
//! ```
//!
//! A sink is on when its URL is set; nothing here connects anywhere.

use std::collections::BTreeMap;

use secrecy::SecretString;
use url::Url;

use super::error::ConfigError;
use super::sources::Separator;
use super::sources::Sources;
use super::values::{Setting, HTTP};

/// `MQTT_*`: the broker and the topics.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// `MQTT_URL`: `mqtt://host[:1883]` or `mqtts://host[:8883]`.
    pub url: Url,
    /// `MQTT_USERNAME`.
    pub username: Option<String>,
    /// `MQTT_PASSWORD`.
    pub password: Option<SecretString>,
    /// `MQTT_TOPIC_PREFIX` (default `teams-presence`).
    pub topic_prefix: String,
    /// `MQTT_DISCOVERY_PREFIX` (default `homeassistant`).
    pub discovery_prefix: String,
    /// `MQTT_NAMES`: display names per user id (`id=Name; id=Name`) for Home Assistant's
    /// device names where the store has none (an edge). They win over the store's.
    pub names: BTreeMap<String, String>,
}

/// `WEBHOOK_*`: where each change is POSTed and the signing secret.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// `WEBHOOK_URL`.
    pub url: Url,
    /// `WEBHOOK_SECRET`: signs every body (`X-Signature`).
    pub secret: SecretString,
}

/// `BUSYLIGHT`: whether USB busylights are driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusylightMode {
    /// Every supported light that is plugged in (the default where the feature is built).
    Auto,
    /// None.
    Off,
}

/// Every sink beside Hue.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    /// MQTT, when `MQTT_URL` is set.
    pub mqtt: Option<MqttSettings>,
    /// The webhook, when `WEBHOOK_URL` is set.
    pub webhook: Option<WebhookSettings>,
    /// `WLED_URL`: the WLED controller's base URL.
    pub wled: Option<Url>,
    /// `BUSYLIGHT`.
    pub busylight: BusylightMode,
}

impl SinkSettings {
    /// Whether any sink beside Hue is configured (busylights count only when built).
    pub fn any(&self) -> bool {
        self.mqtt.is_some()
            || self.webhook.is_some()
            || self.wled.is_some()
            || (cfg!(feature = "busylight") && self.busylight == BusylightMode::Auto)
    }
}

/// A sink setting: from the usual sources, else from the `[sinks]` table.
fn setting<'a>(src: &'a Sources, key: &'a str) -> Setting<'a> {
    src.setting(key).or_table("sinks")
}

fn topic_part(src: &Sources, key: &str, default: &str) -> Result<String, ConfigError> {
    let part = setting(src, key);
    match part.text().map(|v| v.trim().trim_matches('/').to_owned()) {
        None => Ok(default.to_owned()),
        Some(v) if !v.is_empty() && !v.contains(['+', '#', '\0']) => Ok(v),
        Some(v) => Err(part.invalid(Some(&v), "a topic prefix without wildcards (+ or #)")),
    }
}

/// `MQTT_NAMES`: `id=Display Name` pairs separated by `;` (display names may hold commas),
/// or a TOML array of such pairs.
fn names(src: &Sources) -> Result<BTreeMap<String, String>, ConfigError> {
    let names = setting(src, "MQTT_NAMES");
    let mut out = BTreeMap::new();
    for pair in names.list_by(Separator::Semicolon) {
        match pair.split_once('=') {
            Some((id, name)) if !id.trim().is_empty() && !name.trim().is_empty() => {
                out.insert(id.trim().to_owned(), name.trim().to_owned());
            }
            _ => {
                return Err(
                    names.invalid(Some(&pair), "`userId=Display Name` pairs separated by `;`")
                )
            }
        }
    }
    Ok(out)
}

/// Parses the sink settings.
pub fn parse(src: &Sources) -> Result<SinkSettings, ConfigError> {
    let mqtt = match setting(src, "MQTT_URL").credential_url(
        &["mqtt", "mqtts", "tcp", "ssl"],
        "mqtt://host[:port] or mqtts://host[:port]",
    )? {
        None => None,
        Some(url) => Some(MqttSettings {
            url,
            username: setting(src, "MQTT_USERNAME").trimmed(),
            password: setting(src, "MQTT_PASSWORD").secret(),
            topic_prefix: topic_part(src, "MQTT_TOPIC_PREFIX", "teams-presence")?,
            discovery_prefix: topic_part(src, "MQTT_DISCOVERY_PREFIX", "homeassistant")?,
            names: names(src)?,
        }),
    };
    let webhook = match setting(src, "WEBHOOK_URL").credential_url(HTTP, "an http(s) URL")? {
        None => None,
        Some(url) => Some(WebhookSettings {
            url,
            secret: setting(src, "WEBHOOK_SECRET").secret().ok_or_else(|| {
                ConfigError::missing(
                    "WEBHOOK_SECRET",
                    "a shared secret to sign the webhook's requests with (X-Signature)",
                )
            })?,
        }),
    };
    let wled = setting(src, "WLED_URL").credential_url(HTTP, "the WLED controller's http URL")?;
    let busylight = setting(src, "BUSYLIGHT")
        .keyword(
            &[("auto", BusylightMode::Auto), ("off", BusylightMode::Off)],
            "`auto` or `off`",
        )?
        .unwrap_or(BusylightMode::Auto);
    Ok(SinkSettings {
        mqtt,
        webhook,
        wled,
        busylight,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn src(pairs: &[(&str, &str)]) -> Sources {
        Sources::from_map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        )
    }

    #[test]
    fn nothing_set_means_no_sinks_and_default_prefixes() {
        let s = parse(&src(&[])).unwrap();
        assert!(s.mqtt.is_none() && s.webhook.is_none() && s.wled.is_none());
        assert_eq!(s.busylight, BusylightMode::Auto);
        let s = parse(&src(&[("MQTT_URL", "mqtt://broker.lan")])).unwrap();
        let m = s.mqtt.unwrap();
        assert_eq!(m.topic_prefix, "teams-presence");
        assert_eq!(m.discovery_prefix, "homeassistant");
    }

    #[test]
    fn sinks_table_is_read_and_the_environment_wins() {
        let s = src(&[("WLED_URL", "http://env.lan")])
            .with_toml("[sinks]\nwled_url = \"http://file.lan\"\nMQTT_URL = \"mqtts://b.lan:8883\"\nMQTT_TOPIC_PREFIX = \"office/\"\n")
            .unwrap();
        let s = parse(&s).unwrap();
        assert_eq!(s.wled.unwrap().host_str(), Some("env.lan"));
        let m = s.mqtt.unwrap();
        assert_eq!(m.url.port(), Some(8883));
        assert_eq!(m.topic_prefix, "office");
    }

    #[test]
    fn an_array_in_the_sinks_table_reads_like_one_at_the_top_level() {
        // The table goes through the same reader as the top level: strings, numbers,
        // booleans and arrays. An array's items are the list's items, so a display name
        // keeps its comma.
        let toml = "[sinks]\nMQTT_URL = \"mqtt://b\"\nMQTT_PASSWORD = 1234\n\
                    MQTT_NAMES = [\"u1 = Vance, Adele\", \"u2=Megan Bowen\"]\n";
        let s = parse(&src(&[]).with_toml(toml).unwrap()).unwrap();
        let m = s.mqtt.unwrap();
        assert_eq!(m.names.len(), 2);
        assert_eq!(m.names["u1"], "Vance, Adele");
        assert_eq!(m.names["u2"], "Megan Bowen");
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&m.password.unwrap()),
            "1234"
        );
        let top = "MQTT_URL = \"mqtt://b\"\nMQTT_NAMES = [\"u1=Ada\", \"u2=Bob\"]\n";
        let names = parse(&src(&[]).with_toml(top).unwrap())
            .unwrap()
            .mqtt
            .unwrap()
            .names;
        assert_eq!(names["u1"], "Ada");
        assert_eq!(names["u2"], "Bob");
    }

    #[test]
    fn bad_values_name_the_setting_and_never_echo_credentials() {
        let e = parse(&src(&[("MQTT_URL", "http://user:hunter2@b.lan")])).unwrap_err();
        assert_eq!(e.setting, "MQTT_URL");
        assert!(!e.to_string().contains("hunter2"));
        let e = parse(&src(&[("WEBHOOK_URL", "https://h.example/x")])).unwrap_err();
        assert_eq!(e.setting, "WEBHOOK_SECRET");
        let e = parse(&src(&[("BUSYLIGHT", "maybe")])).unwrap_err();
        assert_eq!(e.setting, "BUSYLIGHT");
        let e = parse(&src(&[
            ("MQTT_URL", "mqtt://b"),
            ("MQTT_TOPIC_PREFIX", "a/#"),
        ]))
        .unwrap_err();
        assert_eq!(e.setting, "MQTT_TOPIC_PREFIX");
        let e = parse(&src(&[("MQTT_URL", "mqtt://b"), ("MQTT_NAMES", "u1")])).unwrap_err();
        assert_eq!(e.setting, "MQTT_NAMES");
    }

    #[test]
    fn mqtt_names_map_user_ids_to_display_names_that_may_hold_commas() {
        let s = parse(&src(&[
            ("MQTT_URL", "mqtt://b"),
            ("MQTT_NAMES", " u1 = Vance, Adele ; u2=Megan Bowen;"),
        ]))
        .unwrap();
        let names = s.mqtt.unwrap().names;
        assert_eq!(names.len(), 2);
        assert_eq!(names["u1"], "Vance, Adele");
        assert_eq!(names["u2"], "Megan Bowen");
    }
}
