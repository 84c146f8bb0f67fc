//! Embedded, versioned migrations, applied into the configured schema.
//!
//! Each migration runs in its own transaction together with the row that
//! records it, under a transaction-level advisory lock per schema, so several
//! replicas starting at once apply each migration exactly once.

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::error::PostgresError;

pub use storage_abstractions::Migration;

/// Every migration of this crate, in order (recorded in
/// `chassis_migrations`; a service's own go to `service_migrations`).
pub const MIGRATIONS: &[Migration] = &[Migration::new(
    1,
    "records_outbox_inbox",
    include_str!("../migrations/0001_records_outbox_inbox.sql"),
)];

/// The table recording the chassis's migrations.
pub(crate) const CHASSIS_TABLE: &str = "chassis_migrations";
/// The table recording a service's migrations.
pub(crate) const SERVICE_TABLE: &str = "service_migrations";

/// Applies the migrations of `list` not yet recorded in `<schema>.<table>`;
/// returns the versions applied now. Chassis and service migrations take
/// the same per-schema lock, so one replica applies them.
pub(crate) async fn run(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
    list: &[Migration],
) -> Result<Vec<i64>, PostgresError> {
    let failed = |version: i64, name: &'static str| {
        let schema = schema.to_owned();
        move |source| PostgresError::Migration {
            version,
            name,
            schema,
            source,
        }
    };
    // The schema name was validated as [a-z0-9_]+ (PostgresConfig::validate),
    // so quoting it is enough to use it in DDL.
    let lock_key = format!("chassis-migrations:{schema}");
    let mut applied = Vec::new();
    for migration in list {
        let mut tx = conn.begin().await.map_err(failed(0, "setup"))?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1)::bigint)")
            .bind(&lock_key)
            .execute(&mut *tx)
            .await
            .map_err(failed(0, "setup"))?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
             CREATE TABLE IF NOT EXISTS \"{schema}\".{table} (
                 version    bigint      PRIMARY KEY,
                 name       text        NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );
             SET LOCAL search_path TO \"{schema}\";"
        )))
        .execute(&mut *tx)
        .await
        .map_err(failed(0, "setup"))?;
        let done: bool = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM \"{schema}\".{table} WHERE version = $1)"
        )))
        .bind(migration.version)
        .fetch_one(&mut *tx)
        .await
        .map_err(failed(migration.version, migration.name))?;
        if done {
            tx.rollback()
                .await
                .map_err(failed(migration.version, migration.name))?;
            continue;
        }
        sqlx::raw_sql(migration.sql_for(crate::PROVIDER))
            .execute(&mut *tx)
            .await
            .map_err(failed(migration.version, migration.name))?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO \"{schema}\".{table} (version, name) VALUES ($1, $2)"
        )))
        .bind(migration.version)
        .bind(migration.name)
        .execute(&mut *tx)
        .await
        .map_err(failed(migration.version, migration.name))?;
        tx.commit()
            .await
            .map_err(failed(migration.version, migration.name))?;
        applied.push(migration.version);
    }
    Ok(applied)
}
