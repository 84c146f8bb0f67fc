use std::sync::Arc;

use async_trait::async_trait;
use chassis_core::HealthCheck;
use uuid::Uuid;

use crate::error::StorageError;
use crate::migration::{Migration, MigrationError};
use crate::outbox::{OutboxMessage, OutboxStore};
use crate::pool::{AcquireObserver, PoolStats};
use crate::record::{Page, Query, Record, RecordWrite};

/// A storage provider. Object-safe: services hold an `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The provider's name as written in config (`inmemory`, `postgres`).
    fn provider(&self) -> &'static str;
    /// Opens a transaction (the unit of work).
    async fn begin(&self) -> Result<Box<dyn Transaction>, StorageError>;
    /// The outbox, for the relay.
    fn outbox(&self) -> Arc<dyn OutboxStore>;
    /// Readiness checks (database reachable, ...).
    fn health_checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        Vec::new()
    }
    /// The connection pool's state, for metrics; `None` when the provider
    /// has no pool (in-memory).
    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }
    /// Calls `observer` with each unit of work's wait for a connection,
    /// from now on, for metrics; `false` when the provider has no pool.
    fn observe_acquires(&self, observer: AcquireObserver) -> bool {
        let _ = observer;
        false
    }
    /// Whether transactions of this store carry a SQL connection
    /// ([`Transaction::sql_connection`]): relational access.
    fn has_sql(&self) -> bool {
        false
    }
    /// Applies the service's own `migrations` not yet applied, each in a
    /// transaction of its own, under the lock the chassis's migrations use
    /// (one replica applies them); returns the versions applied now.
    /// [`MigrationError::NotSupported`] on a provider without SQL.
    async fn apply_migrations(&self, migrations: &[Migration]) -> Result<Vec<i64>, MigrationError> {
        let _ = migrations;
        Err(MigrationError::NotSupported {
            provider: self.provider(),
        })
    }
    /// Closes connections. Idempotent.
    async fn shutdown(&self);
}

/// One unit of work. Nothing is visible to others before [`Transaction::commit`];
/// dropping a transaction without commit rolls it back.
#[async_trait]
pub trait Transaction: Send {
    /// Reads a record.
    async fn get(&mut self, collection: &str, id: &str) -> Result<Option<Record>, StorageError>;
    /// Inserts a record with `version == 1`; [`StorageError::Conflict`] if
    /// the id exists.
    async fn insert(&mut self, record: Record) -> Result<(), StorageError>;
    /// Replaces a record whose stored version is `record.version - 1`;
    /// [`StorageError::Conflict`] otherwise, [`StorageError::NotFound`] if absent.
    async fn update(&mut self, record: Record) -> Result<(), StorageError>;
    /// Deletes a record whose stored version is `expected_version`.
    async fn delete(
        &mut self,
        collection: &str,
        id: &str,
        expected_version: u64,
    ) -> Result<(), StorageError>;
    /// Runs a simple query (sees this transaction's own writes).
    async fn query(&mut self, query: &Query) -> Result<Page<Record>, StorageError>;
    /// Writes messages to the outbox, to be relayed after commit.
    async fn append_outbox(&mut self, messages: Vec<OutboxMessage>) -> Result<(), StorageError>;
    /// Writes one record and appends `messages` to the outbox (a repository
    /// saving an aggregate with its events). When the write fails (a
    /// conflict, a missing record) nothing is appended. By default the write,
    /// then [`append_outbox`](Self::append_outbox); a provider that can do
    /// both in one round trip to its server does.
    async fn write_with_outbox(
        &mut self,
        write: RecordWrite,
        messages: Vec<OutboxMessage>,
    ) -> Result<(), StorageError> {
        match write {
            RecordWrite::Insert(record) => self.insert(record).await?,
            RecordWrite::Update(record) => self.update(record).await?,
            RecordWrite::Delete {
                collection,
                id,
                expected_version,
            } => self.delete(&collection, &id, expected_version).await?,
        }
        if messages.is_empty() {
            return Ok(());
        }
        self.append_outbox(messages).await
    }
    /// Marks `message_id` as handled by `consumer`. `false` if it already was
    /// (then the caller skips its effects and commits nothing new).
    async fn mark_inbox(&mut self, consumer: &str, message_id: Uuid) -> Result<bool, StorageError>;
    /// The driver connection this transaction runs on (e.g. a
    /// `sqlx::PgConnection`, a `sqlx::SqliteConnection`), for the service's
    /// own SQL in the same transaction as the records, outbox and inbox
    /// statements; `None` on a provider without SQL. `storage-sql` turns it
    /// into a typed handle.
    fn sql_connection(&mut self) -> Option<&mut (dyn std::any::Any + Send)> {
        None
    }
    /// Makes every change of this transaction visible at once.
    async fn commit(self: Box<Self>) -> Result<(), StorageError>;
    /// Discards every change.
    async fn rollback(self: Box<Self>) -> Result<(), StorageError>;
}
