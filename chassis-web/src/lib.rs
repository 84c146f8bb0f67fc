//! The service host of the chassis: layered configuration, start-up of every
//! concern through its init crate, the axum router under the standard
//! middleware stack, health probes and graceful shutdown.
//!
//! A service's `main`:
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use chassis_web::{Json, ServiceHost};
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     ServiceHost::builder("order-service")
//!         .version(env!("CARGO_PKG_VERSION"))
//!         .routes(|ctx| {
//!             let bus = ctx.bus().clone();
//!             Router::new().route("/hello", get(|| async { Json(serde_json::json!({ "hello": "world" })) }))
//!         })
//!         .run()
//!         .await
//! }
//! ```
//!
//! - Configuration: [`config`] (layers: defaults < `config/default.toml` <
//!   `config/{CHASSIS_ENV}.toml` < `CHASSIS__…` variables); `--print-config`
//!   prints the effective values and where each came from.
//! - Errors: handlers return [`Problem`] (RFC 9457); the [`Json`] extractor
//!   rejects bad bodies with 400/415/413/422 problems naming the field.
//! - Correlation: [`CorrelationId`] extractor, [`current_message_context`] for
//!   publishing messages that carry the request's correlation id.
//! - Access log: `http.access_log` ([`AccessLogConfig`]): one line per
//!   request in the logging provider's format.
//! - Health: `/health/live`, `/health/ready` ([`Health`]).
//! - Security: [`security`] — authentication on by default outside an
//!   allow-list (API keys, JWT), rate and concurrency limits, CORS and
//!   hardening headers; handlers read the caller with [`security::Principal`].
//! - Tests: [`ServiceHostBuilder::start`] with `.config("http.port", 0)`,
//!   injected bus/store, and [`RunningService::shutdown`].

mod access_log;
pub mod asyncapi;
pub mod config;
mod correlation;
mod extract;
mod host;
pub mod middleware;
#[cfg(feature = "openapi")]
pub mod openapi;
mod problem;
mod readiness;
pub mod security;
mod shutdown;
pub mod telemetry;

pub use access_log::AccessLogConfig;
pub use config::{
    ChassisConfig, ConfigError, ConfigLoader, ConfigValue, Configuration, HttpConfig, ServiceConfig,
};
pub use correlation::{
    CORRELATION_ID_HEADER, CorrelationId, MAX_CORRELATION_ID_LEN, MessageLogContext,
    current_correlation_id, current_message_context, log_context, with_message_context,
};
pub use extract::{Json, decode};
pub use host::probe::{self, HEALTHCHECK_FLAG};
pub use host::{
    BoxError, MIGRATE_ONLY_FLAG, PRINT_ASYNCAPI_FLAG, PRINT_CONFIG_FLAG, RunningService,
    ServiceContext, ServiceHost, ServiceHostBuilder, ShutdownIncomplete, StartupError,
};
pub use problem::{
    ApiError, ApiResult, DOMAIN_PROBLEM_BASE, FieldError, PROBLEM_JSON, Problem, ProblemDetails,
};
pub use readiness::{Health, LIVE_PATH, READY_PATH, Readiness};
pub use shutdown::{ShutdownHandle, ShutdownSignal, os_signal};

/// Re-exported so services need no direct dependency to write routes.
pub use axum;
