//! One unit of work: a private write set checked and applied at commit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use storage_abstractions::{
    OutboxMessage, OutboxRecord, Page, Query, Record, StorageError, Transaction,
    validate_collection,
};
use uuid::Uuid;

use crate::state::{Key, OutboxRow, Shared, Stored};

/// What the transaction did to one record.
#[derive(Debug)]
struct Write {
    /// The committed version this write is based on (`None` = absent).
    /// Commit fails if the committed version is no longer this one.
    base: Option<u64>,
    /// The record as this transaction sees it (`None` = deleted).
    current: Option<Record>,
    /// Order of first touch, so records inserted here come out of a query
    /// in insertion order and get their positions in that order at commit.
    order: u64,
}

pub(crate) struct InMemoryTransaction {
    shared: Arc<Shared>,
    writes: HashMap<Key, Write>,
    next_order: u64,
    outbox: Vec<OutboxMessage>,
    inbox: Vec<(String, Uuid)>,
    inbox_seen: HashSet<(String, Uuid)>,
}

impl InMemoryTransaction {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            writes: HashMap::new(),
            next_order: 0,
            outbox: Vec::new(),
            inbox: Vec::new(),
            inbox_seen: HashSet::new(),
        }
    }

    /// The record as this transaction sees it: its own write, else committed.
    fn visible(&self, key: &Key) -> Option<Record> {
        match self.writes.get(key) {
            Some(write) => write.current.clone(),
            None => self
                .shared
                .state
                .lock()
                .records
                .get(key)
                .map(|s| s.record.clone()),
        }
    }

    /// Records `current` as the new state of `key`, keeping the base of an
    /// earlier write in this transaction. `base` is the committed version
    /// the write was checked against (`None`: absent). It must be that
    /// version, not the one committed now: another transaction may commit
    /// between the check and this call (a lost update otherwise).
    fn write(&mut self, key: Key, current: Option<Record>, base: Option<u64>) {
        if let Some(write) = self.writes.get_mut(&key) {
            write.current = current;
            return;
        }
        let order = self.next_order;
        self.next_order += 1;
        self.writes.insert(
            key,
            Write {
                base,
                current,
                order,
            },
        );
    }
}

fn key(collection: &str, id: &str) -> Key {
    (collection.to_owned(), id.to_owned())
}

fn conflict(key: &Key, expected: u64, actual: u64) -> StorageError {
    StorageError::Conflict {
        collection: key.0.clone(),
        id: key.1.clone(),
        expected,
        actual,
    }
}

#[async_trait]
impl Transaction for InMemoryTransaction {
    async fn get(&mut self, collection: &str, id: &str) -> Result<Option<Record>, StorageError> {
        validate_collection(collection)?;
        Ok(self.visible(&key(collection, id)))
    }

    async fn insert(&mut self, record: Record) -> Result<(), StorageError> {
        record.validate_for_write(true)?;
        let key = key(&record.collection, &record.id);
        if let Some(existing) = self.visible(&key) {
            return Err(conflict(&key, 0, existing.version));
        }
        self.write(key, Some(record), None);
        Ok(())
    }

    async fn update(&mut self, record: Record) -> Result<(), StorageError> {
        record.validate_for_write(false)?;
        let key = key(&record.collection, &record.id);
        let expected = record.version - 1;
        match self.visible(&key) {
            None => Err(StorageError::not_found(&key.0, &key.1)),
            Some(existing) if existing.version != expected => {
                Err(conflict(&key, expected, existing.version))
            }
            Some(existing) => {
                self.write(key, Some(record), Some(existing.version));
                Ok(())
            }
        }
    }

    async fn delete(
        &mut self,
        collection: &str,
        id: &str,
        expected_version: u64,
    ) -> Result<(), StorageError> {
        validate_collection(collection)?;
        let key = key(collection, id);
        match self.visible(&key) {
            None => Err(StorageError::not_found(collection, id)),
            Some(existing) if existing.version != expected_version => {
                Err(conflict(&key, expected_version, existing.version))
            }
            Some(existing) => {
                self.write(key, None, Some(existing.version));
                Ok(())
            }
        }
    }

    async fn query(&mut self, query: &Query) -> Result<Page<Record>, StorageError> {
        validate_collection(&query.collection)?;
        query.page.validate()?;
        // Sort key: committed records by position, then this transaction's
        // inserts in the order they were made.
        let mut found: Vec<((u8, u64), Record)> = {
            let state = self.shared.state.lock();
            state
                .records
                .iter()
                .filter(|(k, _)| k.0 == query.collection && !self.writes.contains_key(*k))
                .filter(|(_, s)| query.matches(&s.record))
                .map(|(_, s)| ((0, s.position), s.record.clone()))
                .collect()
        };
        let positions: HashMap<&Key, u64> = {
            let state = self.shared.state.lock();
            self.writes
                .keys()
                .filter_map(|k| state.records.get(k).map(|s| (k, s.position)))
                .collect()
        };
        for (k, write) in &self.writes {
            let Some(record) = &write.current else {
                continue;
            };
            if k.0 != query.collection || !query.matches(record) {
                continue;
            }
            // An update keeps the committed position; a (re-)insert goes last.
            let sort = match (write.base, positions.get(k)) {
                (Some(_), Some(position)) if record.version > 1 => (0, *position),
                _ => (1, write.order),
            };
            found.push((sort, record.clone()));
        }
        found.sort_by_key(|(sort, _)| *sort);
        let total = found.len() as u64;
        let items = found
            .into_iter()
            .skip(usize::try_from(query.page.offset).unwrap_or(usize::MAX))
            .take(query.page.limit as usize)
            .map(|(_, record)| record)
            .collect();
        Ok(Page {
            items,
            total,
            page: query.page,
        })
    }

    async fn append_outbox(&mut self, messages: Vec<OutboxMessage>) -> Result<(), StorageError> {
        self.outbox.extend(messages);
        Ok(())
    }

    async fn mark_inbox(&mut self, consumer: &str, message_id: Uuid) -> Result<bool, StorageError> {
        let entry = (consumer.to_owned(), message_id);
        if self.inbox_seen.contains(&entry) || self.shared.state.lock().inbox.contains_key(&entry) {
            return Ok(false);
        }
        self.inbox_seen.insert(entry.clone());
        self.inbox.push(entry);
        Ok(true)
    }

    async fn commit(self: Box<Self>) -> Result<(), StorageError> {
        let this = *self;
        this.shared.ensure_open()?;
        let now = SystemTime::now();
        let mut writes: Vec<(Key, Write)> = this.writes.into_iter().collect();
        writes.sort_by_key(|(_, w)| w.order);
        {
            let mut state = this.shared.state.lock();
            // Check everything first, so a failed commit changes nothing.
            for (key, write) in &writes {
                let committed = state.version_of(key);
                if committed != write.base {
                    let expected = write.base.unwrap_or(0);
                    return Err(conflict(key, expected, committed.unwrap_or(0)));
                }
            }
            for (consumer, id) in &this.inbox {
                if state.inbox.contains_key(&(consumer.clone(), *id)) {
                    return Err(StorageError::Conflict {
                        collection: format!("inbox:{consumer}"),
                        id: id.to_string(),
                        expected: 0,
                        actual: 1,
                    });
                }
            }
            for (key, write) in writes {
                match write.current {
                    None => {
                        state.records.remove(&key);
                    }
                    Some(record) => {
                        // Keep the position of a record that existed before
                        // and was updated; a (re-)insert goes to the end.
                        let kept = state
                            .records
                            .get(&key)
                            .filter(|_| record.version > 1)
                            .map(|s| s.position);
                        let position = match kept {
                            Some(position) => position,
                            None => {
                                state.next_position += 1;
                                state.next_position
                            }
                        };
                        state.records.insert(key, Stored { record, position });
                    }
                }
            }
            for entry in this.inbox {
                state.inbox.insert(entry, now);
            }
            for message in &this.outbox {
                state.last_sequence += 1;
                let sequence = state.last_sequence;
                state.outbox.insert(
                    sequence,
                    OutboxRow {
                        record: OutboxRecord {
                            sequence,
                            message: message.clone(),
                            created_at: now,
                            attempts: 0,
                            last_error: None,
                        },
                        sent_at: None,
                        quarantined: false,
                    },
                );
                state.pending.insert(sequence);
            }
        }
        if !this.outbox.is_empty() {
            this.shared.wake_relays();
        }
        Ok(())
    }

    async fn rollback(self: Box<Self>) -> Result<(), StorageError> {
        // The write set lives only in this value: dropping it discards it.
        Ok(())
    }
}
