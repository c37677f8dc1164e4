//! How log lines are written. `LOG_FORMAT=json`: one JSON object a line (for Application
//! Insights and log shippers), with the fields of the enclosing spans (the handler's
//! `invocation_id`, a `user_id`) flattened in. Otherwise plain text, coloured only when
//! stderr is a terminal, and never under the Functions host (it stores the lines as they
//! are, so escape codes would end up in Application Insights).

use std::io::IsTerminal;

use crate::config::ConfigError;

/// The chosen output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStyle {
    /// Human-readable lines; `ansi`: with colour codes.
    Text {
        /// Colour escape codes.
        ansi: bool,
    },
    /// One JSON object a line.
    Json,
}

/// Decides the style from `LOG_FORMAT` (`text` or `json`; unset: text), whether stderr is a
/// terminal, and whether the process runs under the Functions host.
pub fn style(
    log_format: Option<&str>,
    terminal: bool,
    under_host: bool,
) -> Result<LogStyle, ConfigError> {
    match log_format.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(LogStyle::Text {
            ansi: terminal && !under_host,
        }),
        Some(v) if v.eq_ignore_ascii_case("text") => Ok(LogStyle::Text {
            ansi: terminal && !under_host,
        }),
        Some(v) if v.eq_ignore_ascii_case("json") => Ok(LogStyle::Json),
        Some(_) => Err(ConfigError {
            setting: "LOG_FORMAT".into(),
            problem: "is not valid; expected `text` or `json`".into(),
        }),
    }
}

/// Installs the global subscriber on stderr; `RUST_LOG` filters (else `default`).
pub fn init(default: &str, under_host: bool) -> Result<(), ConfigError> {
    let format = std::env::var("LOG_FORMAT").ok();
    let style = style(
        format.as_deref(),
        std::io::stderr().is_terminal(),
        under_host,
    )?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    // A second init (tests) keeps the first subscriber.
    let _ = match style {
        LogStyle::Text { ansi } => builder.with_ansi(ansi).try_init(),
        LogStyle::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_outside_the_host_and_json_on_request() {
        let text = |ansi| Ok(LogStyle::Text { ansi });
        let cases = [
            // (LOG_FORMAT, terminal, under host, style)
            (None, true, false, text(true)),
            (None, false, false, text(false)),
            (None, true, true, text(false)),
            (Some("text"), true, false, text(true)),
            (Some("TEXT"), false, true, text(false)),
            (Some(""), false, false, text(false)),
            (Some("json"), true, false, Ok(LogStyle::Json)),
            (Some(" Json "), false, true, Ok(LogStyle::Json)),
        ];
        for (format, terminal, host, want) in cases {
            assert_eq!(
                style(format, terminal, host),
                want,
                "{format:?} {terminal} {host}"
            );
        }
        let e = style(Some("yaml"), true, false).unwrap_err();
        assert_eq!(e.setting, "LOG_FORMAT");
    }
}
