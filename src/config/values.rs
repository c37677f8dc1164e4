//! Typed readers for one setting: keywords, numbers in a range, durations, URLs, lists,
//! secrets and times, each written once, so every refusal reads the same way
//! (`setting NAME: "value" is not valid; expected ...`, without the value for secrets).
//!
//! A reader is `None` (or empty) when the setting is unset and the setting's own `parse`
//! picks the default, so defaults stay next to the field they fill.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use secrecy::{SecretBox, SecretString};
use url::Url;

use super::error::ConfigError;
use super::sources::{Separator, Sources};

/// The schemes of an ordinary web URL.
pub(super) const HTTP: &[&str] = &["http", "https"];

/// One setting of `src`, read from the environment, the file's top level and, after
/// [`Setting::or_table`], a table of the file.
pub(super) struct Setting<'a> {
    src: &'a Sources,
    key: &'a str,
    table: Option<&'a str>,
}

impl Sources {
    /// The setting `key`, to read with one of [`Setting`]'s typed readers.
    pub(super) fn setting<'a>(&'a self, key: &'a str) -> Setting<'a> {
        Setting {
            src: self,
            key,
            table: None,
        }
    }
}

impl<'a> Setting<'a> {
    /// Also looks in the file's `[table]` (after the environment and the top level).
    pub(super) fn or_table(self, table: &'a str) -> Self {
        Self {
            table: Some(table),
            ..self
        }
    }

    /// The value as given.
    pub(super) fn text(&self) -> Option<String> {
        match self.table {
            None => self.src.get(self.key),
            Some(t) => self.src.get_or_table(self.key, t),
        }
    }

    /// The value without surrounding blanks (ids, names, addresses).
    pub(super) fn trimmed(&self) -> Option<String> {
        self.text().map(|v| v.trim().to_owned())
    }

    /// A secret: kept as given, only ever shown as `[REDACTED]`.
    pub(super) fn secret(&self) -> Option<SecretString> {
        self.text().map(SecretString::from)
    }

    /// A file path.
    pub(super) fn path(&self) -> Option<PathBuf> {
        self.text().map(PathBuf::from)
    }

    /// The items of a comma-separated list (or a TOML array); empty when unset.
    pub(super) fn list(&self) -> Vec<String> {
        self.src.list(self.key, self.table, Separator::Comma)
    }

    /// [`Setting::list`] in lower case (ids compared without regard to case).
    pub(super) fn lower_list(&self) -> Vec<String> {
        self.list().into_iter().map(|s| s.to_lowercase()).collect()
    }

    /// The items of a list separated by `sep` (or a TOML array); empty when unset.
    pub(super) fn list_by(&self, sep: Separator) -> Vec<String> {
        self.src.list(self.key, self.table, sep)
    }

    /// The value turned into `T` by `parse`; `expected` says what `parse` accepts.
    pub(super) fn parsed<T>(
        &self,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        match self.text() {
            None => Ok(None),
            Some(v) => match parse(v.trim()) {
                Some(t) => Ok(Some(t)),
                None => Err(self.invalid(Some(&v), expected)),
            },
        }
    }

    /// One of `words` (compared without regard to case), as its value.
    pub(super) fn keyword<T: Copy>(
        &self,
        words: &[(&str, T)],
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        self.parsed(expected, |v| {
            words
                .iter()
                .find(|(w, _)| w.eq_ignore_ascii_case(v))
                .map(|(_, t)| *t)
        })
    }

    /// A whole number in `range`.
    pub(super) fn number(
        &self,
        range: RangeInclusive<usize>,
    ) -> Result<Option<usize>, ConfigError> {
        let expected = format!("a number from {} to {}", range.start(), range.end());
        self.parsed(&expected, |v| v.parse().ok().filter(|n| range.contains(n)))
    }

    /// A whole number of seconds in `range`.
    pub(super) fn seconds(
        &self,
        range: RangeInclusive<u64>,
    ) -> Result<Option<Duration>, ConfigError> {
        self.whole("seconds", range, 1)
    }

    /// A whole number of minutes in `range`.
    pub(super) fn minutes(
        &self,
        range: RangeInclusive<u64>,
    ) -> Result<Option<Duration>, ConfigError> {
        self.whole("minutes", range, 60)
    }

    fn whole(
        &self,
        unit: &str,
        range: RangeInclusive<u64>,
        seconds_each: u64,
    ) -> Result<Option<Duration>, ConfigError> {
        let expected = format!(
            "a whole number of {unit} from {} to {}",
            range.start(),
            range.end()
        );
        self.parsed(&expected, |v| {
            v.parse()
                .ok()
                .filter(|n| range.contains(n))
                .map(|n| Duration::from_secs(n * seconds_each))
        })
    }

    /// An absolute URL with a host and one of `schemes`.
    pub(super) fn url(&self, schemes: &[&str], expected: &str) -> Result<Option<Url>, ConfigError> {
        self.parsed(expected, |v| web_url(v, schemes))
    }

    /// [`Setting::url`] for a URL that may carry credentials (`user:password@host`): a
    /// refusal never repeats the value.
    pub(super) fn credential_url(
        &self,
        schemes: &[&str],
        expected: &str,
    ) -> Result<Option<Url>, ConfigError> {
        match self.text() {
            None => Ok(None),
            Some(v) => match web_url(v.trim(), schemes) {
                Some(u) => Ok(Some(u)),
                None => Err(self.invalid(None, expected)),
            },
        }
    }

    /// An RFC 3339 time.
    pub(super) fn time(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>, ConfigError> {
        self.parsed("an RFC 3339 time such as 2027-05-01T00:00:00Z", |v| {
            chrono::DateTime::parse_from_rfc3339(v)
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc))
        })
    }

    /// A 32-byte key in base64; a refusal never repeats the value (it is a secret).
    pub(super) fn key32(&self) -> Result<Option<SecretBox<[u8; 32]>>, ConfigError> {
        let Some(v) = self.text() else {
            return Ok(None);
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| {
                self.invalid(
                    None,
                    "base64 of exactly 32 random bytes (e.g. `openssl rand -base64 32`)",
                )
            })?;
        Ok(Some(SecretBox::new(Box::new(bytes))))
    }

    /// The refusal of this setting's `value` (`None`: not repeated).
    pub(super) fn invalid(&self, value: Option<&str>, expected: &str) -> ConfigError {
        ConfigError::invalid(self.key, value, expected)
    }
}

fn web_url(v: &str, schemes: &[&str]) -> Option<Url> {
    Url::parse(v)
        .ok()
        .filter(|u| schemes.contains(&u.scheme()) && u.host().is_some())
}

/// An origin (`https://host[:port]`, a path allowed, no query) as a base URL ending in `/`,
/// so `join` keeps its path.
pub(super) fn origin(key: &str, v: &str) -> Result<Url, ConfigError> {
    let trimmed = v.trim().trim_end_matches('/');
    match Url::parse(&format!("{trimmed}/")) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.query().is_none() =>
        {
            Ok(u)
        }
        _ => Err(ConfigError::invalid(
            key,
            Some(v),
            "an origin such as https://example.com",
        )),
    }
}
