//! Embedded, versioned migrations, applied into the configured schema.
//!
//! Each migration runs in its own transaction together with the row that
//! records it, under a transaction-level advisory lock per schema, so several
//! replicas starting at once apply each migration exactly once.

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::error::PostgresError;

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Increasing number; applied in this order, each once.
    pub version: i32,
    /// Short name.
    pub name: &'static str,
    /// The SQL (several statements), written without schema prefixes: the
    /// connection's `search_path` is the configured schema.
    pub sql: &'static str,
}

/// Every migration of this crate, in order.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "records_outbox_inbox",
    sql: include_str!("../migrations/0001_records_outbox_inbox.sql"),
}];

/// Applies the migrations not yet recorded in `<schema>.chassis_migrations`;
/// returns the versions applied now.
pub(crate) async fn run(conn: &mut PgConnection, schema: &str) -> Result<Vec<i32>, PostgresError> {
    let failed = |version: i32, name: &'static str| {
        let schema = schema.to_owned();
        move |source| PostgresError::Migration {
            version,
            name,
            schema,
            source,
        }
    };
    // The schema name was validated as [a-z0-9_]+ (StorageConfig::validate),
    // so quoting it is enough to use it in DDL.
    let lock_key = format!("chassis-migrations:{schema}");
    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        let mut tx = conn.begin().await.map_err(failed(0, "setup"))?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1)::bigint)")
            .bind(&lock_key)
            .execute(&mut *tx)
            .await
            .map_err(failed(0, "setup"))?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
             CREATE TABLE IF NOT EXISTS \"{schema}\".chassis_migrations (
                 version    integer     PRIMARY KEY,
                 name       text        NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );
             SET LOCAL search_path TO \"{schema}\";"
        )))
        .execute(&mut *tx)
        .await
        .map_err(failed(0, "setup"))?;
        let done: bool = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM \"{schema}\".chassis_migrations WHERE version = $1)"
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
        sqlx::raw_sql(migration.sql)
            .execute(&mut *tx)
            .await
            .map_err(failed(migration.version, migration.name))?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO \"{schema}\".chassis_migrations (version, name) VALUES ($1, $2)"
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
