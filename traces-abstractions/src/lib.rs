//! Distributed tracing config section and W3C trace-context propagation
//! helpers of the service chassis.
//!
//! This crate is the light half of the tracing concern: it has no
//! OpenTelemetry dependency, so message envelopes, handlers and hosts can
//! read and write trace context without pulling in an SDK.
//!
//! - [`TracingConfig`]: the `tracing` section (provider `none` | `stdout` |
//!   `otlp`, sampling ratio, service identity, OTLP exporter settings) and its
//!   resolution against the standard `OTEL_*` environment variables
//!   ([`TracingConfig::settings`], [`OtlpConfig::resolve`]).
//! - [`TraceParent`], [`TraceState`], [`TraceContext`]: strict W3C Trace
//!   Context parsing and formatting for HTTP headers and envelopes.
//!
//! The providers live in `traces-stdout` and `traces-otlp`; `traces-init`
//! builds the one the configuration names.
//!
//! ```
//! use traces_abstractions::{TraceContext, TracingConfig, process_env};
//!
//! let config: TracingConfig = Default::default();
//! assert_eq!(config.provider, "none");
//! let settings = config
//!     .with_host_service("orders", Some("1.0.0".into()))
//!     .settings(&process_env)
//!     .unwrap();
//! assert!(!settings.service_name.is_empty());
//!
//! // A consumer reading the producer's context from an envelope:
//! let parent = TraceContext::extract(
//!     Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
//!     None,
//! );
//! assert_eq!(
//!     parent.unwrap().traceparent.trace_id.to_string(),
//!     "4bf92f3577b34da6a3ce929d0e0e4736"
//! );
//! ```

mod config;
mod context;

pub use config::{
    DEFAULT_GRPC_ENDPOINT, DEFAULT_HTTP_ENDPOINT, DEFAULT_TIMEOUT, EnvLookup, HTTP_TRACES_PATH,
    KNOWN_PROVIDERS, OtlpConfig, OtlpProtocol, OtlpSettings, PROVIDER_NONE, PROVIDER_OTLP,
    PROVIDER_STDOUT, SPAN_LEVELS, ServiceIdentity, TracingConfig, TracingConfigError,
    TracingSettings, UNKNOWN_SERVICE, process_env,
};
pub use context::{
    FLAG_SAMPLED, SpanId, TRACEPARENT, TRACESTATE, TraceContext, TraceContextError, TraceId,
    TraceParent, TraceParentError, TraceState, TraceStateError,
};
