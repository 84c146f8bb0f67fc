//! Why a service could not start, or could not finish its shutdown.

use logging_init::LoggingInitError;
use messaging_init::MessagingInitError;
use storage_init::StorageInitError;
use traces_init::TracingInitError;

use super::BoxError;
use crate::config::ConfigError;
use crate::telemetry::MetricsError;

/// Why a service could not start. Each message names the key path or
/// resource at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The logging provider could not be built or installed.
    #[error(transparent)]
    Logging(#[from] LoggingInitError),
    /// The event bus could not be built.
    #[error(transparent)]
    Messaging(#[from] MessagingInitError),
    /// The store could not be built.
    #[error(transparent)]
    Storage(#[from] StorageInitError),
    /// The service's migrations could not be applied (or its provider has
    /// no SQL).
    #[error("storage: {0}")]
    Migrations(#[from] storage_abstractions::MigrationError),
    /// The tracing provider could not be built.
    #[error(transparent)]
    Tracing(#[from] TracingInitError),
    /// The `[security]` section cannot be used (e.g. authentication on without a key).
    #[error(transparent)]
    Security(#[from] crate::security::SecurityError),
    /// Metrics could not be set up (`[metrics]`).
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// A declared message's payload schema cannot be made self-contained.
    #[error(transparent)]
    AsyncApi(#[from] crate::asyncapi::SchemaError),
    /// A start-up hook of the service failed.
    #[error("start-up hook failed: {0}")]
    Hook(#[source] BoxError),
    /// The listener could not be opened.
    #[error("http: cannot listen on {addr} (http.host / http.port): {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// What a graceful shutdown could not finish; everything else was stopped.
#[derive(Debug, thiserror::Error)]
#[error("graceful shutdown incomplete: {}", problems.join("; "))]
pub struct ShutdownIncomplete {
    /// One line per failure.
    pub problems: Vec<String>,
}
