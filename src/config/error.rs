//! `ConfigError`, the one line a user sees for a wrong or missing setting. Its own module
//! so every reader (`sources`, `values`, each concern's module) can use it without going
//! through `config/mod.rs`, which uses them.

/// A setting that is wrong or missing. Its `Display` is the one line a user sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting {setting}: {problem}")]
pub struct ConfigError {
    /// The setting's name, as written in the environment or TOML file.
    pub setting: String,
    /// What is wrong and what is expected.
    pub problem: String,
}

impl From<crate::core::lights::LightsError> for ConfigError {
    fn from(e: crate::core::lights::LightsError) -> Self {
        ConfigError {
            setting: e.setting,
            problem: e.problem,
        }
    }
}

impl ConfigError {
    /// A required setting that is absent.
    pub fn missing(setting: &str, what: &str) -> Self {
        Self {
            setting: setting.to_owned(),
            problem: format!("is not set; expected {what}"),
        }
    }

    /// A setting whose value is wrong; `value` is repeated unless it is `None` (secrets,
    /// URLs that may carry credentials).
    pub fn invalid(setting: &str, value: Option<&str>, expected: &str) -> Self {
        let problem = match value {
            Some(v) => format!("{:?} is not valid; expected {expected}", truncate(v, 80)),
            None => format!("is not valid; expected {expected}"),
        };
        Self {
            setting: setting.to_owned(),
            problem,
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        s.chars().take(max).collect::<String>() + "…"
    }
}
