//! The relay's view of the outbox, and inbox housekeeping.
//!
//! A SQLite database belongs to one process (a single-node service), so
//! there is no relay lock: the relay of that process is the only one.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{AssertSqlSafe, Row};
use storage_abstractions::{OutboxBacklog, OutboxMessage, OutboxRecord, OutboxStore, StorageError};

use crate::error::map;
use crate::now_us;
use crate::wakeup::Wakeup;

/// The [`OutboxStore`] of a [`crate::SqliteStore`].
pub struct SqliteOutbox {
    pool: SqlitePool,
    wakeup: Arc<Wakeup>,
}

impl std::fmt::Debug for SqliteOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteOutbox").finish_non_exhaustive()
    }
}

const SELECT_COLUMNS: &str = "SELECT sequence, message_id, ordering_key, event_type, body,
        created_us, attempts, last_error FROM outbox";

fn outbox_record(row: &SqliteRow) -> Result<OutboxRecord, StorageError> {
    let decode = |e: sqlx::Error| StorageError::Backend(format!("decoding an outbox row: {e}"));
    let created_us: i64 = row.try_get("created_us").map_err(decode)?;
    let attempts: i64 = row.try_get("attempts").map_err(decode)?;
    Ok(OutboxRecord {
        sequence: row.try_get("sequence").map_err(decode)?,
        message: OutboxMessage {
            id: row.try_get("message_id").map_err(decode)?,
            ordering_key: row.try_get("ordering_key").map_err(decode)?,
            event_type: row.try_get("event_type").map_err(decode)?,
            body: row.try_get("body").map_err(decode)?,
        },
        created_at: SystemTime::UNIX_EPOCH
            + Duration::from_micros(u64::try_from(created_us).unwrap_or(0)),
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        last_error: row.try_get("last_error").map_err(decode)?,
    })
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

impl SqliteOutbox {
    pub(crate) fn new(pool: SqlitePool, wakeup: Arc<Wakeup>) -> Self {
        Self { pool, wakeup }
    }

    async fn select(&self, condition: &str) -> Result<Vec<OutboxRecord>, StorageError> {
        let rows = sqlx::query(AssertSqlSafe(format!("{SELECT_COLUMNS} WHERE {condition}")))
            .fetch_all(&self.pool)
            .await
            .map_err(map)?;
        rows.iter().map(outbox_record).collect()
    }
}

#[async_trait]
impl OutboxStore for SqliteOutbox {
    async fn fetch_pending(&self, limit: usize) -> Result<Vec<OutboxRecord>, StorageError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{SELECT_COLUMNS} WHERE sent_us IS NULL AND quarantined = 0 ORDER BY sequence LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(map)?;
        rows.iter().map(outbox_record).collect()
    }

    async fn mark_sent(&self, sequences: &[i64]) -> Result<(), StorageError> {
        if sequences.is_empty() {
            return Ok(());
        }
        // One statement: the ids travel as a JSON array.
        let ids = serde_json::to_string(sequences).expect("integers encode");
        sqlx::query(
            "UPDATE outbox SET sent_us = $1
             WHERE sequence IN (SELECT value FROM json_each($2)) AND sent_us IS NULL",
        )
        .bind(now_us())
        .bind(ids)
        .execute(&self.pool)
        .await
        .map_err(map)?;
        Ok(())
    }

    async fn record_failure(
        &self,
        sequence: i64,
        error: &str,
        quarantine: bool,
    ) -> Result<(), StorageError> {
        let updated = sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2,
                 quarantined = (quarantined OR ($3 AND sent_us IS NULL))
             WHERE sequence = $1",
        )
        .bind(sequence)
        .bind(error)
        .bind(quarantine)
        .execute(&self.pool)
        .await
        .map_err(map)?
        .rows_affected();
        if updated == 1 {
            Ok(())
        } else {
            Err(StorageError::not_found("outbox", &sequence.to_string()))
        }
    }

    async fn quarantined(&self) -> Result<Vec<OutboxRecord>, StorageError> {
        self.select("quarantined <> 0 ORDER BY sequence").await
    }

    async fn release(&self, sequence: i64) -> Result<bool, StorageError> {
        let released = sqlx::query(
            "UPDATE outbox SET quarantined = 0, attempts = 0 WHERE sequence = $1 AND quarantined <> 0",
        )
        .bind(sequence)
        .execute(&self.pool)
        .await
        .map_err(map)?
        .rows_affected();
        if released == 1 {
            self.wakeup.committed();
            return Ok(true);
        }
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM outbox WHERE sequence = $1)")
                .bind(sequence)
                .fetch_one(&self.pool)
                .await
                .map_err(map)?;
        if exists {
            Ok(false)
        } else {
            Err(StorageError::not_found("outbox", &sequence.to_string()))
        }
    }

    async fn purge_sent(&self, older_than: Duration) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM outbox WHERE sent_us IS NOT NULL AND sent_us <= $1")
            .bind(now_us().saturating_sub(micros(older_than)))
            .execute(&self.pool)
            .await
            .map_err(map)?;
        Ok(done.rows_affected())
    }

    async fn purge_inbox(&self, older_than: Duration) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM inbox WHERE processed_us <= $1")
            .bind(now_us().saturating_sub(micros(older_than)))
            .execute(&self.pool)
            .await
            .map_err(map)?;
        Ok(done.rows_affected())
    }

    async fn backlog(&self) -> Result<OutboxBacklog, StorageError> {
        let row = sqlx::query(
            "SELECT
                 (SELECT count(*) FROM outbox WHERE sent_us IS NULL AND quarantined = 0) AS pending,
                 (SELECT min(created_us) FROM outbox WHERE sent_us IS NULL AND quarantined = 0) AS oldest_us,
                 (SELECT count(*) FROM outbox WHERE quarantined <> 0) AS quarantined",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(map)?;
        let decode = |e: sqlx::Error| StorageError::Backend(format!("decoding the backlog: {e}"));
        let pending: i64 = row.try_get("pending").map_err(decode)?;
        let quarantined: i64 = row.try_get("quarantined").map_err(decode)?;
        let oldest: Option<i64> = row.try_get("oldest_us").map_err(decode)?;
        let now = now_us();
        Ok(OutboxBacklog {
            pending: u64::try_from(pending).unwrap_or(0),
            oldest_pending_age: oldest
                .map(|us| Duration::from_micros(u64::try_from(now - us).unwrap_or(0))),
            quarantined: u64::try_from(quarantined).unwrap_or(0),
        })
    }

    async fn wait_for_new(&self, timeout: Duration) {
        self.wakeup.wait(timeout).await;
    }
}
