//! Distributed tracing config section and W3C trace-context propagation
//! helpers of the service chassis.
//!
//! This crate is the light half of the tracing concern: it has no
//! OpenTelemetry dependency, so message envelopes, handlers and hosts can
//! read and write trace context without pulling in an SDK.
//!
//! - [`TracingConfig`]: the keys of the `tracing` section every provider
//!   shares (provider name, sampling ratio, span level, service identity,
//!   resource attributes) and their resolution against `OTEL_SERVICE_NAME`
//!   and `OTEL_RESOURCE_ATTRIBUTES` ([`TracingConfig::settings`]). Each
//!   provider's own subsection (`[tracing.<provider>]`) belongs to the
//!   provider crate; [`parse_key_values`] reads the list format the `OTEL_*`
//!   variables share.
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
    EnvLookup, SPAN_LEVELS, ServiceIdentity, TracingConfig, TracingSettings, UNKNOWN_SERVICE,
    fixed_env, parse_key_values, process_env,
};
pub use context::{
    FLAG_SAMPLED, SpanId, TRACEPARENT, TRACESTATE, TraceContext, TraceContextError, TraceId,
    TraceParent, TraceParentError, TraceState, TraceStateError,
};
