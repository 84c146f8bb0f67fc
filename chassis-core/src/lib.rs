//! Small building blocks shared by every crate of the service chassis.
//!
//! This crate is deliberately tiny and has no I/O dependency, so that the
//! `*-abstractions` crates may depend on it without breaking the rule that
//! abstractions never pull in a client library.
//!
//! - [`Secret`]: a string that never shows up in `Debug`, `Display` or
//!   serialized configuration.
//! - [`duration`]: serde helpers so configuration files can say `"30s"` or
//!   `"250ms"`.
//! - [`config`]: the [`ConfigSource`](config::ConfigSource) init crates read a
//!   provider's section through, and [`InvalidValue`](config::InvalidValue), the
//!   one error for a wrong configuration value.
//! - [`health`]: the [`HealthCheck`] port every concern implements so the host
//!   can report readiness.
//!
//! ```
//! use chassis_core::Secret;
//! let s = Secret::new("hunter2");
//! assert_eq!(format!("{s:?}"), "Secret(\"***\")");
//! assert_eq!(s.expose(), "hunter2");
//! ```

pub mod calendar;
pub mod config;
pub mod duration;
pub mod health;
pub mod provider;
mod secret;

pub use health::{HealthCheck, HealthReport, HealthStatus};

/// The HTTP header carrying a request's correlation id: the host reads and
/// echoes it, typed clients send it.
pub const CORRELATION_ID_HEADER: &str = "x-correlation-id";

/// Media type of RFC 9457 problem details, the body of every HTTP error.
pub const PROBLEM_JSON: &str = "application/problem+json";
pub use secret::{REDACTED, Secret};
