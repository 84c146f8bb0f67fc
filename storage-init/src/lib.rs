//! Builds the storage provider named in the chassis configuration; each
//! provider is a cargo feature.
//!
//! | `storage.provider` | cargo feature | provider crate | its section |
//! |---|---|---|---|
//! | `inmemory` (default) | `inmemory` (default) | `storage-inmemory` | none |
//! | `postgres` | `postgres` | `storage-postgres` | `[storage.postgres]` |
//! | `sqlite` | `sqlite` | `storage-sqlite` | `[storage.sqlite]` |
//!
//! [`check`] checks the shared `[storage]` keys, that every other key of
//! the section is a known provider's subsection, and the subsection of the
//! configured provider (its type, defaults and validation are the
//! provider's), naming the layer of a wrong value; the host runs it before
//! it connects to anything. [`build`] checks the same and starts the
//! provider. A provider named in config but not compiled in fails with
//! [`StorageInitError::Provider`], whose message names the feature to
//! enable: nothing silently falls back to another provider.
//!
//! Adding a provider is one crate and one line in [`providers`] (see
//! `docs/architecture.md`, "Adding a provider").
//!
//! Every call of [`build`] with `inmemory` creates a new, empty store (a
//! service's own database); clone the `Arc` to share it.
//!
//! ```
//! use chassis_core::config::{ConfigSource, Defaults, JsonSource};
//! use storage_abstractions::StorageConfig;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), storage_init::StorageInitError> {
//! let config = StorageConfig::default(); // provider = "inmemory"
//! let store = storage_init::build(&config, &Defaults).await?;
//! assert_eq!(store.provider(), "inmemory");
//! store.shutdown().await;
//!
//! let source = JsonSource::new(serde_json::json!({"storage": {"sqllite": {}}}));
//! let config: StorageConfig = source.read("storage").unwrap();
//! let err = storage_init::check(&config, &source).unwrap_err();
//! assert!(err.to_string().starts_with("storage.sqllite: expected a key of [storage]"), "{err}");
//! assert!(err.to_string().ends_with("(from override in code)"), "{err}");
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chassis_core::config::{ConfigSource, InvalidValue};
use chassis_core::provider::{ProviderError, ProviderTable, Section};
use storage_abstractions::{StorageConfig, Store};
use thiserror::Error;

/// Every provider `storage.provider` accepts, one line each: its name, the
/// cargo feature compiling it in and its [`StoreDriver`]. The one list of
/// the concern's provider names.
pub fn providers<S: ConfigSource + Sync>() -> ProviderTable<StoreDriver<S>> {
    ProviderTable::new(
        "storage",
        "storage-init",
        vec![
            chassis_core::provider!("inmemory", feature = "inmemory", inmemory::driver()),
            chassis_core::provider!("postgres", feature = "postgres", postgres::driver()),
            chassis_core::provider!("sqlite", feature = "sqlite", sqlite::driver()),
        ],
    )
}

/// How one storage provider is read and built, reading its settings from a
/// source of type `S`.
pub struct StoreDriver<S> {
    /// Reads and checks the provider's section: `(key, effective value)`,
    /// or `None` for a provider without settings.
    pub settings: fn(&S) -> Result<Option<Section>, InvalidValue>,
    /// Builds the store.
    pub build: for<'a> fn(&'a S) -> BoxFuture<'a, Built>,
}

/// What [`StoreDriver::build`] gives.
pub type Built = Result<Arc<dyn Store>, StorageInitError>;

/// The future [`StoreDriver::build`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The store could not be built.
#[derive(Debug, Error)]
pub enum StorageInitError {
    /// `storage.provider` is unknown or not compiled in.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A value of the `storage` section is wrong.
    #[error(transparent)]
    InvalidConfig(#[from] InvalidValue),
    /// The provider could not start (database unreachable, migration failed, ...).
    #[error("storage provider `{provider}` failed to start: {source}")]
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

/// Checks the `storage` section without building anything: the shared
/// keys, that every other key is a known provider's subsection, and the
/// subsection of the configured provider. Errors name the layer.
pub fn check(
    config: &StorageConfig,
    source: &(impl ConfigSource + Sync),
) -> Result<(), StorageInitError> {
    let table = providers();
    let provider = table.resolve(&config.provider)?;
    config.validate().map_err(|e| source.locate(e))?;
    table
        .check_sections(&config.other_keys, StorageConfig::KEYS)
        .map_err(|e| source.locate(e))?;
    (provider.driver.settings)(source)?;
    Ok(())
}

/// Builds the store `config.provider` names; the provider's own settings
/// are read from `source` (the host passes the loaded configuration).
pub async fn build<S: ConfigSource + Sync>(
    config: &StorageConfig,
    source: &S,
) -> Result<Arc<dyn Store>, StorageInitError> {
    check(config, source)?;
    let table = providers::<S>();
    let provider = table.resolve(&config.provider)?;
    (provider.driver.build)(source).await
}

/// The effective settings of every compiled-in provider that has a
/// section, as `(section key, value)`, secrets redacted: what
/// `--print-config` shows.
pub fn provider_sections(
    source: &(impl ConfigSource + Sync),
) -> Result<Vec<Section>, StorageInitError> {
    let mut sections = Vec::new();
    for provider in providers().compiled_drivers() {
        sections.extend((provider.driver.settings)(source)?);
    }
    Ok(sections)
}

/// A provider section, read and checked, as shown by `--print-config`.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
fn section<T: serde::de::DeserializeOwned + serde::Serialize>(
    source: &impl ConfigSource,
    key: &'static str,
    validate: fn(&T) -> Result<(), InvalidValue>,
) -> Result<Option<Section>, InvalidValue> {
    let settings: T = source.read_valid(key, validate)?;
    Ok(Some((
        key,
        serde_json::to_value(settings).unwrap_or_default(),
    )))
}

/// The store a provider's `connect` returned, or its error: a settings
/// error (`invalid` picks it out) names its layer, anything else is the
/// provider failing to start.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
fn started<T: Store, E: std::error::Error + Send + Sync + 'static>(
    provider: &'static str,
    source: &impl ConfigSource,
    connected: Result<T, E>,
    invalid: impl FnOnce(E) -> Result<InvalidValue, E>,
) -> Result<Arc<dyn Store>, StorageInitError> {
    match connected.map_err(invalid) {
        Ok(store) => Ok(Arc::new(store)),
        Err(Ok(e)) => Err(source.locate(e).into()),
        Err(Err(e)) => Err(StorageInitError::ProviderFailed {
            provider,
            source: Box::new(e),
        }),
    }
}

#[cfg(feature = "inmemory")]
mod inmemory {
    use super::*;

    pub(super) fn driver<S: ConfigSource + Sync>() -> StoreDriver<S> {
        StoreDriver {
            settings: |_| Ok(None),
            build: |_| Box::pin(async { Ok(store()) }),
        }
    }

    fn store() -> Arc<dyn Store> {
        Arc::new(storage_inmemory::InMemoryStore::new())
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use storage_postgres::{PostgresConfig, PostgresError, PostgresStore};

    use super::*;

    pub(super) fn driver<S: ConfigSource + Sync>() -> StoreDriver<S> {
        StoreDriver {
            settings: |source| section(source, PostgresConfig::SECTION, PostgresConfig::validate),
            build: |source| Box::pin(build(source)),
        }
    }

    async fn build(
        source: &(impl ConfigSource + Sync),
    ) -> Result<Arc<dyn Store>, StorageInitError> {
        let settings = source.read_valid(PostgresConfig::SECTION, PostgresConfig::validate)?;
        let connected = PostgresStore::connect(&settings).await;
        started(storage_postgres::PROVIDER, source, connected, |e| match e {
            PostgresError::InvalidConfig(invalid) => Ok(invalid),
            PostgresError::InvalidUrl(message) => Ok(InvalidValue::new(
                "storage.postgres.url",
                "a URL like postgres://user@host:5432/database",
            )
            .found(message)),
            other => Err(other),
        })
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use storage_sqlite::{SqliteConfig, SqliteError, SqliteStore};

    use super::*;

    pub(super) fn driver<S: ConfigSource + Sync>() -> StoreDriver<S> {
        StoreDriver {
            settings: |source| section(source, SqliteConfig::SECTION, SqliteConfig::validate),
            build: |source| Box::pin(build(source)),
        }
    }

    async fn build(
        source: &(impl ConfigSource + Sync),
    ) -> Result<Arc<dyn Store>, StorageInitError> {
        let settings = source.read_valid(SqliteConfig::SECTION, SqliteConfig::validate)?;
        let connected = SqliteStore::open(&settings).await;
        started(storage_sqlite::PROVIDER, source, connected, |e| match e {
            SqliteError::InvalidConfig(invalid) => Ok(invalid),
            other => Err(other),
        })
    }
}

#[cfg(test)]
mod tests {
    use chassis_core::config::Defaults;

    use super::*;

    #[tokio::test]
    async fn unknown_provider_lists_the_known_ones() {
        let config = StorageConfig {
            provider: "mongodb".into(),
            ..StorageConfig::default()
        };
        let error = build(&config, &Defaults).await.err().unwrap();
        assert!(matches!(
            error,
            StorageInitError::Provider(ProviderError::Unknown { .. })
        ));
        assert_eq!(
            error.to_string(),
            "storage.provider: unknown provider `mongodb`; expected one of: inmemory, postgres, sqlite"
        );
    }

    // The default provider must be compiled in: an absent one is reported
    // before the shared keys are checked.
    #[cfg(feature = "inmemory")]
    #[tokio::test]
    async fn invalid_config_names_the_key() {
        let mut config = StorageConfig::default();
        config.outbox.batch_size = 0;
        match build(&config, &Defaults).await.err().unwrap() {
            StorageInitError::InvalidConfig(InvalidValue { key, expected, .. }) => {
                assert_eq!(key, "storage.outbox.batch_size");
                assert!(expected.contains(">= 1"), "{expected}");
            }
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[cfg(feature = "inmemory")]
    #[tokio::test]
    async fn builds_inmemory_by_default() {
        let store = build(&StorageConfig::default(), &Defaults).await.unwrap();
        assert_eq!(store.provider(), "inmemory");
        let mut tx = store.begin().await.unwrap();
        tx.insert(storage_abstractions::Record::new(
            "orders",
            "o-1",
            serde_json::json!({}),
        ))
        .await
        .unwrap();
        tx.commit().await.unwrap();
        store.shutdown().await;
    }

    #[cfg(not(feature = "postgres"))]
    #[tokio::test]
    async fn postgres_not_compiled_in_names_the_feature() {
        let config = StorageConfig {
            provider: "postgres".into(),
            ..StorageConfig::default()
        };
        let error = build(&config, &Defaults).await.err().unwrap();
        assert!(matches!(
            error,
            StorageInitError::Provider(ProviderError::NotCompiledIn {
                feature: "postgres",
                ..
            })
        ));
        assert_eq!(
            error.to_string(),
            "storage.provider = `postgres` is not compiled into this service: enable feature \
             `postgres` of storage-init (or chassis-web)"
        );
    }

    #[cfg(not(feature = "inmemory"))]
    #[tokio::test]
    async fn inmemory_not_compiled_in_names_the_feature() {
        let error = build(&StorageConfig::default(), &Defaults)
            .await
            .err()
            .unwrap();
        assert!(
            error.to_string().contains("enable feature `inmemory`"),
            "{error}"
        );
    }

    #[test]
    fn compiled_providers_follow_features() {
        let compiled = compiled_providers();
        assert_eq!(compiled.contains(&"inmemory"), cfg!(feature = "inmemory"));
        assert_eq!(compiled.contains(&"postgres"), cfg!(feature = "postgres"));
        assert_eq!(compiled.contains(&"sqlite"), cfg!(feature = "sqlite"));
    }
}
