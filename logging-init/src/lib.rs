//! Builds the logging provider named by `logging.provider` and, when the host
//! asks, installs it as the global `tracing` subscriber.
//!
//! Providers are cargo features of this crate (`console`, on by default). A
//! provider named in config but not compiled in fails with a message naming
//! the feature to enable.
//!
//! [`try_init`] takes extra layers so other concerns (the OpenTelemetry layer
//! of `traces-init`, a test capture layer) share the one subscriber.
//!
//! The host passes the [`LogContext`] whose fields every line carries (the
//! correlation id of the request being served); [`NoLogContext`] adds none.
//!
//! ```
//! use std::sync::Arc;
//! use logging_abstractions::{LoggingConfig, NoLogContext};
//!
//! // Build without installing anything global:
//! let layer = logging_init::build(&LoggingConfig::default(), Arc::new(NoLogContext))
//!     .expect("console is compiled in");
//! # drop(layer);
//!
//! // What a host does once at start-up (the error says why it failed):
//! let unknown = LoggingConfig { provider: "syslog".into(), ..Default::default() };
//! let err = logging_init::try_init(&unknown, Arc::new(NoLogContext), Vec::new()).unwrap_err();
//! assert!(err.to_string().contains("unknown provider `syslog`"));
//! ```

use std::sync::Arc;

use chassis_core::provider::{ProviderError, ProviderTable};
pub use logging_abstractions::{LogContext, NoLogContext};
use logging_abstractions::{LoggingConfig, LoggingConfigError};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use tracing_subscriber::Layer;

/// A layer of the global subscriber (a provider's, or an extra one).
pub type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync + 'static>;

/// Every provider `logging.provider` accepts, one line each: its name, the
/// cargo feature compiling it in and the function building its layer. The
/// one list of the concern's provider names.
pub fn providers() -> ProviderTable<BuildLayer> {
    ProviderTable::new(
        "logging",
        "logging-init",
        vec![chassis_core::provider!(
            "console",
            feature = "console",
            console as BuildLayer
        )],
    )
}

/// Builds a provider's layer, its lines carrying the fields of the context.
pub type BuildLayer =
    fn(&LoggingConfig, Arc<dyn LogContext>) -> Result<BoxedLayer, LoggingInitError>;

#[cfg(feature = "console")]
fn console(
    config: &LoggingConfig,
    context: Arc<dyn LogContext>,
) -> Result<BoxedLayer, LoggingInitError> {
    Ok(logging_console::layer::<Registry>(config, context)?)
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingInitError {
    /// `logging.provider` is unknown or not compiled in.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The section is invalid.
    #[error(transparent)]
    InvalidConfig(#[from] LoggingConfigError),
    /// The console provider rejected its settings.
    #[cfg(feature = "console")]
    #[error(transparent)]
    Console(#[from] logging_console::ConsoleError),
    /// A global subscriber is already installed (by another host in the same
    /// process, or by a test harness).
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Builds the layer of the configured provider, installing nothing; its
/// lines carry the fields of `context`.
pub fn build(
    config: &LoggingConfig,
    context: Arc<dyn LogContext>,
) -> Result<BoxedLayer, LoggingInitError> {
    config.validate()?;
    let table = providers();
    let provider = table.resolve(&config.provider)?;
    (provider.driver)(config, context)
}

/// Builds the configured provider and installs it, with `extra` layers, as
/// the global subscriber. Fails with [`LoggingInitError::AlreadyInstalled`]
/// when one is installed already (nothing is changed then).
pub fn try_init(
    config: &LoggingConfig,
    context: Arc<dyn LogContext>,
    extra: Vec<BoxedLayer>,
) -> Result<(), LoggingInitError> {
    let mut layers = Vec::with_capacity(extra.len() + 1);
    layers.push(build(config, context)?);
    layers.extend(extra);
    Registry::default()
        .with(layers)
        .try_init()
        .map_err(|_| LoggingInitError::AlreadyInstalled)
}

/// Lines the compiled-in providers dropped because their output could not
/// keep up (reported by the host as a metric); 0 when none drops lines.
pub fn dropped_lines() -> u64 {
    #[cfg(feature = "console")]
    let dropped = logging_console::dropped_lines();
    #[cfg(not(feature = "console"))]
    let dropped = 0;
    dropped
}

/// Waits, at most `timeout`, until the lines the providers have queued are
/// written (last step of a host's shutdown); `false` if some were not.
pub fn flush(timeout: std::time::Duration) -> bool {
    #[cfg(feature = "console")]
    let flushed = logging_console::flush(timeout);
    #[cfg(not(feature = "console"))]
    let flushed = {
        let _ = timeout;
        true
    };
    flushed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_provider_lists_the_known_ones() {
        let config = LoggingConfig {
            provider: "syslog".into(),
            ..Default::default()
        };
        let err = build(&config, Arc::new(NoLogContext)).err().unwrap();
        assert!(matches!(
            err,
            LoggingInitError::Provider(ProviderError::Unknown { .. })
        ));
        assert_eq!(
            err.to_string(),
            "logging.provider: unknown provider `syslog`; expected one of: console"
        );
    }

    #[cfg(feature = "console")]
    #[test]
    fn build_validates_before_building() {
        let config = LoggingConfig {
            level: "chatty".into(),
            ..Default::default()
        };
        assert!(matches!(
            build(&config, Arc::new(NoLogContext)),
            Err(LoggingInitError::InvalidConfig(_))
        ));
        assert!(build(&LoggingConfig::default(), Arc::new(NoLogContext)).is_ok());
    }

    #[cfg(feature = "console")]
    #[test]
    fn second_install_reports_already_installed() {
        // The first call may lose to another test of this binary; either way
        // exactly one global subscriber ends up installed and the second
        // attempt is refused.
        let _ = try_init(
            &LoggingConfig::default(),
            Arc::new(NoLogContext),
            Vec::new(),
        );
        assert!(matches!(
            try_init(
                &LoggingConfig::default(),
                Arc::new(NoLogContext),
                Vec::new()
            ),
            Err(LoggingInitError::AlreadyInstalled)
        ));
    }
}
