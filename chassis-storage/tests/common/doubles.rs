//! Wrappers around the real providers that add the failures a test needs
//! (a bus that is down or refuses poison, an outbox whose writes fail) and
//! record what happened. Everything else is delegated to the real provider.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use messaging_abstractions::{
    Envelope, EventBus, PublishError, ShutdownError, SubscribeError, Subscription,
};
use messaging_inmemory::InMemoryBus;
use parking_lot::Mutex;
use storage_abstractions::{OutboxBacklog, OutboxRecord, OutboxStore, StorageError};
use tokio::sync::Notify;
use uuid::Uuid;

use super::model::Incremented;

#[derive(Debug, Clone)]
pub enum BusEvent {
    Published(Box<Envelope>),
    Refused(Uuid),
    Unavailable(Instant),
}

/// The real in-memory bus, plus: a switch that makes it unavailable, refusal
/// of `Incremented { poison: true }`, and a log of every publish.
pub struct TestBus {
    inner: InMemoryBus,
    pub down: AtomicBool,
    log: Mutex<Vec<BusEvent>>,
    changed: Notify,
}

impl TestBus {
    pub fn new(inner: InMemoryBus) -> Arc<Self> {
        Arc::new(Self {
            inner,
            down: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
            changed: Notify::new(),
        })
    }

    pub fn log(&self) -> Vec<BusEvent> {
        self.log.lock().clone()
    }

    /// Envelopes confirmed, in publish order (duplicates included).
    pub fn published(&self) -> Vec<Envelope> {
        self.log
            .lock()
            .iter()
            .filter_map(|e| match e {
                BusEvent::Published(env) => Some((**env).clone()),
                _ => None,
            })
            .collect()
    }

    /// Decoded `Incremented` events confirmed, in publish order.
    pub fn increments(&self) -> Vec<Incremented> {
        self.published()
            .iter()
            .map(|e| e.decode::<Incremented>().expect("an Incremented event"))
            .collect()
    }

    pub fn unavailable_times(&self) -> Vec<Instant> {
        self.log
            .lock()
            .iter()
            .filter_map(|e| match e {
                BusEvent::Unavailable(at) => Some(*at),
                _ => None,
            })
            .collect()
    }

    fn record(&self, event: BusEvent) {
        self.log.lock().push(event);
        self.changed.notify_waiters();
    }

    /// Waits until `condition` holds, re-checking on every publish and at
    /// least every 20 ms; panics with `what` after `timeout`.
    pub async fn wait_for(&self, what: &str, timeout: Duration, condition: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if condition(self) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            let _ = tokio::time::timeout(Duration::from_millis(20), notified).await;
        }
    }
}

#[async_trait]
impl EventBus for TestBus {
    fn provider(&self) -> &'static str {
        "test"
    }

    async fn publish(&self, envelope: Envelope) -> Result<(), PublishError> {
        if self.down.load(Ordering::SeqCst) {
            self.record(BusEvent::Unavailable(Instant::now()));
            return Err(PublishError::Unavailable("switched off by the test".into()));
        }
        if let Ok(event) = envelope.decode::<Incremented>()
            && event.poison
        {
            self.record(BusEvent::Refused(envelope.message_id));
            return Err(PublishError::Rejected {
                message_id: envelope.message_id,
                reason: "poison message".into(),
            });
        }
        self.inner.publish(envelope.clone()).await?;
        self.record(BusEvent::Published(Box::new(envelope)));
        Ok(())
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<(), SubscribeError> {
        self.inner.subscribe(subscription).await
    }

    async fn stop_consuming(&self, grace: Duration) -> Result<(), ShutdownError> {
        self.inner.stop_consuming(grace).await
    }

    async fn shutdown(&self) -> Result<(), ShutdownError> {
        self.inner.shutdown().await
    }
}

/// The real outbox, except that `mark_sent` fails from its `fail_from`-th
/// call on: the relay "crashes" between publishing and marking.
pub struct FlakyOutbox {
    inner: Arc<dyn OutboxStore>,
    fail_from: u32,
    calls: AtomicU32,
}

impl FlakyOutbox {
    pub fn new(inner: Arc<dyn OutboxStore>, fail_from: u32) -> Arc<Self> {
        Arc::new(Self {
            inner,
            fail_from,
            calls: AtomicU32::new(0),
        })
    }
}

#[async_trait]
impl OutboxStore for FlakyOutbox {
    async fn fetch_pending(&self, limit: usize) -> Result<Vec<OutboxRecord>, StorageError> {
        self.inner.fetch_pending(limit).await
    }
    async fn mark_sent(&self, sequences: &[i64]) -> Result<(), StorageError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call >= self.fail_from {
            return Err(StorageError::Unavailable(
                "connection lost (simulated)".into(),
            ));
        }
        self.inner.mark_sent(sequences).await
    }
    async fn record_failure(
        &self,
        sequence: i64,
        error: &str,
        quarantine: bool,
    ) -> Result<(), StorageError> {
        self.inner.record_failure(sequence, error, quarantine).await
    }
    async fn quarantined(&self) -> Result<Vec<OutboxRecord>, StorageError> {
        self.inner.quarantined().await
    }
    async fn release(&self, sequence: i64) -> Result<bool, StorageError> {
        self.inner.release(sequence).await
    }
    async fn purge_sent(&self, older_than: Duration) -> Result<u64, StorageError> {
        self.inner.purge_sent(older_than).await
    }
    async fn purge_inbox(&self, older_than: Duration) -> Result<u64, StorageError> {
        self.inner.purge_inbox(older_than).await
    }
    async fn backlog(&self) -> Result<OutboxBacklog, StorageError> {
        self.inner.backlog().await
    }
    async fn wait_for_new(&self, timeout: Duration) {
        self.inner.wait_for_new(timeout).await
    }
}
