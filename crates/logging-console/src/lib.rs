//! Console logging provider of the service chassis: pretty, compact or JSON
//! lines on stdout, built on `tracing-subscriber`'s `fmt` layer.
//!
//! The level filter comes from `logging.level`; the `RUST_LOG` environment
//! variable, when set, overrides it. The provider only builds a
//! `tracing_subscriber::Layer`: installing it as the global
//! subscriber is the host's decision (see `logging-init`).
//!
//! ```
//! use logging_abstractions::{LogFormat, LoggingConfig};
//! use tracing_subscriber::{Registry, layer::SubscriberExt};
//!
//! let config = LoggingConfig { format: LogFormat::Json, ..Default::default() };
//! let layer = logging_console::layer::<Registry>(&config).expect("valid config");
//! let subscriber = Registry::default().with(layer);
//! tracing::subscriber::with_default(subscriber, || tracing::info!("hello"));
//! ```

use logging_abstractions::{LogFormat, LoggingConfig};
use tracing::Subscriber;
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, fmt};

/// The provider name in config.
pub const PROVIDER: &str = "console";

/// A boxed layer, as returned by [`layer`].
pub type BoxedLayer<S> = Box<dyn Layer<S> + Send + Sync + 'static>;

/// Why the console layer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// `logging.level` is not a valid filter.
    #[error("logging.level: invalid filter `{filter}`: {reason}")]
    InvalidLevel {
        /// The configured filter.
        filter: String,
        /// Why `tracing-subscriber` rejected it.
        reason: String,
    },
    /// `RUST_LOG` is set but not a valid filter.
    #[error("RUST_LOG: invalid filter `{filter}`: {reason}")]
    InvalidRustLog {
        /// The variable's value.
        filter: String,
        /// Why `tracing-subscriber` rejected it.
        reason: String,
    },
}

/// Builds the console layer writing to stdout.
pub fn layer<S>(config: &LoggingConfig) -> Result<BoxedLayer<S>, ConsoleError>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let rust_log = std::env::var("RUST_LOG").ok();
    layer_with_writer(config, rust_log.as_deref(), std::io::stdout)
}

/// Builds the console layer writing to `writer`, with `rust_log` as the
/// override of the configured level (pass `None` to use `logging.level`).
/// Tests use this to capture lines.
pub fn layer_with_writer<S, W>(
    config: &LoggingConfig,
    rust_log: Option<&str>,
    writer: W,
) -> Result<BoxedLayer<S>, ConsoleError>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = filter(&config.level, rust_log)?;
    let base = fmt::layer().with_writer(writer);
    // Every line carries the fields of the spans it was written in, so the
    // request span's `correlation_id` shows up on each line of a request.
    let layer: BoxedLayer<S> = match config.format {
        LogFormat::Pretty => base
            .pretty()
            .with_ansi(config.ansi)
            .with_filter(filter)
            .boxed(),
        LogFormat::Compact => base
            .compact()
            .with_ansi(config.ansi)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => base
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .with_filter(filter)
            .boxed(),
    };
    Ok(layer)
}

/// The effective filter: `RUST_LOG` when set and not empty, else the
/// configured level.
fn filter(level: &str, rust_log: Option<&str>) -> Result<EnvFilter, ConsoleError> {
    match rust_log.map(str::trim).filter(|v| !v.is_empty()) {
        Some(env) => EnvFilter::try_new(env).map_err(|e| ConsoleError::InvalidRustLog {
            filter: env.to_owned(),
            reason: e.to_string(),
        }),
        None => EnvFilter::try_new(level).map_err(|e| ConsoleError::InvalidLevel {
            filter: level.to_owned(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::Registry;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn capture(config: &LoggingConfig, rust_log: Option<&str>, f: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let layer = layer_with_writer::<Registry, _>(config, rust_log, buffer.clone()).unwrap();
        tracing::subscriber::with_default(Registry::default().with(layer), f);
        buffer.text()
    }

    fn log_in_request_span() {
        let span = tracing::info_span!("request", correlation_id = "c-42");
        let _entered = span.enter();
        tracing::info!(order = 7, "order placed");
        tracing::debug!("detail");
    }

    #[test]
    fn json_lines_carry_span_fields_and_respect_level() {
        let config = LoggingConfig {
            format: LogFormat::Json,
            ..Default::default()
        };
        let out = capture(&config, None, log_in_request_span);
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "debug is filtered at info: {out}");
        assert_eq!(lines[0]["message"], "order placed");
        assert_eq!(lines[0]["order"], 7);
        assert_eq!(lines[0]["spans"][0]["correlation_id"], "c-42");
    }

    #[test]
    fn rust_log_overrides_configured_level() {
        let config = LoggingConfig {
            format: LogFormat::Compact,
            ansi: false,
            level: "warn".into(),
            ..Default::default()
        };
        let out = capture(&config, Some("debug"), log_in_request_span);
        assert!(out.contains("order placed"), "{out}");
        assert!(out.contains("detail"), "{out}");
        assert!(
            out.contains("correlation_id=\"c-42\"") || out.contains("correlation_id=c-42"),
            "{out}"
        );
        assert_eq!(capture(&config, None, log_in_request_span), "");
    }

    #[test]
    fn pretty_format_writes_span_context() {
        let config = LoggingConfig {
            ansi: false,
            ..Default::default()
        };
        let out = capture(&config, None, log_in_request_span);
        assert!(
            out.contains("order placed") && out.contains("c-42"),
            "{out}"
        );
    }

    #[test]
    fn invalid_filters_are_reported() {
        let config = LoggingConfig {
            level: "info,[=".into(),
            ..Default::default()
        };
        let err = layer_with_writer::<Registry, _>(&config, None, Buffer::default())
            .err()
            .unwrap();
        assert!(
            err.to_string().starts_with("logging.level: invalid filter"),
            "{err}"
        );
        let err = layer_with_writer::<Registry, _>(
            &LoggingConfig::default(),
            Some("x=[=nope"),
            Buffer::default(),
        )
        .err()
        .unwrap();
        assert!(
            err.to_string().starts_with("RUST_LOG: invalid filter"),
            "{err}"
        );
    }
}
