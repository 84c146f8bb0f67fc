//! Builds the event bus provider named in the chassis configuration; each
//! provider is a cargo feature.
//!
//! | `messaging.provider` | cargo feature | provider crate |
//! |---|---|---|
//! | `inmemory` (default) | `inmemory` (default) | `messaging-inmemory` |
//! | `rabbitmq` | `rabbitmq` | `messaging-rabbitmq` |
//!
//! [`build`] checks the section ([`MessagingConfig::validate`]) and starts the
//! provider. A provider named in config but not compiled in fails with
//! [`MessagingInitError::NotCompiledIn`], whose message names the feature to
//! enable: nothing silently falls back to another provider.
//!
//! Every call of [`build`] with `inmemory` creates a new in-process broker.
//! Services that must talk to each other in one process share one broker:
//! build once, then hand each service its own connection
//! (`messaging_inmemory::InMemoryBus::clone`).
//!
//! ```
//! use messaging_abstractions::MessagingConfig;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), messaging_init::MessagingInitError> {
//! let config = MessagingConfig::default(); // provider = "inmemory"
//! let bus = messaging_init::build(&config, "shipping").await?;
//! assert_eq!(bus.provider(), "inmemory");
//! bus.shutdown().await.expect("nothing in flight");
//!
//! let mut config = MessagingConfig::default();
//! config.provider = "kafka".into();
//! let err = messaging_init::build(&config, "shipping").await.err().unwrap();
//! assert!(err.to_string().contains("inmemory, rabbitmq"));
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

use messaging_abstractions::{EventBus, MessagingConfig};
use thiserror::Error;

/// Every provider name `messaging.provider` accepts, compiled in or not.
pub const KNOWN_PROVIDERS: &[&str] = &["inmemory", "rabbitmq"];

/// The event bus could not be built.
#[derive(Debug, Error)]
pub enum MessagingInitError {
    /// `messaging.provider` names no provider this chassis knows.
    #[error(
        "messaging.provider: unknown provider `{name}`; expected one of: {}",
        KNOWN_PROVIDERS.join(", ")
    )]
    UnknownProvider {
        /// The configured name.
        name: String,
    },
    /// The provider exists but its cargo feature is off in this build.
    #[error(
        "messaging.provider = `{provider}` is not compiled into this service: enable feature \
         `{feature}` of messaging-init (or chassis-web)"
    )]
    NotCompiledIn {
        /// The configured provider.
        provider: String,
        /// The cargo feature that compiles it in.
        feature: &'static str,
    },
    /// A value of the `messaging` section is out of range.
    #[error("{key}: {expected}")]
    InvalidConfig {
        /// Key path, e.g. `messaging.retry.multiplier`.
        key: String,
        /// What was expected there.
        expected: String,
    },
    /// The provider could not start (broker unreachable, ...).
    #[error("messaging provider `{provider}` failed to start: {source}")]
    ProviderFailed {
        /// The provider.
        provider: &'static str,
        /// Its error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl MessagingInitError {
    /// Splits a `"key.path: expectation"` validation message.
    fn invalid(message: &str) -> Self {
        let (key, expected) = message.split_once(": ").unwrap_or(("messaging", message));
        Self::InvalidConfig {
            key: key.to_owned(),
            expected: expected.to_owned(),
        }
    }
}

/// The providers compiled into this build.
pub fn compiled_providers() -> Vec<&'static str> {
    let mut providers = Vec::new();
    if cfg!(feature = "inmemory") {
        providers.push("inmemory");
    }
    if cfg!(feature = "rabbitmq") {
        providers.push("rabbitmq");
    }
    providers
}

/// Builds the event bus `config.provider` names, for the service
/// `service_name` (the RabbitMQ connection is named after it).
pub async fn build(
    config: &MessagingConfig,
    service_name: &str,
) -> Result<Arc<dyn EventBus>, MessagingInitError> {
    if !KNOWN_PROVIDERS.contains(&config.provider.as_str()) {
        return Err(MessagingInitError::UnknownProvider {
            name: config.provider.clone(),
        });
    }
    config
        .validate()
        .map_err(|message| MessagingInitError::invalid(&message))?;
    match config.provider.as_str() {
        "inmemory" => build_inmemory(config),
        _ => build_rabbitmq(config, service_name).await,
    }
}

#[cfg(feature = "inmemory")]
fn build_inmemory(config: &MessagingConfig) -> Result<Arc<dyn EventBus>, MessagingInitError> {
    Ok(Arc::new(messaging_inmemory::InMemoryBus::new(config)))
}

#[cfg(not(feature = "inmemory"))]
fn build_inmemory(_config: &MessagingConfig) -> Result<Arc<dyn EventBus>, MessagingInitError> {
    Err(MessagingInitError::NotCompiledIn {
        provider: "inmemory".into(),
        feature: "inmemory",
    })
}

#[cfg(feature = "rabbitmq")]
async fn build_rabbitmq(
    config: &MessagingConfig,
    service_name: &str,
) -> Result<Arc<dyn EventBus>, MessagingInitError> {
    use messaging_rabbitmq::{RabbitMqBus, RabbitMqError};
    match RabbitMqBus::connect(config, service_name).await {
        Ok(bus) => Ok(Arc::new(bus)),
        Err(RabbitMqError::InvalidConfig(message)) => Err(MessagingInitError::invalid(&message)),
        Err(e) => Err(MessagingInitError::ProviderFailed {
            provider: "rabbitmq",
            source: Box::new(e),
        }),
    }
}

#[cfg(not(feature = "rabbitmq"))]
async fn build_rabbitmq(
    _config: &MessagingConfig,
    _service_name: &str,
) -> Result<Arc<dyn EventBus>, MessagingInitError> {
    Err(MessagingInitError::NotCompiledIn {
        provider: "rabbitmq".into(),
        feature: "rabbitmq",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_messages_split_into_key_and_expectation() {
        let MessagingInitError::InvalidConfig { key, expected } =
            MessagingInitError::invalid("messaging.prefetch: expected an integer >= 1")
        else {
            panic!("expected InvalidConfig");
        };
        assert_eq!(key, "messaging.prefetch");
        assert_eq!(expected, "expected an integer >= 1");
    }
}
