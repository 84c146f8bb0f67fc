//! The relay's view of the outbox, and inbox housekeeping.
//!
//! **One active relay per schema.** `fetch_pending` runs on a dedicated
//! connection that holds a session advisory lock for the schema's outbox.
//! Only the instance holding it gets rows; every other instance (another
//! replica of the service) gets empty batches until the holder shuts down or
//! its connection drops, when the lock passes to whoever asks next. That
//! keeps per-`ordering_key` order across replicas. If the holder's connection
//! is lost mid-batch, the rows it had not yet marked sent are fetched again
//! by the next holder (at-least-once, as the bus promises anyway).
//!
//! While this instance holds the lock its commits send no `NOTIFY` (its own
//! relay is woken in process; see `wakeup`): a replica taking over later
//! finds the rows at its next poll.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgRow};
use sqlx::{ConnectOptions, Connection, PgConnection, Row};
use storage_abstractions::{OutboxBacklog, OutboxMessage, OutboxRecord, OutboxStore, StorageError};
use tokio::sync::Mutex;

use crate::error::map;
use crate::retry::Retry;
use crate::wakeup::Wakeup;

/// Lock space of the relay lock (`pg_try_advisory_lock(int, int)`): "ob".
const RELAY_LOCK_CLASS: i32 = 0x6f62;

/// The relay lock connection, once opened.
#[derive(Default)]
struct Leadership {
    conn: Option<PgConnection>,
    held: bool,
}

/// The [`OutboxStore`] of a [`crate::PostgresStore`].
pub struct PostgresOutbox {
    pool: PgPool,
    options: PgConnectOptions,
    wakeup: Arc<Wakeup>,
    retry: Retry,
    leadership: Mutex<Leadership>,
}

impl std::fmt::Debug for PostgresOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOutbox").finish_non_exhaustive()
    }
}

const SELECT_COLUMNS: &str = "SELECT sequence, message_id, ordering_key, event_type, body,
        (extract(epoch FROM created_at) * 1000000)::bigint AS created_us, attempts, last_error
    FROM outbox";

/// Marks a batch sent without waiting for the commit to reach the disk
/// (`synchronous_commit` off for this statement's own transaction only).
/// A mark lost in a crash of the server sends its messages again, which
/// at-least-once delivery and the consumers' inbox absorb; the wait would
/// be one of the three disk flushes an event costs (its unit of work, this
/// mark, the consumer's unit of work) and it holds the relay's next batch.
/// The change is visible to other sessions at once, like any commit.
const MARK_SENT: &str = "WITH durability AS (SELECT set_config('synchronous_commit', 'off', true))
    UPDATE outbox SET sent_at = now() FROM durability
    WHERE sequence = ANY($1) AND sent_at IS NULL";

fn outbox_record(row: &PgRow) -> Result<OutboxRecord, StorageError> {
    let decode = |e: sqlx::Error| StorageError::Backend(format!("decoding an outbox row: {e}"));
    let created_us: i64 = row.try_get("created_us").map_err(decode)?;
    let attempts: i32 = row.try_get("attempts").map_err(decode)?;
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
        attempts: u32::try_from(attempts).unwrap_or(0),
        last_error: row.try_get("last_error").map_err(decode)?,
    })
}

fn missing(sequence: i64) -> StorageError {
    StorageError::not_found("outbox", &sequence.to_string())
}

impl PostgresOutbox {
    pub(crate) fn new(
        pool: PgPool,
        options: PgConnectOptions,
        wakeup: Arc<Wakeup>,
        retry: Retry,
    ) -> Self {
        Self {
            pool,
            options,
            wakeup,
            retry,
            leadership: Mutex::new(Leadership::default()),
        }
    }

    /// Whether this instance currently holds the relay lock (after a
    /// `fetch_pending`).
    pub async fn is_active_relay(&self) -> bool {
        self.leadership.lock().await.held
    }

    /// Releases the relay lock (closing its connection), so another
    /// instance takes over. Called by `PostgresStore::shutdown`.
    pub(crate) async fn resign(&self) {
        let mut leadership = self.leadership.lock().await;
        leadership.held = false;
        self.wakeup.set_leading(false);
        if let Some(mut conn) = leadership.conn.take() {
            // Unlock explicitly: the server frees a closed session's locks
            // only when its backend has exited, a moment later.
            let _ = sqlx::query("SELECT pg_advisory_unlock_all()")
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
        }
    }

    /// Runs a retention `DELETE` whose `$1` is the age (idempotent, so retried).
    async fn delete_older(
        &self,
        what: &str,
        sql: &'static str,
        older_than: Duration,
    ) -> Result<u64, StorageError> {
        let pool = &self.pool;
        let done = self
            .retry
            .run(what, || async move {
                sqlx::query(sql).bind(older_than).execute(pool).await
            })
            .await
            .map_err(map)?;
        Ok(done.rows_affected())
    }

    /// Fetches on the lock connection, taking the lock first if needed;
    /// `None` while another instance holds it.
    async fn fetch_as_leader(
        &self,
        leadership: &mut Leadership,
        limit: i64,
    ) -> Result<Option<Vec<PgRow>>, sqlx::Error> {
        if leadership.conn.is_none() {
            leadership.conn = Some(self.options.connect().await?);
            leadership.held = false;
        }
        let conn = leadership.conn.as_mut().expect("opened above");
        if !leadership.held {
            leadership.held =
                sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext(current_schema()))")
                    .bind(RELAY_LOCK_CLASS)
                    .fetch_one(&mut *conn)
                    .await?;
            if !leadership.held {
                return Ok(None);
            }
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT_COLUMNS} WHERE sent_at IS NULL AND NOT quarantined ORDER BY sequence LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
        Ok(Some(rows))
    }
}

#[async_trait]
impl OutboxStore for PostgresOutbox {
    /// Pending rows, lowest sequence first, for the active relay only (see
    /// the module docs); an empty batch on a standby instance.
    async fn fetch_pending(&self, limit: usize) -> Result<Vec<OutboxRecord>, StorageError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut leadership = self.leadership.lock().await;
        let mut attempt = 1;
        let rows = loop {
            match self.fetch_as_leader(&mut leadership, limit).await {
                Ok(rows) => break Ok(rows),
                Err(error) => {
                    // The lock lived on that connection: it is gone with it.
                    if let Some(conn) = leadership.conn.take() {
                        drop(conn);
                    }
                    leadership.held = false;
                    if attempt >= self.retry.attempts || !crate::error::is_retryable(&error) {
                        break Err(map(error));
                    }
                    tokio::time::sleep(self.retry.first_delay * attempt).await;
                    attempt += 1;
                }
            }
        };
        // Commits skip the NOTIFY while we hold the lock (see `wakeup`).
        self.wakeup.set_leading(leadership.held);
        match rows? {
            None => Ok(Vec::new()),
            Some(rows) => rows.iter().map(outbox_record).collect(),
        }
    }

    async fn mark_sent(&self, sequences: &[i64]) -> Result<(), StorageError> {
        if sequences.is_empty() {
            return Ok(());
        }
        let pool = &self.pool;
        self.retry
            .run("outbox.mark_sent", || async move {
                sqlx::query(MARK_SENT).bind(sequences).execute(pool).await
            })
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
        // Not retried: counting one failure twice would quarantine early.
        let updated = sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2,
                 quarantined = quarantined OR ($3 AND sent_at IS NULL)
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
            Err(missing(sequence))
        }
    }

    async fn quarantined(&self) -> Result<Vec<OutboxRecord>, StorageError> {
        let pool = &self.pool;
        let rows = self
            .retry
            .run("outbox.quarantined", || async move {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{SELECT_COLUMNS} WHERE quarantined ORDER BY sequence"
                )))
                .fetch_all(pool)
                .await
            })
            .await
            .map_err(map)?;
        rows.iter().map(outbox_record).collect()
    }

    async fn release(&self, sequence: i64) -> Result<bool, StorageError> {
        // Looks whether the row exists in the same statement, so the answer
        // is exact: NULL = no such row.
        let released: Option<bool> = sqlx::query_scalar(
            "WITH released AS (
                 UPDATE outbox SET quarantined = false, attempts = 0
                 WHERE sequence = $1 AND quarantined
                 RETURNING sequence
             )
             SELECT EXISTS (SELECT 1 FROM released)
             FROM outbox WHERE sequence = $1",
        )
        .bind(sequence)
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        let released = released.ok_or_else(|| missing(sequence))?;
        if released {
            // Wake the active relay, wherever it runs.
            self.wakeup.committed();
        }
        Ok(released)
    }

    async fn purge_sent(&self, older_than: Duration) -> Result<u64, StorageError> {
        self.delete_older(
            "outbox.purge_sent",
            "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at <= now() - $1::interval",
            older_than,
        )
        .await
    }

    async fn purge_inbox(&self, older_than: Duration) -> Result<u64, StorageError> {
        self.delete_older(
            "inbox.purge",
            "DELETE FROM inbox WHERE processed_at <= now() - $1::interval",
            older_than,
        )
        .await
    }

    async fn backlog(&self) -> Result<OutboxBacklog, StorageError> {
        let pool = &self.pool;
        let row = self
            .retry
            .run("outbox.backlog", || async move {
                // Both counts use partial indexes, so sent rows awaiting
                // purge cost nothing.
                sqlx::query(
                    "SELECT
                         (SELECT count(*) FROM outbox WHERE sent_at IS NULL AND NOT quarantined) AS pending,
                         (SELECT extract(epoch FROM clock_timestamp() - min(created_at))::float8
                            FROM outbox WHERE sent_at IS NULL AND NOT quarantined) AS oldest_s,
                         (SELECT count(*) FROM outbox WHERE quarantined) AS quarantined",
                )
                .fetch_one(pool)
                .await
            })
            .await
            .map_err(map)?;
        let decode = |e: sqlx::Error| StorageError::Backend(format!("decoding the backlog: {e}"));
        let pending: i64 = row.try_get("pending").map_err(decode)?;
        let quarantined: i64 = row.try_get("quarantined").map_err(decode)?;
        let oldest: Option<f64> = row.try_get("oldest_s").map_err(decode)?;
        Ok(OutboxBacklog {
            pending: u64::try_from(pending).unwrap_or(0),
            oldest_pending_age: oldest.map(|s| Duration::from_secs_f64(s.max(0.0))),
            quarantined: u64::try_from(quarantined).unwrap_or(0),
        })
    }

    async fn wait_for_new(&self, timeout: Duration) {
        self.wakeup.wait(timeout).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The local test server (trust authentication).
    const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

    async fn setting(conn: &mut PgConnection) -> String {
        sqlx::query_scalar("SELECT current_setting('synchronous_commit')")
            .fetch_one(conn)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_mark_skips_the_flush_of_its_own_transaction_only() {
        let mut conn = PgConnection::connect(URL)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {URL} is required for this test: {e}"));
        sqlx::raw_sql(
            "CREATE TEMP TABLE outbox (sequence bigint PRIMARY KEY, sent_at timestamptz);
             INSERT INTO outbox VALUES (1, NULL), (2, NULL), (3, now() - interval '1 hour')",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        assert_eq!(setting(&mut conn).await, "on");

        // Inside a transaction the setting is visible after the statement…
        let mut tx = conn.begin().await.unwrap();
        let marked = sqlx::query(MARK_SENT)
            .bind([1_i64, 3].as_slice())
            .execute(&mut *tx)
            .await
            .unwrap();
        assert_eq!(
            marked.rows_affected(),
            1,
            "an already sent row keeps its mark"
        );
        assert_eq!(setting(&mut tx).await, "off");
        tx.commit().await.unwrap();
        // …and gone after it: the session's later commits stay synchronous,
        // which is what keeps the pooled connection safe for units of work.
        assert_eq!(setting(&mut conn).await, "on");

        // On its own (the relay's case) the statement is its own transaction.
        sqlx::query(MARK_SENT)
            .bind([2_i64].as_slice())
            .execute(&mut conn)
            .await
            .unwrap();
        assert_eq!(setting(&mut conn).await, "on");
        let unsent: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(unsent, 0);
        conn.close().await.unwrap();
    }
}
