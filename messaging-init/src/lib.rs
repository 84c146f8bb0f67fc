//! Builds the event bus provider named in the chassis configuration; each
//! provider is a cargo feature.
//!
//! | `messaging.provider` | cargo feature | provider crate | its section |
//! |---|---|---|---|
//! | `inmemory` (default) | `inmemory` (default) | `messaging-inmemory` | `[messaging.inmemory]` |
//! | `rabbitmq` | `rabbitmq` | `messaging-rabbitmq` | `[messaging.rabbitmq]` |
//! | `nats` | `nats` | `messaging-nats` | `[messaging.nats]` |
//!
//! [`build`] checks the shared `[messaging]` keys, checks that every other key
//! of the section is a known provider's subsection, reads the subsection of
//! the provider it builds (its type, defaults and validation are the
//! provider's) and starts the provider. A provider named in config but not
//! compiled in fails with [`MessagingInitError::Provider`], whose message
//! names the feature to enable: nothing silently falls back to another
//! provider.
//!
//! Adding a provider is one crate and one line in [`PROVIDERS`] plus its arm
//! in [`build`] (see `docs/architecture.md`, "Adding a provider").
//!
//! Every call of [`build`] with `inmemory` creates a new in-process broker.
//! Services that must talk to each other in one process share one broker:
//! build once, then hand each service its own connection
//! (`messaging_inmemory::InMemoryBus::clone`).
//!
//! ```
//! use chassis_core::config::Defaults;
//! use messaging_abstractions::MessagingConfig;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), messaging_init::MessagingInitError> {
//! let config = MessagingConfig::default(); // provider = "inmemory"
//! let bus = messaging_init::build(&config, &Defaults, "shipping").await?;
//! assert_eq!(bus.provider(), "inmemory");
//! bus.shutdown().await.expect("nothing in flight");
//!
//! let mut config = MessagingConfig::default();
//! config.provider = "kafka".into();
//! let err = messaging_init::build(&config, &Defaults, "shipping").await.err().unwrap();
//! assert!(err.to_string().contains("inmemory, rabbitmq, nats"));
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

use chassis_core::config::{ConfigSource, InvalidValue};
use chassis_core::provider::{ProviderError, ProviderInfo, ProviderTable};
use messaging_abstractions::{EventBus, MessagingConfig};
use thiserror::Error;

/// Every provider `messaging.provider` accepts, and whether it is compiled
/// in: the one list of the concern's provider names.
pub const PROVIDERS: ProviderTable = ProviderTable {
    concern: "messaging",
    init_crate: "messaging-init",
    providers: &[
        ProviderInfo::new("inmemory", "inmemory", cfg!(feature = "inmemory")),
        ProviderInfo::new("rabbitmq", "rabbitmq", cfg!(feature = "rabbitmq")),
        ProviderInfo::new("nats", "nats", cfg!(feature = "nats")),
    ],
};

/// The event bus could not be built.
#[derive(Debug, Error)]
pub enum MessagingInitError {
    /// `messaging.provider` is unknown or not compiled in.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A value of the `messaging` section is wrong.
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

/// The providers compiled into this build.
pub fn compiled_providers() -> Vec<&'static str> {
    PROVIDERS.compiled()
}

/// Checks the `messaging` section without building anything: the shared
/// keys, that every other key is a known provider's subsection, and the
/// subsection of the configured provider. Errors name the layer.
pub fn check(
    config: &MessagingConfig,
    source: &impl ConfigSource,
) -> Result<(), MessagingInitError> {
    let provider = PROVIDERS.resolve(&config.provider)?;
    shared_checks(config, source)?;
    match provider.name {
        #[cfg(feature = "inmemory")]
        "inmemory" => inmemory_settings(source).map(drop),
        #[cfg(feature = "rabbitmq")]
        "rabbitmq" => rabbitmq_settings(source).map(drop),
        #[cfg(feature = "nats")]
        "nats" => nats_settings(source).map(drop),
        _ => Err(PROVIDERS.not_compiled_in(provider).into()),
    }
}

/// Builds the event bus `config.provider` names, for the service
/// `service_name` (the RabbitMQ connection is named after it); the
/// provider's own settings are read from `source` (the host passes the
/// loaded configuration).
pub async fn build(
    config: &MessagingConfig,
    source: &impl ConfigSource,
    service_name: &str,
) -> Result<Arc<dyn EventBus>, MessagingInitError> {
    let provider = PROVIDERS.resolve(&config.provider)?;
    shared_checks(config, source)?;
    match provider.name {
        #[cfg(feature = "inmemory")]
        "inmemory" => {
            let settings = inmemory_settings(source)?;
            Ok(Arc::new(messaging_inmemory::InMemoryBus::with_settings(
                config, &settings,
            )))
        }
        #[cfg(feature = "rabbitmq")]
        "rabbitmq" => {
            let settings = rabbitmq_settings(source)?;
            build_rabbitmq(config, &settings, source, service_name).await
        }
        #[cfg(feature = "nats")]
        "nats" => {
            let settings = nats_settings(source)?;
            build_nats(config, &settings, source, service_name).await
        }
        // `resolve` returns only compiled-in providers, each of which has an arm.
        _ => {
            let _ = service_name;
            Err(PROVIDERS.not_compiled_in(provider).into())
        }
    }
}

/// The effective settings of every compiled-in provider, as
/// `(section key, value)`, secrets redacted: what `--print-config` shows.
pub fn provider_sections(
    source: &impl ConfigSource,
) -> Result<Vec<(&'static str, serde_json::Value)>, MessagingInitError> {
    let sections = vec![
        #[cfg(feature = "inmemory")]
        (
            messaging_inmemory::InMemoryConfig::SECTION,
            to_json(&inmemory_settings(source)?),
        ),
        #[cfg(feature = "rabbitmq")]
        (
            messaging_rabbitmq::RabbitMqConfig::SECTION,
            to_json(&rabbitmq_settings(source)?),
        ),
        #[cfg(feature = "nats")]
        (
            messaging_nats::NatsConfig::SECTION,
            to_json(&nats_settings(source)?),
        ),
    ];
    let _ = source;
    Ok(sections)
}

#[cfg(any(feature = "inmemory", feature = "rabbitmq", feature = "nats"))]
fn to_json(settings: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(settings).unwrap_or_default()
}

fn shared_checks(
    config: &MessagingConfig,
    source: &impl ConfigSource,
) -> Result<(), MessagingInitError> {
    config.validate().map_err(|e| source.locate(e))?;
    PROVIDERS
        .check_sections(&config.other_keys, MessagingConfig::KEYS)
        .map_err(|e| source.locate(e))?;
    Ok(())
}

#[cfg(feature = "inmemory")]
fn inmemory_settings(
    source: &impl ConfigSource,
) -> Result<messaging_inmemory::InMemoryConfig, MessagingInitError> {
    use messaging_inmemory::InMemoryConfig;
    Ok(source.read_valid(InMemoryConfig::SECTION, InMemoryConfig::validate)?)
}

#[cfg(feature = "rabbitmq")]
fn rabbitmq_settings(
    source: &impl ConfigSource,
) -> Result<messaging_rabbitmq::RabbitMqConfig, MessagingInitError> {
    use messaging_rabbitmq::RabbitMqConfig;
    Ok(source.read_valid(RabbitMqConfig::SECTION, RabbitMqConfig::validate)?)
}

#[cfg(feature = "rabbitmq")]
async fn build_rabbitmq(
    config: &MessagingConfig,
    settings: &messaging_rabbitmq::RabbitMqConfig,
    source: &impl ConfigSource,
    service_name: &str,
) -> Result<Arc<dyn EventBus>, MessagingInitError> {
    use messaging_rabbitmq::{RabbitMqBus, RabbitMqError};
    match RabbitMqBus::connect(config, settings, service_name).await {
        Ok(bus) => Ok(Arc::new(bus)),
        Err(RabbitMqError::InvalidConfig(e)) => Err(source.locate(e).into()),
        Err(e) => Err(MessagingInitError::ProviderFailed {
            provider: "rabbitmq",
            source: Box::new(e),
        }),
    }
}

#[cfg(feature = "nats")]
fn nats_settings(
    source: &impl ConfigSource,
) -> Result<messaging_nats::NatsConfig, MessagingInitError> {
    use messaging_nats::NatsConfig;
    Ok(source.read_valid(NatsConfig::SECTION, NatsConfig::validate)?)
}

#[cfg(feature = "nats")]
async fn build_nats(
    config: &MessagingConfig,
    settings: &messaging_nats::NatsConfig,
    source: &impl ConfigSource,
    service_name: &str,
) -> Result<Arc<dyn EventBus>, MessagingInitError> {
    use messaging_nats::{NatsBus, NatsError};
    match NatsBus::connect(config, settings, service_name).await {
        Ok(bus) => Ok(Arc::new(bus)),
        Err(NatsError::InvalidConfig(e)) => Err(source.locate(e).into()),
        Err(e) => Err(MessagingInitError::ProviderFailed {
            provider: "nats",
            source: Box::new(e),
        }),
    }
}
