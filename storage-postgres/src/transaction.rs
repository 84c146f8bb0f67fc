//! One unit of work on one pooled connection (`READ COMMITTED`).
//!
//! Optimistic concurrency is enforced by the statements themselves:
//! `UPDATE … WHERE version = $expected` and `INSERT … ON CONFLICT DO NOTHING`.
//! A concurrent writer of the same row waits for the first to finish (row
//! lock) and then finds the version changed, so exactly one wins. Conflicts
//! are detected without raising a database error, so the transaction stays
//! usable after a [`StorageError::Conflict`].

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use sqlx::types::Json;
use sqlx::{Postgres, Row};
use storage_abstractions::{
    IndexEntry, OutboxMessage, Page, Query, Record, RecordWrite, StorageError, Transaction,
    validate_collection,
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

    /// Runs `write` (and appends `messages` in the same statement, if any)
    /// and turns a write that touched no row into its error.
    async fn write(
        &mut self,
        write: RecordWrite,
        messages: Vec<OutboxMessage>,
    ) -> Result<(), StorageError> {
        let with_outbox = !messages.is_empty();
        let sql = |plain: &'static str, combined: &'static LazyLock<String>| -> &'static str {
            if with_outbox {
                combined.as_str()
            } else {
                plain
            }
        };
        let query = match &write {
            RecordWrite::Insert(record) => {
                record.validate_for_write(true)?;
                sqlx::query(sql(INSERT_RECORD, &INSERT_WITH_OUTBOX))
                    .bind(&record.collection)
                    .bind(&record.id)
                    .bind(&record.data)
                    .bind(Json(&record.index))
            }
            RecordWrite::Update(record) => {
                record.validate_for_write(false)?;
                sqlx::query(sql(UPDATE_RECORD, &UPDATE_WITH_OUTBOX))
                    .bind(&record.collection)
                    .bind(&record.id)
                    .bind(to_db(record.version)?)
                    .bind(&record.data)
                    .bind(Json(&record.index))
                    .bind(to_db(record.version - 1)?)
            }
            RecordWrite::Delete {
                collection,
                id,
                expected_version,
            } => {
                validate_collection(collection)?;
                sqlx::query(sql(DELETE_RECORD, &DELETE_WITH_OUTBOX))
                    .bind(collection)
                    .bind(id)
                    .bind(to_db(*expected_version)?)
            }
            other => {
                return Err(StorageError::Invalid(format!(
                    "{other:?}: a write this provider does not know"
                )));
            }
        };
        let touched = if with_outbox {
            let row = OutboxColumns::from(messages)
                .bind(query)
                .fetch_one(&mut *self.tx)
                .await
                .map_err(map)?;
            let count: i64 = row
                .try_get(0)
                .map_err(|e| StorageError::Backend(format!("decoding a write's count: {e}")))?;
            u64::try_from(count).unwrap_or(0)
        } else {
            query
                .execute(&mut *self.tx)
                .await
                .map_err(map)?
                .rows_affected()
        };
        if touched == 1 {
            self.appended |= with_outbox;
            return Ok(());
        }
        Err(match write {
            RecordWrite::Insert(record) => {
                match self.stored_version(&record.collection, &record.id).await {
                    Ok(actual) => StorageError::Conflict {
                        collection: record.collection,
                        id: record.id,
                        expected: 0,
                        actual,
                    },
                    Err(error) => error,
                }
            }
            RecordWrite::Update(record) => {
                self.explain_miss(&record.collection, &record.id, record.version - 1)
                    .await
            }
            RecordWrite::Delete {
                collection,
                id,
                expected_version,
            } => self.explain_miss(&collection, &id, expected_version).await,
            other => StorageError::Backend(format!("{other:?} touched {touched} rows")),
        })
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

/// The record writes; `$1`… are each write's own parameters.
const INSERT_RECORD: &str = "INSERT INTO records (collection, id, version, data, index_entries)
     VALUES ($1, $2, 1, $3, $4)
     ON CONFLICT (collection, id) DO NOTHING";
const UPDATE_RECORD: &str =
    "UPDATE records SET version = $3, data = $4, index_entries = $5, updated_at = now()
     WHERE collection = $1 AND id = $2 AND version = $6";
const DELETE_RECORD: &str =
    "DELETE FROM records WHERE collection = $1 AND id = $2 AND version = $3";

/// Appends the messages bound as four arrays from `$first` on, once per row
/// of `source` (none: once). Rows are inserted in array order, so sequences
/// follow the order the messages were written in.
fn append_sql(source: Option<&str>, first: usize) -> String {
    let source = source.map(|s| format!("{s}, ")).unwrap_or_default();
    let [ids, keys, types, bodies] = [first, first + 1, first + 2, first + 3];
    format!(
        "INSERT INTO outbox (message_id, ordering_key, event_type, body)
         SELECT m.message_id, m.ordering_key, m.event_type, m.body
         FROM {source}unnest(${ids}::uuid[], ${keys}::text[], ${types}::text[], ${bodies}::bytea[])
              WITH ORDINALITY AS m(message_id, ordering_key, event_type, body, n)
         ORDER BY m.n"
    )
}

/// `write` and the append of messages from `$first` on in one statement
/// (data-modifying CTEs): the messages are appended only if the write
/// touched its row, and the statement returns how many rows it touched.
fn with_outbox(write: &str, first: usize) -> String {
    format!(
        "WITH record AS ({write} RETURNING 1), appended AS ({})
         SELECT count(*) FROM record",
        append_sql(Some("record"), first)
    )
}

static APPEND: LazyLock<String> = LazyLock::new(|| append_sql(None, 1));
static INSERT_WITH_OUTBOX: LazyLock<String> = LazyLock::new(|| with_outbox(INSERT_RECORD, 5));
static UPDATE_WITH_OUTBOX: LazyLock<String> = LazyLock::new(|| with_outbox(UPDATE_RECORD, 7));
static DELETE_WITH_OUTBOX: LazyLock<String> = LazyLock::new(|| with_outbox(DELETE_RECORD, 4));

/// Outbox messages as the columns `append_sql` binds.
struct OutboxColumns {
    ids: Vec<Uuid>,
    keys: Vec<String>,
    types: Vec<String>,
    bodies: Vec<Vec<u8>>,
}

impl From<Vec<OutboxMessage>> for OutboxColumns {
    fn from(messages: Vec<OutboxMessage>) -> Self {
        let mut columns = Self {
            ids: Vec::with_capacity(messages.len()),
            keys: Vec::with_capacity(messages.len()),
            types: Vec::with_capacity(messages.len()),
            bodies: Vec::with_capacity(messages.len()),
        };
        for message in messages {
            columns.ids.push(message.id);
            columns.keys.push(message.ordering_key);
            columns.types.push(message.event_type);
            columns.bodies.push(message.body);
        }
        columns
    }
}

impl OutboxColumns {
    fn bind<'q>(self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(self.ids)
            .bind(self.keys)
            .bind(self.types)
            .bind(self.bodies)
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

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
        self.write(RecordWrite::Insert(record), Vec::new()).await
    }

    async fn update(&mut self, record: Record) -> Result<(), StorageError> {
        self.write(RecordWrite::Update(record), Vec::new()).await
    }

    async fn delete(
        &mut self,
        collection: &str,
        id: &str,
        expected_version: u64,
    ) -> Result<(), StorageError> {
        let write = RecordWrite::Delete {
            collection: collection.to_owned(),
            id: id.to_owned(),
            expected_version,
        };
        self.write(write, Vec::new()).await
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
        if messages.is_empty() {
            return Ok(());
        }
        let columns = OutboxColumns::from(messages);
        columns
            .bind(sqlx::query(sqlx::AssertSqlSafe(APPEND.as_str())))
            .execute(&mut *self.tx)
            .await
            .map_err(map)?;
        self.appended = true;
        Ok(())
    }

    /// One statement: the write, and the messages only if it wrote a row.
    async fn write_with_outbox(
        &mut self,
        write: RecordWrite,
        messages: Vec<OutboxMessage>,
    ) -> Result<(), StorageError> {
        self.write(write, messages).await
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
