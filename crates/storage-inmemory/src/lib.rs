//! In-memory storage provider of the service chassis with real transactional
//! semantics.
//!
//! [`InMemoryStore`] implements the [`Store`] port the same way the
//! PostgreSQL provider does, so a service's tests run against it unchanged:
//!
//! - a transaction sees its own writes; nothing is visible to others before
//!   commit; dropping or rolling back discards everything;
//! - optimistic concurrency: every write remembers the version it was based
//!   on and commit checks it again under the store's lock, so of two
//!   transactions that changed the same record only the first to commit wins
//!   (the other gets [`StorageError::Conflict`]);
//! - the outbox assigns a monotonic sequence at commit and wakes
//!   [`OutboxStore::wait_for_new`] waiters;
//! - the inbox refuses a message id already committed for the same consumer,
//!   also when two transactions race for it (the second commit conflicts).
//!
//! Clones share the same data, like connections to one database.
//!
//! ```
//! use storage_abstractions::{Record, Store};
//! use storage_inmemory::InMemoryStore;
//!
//! # tokio_test_block_on(async {
//! let store = InMemoryStore::new();
//! let mut tx = store.begin().await.unwrap();
//! tx.insert(Record::new("orders", "o-1", serde_json::json!({"total": 12}))).await.unwrap();
//! tx.commit().await.unwrap();
//!
//! let mut tx = store.begin().await.unwrap();
//! let order = tx.get("orders", "o-1").await.unwrap().unwrap();
//! assert_eq!(order.version, 1);
//! # });
//! # fn tokio_test_block_on(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

mod outbox;
mod state;
mod transaction;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use chassis_core::{HealthCheck, HealthStatus};
use storage_abstractions::{OutboxStore, StorageError, Store, Transaction};

pub use outbox::InMemoryOutbox;
use state::Shared;
use transaction::InMemoryTransaction;

/// The provider name written in config (`storage.provider = "inmemory"`).
pub const PROVIDER: &str = "inmemory";

/// A store kept in process memory. `Clone` shares the data.
#[derive(Clone, Default)]
pub struct InMemoryStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryStore")
            .field("closed", &self.shared.closed.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The outbox as its concrete type (the same as [`Store::outbox`]).
    pub fn inmemory_outbox(&self) -> InMemoryOutbox {
        InMemoryOutbox::new(self.shared.clone())
    }
}

#[async_trait]
impl Store for InMemoryStore {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>, StorageError> {
        self.shared.ensure_open()?;
        Ok(Box::new(InMemoryTransaction::new(self.shared.clone())))
    }

    fn outbox(&self) -> Arc<dyn OutboxStore> {
        Arc::new(self.inmemory_outbox())
    }

    fn health_checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        vec![Arc::new(InMemoryHealth {
            shared: self.shared.clone(),
        })]
    }

    /// Marks the store (and every clone) closed: later `begin` calls fail
    /// with [`StorageError::Unavailable`] and the health check turns
    /// unhealthy, as a closed database pool would. The data stays in memory
    /// for transactions already open.
    async fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::Release);
        // Wake relays waiting for new messages so they notice the shutdown.
        self.shared.wake_relays();
    }
}

/// Health check `storage.inmemory`: healthy until the store is shut down.
struct InMemoryHealth {
    shared: Arc<Shared>,
}

#[async_trait]
impl HealthCheck for InMemoryHealth {
    fn name(&self) -> &str {
        "storage.inmemory"
    }

    async fn check(&self) -> HealthStatus {
        if self.shared.closed.load(Ordering::Acquire) {
            HealthStatus::Unhealthy("in-memory store was shut down".into())
        } else {
            HealthStatus::Healthy
        }
    }
}
