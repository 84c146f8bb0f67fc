//! The relay's view of the in-memory outbox and inbox housekeeping.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use storage_abstractions::{OutboxBacklog, OutboxRecord, OutboxStore, StorageError};

use crate::state::Shared;

/// The [`OutboxStore`] of an [`crate::InMemoryStore`].
#[derive(Clone)]
pub struct InMemoryOutbox {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for InMemoryOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryOutbox").finish_non_exhaustive()
    }
}

impl InMemoryOutbox {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

/// `now - age`, or the epoch if that is before it.
fn cutoff(age: Duration) -> SystemTime {
    SystemTime::now()
        .checked_sub(age)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn missing(sequence: i64) -> StorageError {
    StorageError::not_found("outbox", &sequence.to_string())
}

#[async_trait]
impl OutboxStore for InMemoryOutbox {
    async fn fetch_pending(&self, limit: usize) -> Result<Vec<OutboxRecord>, StorageError> {
        let state = self.shared.state.lock();
        Ok(state
            .pending
            .iter()
            .take(limit)
            .filter_map(|seq| state.outbox.get(seq).map(|row| row.record.clone()))
            .collect())
    }

    async fn mark_sent(&self, sequences: &[i64]) -> Result<(), StorageError> {
        let now = SystemTime::now();
        let mut state = self.shared.state.lock();
        for sequence in sequences {
            // Unknown sequences (already purged) are ignored: marking is
            // idempotent so the relay may retry it.
            if let Some(row) = state.outbox.get_mut(sequence) {
                row.sent_at.get_or_insert(now);
                state.pending.remove(sequence);
            }
        }
        Ok(())
    }

    async fn record_failure(
        &self,
        sequence: i64,
        error: &str,
        quarantine: bool,
    ) -> Result<(), StorageError> {
        let mut state = self.shared.state.lock();
        let row = state
            .outbox
            .get_mut(&sequence)
            .ok_or_else(|| missing(sequence))?;
        row.record.attempts = row.record.attempts.saturating_add(1);
        row.record.last_error = Some(error.to_owned());
        if quarantine && row.sent_at.is_none() {
            row.quarantined = true;
            state.pending.remove(&sequence);
        }
        Ok(())
    }

    async fn quarantined(&self) -> Result<Vec<OutboxRecord>, StorageError> {
        let state = self.shared.state.lock();
        Ok(state
            .outbox
            .values()
            .filter(|row| row.quarantined)
            .map(|row| row.record.clone())
            .collect())
    }

    async fn release(&self, sequence: i64) -> Result<bool, StorageError> {
        let released = {
            let mut state = self.shared.state.lock();
            let row = state
                .outbox
                .get_mut(&sequence)
                .ok_or_else(|| missing(sequence))?;
            if row.quarantined {
                row.quarantined = false;
                // A released message gets its full number of attempts again.
                row.record.attempts = 0;
                state.pending.insert(sequence);
                true
            } else {
                false
            }
        };
        if released {
            self.shared.wake_relays();
        }
        Ok(released)
    }

    async fn purge_sent(&self, older_than: Duration) -> Result<u64, StorageError> {
        let cutoff = cutoff(older_than);
        let mut state = self.shared.state.lock();
        let before = state.outbox.len();
        state
            .outbox
            .retain(|_, row| row.sent_at.is_none_or(|sent| sent > cutoff));
        Ok((before - state.outbox.len()) as u64)
    }

    async fn purge_inbox(&self, older_than: Duration) -> Result<u64, StorageError> {
        let cutoff = cutoff(older_than);
        let mut state = self.shared.state.lock();
        let before = state.inbox.len();
        state.inbox.retain(|_, processed| *processed > cutoff);
        Ok((before - state.inbox.len()) as u64)
    }

    async fn backlog(&self) -> Result<OutboxBacklog, StorageError> {
        let state = self.shared.state.lock();
        let oldest = state
            .pending
            .iter()
            .filter_map(|seq| state.outbox.get(seq))
            .map(|row| row.record.created_at)
            .min();
        Ok(OutboxBacklog {
            pending: state.pending.len() as u64,
            oldest_pending_age: oldest.map(|t| t.elapsed().unwrap_or_default()),
            quarantined: state.outbox.values().filter(|r| r.quarantined).count() as u64,
        })
    }

    async fn wait_for_new(&self, timeout: Duration) {
        // Spurious wake-ups are allowed, so a stored permit from an earlier
        // commit simply makes the relay look once more.
        let _ = tokio::time::timeout(timeout, self.shared.new_outbox.notified()).await;
    }
}
