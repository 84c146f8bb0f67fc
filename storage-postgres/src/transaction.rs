//! One unit of work on one pooled connection (`READ COMMITTED`).
//!
//! Optimistic concurrency is enforced by the statements themselves:
//! `UPDATE … WHERE version = $expected` and `INSERT … ON CONFLICT DO NOTHING`.
//! A concurrent writer of the same row waits for the first to finish (row
//! lock) and then finds the version changed, so exactly one wins. Conflicts
//! are detected without raising a database error, so the transaction stays
//! usable after a [`StorageError::Conflict`].

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::types::Json;
use sqlx::{Postgres, Row};
use storage_abstractions::{
    IndexEntry, OutboxMessage, Page, Query, Record, StorageError, Transaction, validate_collection,
};
use uuid::Uuid;

use crate::error::map;
use crate::wakeup::Wakeup;

pub(crate) struct PgTransaction {
    tx: sqlx::Transaction<'static, Postgres>,
    appended: bool,
    wakeup: Arc<Wakeup>,
}

impl PgTransaction {
    pub(crate) fn new(tx: sqlx::Transaction<'static, Postgres>, wakeup: Arc<Wakeup>) -> Self {
        Self {
            tx,
            appended: false,
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
            Ok(actual) => StorageError::Conflict {
                collection: collection.to_owned(),
                id: id.to_owned(),
                expected,
                actual,
            },
            Err(error) => error,
        }
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

fn record_from(collection: &str, row: &sqlx::postgres::PgRow) -> Result<Record, StorageError> {
    let decode = |e: sqlx::Error| StorageError::Backend(format!("decoding a record: {e}"));
    let Json(index): Json<Vec<IndexEntry>> = row.try_get("index_entries").map_err(decode)?;
    Ok(Record {
        collection: collection.to_owned(),
        id: row.try_get("id").map_err(decode)?,
        version: from_db(row.try_get("version").map_err(decode)?),
        data: row.try_get("data").map_err(decode)?,
        index,
    })
}

#[async_trait]
impl Transaction for PgTransaction {
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
            "INSERT INTO records (collection, id, version, data, index_entries)
             VALUES ($1, $2, 1, $3, $4)
             ON CONFLICT (collection, id) DO NOTHING",
        )
        .bind(&record.collection)
        .bind(&record.id)
        .bind(&record.data)
        .bind(Json(&record.index))
        .execute(&mut *self.tx)
        .await
        .map_err(map)?
        .rows_affected();
        if inserted == 1 {
            return Ok(());
        }
        let actual = self.stored_version(&record.collection, &record.id).await?;
        Err(StorageError::Conflict {
            collection: record.collection,
            id: record.id,
            expected: 0,
            actual,
        })
    }

    async fn update(&mut self, record: Record) -> Result<(), StorageError> {
        record.validate_for_write(false)?;
        let expected = record.version - 1;
        let updated = sqlx::query(
            "UPDATE records SET version = $3, data = $4, index_entries = $5, updated_at = now()
             WHERE collection = $1 AND id = $2 AND version = $6",
        )
        .bind(&record.collection)
        .bind(&record.id)
        .bind(to_db(record.version)?)
        .bind(&record.data)
        .bind(Json(&record.index))
        .bind(to_db(expected)?)
        .execute(&mut *self.tx)
        .await
        .map_err(map)?
        .rows_affected();
        if updated == 1 {
            Ok(())
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
        let deleted =
            sqlx::query("DELETE FROM records WHERE collection = $1 AND id = $2 AND version = $3")
                .bind(collection)
                .bind(id)
                .bind(to_db(expected_version)?)
                .execute(&mut *self.tx)
                .await
                .map_err(map)?
                .rows_affected();
        if deleted == 1 {
            Ok(())
        } else {
            Err(self.explain_miss(collection, id, expected_version).await)
        }
    }

    async fn query(&mut self, query: &Query) -> Result<Page<Record>, StorageError> {
        validate_collection(&query.collection)?;
        query.page.validate()?;
        // All filters at once: the record's entries contain every one of them.
        let wanted: Vec<IndexEntry> = query
            .filters
            .iter()
            .map(|f| IndexEntry {
                key: f.key.clone(),
                value: f.value.clone(),
            })
            .collect();
        let offset = i64::try_from(query.page.offset).unwrap_or(i64::MAX);
        // Equality filters use the GIN index (containment); each range
        // filter is one more condition on the rows that pass them, compared
        // byte-wise (`COLLATE "C"`) as the in-memory store does.
        let mut condition = String::from("collection = $1 AND index_entries @> $2");
        for n in 0..query.ranges.len() {
            let (key, min, max) = (3 + 3 * n, 4 + 3 * n, 5 + 3 * n);
            condition.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM jsonb_array_elements(index_entries) e
                   WHERE e->>'key' = ${key}
                     AND (${min}::text IS NULL OR (e->>'value') COLLATE \"C\" >= ${min})
                     AND (${max}::text IS NULL OR (e->>'value') COLLATE \"C\" <= ${max}))"
            ));
        }
        let paging = 3 + 3 * query.ranges.len();
        // Safe: the statements hold only placeholders, numbered here.
        let count_sql = format!("SELECT count(*) FROM records WHERE {condition}");
        let mut count = sqlx::query_scalar(sqlx::AssertSqlSafe(count_sql))
            .bind(&query.collection)
            .bind(Json(&wanted));
        for range in &query.ranges {
            count = count.bind(&range.key).bind(&range.min).bind(&range.max);
        }
        let total: i64 = count.fetch_one(&mut *self.tx).await.map_err(map)?;
        let rows_sql = format!(
            "SELECT id, version, data, index_entries FROM records WHERE {condition}
             ORDER BY position OFFSET ${} LIMIT ${}",
            paging,
            paging + 1
        );
        let mut select = sqlx::query(sqlx::AssertSqlSafe(rows_sql))
            .bind(&query.collection)
            .bind(Json(&wanted));
        for range in &query.ranges {
            select = select.bind(&range.key).bind(&range.min).bind(&range.max);
        }
        let rows = select
            .bind(offset)
            .bind(i64::from(query.page.limit))
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
        // One statement per message, in order, so sequences follow the order
        // the messages were written in.
        for message in messages {
            sqlx::query(
                "INSERT INTO outbox (message_id, ordering_key, event_type, body)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(message.id)
            .bind(&message.ordering_key)
            .bind(&message.event_type)
            .bind(&message.body)
            .execute(&mut *self.tx)
            .await
            .map_err(map)?;
            self.appended = true;
        }
        Ok(())
    }

    async fn mark_inbox(&mut self, consumer: &str, message_id: Uuid) -> Result<bool, StorageError> {
        // A concurrent transaction holding the same key makes this wait until
        // it ends; then the row is either there (false) or free (true).
        let inserted = sqlx::query(
            "INSERT INTO inbox (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(consumer)
        .bind(message_id)
        .execute(&mut *self.tx)
        .await
        .map_err(map)?
        .rows_affected();
        Ok(inserted == 1)
    }

    fn sql_connection(&mut self) -> Option<&mut (dyn std::any::Any + Send)> {
        let conn: &mut sqlx::PgConnection = &mut self.tx;
        Some(conn)
    }

    async fn commit(self: Box<Self>) -> Result<(), StorageError> {
        let this = *self;
        this.tx.commit().await.map_err(map)?;
        if this.appended {
            this.wakeup.committed();
        }
        Ok(())
    }

    async fn rollback(self: Box<Self>) -> Result<(), StorageError> {
        self.tx.rollback().await.map_err(map)
    }
}
