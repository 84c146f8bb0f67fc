//! Builds the event bus provider named in the chassis configuration; each
//! provider is a cargo feature.
//!
//! | `messaging.provider` | cargo feature | provider crate | its section |
//! |---|---|---|---|
//! | `inmemory` (default) | `inmemory` (default) | `messaging-inmemory` | `[messaging.inmemory]` |
//! | `rabbitmq` | `rabbitmq` | `messaging-rabbitmq` | `[messaging.rabbitmq]` |
//! | `nats` | `nats` | `messaging-nats` | `[messaging.nats]` |
//!
//! [`check`] checks the shared `[messaging]` keys, that every other key of
//! the section is a known provider's subsection, and the subsection of the
//! configured provider (its type, defaults and validation are the
//! provider's), naming the layer of a wrong value; the host runs it before
//! it connects to anything. [`build`] checks the same and starts the
//! provider. A provider named in config but not compiled in fails with
//! [`MessagingInitError::Provider`], whose message names the feature to
//! enable: nothing silently falls back to another provider.
//!
//! Adding a provider is one crate and one line in [`providers`] (see
//! `docs/architecture.md`, "Adding a provider").
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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chassis_core::config::{ConfigSource, InvalidValue};
use chassis_core::provider::{ProviderError, ProviderTable, Section};
use messaging_abstractions::asyncapi::BrokerBinding;
use messaging_abstractions::{EventBus, MessagingConfig};
use thiserror::Error;

/// Every provider `messaging.provider` accepts, one line each: its name,
/// the cargo feature compiling it in and its [`BusDriver`]. The one list of
/// the concern's provider names.
pub fn providers<S: ConfigSource + Sync>() -> ProviderTable<BusDriver<S>> {
    ProviderTable::new(
        "messaging",
        "messaging-init",
        vec![
            chassis_core::provider!("inmemory", feature = "inmemory", inmemory::driver()),
            chassis_core::provider!("rabbitmq", feature = "rabbitmq", rabbitmq::driver()),
            chassis_core::provider!("nats", feature = "nats", nats::driver()),
        ],
    )
}

/// How one messaging provider is read and built, reading its settings from
/// a source of type `S`.
pub struct BusDriver<S> {
    /// Reads and checks the provider's section: `(key, effective value)`.
    pub settings: fn(&S) -> Result<Section, InvalidValue>,
    /// Reads and checks the provider's section and returns what it adds to
    /// the service's AsyncAPI document (its settings, which implement
    /// [`BrokerBinding`]), without connecting to anything.
    pub binding: fn(&S) -> Result<Box<dyn BrokerBinding>, InvalidValue>,
    /// Builds the bus for the service named by the `&str`.
    pub build: for<'a> fn(&'a MessagingConfig, &'a S, &'a str) -> BoxFuture<'a, Built>,
}

/// What [`BusDriver::build`] gives.
pub type Built = Result<Arc<dyn EventBus>, MessagingInitError>;

/// The future [`BusDriver::build`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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
    providers::<chassis_core::config::Defaults>().compiled()
}

/// Checks the `messaging` section without building anything: the shared
/// keys, that every other key is a known provider's subsection, and the
/// subsection of the configured provider. Errors name the layer.
pub fn check(
    config: &MessagingConfig,
    source: &(impl ConfigSource + Sync),
) -> Result<(), MessagingInitError> {
    let table = providers();
    let provider = table.resolve(&config.provider)?;
    config.validate().map_err(|e| source.locate(e))?;
    table
        .check_sections(&config.other_keys, MessagingConfig::KEYS)
        .map_err(|e| source.locate(e))?;
    (provider.driver.settings)(source)?;
    Ok(())
}

/// Builds the event bus `config.provider` names, for the service
/// `service_name` (the RabbitMQ connection is named after it); the
/// provider's own settings are read from `source` (the host passes the
/// loaded configuration).
pub async fn build<S: ConfigSource + Sync>(
    config: &MessagingConfig,
    source: &S,
    service_name: &str,
) -> Result<Arc<dyn EventBus>, MessagingInitError> {
    check(config, source)?;
    let table = providers::<S>();
    let provider = table.resolve(&config.provider)?;
    (provider.driver.build)(config, source, service_name).await
}

/// What the configured provider adds to the service's AsyncAPI document
/// (broker, addresses, bindings, headers), after the same checks as
/// [`check`]; connects to nothing, so `--print-asyncapi` works offline.
pub fn broker_binding<S: ConfigSource + Sync>(
    config: &MessagingConfig,
    source: &S,
) -> Result<Box<dyn BrokerBinding>, MessagingInitError> {
    check(config, source)?;
    let table = providers::<S>();
    let provider = table.resolve(&config.provider)?;
    Ok((provider.driver.binding)(source)?)
}

/// The effective settings of every compiled-in provider, as
/// `(section key, value)`, secrets redacted: what `--print-config` shows.
pub fn provider_sections(
    source: &(impl ConfigSource + Sync),
) -> Result<Vec<Section>, MessagingInitError> {
    providers()
        .compiled_drivers()
        .map(|provider| Ok((provider.driver.settings)(source)?))
        .collect()
}

/// A provider section, read and checked, as shown by `--print-config`.
#[cfg(any(feature = "inmemory", feature = "rabbitmq", feature = "nats"))]
fn section<T: serde::de::DeserializeOwned + serde::Serialize, R>(
    source: &impl ConfigSource,
    key: &'static str,
    validate: fn(&T) -> Result<R, InvalidValue>,
) -> Result<Section, InvalidValue> {
    let settings: T = source.read_valid(key, validate)?;
    Ok((key, serde_json::to_value(settings).unwrap_or_default()))
}

/// The bus a provider's `connect` returned, or its error: a settings error
/// (`invalid` picks it out) names its layer, anything else is the
/// provider failing to start.
#[cfg(any(feature = "rabbitmq", feature = "nats"))]
fn started<B: EventBus, E: std::error::Error + Send + Sync + 'static>(
    provider: &'static str,
    source: &impl ConfigSource,
    connected: Result<B, E>,
    invalid: impl FnOnce(E) -> Result<InvalidValue, E>,
) -> Result<Arc<dyn EventBus>, MessagingInitError> {
    match connected.map_err(invalid) {
        Ok(bus) => Ok(Arc::new(bus)),
        Err(Ok(e)) => Err(source.locate(e).into()),
        Err(Err(e)) => Err(MessagingInitError::ProviderFailed {
            provider,
            source: Box::new(e),
        }),
    }
}

#[cfg(feature = "inmemory")]
mod inmemory {
    use messaging_inmemory::{InMemoryBus, InMemoryConfig};

    use super::*;

    pub(super) fn driver<S: ConfigSource + Sync>() -> BusDriver<S> {
        BusDriver {
            settings: |source| section(source, InMemoryConfig::SECTION, InMemoryConfig::validate),
            binding: |source| {
                let settings =
                    source.read_valid(InMemoryConfig::SECTION, InMemoryConfig::validate)?;
                Ok(Box::new(settings))
            },
            build: |config, source, _| Box::pin(async move { build(config, source) }),
        }
    }

    fn build(
        config: &MessagingConfig,
        source: &impl ConfigSource,
    ) -> Result<Arc<dyn EventBus>, MessagingInitError> {
        let settings = source.read_valid(InMemoryConfig::SECTION, InMemoryConfig::validate)?;
        Ok(Arc::new(InMemoryBus::with_settings(config, &settings)))
    }
}

#[cfg(feature = "rabbitmq")]
mod rabbitmq {
    use messaging_rabbitmq::{RabbitMqBus, RabbitMqConfig, RabbitMqError};

    use super::*;

    pub(super) fn driver<S: ConfigSource + Sync>() -> BusDriver<S> {
        BusDriver {
            settings: |source| section(source, RabbitMqConfig::SECTION, RabbitMqConfig::validate),
            binding: |source| {
                let settings =
                    source.read_valid(RabbitMqConfig::SECTION, RabbitMqConfig::validate)?;
                Ok(Box::new(settings))
            },
            build: |config, source, service| Box::pin(build(config, source, service)),
        }
    }

    async fn build(
        config: &MessagingConfig,
        source: &(impl ConfigSource + Sync),
        service_name: &str,
    ) -> Result<Arc<dyn EventBus>, MessagingInitError> {
        let settings = source.read_valid(RabbitMqConfig::SECTION, RabbitMqConfig::validate)?;
        let connected = RabbitMqBus::connect(config, &settings, service_name).await;
        started("rabbitmq", source, connected, |e| match e {
            RabbitMqError::InvalidConfig(invalid) => Ok(invalid),
            other => Err(other),
        })
    }
}

#[cfg(feature = "nats")]
mod nats {
    use messaging_nats::{NatsBus, NatsConfig, NatsError};

    use super::*;

    pub(super) fn driver<S: ConfigSource + Sync>() -> BusDriver<S> {
        BusDriver {
            settings: |source| section(source, NatsConfig::SECTION, NatsConfig::validate),
            binding: |source| {
                let settings = source.read_valid(NatsConfig::SECTION, NatsConfig::validate)?;
                Ok(Box::new(settings))
            },
            build: |config, source, service| Box::pin(build(config, source, service)),
        }
    }

    async fn build(
        config: &MessagingConfig,
        source: &(impl ConfigSource + Sync),
        service_name: &str,
    ) -> Result<Arc<dyn EventBus>, MessagingInitError> {
        let settings = source.read_valid(NatsConfig::SECTION, NatsConfig::validate)?;
        let connected = NatsBus::connect(config, &settings, service_name).await;
        started("nats", source, connected, |e| match e {
            NatsError::InvalidConfig(invalid) => Ok(invalid),
            other => Err(other),
        })
    }
}
