//! Where settings come from, and the one reader of their raw values.
//!
//! A setting is looked up in the environment, then at the TOML file's top level, then (for
//! the settings that allow it, `[sinks]`) in a named table of the file. Every value goes
//! through the same conversion ([`file_text`], [`file_list`]) and the same Key Vault
//! reference check, wherever it was found: one reader, so a table cannot silently accept
//! less than the top level does.

use std::collections::HashMap;
use std::path::Path;

use super::error::ConfigError;
use super::references::{self, KeyVaultReference};

/// Looks a setting up in the environment (or a stand-in for it in tests).
type EnvLookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where settings come from: the environment first, then the TOML file.
pub struct Sources {
    env: EnvLookup,
    pub(super) file: toml::Table,
    /// Values that were Key Vault references, in the order first read (`references`).
    references: std::sync::Mutex<Vec<KeyVaultReference>>,
}

/// A raw value before any check: the environment's text, or a TOML value from the file.
enum Raw {
    Env(String),
    File(toml::Value),
}

impl Sources {
    /// The process environment plus an optional TOML file. `explicit` says the path was given
    /// with `--config`, in which case a missing file is an error.
    pub fn from_env_and_file(path: Option<&Path>, explicit: bool) -> Result<Self, ConfigError> {
        let file = match path {
            Some(p) => read_toml(p, explicit)?,
            None => toml::Table::new(),
        };
        Ok(Self {
            env: Box::new(|k| std::env::var(k).ok()),
            file,
            references: Default::default(),
        })
    }

    /// A fixed map (tests, and the handler's payload-mode unit tests).
    pub fn from_map(map: HashMap<String, String>) -> Self {
        Self {
            env: Box::new(move |k| map.get(k).cloned()),
            file: toml::Table::new(),
            references: Default::default(),
        }
    }

    /// Adds TOML text as the file source (tests).
    pub fn with_toml(mut self, text: &str) -> Result<Self, ConfigError> {
        self.file = text.parse().map_err(|e: toml::de::Error| ConfigError {
            setting: "--config".into(),
            problem: format!("is not valid TOML: {}", e.message()),
        })?;
        Ok(self)
    }

    /// The raw value of a setting: environment, then file; empty strings count as unset, and
    /// so does an unresolved Key Vault reference, which is recorded instead (`references`).
    /// A list given as a TOML array reads as its items joined by commas.
    pub fn get(&self, key: &str) -> Option<String> {
        self.text(key, None)
    }

    /// [`Sources::get`], falling back to the file's `[table]` (its keys in any case).
    pub(super) fn get_or_table(&self, key: &str, table: &str) -> Option<String> {
        self.text(key, Some(table))
    }

    /// A list setting's items: a TOML array's items, or the text split at `sep` (each array
    /// item is split too), trimmed, empty ones dropped; empty when unset.
    pub(super) fn list(&self, key: &str, table: Option<&str>, sep: Separator) -> Vec<String> {
        let items = match self.raw(key, table) {
            None => Vec::new(),
            Some(Raw::Env(s)) => vec![s],
            Some(Raw::File(v)) => file_list(&v),
        };
        items
            .iter()
            .filter(|item| !self.is_reference(key, item))
            .flat_map(|item| sep.split(item))
            .collect()
    }

    /// The Key Vault references met so far by [`Sources::get`].
    pub fn unresolved_references(&self) -> Vec<KeyVaultReference> {
        self.references
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn text(&self, key: &str, table: Option<&str>) -> Option<String> {
        let value = match self.raw(key, table)? {
            Raw::Env(s) => s,
            Raw::File(v) => file_text(&v)?,
        };
        (!self.is_reference(key, &value)).then_some(value)
    }

    /// Records `value` when it is a Key Vault reference, which then reads as unset.
    fn is_reference(&self, key: &str, value: &str) -> bool {
        let Some(r) = references::parse(key, value) else {
            return false;
        };
        let mut seen = self.references.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.iter().any(|s| s.setting == r.setting) {
            seen.push(r);
        }
        true
    }

    /// The environment's non-blank value, else the file's top-level value, else the one in
    /// `[table]`, if any of them holds something [`file_text`] reads.
    fn raw(&self, key: &str, table: Option<&str>) -> Option<Raw> {
        if let Some(v) = (self.env)(key).filter(|v| !v.trim().is_empty()) {
            return Some(Raw::Env(v));
        }
        let readable = |v: &&toml::Value| file_text(v).is_some();
        if let Some(v) = self.file.get(key).filter(readable) {
            return Some(Raw::File(v.clone()));
        }
        let table = self.file.get(table?)?.as_table()?;
        table
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
            .filter(readable)
            .map(|v| Raw::File(v.clone()))
    }
}

/// How a list setting's text separates its items.
#[derive(Debug, Clone, Copy)]
pub(super) enum Separator {
    /// `a, b, c`.
    Comma,
    /// `a b c` (scopes).
    Whitespace,
    /// `a; b` (items that may hold commas: display names).
    Semicolon,
}

impl Separator {
    fn split(self, s: &str) -> Vec<String> {
        let parts: Vec<&str> = match self {
            Separator::Comma => s.split(',').collect(),
            Separator::Whitespace => s.split_whitespace().collect(),
            Separator::Semicolon => s.split(';').collect(),
        };
        parts
            .into_iter()
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// A TOML value as a setting's text: a non-blank string, a whole number, a boolean, or an
/// array of strings (joined by commas). Anything else (floats, dates, tables) is unset.
fn file_text(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(_) => Some(file_list(v).join(",")),
        _ => None,
    }
}

/// A TOML value as a list setting's items: an array's strings, or the value's text.
fn file_list(v: &toml::Value) -> Vec<String> {
    match v {
        toml::Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        other => file_text(other).into_iter().collect(),
    }
}

pub(super) fn read_toml(path: &Path, explicit: bool) -> Result<toml::Table, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(toml::Table::new())
        }
        Err(e) => {
            return Err(ConfigError {
                setting: "--config".into(),
                problem: format!("cannot read {}: {e}", path.display()),
            })
        }
    };
    text.parse().map_err(|e: toml::de::Error| ConfigError {
        setting: "--config".into(),
        problem: format!(
            "{} is not valid TOML: {}",
            path.display(),
            e.message().trim()
        ),
    })
}
