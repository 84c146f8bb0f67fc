//! One unit of work on one pooled connection (`BEGIN DEFERRED`).
//!
//! SQLite has one writer at a time. Optimistic concurrency comes from the
//! statements (`UPDATE … WHERE version = $expected`, `INSERT … ON CONFLICT
//! DO NOTHING`) and from the write lock: a transaction that read a snapshot
//! and then finds another writer holding the lock, or the database changed
//! since its snapshot, gets `SQLITE_BUSY` at once, which a write reports as
//! [`StorageError::Conflict`] (the command pipeline retries the unit of
//! work). A transaction whose first statement is a write waits for the lock
//! (`storage.sqlite.busy_timeout`) instead.
//!
//! Outbox messages are written at commit, just before `COMMIT`, in the same
//! transaction: a unit of work that only raises events holds no write lock
//! until it commits.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row, Sqlite};
use storage_abstractions::{
    OutboxMessage, Page, Query, Record, StorageError, Transaction, validate_collection,
};
use uuid::Uuid;

use crate::error::{is_busy, map};
use crate::now_us;
use crate::wakeup::Wakeup;

pub(crate) struct SqliteTransaction {
    tx: sqlx::Transaction<'static, Sqlite>,
    outbox: Vec<OutboxMessage>,
    wakeup: Arc<Wakeup>,
}

fn conflict(collection: &str, id: &str, expected: u64, actual: u64) -> StorageError {
    StorageError::Conflict {
        collection: collection.to_owned(),
        id: id.to_owned(),
        expected,
        actual,
    }
}

/// A write's error: lock contention is a conflict on what it wrote.
fn write_error(error: sqlx::Error, collection: &str, id: &str, expected: u64) -> StorageError {
    if is_busy(&error) {
        conflict(collection, id, expected, 0)
    } else {
        map(error)
    }
}

fn to_db(version: u64) -> Result<i64, StorageError> {
    i64::try_from(version).map_err(|_| {
        StorageError::Invalid(format!("version {version}: expected at most {}", i64::MAX))
    })
}

fn from_db(version: i64) -> u64 {
    // The column has CHECK (version >= 1).
    u64::try_from(version).unwrap_or(0)
}

fn record_from(collection: &str, row: &SqliteRow) -> Result<Record, StorageError> {
    let decode = |e: sqlx::Error| StorageError::Backend(format!("decoding a record: {e}"));
    let data: String = row.try_get("data").map_err(decode)?;
    let index: String = row.try_get("index_entries").map_err(decode)?;
    let json = |e: serde_json::Error| StorageError::Backend(format!("decoding a record: {e}"));
    Ok(Record {
        collection: collection.to_owned(),
        id: row.try_get("id").map_err(decode)?,
        version: from_db(row.try_get("version").map_err(decode)?),
        data: serde_json::from_str(&data).map_err(json)?,
        index: serde_json::from_str(&index).map_err(json)?,
    })
}

fn encode(value: &impl serde::Serialize) -> Result<String, StorageError> {
    serde_json::to_string(value)
        .map_err(|e| StorageError::Invalid(format!("cannot encode a record: {e}")))
}

impl SqliteTransaction {
    pub(crate) fn new(tx: sqlx::Transaction<'static, Sqlite>, wakeup: Arc<Wakeup>) -> Self {
        Self {
            tx,
            outbox: Vec::new(),
            wakeup,
        }
    }

    async fn stored_version(&mut self, collection: &str, id: &str) -> Result<u64, StorageError> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM records WHERE collection = $1 AND id = $2")
                .bind(collection)
                .bind(id)
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(map)?;
        Ok(version.map_or(0, from_db))
    }

    /// After a versioned write touched no row: absent → NotFound, else Conflict.
    async fn explain_miss(&mut self, collection: &str, id: &str, expected: u64) -> StorageError {
        match self.stored_version(collection, id).await {
            Ok(0) => StorageError::not_found(collection, id),
            Ok(actual) => conflict(collection, id, expected, actual),
            Err(error) => error,
        }
    }

    /// Replaces the index rows of a record.
    async fn write_index(&mut self, record: &Record, expected: u64) -> Result<(), StorageError> {
        let failed = |e| write_error(e, &record.collection, &record.id, expected);
        sqlx::query("DELETE FROM record_index WHERE collection = $1 AND id = $2")
            .bind(&record.collection)
            .bind(&record.id)
            .execute(&mut *self.tx)
            .await
            .map_err(failed)?;
        for entry in &record.index {
            sqlx::query(
                "INSERT INTO record_index (collection, id, key, value) VALUES ($1, $2, $3, $4)",
            )
            .bind(&record.collection)
            .bind(&record.id)
            .bind(&entry.key)
            .bind(&entry.value)
            .execute(&mut *self.tx)
            .await
            .map_err(failed)?;
        }
        Ok(())
    }

    async fn flush_outbox(&mut self) -> Result<(), StorageError> {
        let created = now_us();
        // One statement per message, in order, so sequences follow the
        // order the messages were written in.
        for message in std::mem::take(&mut self.outbox) {
            sqlx::query(
                "INSERT INTO outbox (message_id, ordering_key, event_type, body, created_us)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(message.id)
            .bind(&message.ordering_key)
            .bind(&message.event_type)
            .bind(&message.body)
            .bind(created)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| write_error(e, "outbox", &message.id.to_string(), 0))?;
        }
        Ok(())
    }
}

/// `WHERE` of a query over `records r` and its values, in bind order.
fn condition(query: &Query) -> (String, Vec<Option<String>>) {
    let mut sql = String::from("r.collection = $1");
    let mut values = vec![Some(query.collection.clone())];
    let mut next = 2;
    for filter in &query.filters {
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM record_index i WHERE i.collection = r.collection
                 AND i.id = r.id AND i.key = ${} AND i.value = ${})",
            next,
            next + 1
        ));
        next += 2;
        values.push(Some(filter.key.clone()));
        values.push(Some(filter.value.clone()));
    }
    for range in &query.ranges {
        // Text compares byte-wise (BINARY collation), as the other providers do.
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM record_index i WHERE i.collection = r.collection
                 AND i.id = r.id AND i.key = ${k}
                 AND (${lo} IS NULL OR i.value >= ${lo}) AND (${hi} IS NULL OR i.value <= ${hi}))",
            k = next,
            lo = next + 1,
            hi = next + 2
        ));
        next += 3;
        values.push(Some(range.key.clone()));
        values.push(range.min.clone());
        values.push(range.max.clone());
    }
    (sql, values)
}

#[async_trait]
impl Transaction for SqliteTransaction {
    async fn get(&mut self, collection: &str, id: &str) -> Result<Option<Record>, StorageError> {
        validate_collection(collection)?;
        let row = sqlx::query(
            "SELECT id, version, data, index_entries FROM records WHERE collection = $1 AND id = $2",
        )
        .bind(collection)
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(map)?;
        row.map(|row| record_from(collection, &row)).transpose()
    }

    async fn insert(&mut self, record: Record) -> Result<(), StorageError> {
        record.validate_for_write(true)?;
        let inserted = sqlx::query(
            "INSERT INTO records (collection, id, version, data, index_entries, updated_us)
             VALUES ($1, $2, 1, $3, $4, $5)
             ON CONFLICT (collection, id) DO NOTHING",
        )
        .bind(&record.collection)
        .bind(&record.id)
        .bind(encode(&record.data)?)
        .bind(encode(&record.index)?)
        .bind(now_us())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| write_error(e, &record.collection, &record.id, 0))?
        .rows_affected();
        if inserted == 1 {
            return self.write_index(&record, 0).await;
        }
        let actual = self.stored_version(&record.collection, &record.id).await?;
        Err(conflict(&record.collection, &record.id, 0, actual))
    }

    async fn update(&mut self, record: Record) -> Result<(), StorageError> {
        record.validate_for_write(false)?;
        let expected = record.version - 1;
        let updated = sqlx::query(
            "UPDATE records SET version = $3, data = $4, index_entries = $5, updated_us = $6
             WHERE collection = $1 AND id = $2 AND version = $7",
        )
        .bind(&record.collection)
        .bind(&record.id)
        .bind(to_db(record.version)?)
        .bind(encode(&record.data)?)
        .bind(encode(&record.index)?)
        .bind(now_us())
        .bind(to_db(expected)?)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| write_error(e, &record.collection, &record.id, expected))?
        .rows_affected();
        if updated == 1 {
            self.write_index(&record, expected).await
        } else {
            Err(self
                .explain_miss(&record.collection, &record.id, expected)
                .await)
        }
    }

    async fn delete(
        &mut self,
        collection: &str,
        id: &str,
        expected_version: u64,
    ) -> Result<(), StorageError> {
        validate_collection(collection)?;
        let failed = |e| write_error(e, collection, id, expected_version);
        let deleted =
            sqlx::query("DELETE FROM records WHERE collection = $1 AND id = $2 AND version = $3")
                .bind(collection)
                .bind(id)
                .bind(to_db(expected_version)?)
                .execute(&mut *self.tx)
                .await
                .map_err(failed)?
                .rows_affected();
        if deleted != 1 {
            return Err(self.explain_miss(collection, id, expected_version).await);
        }
        sqlx::query("DELETE FROM record_index WHERE collection = $1 AND id = $2")
            .bind(collection)
            .bind(id)
            .execute(&mut *self.tx)
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn query(&mut self, query: &Query) -> Result<Page<Record>, StorageError> {
        validate_collection(&query.collection)?;
        query.page.validate()?;
        let (condition, values) = condition(query);
        // Safe: the statements hold only placeholders, numbered here.
        let mut count = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM records r WHERE {condition}"
        )));
        for value in &values {
            count = count.bind(value);
        }
        let total: i64 = count.fetch_one(&mut *self.tx).await.map_err(map)?;
        let paging = values.len() + 1;
        let mut select = sqlx::query(AssertSqlSafe(format!(
            "SELECT r.id, r.version, r.data, r.index_entries FROM records r WHERE {condition}
             ORDER BY r.position LIMIT ${} OFFSET ${}",
            paging,
            paging + 1
        )));
        for value in &values {
            select = select.bind(value);
        }
        let rows = select
            .bind(i64::from(query.page.limit))
            .bind(i64::try_from(query.page.offset).unwrap_or(i64::MAX))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(map)?;
        let items = rows
            .iter()
            .map(|row| record_from(&query.collection, row))
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            total: u64::try_from(total).unwrap_or(0),
            page: query.page,
        })
    }

    async fn append_outbox(&mut self, messages: Vec<OutboxMessage>) -> Result<(), StorageError> {
        self.outbox.extend(messages);
        Ok(())
    }

    async fn mark_inbox(&mut self, consumer: &str, message_id: Uuid) -> Result<bool, StorageError> {
        let inserted = sqlx::query(
            "INSERT INTO inbox (consumer, message_id, processed_us) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(consumer)
        .bind(message_id)
        .bind(now_us())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| write_error(e, "inbox", &message_id.to_string(), 0))?
        .rows_affected();
        Ok(inserted == 1)
    }

    fn sql_connection(&mut self) -> Option<&mut (dyn std::any::Any + Send)> {
        let conn: &mut sqlx::SqliteConnection = &mut self.tx;
        Some(conn)
    }

    async fn commit(self: Box<Self>) -> Result<(), StorageError> {
        let mut this = *self;
        let appended = !this.outbox.is_empty();
        this.flush_outbox().await?;
        this.tx
            .commit()
            .await
            .map_err(|e| write_error(e, "transaction", "commit", 0))?;
        if appended {
            this.wakeup.committed();
        }
        Ok(())
    }

    async fn rollback(self: Box<Self>) -> Result<(), StorageError> {
        self.tx.rollback().await.map_err(map)
    }
}
