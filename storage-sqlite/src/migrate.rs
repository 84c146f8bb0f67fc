//! Embedded, versioned migrations: the chassis's own (records, outbox,
//! inbox) and a service's (its tables), each list recorded in a table of
//! its own.
//!
//! Each migration runs in a `BEGIN IMMEDIATE` transaction together with the
//! row that records it: the database's one write lock is the lock every
//! process opening the same file takes, so each migration is applied once.

use sqlx::{AssertSqlSafe, Connection, SqliteConnection};

/// The table recording the chassis's migrations.
pub(crate) const CHASSIS_TABLE: &str = "chassis_migrations";
/// The table recording a service's migrations.
pub(crate) const SERVICE_TABLE: &str = "service_migrations";

/// The chassis's migrations, in order.
pub(crate) const CHASSIS: &[(i64, &str, &str)] = &[(
    1,
    "records_outbox_inbox",
    include_str!("../migrations/0001_records_outbox_inbox.sql"),
)];

/// A failed step: which migration (0 = the set-up), and the error.
pub(crate) type Failure = (i64, &'static str, sqlx::Error);

/// Applies the migrations of `list` not yet recorded in `table`; returns
/// the versions applied now.
pub(crate) async fn run(
    conn: &mut SqliteConnection,
    table: &str,
    list: &[(i64, &'static str, &'static str)],
) -> Result<Vec<i64>, Failure> {
    let setup = |e| (0, "setup", e);
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {table} (
             version    INTEGER PRIMARY KEY,
             name       TEXT    NOT NULL,
             applied_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
         )"
    )))
    .execute(&mut *conn)
    .await
    .map_err(setup)?;
    let mut applied = Vec::new();
    for &(version, name, sql) in list {
        let failed = |e| (version, name, e);
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?;
        let done: bool = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM {table} WHERE version = $1)"
        )))
        .bind(version)
        .fetch_one(&mut *tx)
        .await
        .map_err(failed)?;
        if done {
            tx.rollback().await.map_err(failed)?;
            continue;
        }
        sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(failed)?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {table} (version, name) VALUES ($1, $2)"
        )))
        .bind(version)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        applied.push(version);
    }
    Ok(applied)
}
