//! Builds the logging provider named by `logging.provider` and, when the host
//! asks, installs it as the global `tracing` subscriber.
//!
//! Providers are cargo features of this crate (`console`, on by default). A
//! provider named in config but not compiled in fails with a message naming
//! the feature to enable.
//!
//! [`try_init`] takes extra layers so other concerns (the OpenTelemetry layer
//! of `tracing-init`, a test capture layer) share the one subscriber.
//!
//! ```
//! use logging_abstractions::LoggingConfig;
//!
//! // Build without installing anything global:
//! let layer = logging_init::build(&LoggingConfig::default()).expect("console is compiled in");
//! # drop(layer);
//!
//! // What a host does once at start-up (the error says why it failed):
//! let unknown = LoggingConfig { provider: "syslog".into(), ..Default::default() };
//! let err = logging_init::try_init(&unknown, Vec::new()).unwrap_err();
//! assert!(err.to_string().contains("unknown provider `syslog`"));
//! ```

use logging_abstractions::{LoggingConfig, LoggingConfigError};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use tracing_subscriber::Layer;

/// A layer of the global subscriber (a provider's, or an extra one).
pub type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync + 'static>;

/// One provider this crate knows: its config name, the cargo feature that
/// compiles it in, and whether that feature is on in this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderInfo {
    /// The name written in `logging.provider`.
    pub name: &'static str,
    /// The cargo feature of `logging-init` that compiles it in.
    pub feature: &'static str,
    /// Whether it is compiled into this build.
    pub compiled_in: bool,
}

/// Every provider this crate knows.
pub const PROVIDERS: &[ProviderInfo] = &[ProviderInfo {
    name: "console",
    feature: "console",
    compiled_in: cfg!(feature = "console"),
}];

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingInitError {
    /// `logging.provider` names no known provider.
    #[error("logging.provider: unknown provider `{provider}` (expected one of: {known})")]
    UnknownProvider {
        /// The configured name.
        provider: String,
        /// The known names, comma separated.
        known: String,
    },
    /// The provider exists but its cargo feature is off.
    #[error(
        "logging.provider: provider `{provider}` is not compiled in; enable feature `{feature}` of logging-init (or chassis-web)"
    )]
    NotCompiledIn {
        /// The configured name.
        provider: String,
        /// The feature to enable.
        feature: &'static str,
    },
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

/// Finds `name` in `providers`: the provider if it is compiled in, else why not.
pub fn resolve<'a>(
    name: &str,
    providers: &'a [ProviderInfo],
) -> Result<&'a ProviderInfo, LoggingInitError> {
    match providers.iter().find(|p| p.name == name) {
        Some(p) if p.compiled_in => Ok(p),
        Some(p) => Err(LoggingInitError::NotCompiledIn {
            provider: name.to_owned(),
            feature: p.feature,
        }),
        None => Err(LoggingInitError::UnknownProvider {
            provider: name.to_owned(),
            known: providers
                .iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Builds the layer of the configured provider, installing nothing.
pub fn build(config: &LoggingConfig) -> Result<BoxedLayer, LoggingInitError> {
    config.validate()?;
    let provider = resolve(&config.provider, PROVIDERS)?;
    match provider.name {
        #[cfg(feature = "console")]
        "console" => Ok(logging_console::layer::<Registry>(config)?),
        // `resolve` only returns compiled-in providers, and each has an arm.
        other => Err(LoggingInitError::NotCompiledIn {
            provider: other.to_owned(),
            feature: provider.feature,
        }),
    }
}

/// Builds the configured provider and installs it, with `extra` layers, as
/// the global subscriber. Fails with [`LoggingInitError::AlreadyInstalled`]
/// when one is installed already (nothing is changed then).
pub fn try_init(config: &LoggingConfig, extra: Vec<BoxedLayer>) -> Result<(), LoggingInitError> {
    let mut layers = Vec::with_capacity(extra.len() + 1);
    layers.push(build(config)?);
    layers.extend(extra);
    Registry::default()
        .with(layers)
        .try_init()
        .map_err(|_| LoggingInitError::AlreadyInstalled)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[ProviderInfo] = &[
        ProviderInfo {
            name: "console",
            feature: "console",
            compiled_in: true,
        },
        ProviderInfo {
            name: "journald",
            feature: "journald",
            compiled_in: false,
        },
    ];

    #[test]
    fn resolve_names_feature_or_known_providers() {
        assert_eq!(resolve("console", TABLE).unwrap().name, "console");
        let err = resolve("journald", TABLE).unwrap_err().to_string();
        assert_eq!(
            err,
            "logging.provider: provider `journald` is not compiled in; enable feature `journald` of logging-init (or chassis-web)"
        );
        let err = resolve("syslog", TABLE).unwrap_err().to_string();
        assert_eq!(
            err,
            "logging.provider: unknown provider `syslog` (expected one of: console, journald)"
        );
    }

    #[test]
    fn build_validates_before_building() {
        let config = LoggingConfig {
            level: "chatty".into(),
            ..Default::default()
        };
        assert!(matches!(
            build(&config),
            Err(LoggingInitError::InvalidConfig(_))
        ));
        assert!(build(&LoggingConfig::default()).is_ok());
    }

    #[test]
    fn second_install_reports_already_installed() {
        // The first call may lose to another test of this binary; either way
        // exactly one global subscriber ends up installed and the second
        // attempt is refused.
        let _ = try_init(&LoggingConfig::default(), Vec::new());
        assert!(matches!(
            try_init(&LoggingConfig::default(), Vec::new()),
            Err(LoggingInitError::AlreadyInstalled)
        ));
    }
}
