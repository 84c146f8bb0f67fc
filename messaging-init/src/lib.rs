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
//! [`MessagingInitError::Provider`], whose message names the feature to
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

use chassis_core::provider::{InvalidValue, ProviderError, ProviderInfo, ProviderTable};
use messaging_abstractions::{EventBus, MessagingConfig};
use thiserror::Error;

/// Every provider `messaging.provider` accepts, and whether it is compiled in.
pub const PROVIDERS: ProviderTable = ProviderTable {
    concern: "messaging",
    init_crate: "messaging-init",
    providers: &[
        ProviderInfo::new("inmemory", "inmemory", cfg!(feature = "inmemory")),
        ProviderInfo::new("rabbitmq", "rabbitmq", cfg!(feature = "rabbitmq")),
    ],
};

/// The event bus could not be built.
#[derive(Debug, Error)]
pub enum MessagingInitError {
    /// `messaging.provider` is unknown or not compiled in.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A value of the `messaging` section is out of range.
    #[error(transparent)]
    InvalidConfig(#[from] InvalidValue),
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
    fn invalid(message: &str) -> Self {
        Self::InvalidConfig(InvalidValue::parse("messaging", message))
    }
}

/// The providers compiled into this build.
pub fn compiled_providers() -> Vec<&'static str> {
    PROVIDERS.compiled()
}

/// Builds the event bus `config.provider` names, for the service
/// `service_name` (the RabbitMQ connection is named after it).
pub async fn build(
    config: &MessagingConfig,
    service_name: &str,
) -> Result<Arc<dyn EventBus>, MessagingInitError> {
    let provider = PROVIDERS.resolve(&config.provider)?;
    config
        .validate()
        .map_err(|message| MessagingInitError::invalid(&message))?;
    match provider.name {
        #[cfg(feature = "inmemory")]
        "inmemory" => Ok(Arc::new(messaging_inmemory::InMemoryBus::new(config))),
        #[cfg(feature = "rabbitmq")]
        "rabbitmq" => build_rabbitmq(config, service_name).await,
        // `resolve` returns only compiled-in providers, each of which has an arm.
        _ => {
            let _ = service_name;
            Err(PROVIDERS.not_compiled_in(provider).into())
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_messages_split_into_key_and_expectation() {
        let MessagingInitError::InvalidConfig(InvalidValue { key, expected }) =
            MessagingInitError::invalid("messaging.prefetch: expected an integer >= 1")
        else {
            panic!("expected InvalidConfig");
        };
        assert_eq!(key, "messaging.prefetch");
        assert_eq!(expected, "expected an integer >= 1");
    }
}
