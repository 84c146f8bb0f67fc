//! Distributed tracing config section and W3C trace-context propagation
//! helpers of the service chassis.
//!
//! The host reads the `tracing` section into a [`TracingConfig`]; the
//! `tracing-init` crate builds the provider it names.
//!
//! ```
//! use tracing_abstractions::TracingConfig;
//! let config = TracingConfig::default();
//! assert_eq!(config.provider, "none");
//! ```

use serde::{Deserialize, Serialize};

/// The `tracing` section of the chassis configuration.
///
/// ```toml
/// [tracing]
/// provider = "none"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TracingConfig {
    /// Which provider exports traces: `none` (the default) exports nothing.
    pub provider: String,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            provider: "none".into(),
        }
    }
}
