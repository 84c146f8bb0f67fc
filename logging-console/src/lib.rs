//! Console logging provider of the service chassis: pretty, compact or JSON
//! lines on stdout, built on `tracing-subscriber`'s `fmt` layer.
//!
//! The level filter comes from `logging.level`; the `RUST_LOG` environment
//! variable, when set, overrides it. The provider only builds a
//! `tracing_subscriber::Layer`: installing it as the global
//! subscriber is the host's decision (see `logging-init`).
//!
//! Lines go to stdout through a bounded queue and a writer thread, so a
//! request never waits for the reader of stdout: when the queue is full,
//! INFO and more verbose lines are dropped and counted ([`dropped_lines`]);
//! WARN and ERROR lines wait. [`flush`] waits for the queue to be written
//! (the host calls it at the end of its shutdown).
//!
//! Each line carries the fields of the [`LogContext`] the host gives (the
//! correlation id of the request being served): top-level keys in JSON,
//! `name=value` at the end of a compact line, a `with` line in pretty output.
//!
//! ```
//! use std::sync::Arc;
//! use logging_abstractions::{LogFormat, LoggingConfig, NoLogContext};
//! use tracing_subscriber::{Registry, layer::SubscriberExt};
//!
//! let config = LoggingConfig { format: LogFormat::Json, ..Default::default() };
//! let layer = logging_console::layer::<Registry>(&config, Arc::new(NoLogContext)).expect("valid config");
//! let subscriber = Registry::default().with(layer);
//! tracing::subscriber::with_default(subscriber, || tracing::info!("hello"));
//! ```

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::sync::Arc;

use logging_abstractions::{LogContext, LogFormat, LoggingConfig};

mod json;
mod stdout;

pub use stdout::{dropped_lines, flush};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, fmt};

/// The provider name in config.
pub const PROVIDER: &str = "console";

/// A boxed layer, as returned by [`layer`] (the `logging_init::BoxedLayer` of the registry).
type BoxedLayer<S> = Box<dyn Layer<S> + Send + Sync + 'static>;

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

/// Builds the console layer writing to stdout (through the non-blocking
/// queue, see the crate docs); each line carries the fields of `context`.
///
/// Pretty and compact lines are coloured only when `logging.ansi` is on,
/// stdout is a terminal and `NO_COLOR` is unset or empty
/// (<https://no-color.org>): logs redirected to a file or a pipe carry no
/// escape codes.
pub fn layer<S>(
    config: &LoggingConfig,
    context: Arc<dyn LogContext>,
) -> Result<BoxedLayer<S>, ConsoleError>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let rust_log = std::env::var("RUST_LOG").ok();
    let config = LoggingConfig {
        ansi: colour_enabled(
            config.ansi,
            std::io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ),
        ..config.clone()
    };
    layer_with_writer(
        &config,
        rust_log.as_deref(),
        stdout::NonBlockingStdout,
        context,
    )
}

/// Whether text lines are coloured: asked for in the configuration, written
/// to a terminal, and not refused by a non-empty `NO_COLOR`.
pub fn colour_enabled(configured: bool, terminal: bool, no_color: Option<&OsStr>) -> bool {
    configured && terminal && no_color.is_none_or(OsStr::is_empty)
}

/// Builds the console layer writing to `writer`, with `rust_log` as the
/// override of the configured level (pass `None` to use `logging.level`).
/// Tests use this to capture lines. `logging.ansi` is taken as it is: the
/// caller knows whether `writer` is a terminal (see [`colour_enabled`]).
pub fn layer_with_writer<S, W>(
    config: &LoggingConfig,
    rust_log: Option<&str>,
    writer: W,
    context: Arc<dyn LogContext>,
) -> Result<BoxedLayer<S>, ConsoleError>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = filter(&config.level, rust_log)?;
    let base = fmt::layer().with_writer(writer);
    let ansi = config.ansi;
    // Every line carries the fields of the spans it was written in and
    // those of the context. The inner format is told its ANSI setting
    // itself: a line with context fields is formatted into a buffer first.
    let layer: BoxedLayer<S> = match config.format {
        LogFormat::Pretty => base
            .pretty()
            .with_ansi(ansi)
            .map_event_format(|f| {
                WithContext::new(f.with_ansi(ansi), context, Style::Pretty { ansi })
            })
            .with_filter(filter)
            .boxed(),
        LogFormat::Compact => base
            .compact()
            .with_ansi(ansi)
            .map_event_format(|f| {
                WithContext::new(f.with_ansi(ansi), context, Style::Compact { ansi })
            })
            .with_filter(filter)
            .boxed(),
        // Written directly (see `json.rs`); span fields are kept as JSON.
        LogFormat::Json => base
            .fmt_fields(fmt::format::JsonFields::new())
            .event_format(json::JsonLine::new(context))
            .with_filter(filter)
            .boxed(),
    };
    Ok(layer)
}

/// How context fields are written in each text format, and whether they
/// color (as their own fields are: italic names, dimmed punctuation).
#[derive(Debug, Clone, Copy)]
enum Style {
    Pretty { ansi: bool },
    Compact { ansi: bool },
}

/// ANSI escapes the text formats use for field names and punctuation.
const ITALIC: &str = "\x1b[3m";
const DIMMED: &str = "\x1b[2m";
const DIMMED_ITALIC: &str = "\x1b[2;3m";
const RESET: &str = "\x1b[0m";

/// An event format that adds the fields of a [`LogContext`] to each line
/// `inner` writes. Only lines written inside a context pay anything: the
/// others go straight to `inner`.
struct WithContext<F> {
    inner: F,
    context: Arc<dyn LogContext>,
    style: Style,
}

impl<F> WithContext<F> {
    fn new(inner: F, context: Arc<dyn LogContext>, style: Style) -> Self {
        Self {
            inner,
            context,
            style,
        }
    }

    /// The context fields as `style` writes them; empty outside a context.
    fn fields(&self) -> String {
        let mut out = String::new();
        let style = self.style;
        self.context.visit(&mut |name, value| {
            // Writing to a String cannot fail.
            let _ = match style {
                Style::Compact { ansi: false } => write!(out, " {name}={value}"),
                Style::Compact { ansi: true } => {
                    write!(out, " {ITALIC}{name}{RESET}{DIMMED}={RESET}{value}")
                }
                Style::Pretty { ansi } => {
                    if out.is_empty() && ansi {
                        out.push_str(&format!("    {DIMMED_ITALIC}with{RESET} "));
                    } else if out.is_empty() {
                        out.push_str("    with ");
                    } else {
                        out.push_str(", ");
                    }
                    match ansi {
                        true => write!(out, "{ITALIC}{name}{RESET}{DIMMED}:{RESET} {value}"),
                        false => write!(out, "{name}: {value}"),
                    }
                }
            };
        });
        out
    }
}

impl<S, N, F> FormatEvent<S, N> for WithContext<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let fields = self.fields();
        if fields.is_empty() {
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match self.style {
            Style::Compact { .. } => {
                let body = line.trim_end_matches('\n');
                writer.write_str(body)?;
                writer.write_str(&fields)?;
                writer.write_char('\n')
            }
            // The pretty block ends with a blank line; the context line goes
            // just before it, after the spans.
            Style::Pretty { .. } => {
                let body = line.strip_suffix('\n').unwrap_or(&line);
                writer.write_str(body)?;
                writer.write_str(&fields)?;
                writer.write_str("\n\n")
            }
        }
    }
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

    use logging_abstractions::NoLogContext;
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
        capture_in(config, rust_log, Arc::new(NoLogContext), f)
    }

    fn capture_in(
        config: &LoggingConfig,
        rust_log: Option<&str>,
        context: Arc<dyn LogContext>,
        f: impl FnOnce(),
    ) -> String {
        let buffer = Buffer::default();
        let layer =
            layer_with_writer::<Registry, _>(config, rust_log, buffer.clone(), context).unwrap();
        tracing::subscriber::with_default(Registry::default().with(layer), f);
        buffer.text()
    }

    std::thread_local! {
        /// The correlation id of the "request" the test thread is serving.
        static SERVING: std::cell::RefCell<Option<&'static str>> = const { std::cell::RefCell::new(None) };
    }

    /// A context like a host's: fields only while a request is served.
    struct Serving;

    impl LogContext for Serving {
        fn visit(&self, field: &mut dyn FnMut(&'static str, &str)) {
            if let Some(id) = SERVING.with(|s| *s.borrow()) {
                field("correlation_id", id);
                field("trace_id", "4bf92f35");
            }
        }
    }

    /// One line outside a request, then two inside one (the second in a span).
    fn log_around_a_request() {
        tracing::info!("idle");
        SERVING.with(|s| *s.borrow_mut() = Some("c-\"9\""));
        tracing::info!(order = 7, "order placed");
        tracing::info_span!("step", n = 1).in_scope(|| tracing::warn!("stock low"));
        SERVING.with(|s| *s.borrow_mut() = None);
    }

    /// What [`log_around_a_request`] writes in `format`, with [`Serving`].
    fn around_a_request(format: LogFormat) -> String {
        around_a_request_in_color(format, false)
    }

    fn around_a_request_in_color(format: LogFormat, ansi: bool) -> String {
        let config = LoggingConfig {
            format,
            ansi,
            ..Default::default()
        };
        capture_in(&config, None, Arc::new(Serving), log_around_a_request)
    }

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        assert!(colour_enabled(true, true, None));
        assert!(
            colour_enabled(true, true, Some(OsStr::new(""))),
            "an empty NO_COLOR is unset"
        );
        assert!(!colour_enabled(true, true, Some(OsStr::new("1"))));
        assert!(!colour_enabled(true, false, None), "a file or a pipe");
        assert!(!colour_enabled(false, true, None), "logging.ansi = false");
    }

    #[test]
    fn colored_text_formats_style_context_fields_as_their_own() {
        let compact = around_a_request_in_color(LogFormat::Compact, true);
        let line = compact.lines().nth(1).unwrap();
        assert!(
            line.ends_with("\x1b[3mcorrelation_id\x1b[0m\x1b[2m=\x1b[0mc-\"9\" \x1b[3mtrace_id\x1b[0m\x1b[2m=\x1b[0m4bf92f35"),
            "{line:?}"
        );
        let pretty = around_a_request_in_color(LogFormat::Pretty, true);
        assert!(
            pretty.contains(
                "    \x1b[2;3mwith\x1b[0m \x1b[3mcorrelation_id\x1b[0m\x1b[2m:\x1b[0m c-\"9\", "
            ),
            "{pretty:?}"
        );
    }

    #[test]
    fn json_lines_carry_context_fields_at_top_level() {
        let out = around_a_request(LogFormat::Json);
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("valid JSON"))
            .collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(lines[0]["message"], "idle");
        assert!(lines[0].get("correlation_id").is_none(), "{out}");
        for line in &lines[1..] {
            assert_eq!(line["correlation_id"], "c-\"9\"", "{out}");
            assert_eq!(line["trace_id"], "4bf92f35", "{out}");
            assert!(line["timestamp"].is_string(), "{out}");
        }
        assert_eq!(lines[1]["order"], 7);
        assert_eq!(lines[2]["spans"][0]["n"], 1);
    }

    #[test]
    fn json_lines_match_tracing_subscribers_json_format() {
        // What `tracing-subscriber`'s own JSON format (flattened event, span
        // list) writes for the same events: the direct format must agree.
        let theirs = Buffer::default();
        let reference = fmt::layer()
            .with_writer(theirs.clone())
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true);
        let ours = Buffer::default();
        let config = LoggingConfig {
            format: LogFormat::Json,
            level: "trace".into(),
            ..Default::default()
        };
        let layer =
            layer_with_writer::<Registry, _>(&config, None, ours.clone(), Arc::new(NoLogContext))
                .unwrap();
        let subscriber = Registry::default().with(layer).with(reference);
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("outer", service = "s\"1", n = 3);
            let _outer = outer.enter();
            let inner = tracing::debug_span!("inner");
            let _inner = inner.enter();
            let error = std::io::Error::other("disk \"full\"");
            tracing::warn!(
                text = "a\tb",
                count = 7_u64,
                delta = -2_i64,
                ratio = 0.5,
                ok = true,
                debug = ?Some("x"),
                error = &error as &dyn std::error::Error,
                "line {}\n", 1
            );
            drop(_inner);
            drop(_outer);
            tracing::info!("outside");
        });
        let parse = |text: String| -> Vec<serde_json::Value> {
            text.lines()
                .map(|l| {
                    let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'), "{l}");
                    v.as_object_mut().unwrap().remove("timestamp");
                    v
                })
                .collect()
        };
        let (ours, theirs) = (parse(ours.text()), parse(theirs.text()));
        assert_eq!(ours.len(), 2);
        assert_eq!(ours, theirs);
    }

    #[test]
    fn compact_lines_end_with_context_fields() {
        let out = around_a_request(LogFormat::Compact);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].ends_with("idle"), "{out}");
        assert!(
            lines[1].ends_with(r#"order=7 correlation_id=c-"9" trace_id=4bf92f35"#),
            "{out}"
        );
        assert!(lines[2].contains("stock low"), "{out}");
        assert!(
            lines[2].ends_with(r#"correlation_id=c-"9" trace_id=4bf92f35"#),
            "{out}"
        );
    }

    #[test]
    fn pretty_blocks_get_a_context_line() {
        let out = around_a_request(LogFormat::Pretty);
        let blocks: Vec<&str> = out.split("\n\n").filter(|b| !b.is_empty()).collect();
        assert_eq!(blocks.len(), 3, "{out}");
        assert!(!blocks[0].contains("correlation_id"), "{out}");
        for block in &blocks[1..] {
            assert!(
                block.ends_with(r#"    with correlation_id: c-"9", trace_id: 4bf92f35"#),
                "{out}"
            );
        }
        assert!(
            blocks[2].contains("in logging_console::tests::step with n: 1"),
            "{out}"
        );
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
        let err = layer_with_writer::<Registry, _>(
            &config,
            None,
            Buffer::default(),
            Arc::new(NoLogContext),
        )
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
            Arc::new(NoLogContext),
        )
        .err()
        .unwrap();
        assert!(
            err.to_string().starts_with("RUST_LOG: invalid filter"),
            "{err}"
        );
    }
}
