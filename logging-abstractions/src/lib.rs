//! Logging config section of the service chassis.
//!
//! The host reads the `logging` section into a [`LoggingConfig`]; the
//! `logging-init` crate builds the provider it names (`console`). This crate
//! holds no logging library: only the config types and their validation, and
//! the [`LogContext`] port through which a host adds the fields of the
//! request being served to every line, so every crate may depend on it.
//!
//! ```
//! use logging_abstractions::{LogFormat, LoggingConfig};
//!
//! let config = LoggingConfig { format: LogFormat::Json, level: "info,sqlx=warn".into(), ..Default::default() };
//! assert!(config.validate().is_ok());
//!
//! let bad = LoggingConfig { level: "loud".into(), ..Default::default() };
//! assert!(bad.validate().unwrap_err().to_string().starts_with("logging.level"));
//! ```

use serde::{Deserialize, Serialize};

mod context;

pub use context::{LogContext, NoLogContext};

/// The `logging` section of the chassis configuration.
///
/// ```toml
/// [logging]
/// provider = "console"
/// format = "json"          # pretty | compact | json
/// level = "info,sqlx=warn" # RUST_LOG, when set, wins
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// Which provider writes the logs: `console`.
    pub provider: String,
    /// Line format of the console provider.
    pub format: LogFormat,
    /// Level filter in `RUST_LOG` syntax: `info`, `warn,my_service=debug`.
    /// The `RUST_LOG` environment variable, when set, overrides it.
    pub level: String,
    /// Colour codes in pretty / compact output, written only to a terminal
    /// and never when `NO_COLOR` is set (ignored for JSON).
    pub ansi: bool,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            provider: "console".into(),
            format: LogFormat::Pretty,
            level: "info".into(),
            ansi: true,
        }
    }
}

/// Line format of console logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Multi-line, human-friendly (development).
    Pretty,
    /// One line per event, human-friendly.
    Compact,
    /// One JSON object per line (production, log shippers).
    Json,
}

/// Levels accepted in a filter directive.
pub const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// A `logging` section that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoggingConfigError {
    /// `logging.level` is not a valid filter.
    #[error(
        "logging.level: invalid directive `{directive}`: expected `LEVEL` or `TARGET=LEVEL` with LEVEL one of trace, debug, info, warn, error, off"
    )]
    InvalidLevel {
        /// The directive that could not be read.
        directive: String,
    },
    /// `logging.level` is empty.
    #[error("logging.level: expected a level filter such as `info`, found an empty string")]
    EmptyLevel,
}

impl From<LoggingConfigError> for chassis_core::config::InvalidValue {
    fn from(error: LoggingConfigError) -> Self {
        let expected = "a level filter: `LEVEL` or `TARGET=LEVEL`, comma separated, with LEVEL one of trace, debug, info, warn, error, off";
        let found = match error {
            LoggingConfigError::InvalidLevel { directive } => format!("`{directive}`"),
            LoggingConfigError::EmptyLevel => "an empty string".to_owned(),
        };
        Self::new("logging.level", expected).found(found)
    }
}

impl LoggingConfig {
    /// Checks the level filter; the error names the key path and what was
    /// expected.
    pub fn validate(&self) -> Result<(), LoggingConfigError> {
        validate_filter(&self.level)
    }
}

/// Checks a filter in `RUST_LOG` syntax (`info`, `warn,my_crate::db=debug`).
///
/// Span-field directives (`target[span{field=1}]=level`) are accepted as they
/// are; only the level part is checked. A bare word must be a level (write
/// `my_crate=trace` to enable a target).
pub fn validate_filter(filter: &str) -> Result<(), LoggingConfigError> {
    if filter.trim().is_empty() {
        return Err(LoggingConfigError::EmptyLevel);
    }
    for directive in filter.split(',').map(str::trim) {
        if directive.is_empty() {
            continue;
        }
        let valid = match directive.rsplit_once('=') {
            Some((target, level)) => !target.is_empty() && is_level(level),
            // Unlike RUST_LOG, a bare word must be a level: `level = "debgu"` is
            // a typo far more often than a target name.
            None => is_level(directive),
        };
        if !valid {
            return Err(LoggingConfigError::InvalidLevel {
                directive: directive.to_owned(),
            });
        }
    }
    Ok(())
}

fn is_level(text: &str) -> bool {
    LEVELS.iter().any(|l| l.eq_ignore_ascii_case(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_rust_log_syntax() {
        for ok in [
            "info",
            "WARN",
            "warn,my_service=debug",
            "sqlx::query=off",
            "a[span]=trace",
        ] {
            assert!(validate_filter(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_levels_naming_the_key() {
        for bad in ["loud", "x=loud", "=info", "info,x=", "!!"] {
            let err = validate_filter(bad).unwrap_err().to_string();
            assert!(
                err.starts_with("logging.level: invalid directive"),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            validate_filter(" ").unwrap_err(),
            LoggingConfigError::EmptyLevel
        );
    }

    #[test]
    fn format_reads_lowercase_names() {
        #[derive(Deserialize)]
        struct W {
            f: LogFormat,
        }
        let w: W = serde_json::from_str(r#"{"f":"json"}"#).unwrap();
        assert_eq!(w.f, LogFormat::Json);
        assert!(serde_json::from_str::<W>(r#"{"f":"xml"}"#).is_err());
    }
}
