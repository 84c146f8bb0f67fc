//! SQLite storage provider of the service chassis (sqlx, bundled SQLite):
//! embedded, needs no server; a private database by default (gone at
//! shutdown), a file that keeps the data when `storage.sqlite.path` is set.
//!
//! [`SqliteStore::open`] builds a pool from [`SqliteConfig`], applies the
//! chassis's embedded migrations (records, outbox, inbox) and is ready.
//! Transactions carry their connection for a service's own SQL
//! ([`Transaction::sql_connection`], typed by `storage-sql`), and
//! [`Store::apply_migrations`] applies a service's migrations.
//!
//! - **Private** (no `path`, the default): a database of this store alone,
//!   gone at [`Store::shutdown`] (or when the store is dropped). It is a
//!   file under the temp directory with `synchronous = OFF`, so it costs
//!   about what memory would: SQLite's own in-memory databases do not fit a
//!   pool. Each plain `:memory:` connection opens a database of its own;
//!   the shared-cache and `memdb` variants share one, but make a reader
//!   wait for (or fail on) an open writer, where the chassis promises that
//!   readers see the last commit while a unit of work is open.
//! - **A file**: WAL journal (readers never wait for the writer),
//!   `synchronous = NORMAL`, created if missing. One process per file: the
//!   relay assumes it is the only one, so the store holds an exclusive lock
//!   on `<file>.lock` until shutdown, and a second process (or store) fails
//!   to open naming the file and the process holding it
//!   ([`SqliteError::Locked`]).
//! - One writer at a time: see the `transaction` module on how lock
//!   contention becomes a retryable [`StorageError::Conflict`].
//!
//! ```
//! use storage_abstractions::{Record, Store};
//! use storage_sqlite::{SqliteConfig, SqliteStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqliteStore::open(&SqliteConfig::default()).await?; // in memory
//! let mut tx = store.begin().await?;
//! tx.insert(Record::new("orders", "o-1", serde_json::json!({"total": 12}))).await?;
//! tx.commit().await?;
//! let mut tx = store.begin().await?;
//! assert_eq!(tx.get("orders", "o-1").await?.unwrap().version, 1);
//! tx.rollback().await?; // shutdown waits for open units of work
//! store.shutdown().await;
//! # Ok(()) }
//! ```

mod config;
mod error;
mod lock;
mod migrate;
mod outbox;
mod transaction;
mod wakeup;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use chassis_core::{HealthCheck, HealthStatus};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};
use storage_abstractions::{
    Migration, MigrationError, OutboxStore, StorageError, Store, Transaction,
};

pub use config::SqliteConfig;
pub use error::SqliteError;
pub use outbox::SqliteOutbox;
use transaction::SqliteTransaction;
use wakeup::Wakeup;

/// The provider name written in config (`storage.provider = "sqlite"`).
pub const PROVIDER: &str = "sqlite";

/// Microseconds since the Unix epoch: the provider's timestamps.
pub(crate) fn now_us() -> i64 {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// A store in a SQLite database. `Clone` shares the pool.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: SqlitePool,
    /// `memory` or the file's path, for messages.
    target: String,
    wakeup: Arc<Wakeup>,
    outbox: Arc<SqliteOutbox>,
    /// A private database: its file, removed at shutdown.
    private: Option<PathBuf>,
    /// A named file's lock (one process per file), released at shutdown.
    lock: Option<lock::FileLock>,
}

impl Inner {
    fn remove_private(&self) {
        if let Some(path) = &self.private {
            for suffix in ["", "-wal", "-shm"] {
                let mut name = path.as_os_str().to_owned();
                name.push(suffix);
                let _ = std::fs::remove_file(name);
            }
        }
    }
}

impl Drop for Inner {
    /// A store dropped without `shutdown` still removes a private database.
    fn drop(&mut self) {
        self.remove_private();
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("database", &self.inner.target)
            .finish_non_exhaustive()
    }
}

/// Connection options from the config (WAL journal in both cases), the
/// file, and whether it is private.
fn connect_options(config: &SqliteConfig) -> (SqliteConnectOptions, PathBuf, bool) {
    let options = SqliteConnectOptions::new()
        .busy_timeout(config.busy_timeout)
        .foreign_keys(true)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    match &config.path {
        None => {
            let path = std::env::temp_dir().join(format!(
                "chassis-private-{}.sqlite",
                uuid::Uuid::new_v4().simple()
            ));
            // Nothing survives the store, so nothing needs syncing.
            let options = options.filename(&path).synchronous(SqliteSynchronous::Off);
            (options, path, true)
        }
        Some(path) => (
            options
                .filename(path)
                .synchronous(SqliteSynchronous::Normal),
            path.clone(),
            false,
        ),
    }
}

impl SqliteStore {
    /// Opens (creates) the database and applies the chassis's migrations.
    pub async fn open(config: &SqliteConfig) -> Result<SqliteStore, SqliteError> {
        config.validate()?;
        let (options, path, private) = connect_options(config);
        let target = if private {
            "private".to_owned()
        } else {
            path.display().to_string()
        };
        // Before the first connection: a second process must not touch
        // the file (not even to migrate it).
        let lock = if private {
            None
        } else {
            Some(lock::FileLock::acquire(&path)?)
        };
        let open_error = |source| SqliteError::Open {
            target: target.clone(),
            source,
        };
        // One connection first: it surfaces a bad path or a database that
        // is not one before anything else.
        let mut conn = options.connect().await.map_err(open_error)?;
        let applied = migrate::run(&mut conn, migrate::CHASSIS_TABLE, migrate::CHASSIS)
            .await
            .map_err(|(version, name, source)| SqliteError::Migration {
                version,
                name,
                target: target.clone(),
                source,
            })?;
        if !applied.is_empty() {
            tracing::info!(database = %target, ?applied, "applied storage migrations");
        }
        conn.close().await.map_err(open_error)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections)
            .min_connections(0)
            .acquire_timeout(config.acquire_timeout)
            .connect_lazy_with(options);
        let wakeup = Arc::new(Wakeup::default());
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                outbox: Arc::new(SqliteOutbox::new(pool.clone(), wakeup.clone())),
                pool,
                target,
                wakeup,
                private: private.then_some(path),
                lock,
            }),
        })
    }

    /// The connection pool (for a service's own queries outside a unit of work).
    pub fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    /// `private`, or the database file.
    pub fn database(&self) -> &str {
        &self.inner.target
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>, StorageError> {
        let tx = self.inner.pool.begin().await.map_err(error::map)?;
        Ok(Box::new(SqliteTransaction::new(
            tx,
            self.inner.wakeup.clone(),
        )))
    }

    fn outbox(&self) -> Arc<dyn OutboxStore> {
        self.inner.outbox.clone()
    }

    fn health_checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        vec![Arc::new(SqliteHealth {
            pool: self.inner.pool.clone(),
        })]
    }

    fn has_sql(&self) -> bool {
        true
    }

    async fn apply_migrations(&self, migrations: &[Migration]) -> Result<Vec<i64>, MigrationError> {
        Migration::validate_list(migrations)?;
        let list: Vec<_> = migrations
            .iter()
            .map(|m| (m.version, m.name, m.sql_for(PROVIDER)))
            .collect();
        let mut conn = self.inner.pool.acquire().await.map_err(|e| {
            MigrationError::Unavailable(format!("SQLite {}: {e}", self.inner.target))
        })?;
        migrate::run(&mut conn, migrate::SERVICE_TABLE, &list)
            .await
            .map_err(|(version, name, error)| MigrationError::Failed {
                version,
                name,
                error: error.to_string(),
            })
    }

    /// Closes the pool and releases the file's lock; a private database is
    /// gone afterwards.
    async fn shutdown(&self) {
        self.inner.pool.close().await;
        if let Some(lock) = &self.inner.lock {
            lock.release();
        }
        self.inner.remove_private();
        self.inner.wakeup.committed();
    }
}

/// Health check `storage.sqlite`: `SELECT 1` on a pooled connection.
struct SqliteHealth {
    pool: SqlitePool,
}

#[async_trait]
impl HealthCheck for SqliteHealth {
    fn name(&self) -> &str {
        "storage.sqlite"
    }

    async fn check(&self) -> HealthStatus {
        let ping = sqlx::query("SELECT 1").execute(&self.pool);
        match tokio::time::timeout(Duration::from_secs(5), ping).await {
            Ok(Ok(_)) => HealthStatus::Healthy,
            Ok(Err(error)) => HealthStatus::Unhealthy(format!("SQLite: {error}")),
            Err(_) => HealthStatus::Unhealthy("SQLite did not answer SELECT 1 within 5s".into()),
        }
    }
}
