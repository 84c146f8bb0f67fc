//! The committed state every clone of a store shares.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;
use storage_abstractions::{OutboxRecord, Record, StorageError};
use tokio::sync::Notify;
use uuid::Uuid;

/// `(collection, id)`.
pub(crate) type Key = (String, String);

/// A committed record and its insertion position (queries return records in
/// insertion order; an update keeps the position).
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) record: Record,
    pub(crate) position: u64,
}

/// A committed outbox row.
#[derive(Debug, Clone)]
pub(crate) struct OutboxRow {
    pub(crate) record: OutboxRecord,
    pub(crate) sent_at: Option<SystemTime>,
    pub(crate) quarantined: bool,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) records: HashMap<Key, Stored>,
    pub(crate) next_position: u64,
    pub(crate) outbox: BTreeMap<i64, OutboxRow>,
    /// Sequences of rows neither sent nor quarantined, so the relay does not
    /// scan sent rows awaiting purge.
    pub(crate) pending: BTreeSet<i64>,
    pub(crate) last_sequence: i64,
    /// `(consumer, message id)` → when it was processed.
    pub(crate) inbox: HashMap<(String, Uuid), SystemTime>,
}

impl State {
    pub(crate) fn version_of(&self, key: &Key) -> Option<u64> {
        self.records.get(key).map(|s| s.record.version)
    }
}

/// State plus the relay wake-up and the shut-down flag.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) new_outbox: Notify,
    pub(crate) closed: AtomicBool,
}

impl Shared {
    pub(crate) fn ensure_open(&self) -> Result<(), StorageError> {
        if self.closed.load(Ordering::Acquire) {
            Err(StorageError::Unavailable(
                "in-memory store was shut down".into(),
            ))
        } else {
            Ok(())
        }
    }

    /// Wakes every relay waiting now, and leaves a permit for one that is
    /// between two waits, so a commit is never missed until the poll timeout.
    pub(crate) fn wake_relays(&self) {
        self.new_outbox.notify_waiters();
        self.new_outbox.notify_one();
    }
}
