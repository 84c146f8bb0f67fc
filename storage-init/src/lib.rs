//! Builds the storage provider named in the chassis configuration; each
//! provider is a cargo feature.
//!
//! | `storage.provider` | cargo feature | provider crate |
//! |---|---|---|
//! | `inmemory` (default) | `inmemory` (default) | `storage-inmemory` |
//! | `postgres` | `postgres` | `storage-postgres` |
//! | `sqlite` | `sqlite` | `storage-sqlite` |
//!
//! Each provider owns its subsection (`storage.sqlite`: its keys, defaults
//! and validation live in the provider crate); [`build`] hands it over.
//!
//! [`build`] checks the section ([`StorageConfig::validate`]) and starts the
//! provider. A provider named in config but not compiled in fails with
//! [`StorageInitError::Provider`], whose message names the feature to
//! enable: nothing silently falls back to another provider.
//!
//! Every call of [`build`] with `inmemory` creates a new, empty store (a
//! service's own database); clone the `Arc` to share it.
//!
//! ```
//! use storage_abstractions::StorageConfig;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), storage_init::StorageInitError> {
//! let config = StorageConfig::default(); // provider = "inmemory"
//! let store = storage_init::build(&config).await?;
//! assert_eq!(store.provider(), "inmemory");
//! store.shutdown().await;
//!
//! let mut config = StorageConfig::default();
//! config.provider = "mongodb".into();
//! let err = storage_init::build(&config).await.err().unwrap();
//! assert!(err.to_string().contains("inmemory, postgres, sqlite"));
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

use chassis_core::config::InvalidValue;
use chassis_core::provider::{ProviderError, ProviderInfo, ProviderTable};
use storage_abstractions::{StorageConfig, Store};
use thiserror::Error;

/// Every provider `storage.provider` accepts, and whether it is compiled in.
pub const PROVIDERS: ProviderTable = ProviderTable {
    concern: "storage",
    init_crate: "storage-init",
    providers: &[
        ProviderInfo::new("inmemory", "inmemory", cfg!(feature = "inmemory")),
        ProviderInfo::new("postgres", "postgres", cfg!(feature = "postgres")),
        ProviderInfo::new("sqlite", "sqlite", cfg!(feature = "sqlite")),
    ],
};

/// The store could not be built.
#[derive(Debug, Error)]
pub enum StorageInitError {
    /// `storage.provider` is unknown or not compiled in.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A value of the `storage` section is out of range.
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
    PROVIDERS.compiled()
}

/// Builds the store `config.provider` names.
pub async fn build(config: &StorageConfig) -> Result<Arc<dyn Store>, StorageInitError> {
    let provider = PROVIDERS.resolve(&config.provider)?;
    config.validate()?;
    match provider.name {
        #[cfg(feature = "inmemory")]
        "inmemory" => Ok(Arc::new(storage_inmemory::InMemoryStore::new())),
        #[cfg(feature = "postgres")]
        "postgres" => build_postgres(config).await,
        #[cfg(feature = "sqlite")]
        "sqlite" => build_sqlite(config).await,
        // `resolve` returns only compiled-in providers, each of which has an arm.
        _ => Err(PROVIDERS.not_compiled_in(provider).into()),
    }
}

#[cfg(feature = "postgres")]
async fn build_postgres(config: &StorageConfig) -> Result<Arc<dyn Store>, StorageInitError> {
    match storage_postgres::PostgresStore::connect(config).await {
        Ok(store) => Ok(Arc::new(store)),
        Err(storage_postgres::PostgresError::InvalidConfig(e)) => Err(e.into()),
        Err(storage_postgres::PostgresError::InvalidUrl(message)) => {
            Err(StorageInitError::InvalidConfig(
                InvalidValue::new(
                    "storage.postgres.url",
                    "a URL like postgres://user@host:5432/database",
                )
                .found(message),
            ))
        }
        Err(error) => Err(StorageInitError::ProviderFailed {
            provider: "postgres",
            source: Box::new(error),
        }),
    }
}

#[cfg(feature = "sqlite")]
async fn build_sqlite(config: &StorageConfig) -> Result<Arc<dyn Store>, StorageInitError> {
    let sqlite = storage_sqlite::SqliteConfig::from_section(&config.sqlite)?;
    match storage_sqlite::SqliteStore::open(&sqlite).await {
        Ok(store) => Ok(Arc::new(store)),
        Err(storage_sqlite::SqliteError::InvalidConfig(invalid)) => Err(invalid.into()),
        Err(error) => Err(StorageInitError::ProviderFailed {
            provider: "sqlite",
            source: Box::new(error),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_provider_lists_the_known_ones() {
        let config = StorageConfig {
            provider: "mongodb".into(),
            ..StorageConfig::default()
        };
        let error = build(&config).await.err().unwrap();
        assert!(matches!(
            error,
            StorageInitError::Provider(ProviderError::Unknown { .. })
        ));
        assert_eq!(
            error.to_string(),
            "storage.provider: unknown provider `mongodb`; expected one of: inmemory, postgres, sqlite"
        );
    }

    #[tokio::test]
    async fn invalid_config_names_the_key() {
        let mut config = StorageConfig::default();
        config.outbox.batch_size = 0;
        match build(&config).await.err().unwrap() {
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
        let store = build(&StorageConfig::default()).await.unwrap();
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
        let error = build(&config).await.err().unwrap();
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
        let error = build(&StorageConfig::default()).await.err().unwrap();
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
