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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use storage_abstractions::{OutboxMessage, Record};

    use super::*;

    #[tokio::test]
    async fn clones_share_data() {
        let store = InMemoryStore::new();
        let clone = store.clone();
        let mut tx = store.begin().await.unwrap();
        tx.insert(Record::new("orders", "o-1", serde_json::json!({})))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut tx = clone.begin().await.unwrap();
        assert!(tx.get("orders", "o-1").await.unwrap().is_some());
        assert!(
            InMemoryStore::new()
                .begin()
                .await
                .unwrap()
                .get("orders", "o-1")
                .await
                .unwrap()
                .is_none(),
            "a new store is empty"
        );
    }

    #[tokio::test]
    async fn shutdown_closes_every_clone() {
        let store = InMemoryStore::new();
        let clone = store.clone();
        let open = store.begin().await.unwrap();
        let health = clone.health_checks();
        assert_eq!(health[0].name(), "storage.inmemory");
        assert_eq!(health[0].check().await, HealthStatus::Healthy);
        store.shutdown().await;
        store.shutdown().await; // idempotent
        assert!(matches!(
            clone.begin().await,
            Err(StorageError::Unavailable(_))
        ));
        assert!(matches!(
            open.commit().await,
            Err(StorageError::Unavailable(_))
        ));
        assert!(matches!(
            health[0].check().await,
            HealthStatus::Unhealthy(_)
        ));
    }

    #[tokio::test]
    async fn release_wakes_the_relay() {
        let store = InMemoryStore::new();
        let mut tx = store.begin().await.unwrap();
        tx.append_outbox(vec![OutboxMessage {
            id: uuid::Uuid::new_v4(),
            ordering_key: "k".into(),
            event_type: "e".into(),
            body: Vec::new(),
        }])
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let outbox = store.outbox();
        let sequence = outbox.fetch_pending(1).await.unwrap()[0].sequence;
        outbox.record_failure(sequence, "bad", true).await.unwrap();
        outbox.wait_for_new(Duration::from_millis(1)).await; // drain the commit's permit
        let waiter = tokio::spawn({
            let outbox = outbox.clone();
            async move {
                tokio::time::timeout(
                    Duration::from_secs(20),
                    outbox.wait_for_new(Duration::from_secs(30)),
                )
                .await
                .is_ok()
            }
        });
        tokio::task::yield_now().await;
        assert!(outbox.release(sequence).await.unwrap());
        assert!(waiter.await.unwrap(), "woken before the timeout");
    }
}
