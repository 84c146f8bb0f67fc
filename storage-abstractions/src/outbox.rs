use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use uuid::Uuid;

use crate::error::StorageError;

/// A message to publish after commit, as written inside a transaction.
///
/// The store treats `body` as opaque bytes (chassis-storage puts the encoded
/// envelope there); it only needs the id and the ordering key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Message id (the envelope's).
    pub id: Uuid,
    /// Messages with the same key are relayed in the order they were written.
    pub ordering_key: String,
    /// Event type, for logs and metrics.
    pub event_type: String,
    /// The encoded message.
    pub body: Vec<u8>,
}

/// An outbox row as the relay sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    /// Position in the outbox: increases with every message written.
    pub sequence: i64,
    /// The message.
    pub message: OutboxMessage,
    /// When it was committed.
    pub created_at: SystemTime,
    /// Failed relay attempts so far.
    pub attempts: u32,
    /// The last relay error.
    pub last_error: Option<String>,
}

/// Size and age of what is waiting to be relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxBacklog {
    /// Messages not yet sent (quarantined ones excluded).
    pub pending: u64,
    /// Age of the oldest pending message.
    pub oldest_pending_age: Option<Duration>,
    /// Messages set aside because they could not be sent.
    pub quarantined: u64,
}

/// The relay's view of the outbox (and the inbox's housekeeping).
///
/// Pending messages are returned in sequence order and must never be skipped,
/// even when transactions commit out of sequence order.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Up to `limit` pending (not sent, not quarantined) messages, lowest
    /// sequence first.
    async fn fetch_pending(&self, limit: usize) -> Result<Vec<OutboxRecord>, StorageError>;
    /// Marks messages as sent. The mark may be less durable than a unit of
    /// work (a provider need not wait for its disk flush): a mark lost in a
    /// crash sends its messages again, which at-least-once delivery allows.
    async fn mark_sent(&self, sequences: &[i64]) -> Result<(), StorageError>;
    /// Records a failed attempt; with `quarantine` the message is set aside
    /// and no longer returned by [`OutboxStore::fetch_pending`].
    async fn record_failure(
        &self,
        sequence: i64,
        error: &str,
        quarantine: bool,
    ) -> Result<(), StorageError>;
    /// Quarantined messages, for operators.
    async fn quarantined(&self) -> Result<Vec<OutboxRecord>, StorageError>;
    /// Puts a quarantined message back in the queue.
    async fn release(&self, sequence: i64) -> Result<bool, StorageError>;
    /// Deletes sent messages older than `older_than`; returns how many.
    async fn purge_sent(&self, older_than: Duration) -> Result<u64, StorageError>;
    /// Deletes inbox marks older than `older_than`; returns how many.
    async fn purge_inbox(&self, older_than: Duration) -> Result<u64, StorageError>;
    /// What is waiting.
    async fn backlog(&self) -> Result<OutboxBacklog, StorageError>;
    /// Resolves when new messages may have been committed, or after `timeout`
    /// (polling fallback). Spurious wake-ups are allowed.
    ///
    /// A commit made while nobody waits is kept as one wake-up: the next
    /// call resolves at once (the relay does not fetch again after a batch
    /// that emptied the outbox, so a commit during that batch must end its
    /// next wait). With a zero `timeout` a kept wake-up is taken without
    /// waiting.
    async fn wait_for_new(&self, timeout: Duration);
}
