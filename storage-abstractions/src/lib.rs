//! Storage ports of the service chassis.
//!
//! The chassis stores aggregates as **records**: a JSON document with an id,
//! a version for optimistic concurrency and a few index entries that simple
//! queries filter on. That one shape lets a generic repository (in
//! `chassis-storage`) map any serde aggregate with little code and run
//! unchanged on every provider (`storage-inmemory`, `storage-sqlite`,
//! `storage-postgres`).
//!
//! Everything a command changes goes through one [`Transaction`]: records,
//! outbox messages (the integration events to publish after commit) and inbox
//! marks (ids of handled messages, so a redelivery has no second effect).
//!
//! ```
//! use storage_abstractions::{Record, Query, Store, StorageError};
//!
//! async fn rename(store: &dyn Store, id: &str) -> Result<(), StorageError> {
//!     let mut tx = store.begin().await?;
//!     let mut record = tx.get("customers", id).await?.ok_or_else(|| StorageError::not_found("customers", id))?;
//!     record.data["name"] = "Ada".into();
//!     tx.update(record.next_version()).await?; // conflicts if someone else updated it meanwhile
//!     tx.commit().await
//! }
//! ```

mod config;
mod error;
mod migration;
mod outbox;
mod pool;
mod record;
mod store;

pub use config::{InboxConfig, OutboxConfig, StorageConfig};
pub use error::StorageError;
pub use migration::{Migration, MigrationError};
pub use outbox::{OutboxBacklog, OutboxMessage, OutboxRecord, OutboxStore};
pub use pool::{AcquireObserver, PoolStats};
pub use record::{
    Filter, IndexEntry, MAX_PAGE_LIMIT, Page, PageRequest, Query, RangeFilter, Record, RecordWrite,
    sortable, validate_collection,
};
pub use store::{Store, Transaction};
